import { AsyncLocalStorage } from 'node:async_hooks';
import {
  context,
  metrics,
  ROOT_CONTEXT,
  trace,
  type Attributes,
  type Context,
  type ContextManager,
} from '@opentelemetry/api';
import {
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  AggregationTemporality,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';

/**
 * The OpenTelemetry SDK with in-memory exporters in place of the Azure Monitor distro, so that a test
 * reads what the app's real handlers record. The context manager is AsyncLocalStorage, as the one the
 * distro's NodeSDK registers (@opentelemetry/context-async-hooks), written out here in a few lines.
 */
class AsyncLocalStorageContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.apply(thisArg, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const run = (self: unknown, args: unknown[]) =>
      this.with(ctx, () => (target as (...a: unknown[]) => unknown).apply(self, args));
    return function (this: unknown, ...args: unknown[]) {
      return run(this, args);
    } as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.#storage.disable();
    return this;
  }
}

/** One data point of a metric as the exporter saw it: counters and gauges a value, histograms their count and sum. */
export interface MetricPoint {
  name: string;
  attributes: Attributes;
  value: number;
  count?: number;
}

export interface TestTelemetry {
  /** Spans ended since the last reset. */
  spans(): ReadableSpan[];
  /** Every data point collected now (cumulative since the meter provider was made). */
  collect(): Promise<MetricPoint[]>;
  /** Forgets the spans and starts a new meter provider (so counts start at zero). */
  reset(): void;
  uninstall(): Promise<void>;
}

export function installTestTelemetry(): TestTelemetry {
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager());
  trace.setGlobalTracerProvider(tracerProvider);

  let meter: { provider: MeterProvider; exporter: InMemoryMetricExporter } | undefined;
  const newMeterProvider = () => {
    void meter?.provider.shutdown();
    metrics.disable();
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const provider = new MeterProvider({
      readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })],
    });
    metrics.setGlobalMeterProvider(provider);
    meter = { provider, exporter };
  };
  newMeterProvider();

  return {
    spans: () => spanExporter.getFinishedSpans(),
    async collect() {
      await meter!.provider.forceFlush();
      const latest = meter!.exporter.getMetrics().at(-1);
      meter!.exporter.reset();
      return (latest?.scopeMetrics ?? []).flatMap((scope) =>
        scope.metrics.flatMap((metric) =>
          metric.dataPoints.map((point): MetricPoint => {
            const name = metric.descriptor.name;
            if (metric.dataPointType === DataPointType.HISTOGRAM) {
              const value = point.value as { count: number; sum?: number };
              return { name, attributes: point.attributes, value: value.sum ?? 0, count: value.count };
            }
            return { name, attributes: point.attributes, value: point.value as number };
          }),
        ),
      );
    },
    reset() {
      spanExporter.reset();
      newMeterProvider();
    },
    async uninstall() {
      await Promise.all([meter?.provider.shutdown(), tracerProvider.shutdown()]);
      metrics.disable();
      trace.disable();
      context.disable();
    },
  };
}

/** The points of one metric whose attributes include `attributes`. */
export function pointsOf(points: MetricPoint[], name: string, attributes: Attributes = {}): MetricPoint[] {
  return points.filter(
    (p) => p.name === name && Object.entries(attributes).every(([key, value]) => p.attributes[key] === value),
  );
}

/** The sum of the values of those points (a counter's total over the matching series). */
export function totalOf(points: MetricPoint[], name: string, attributes: Attributes = {}): number {
  return pointsOf(points, name, attributes).reduce((sum, p) => sum + p.value, 0);
}
