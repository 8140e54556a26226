import type * as AzureFunctions from '@azure/functions';
import { metrics, trace } from '@opentelemetry/api';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { startTelemetry, stopTelemetry } from '../../../shared/telemetry/telemetry.js';
import { tracePollRun } from '../../../shared/telemetry/tracing.js';

type Hook = (context: Record<string, unknown>) => unknown;

/**
 * The Functions library as far as `@azure/functions-opentelemetry-instrumentation` uses it: app.setup
 * (the worker capability) and the log and preInvocation hooks.
 */
function functionsLibrary() {
  const hooks: Record<'log' | 'preInvocation', Hook[]> = { log: [], preInvocation: [] };
  const capabilities: Record<string, unknown> = {};
  const register = (name: keyof typeof hooks) => (hook: Hook) => {
    hooks[name].push(hook);
    return { dispose: () => hooks[name].splice(hooks[name].indexOf(hook), 1) };
  };
  const library = {
    app: {
      setup: (options: { capabilities?: Record<string, unknown> }) => Object.assign(capabilities, options.capabilities),
      hook: { log: register('log'), preInvocation: register('preInvocation') },
    },
  } as unknown as typeof AzureFunctions;
  return { library, hooks, capabilities };
}

/**
 * Starting the export with the real Azure Monitor distro (to an ingestion endpoint on this machine
 * that answers nothing: what is exported here is not the point, the wiring is).
 */
describe('telemetry start-up with the Azure Monitor distro', () => {
  const services = () => {
    throw new Error('not read before the first collection');
  };
  afterAll(async () => {
    await stopTelemetry();
    vi.unstubAllEnvs();
  });

  it('loads nothing and changes nothing without a connection string', async () => {
    vi.stubEnv('APPLICATIONINSIGHTS_CONNECTION_STRING', '');
    const { library, capabilities } = functionsLibrary();
    const provider = metrics.getMeterProvider();
    expect(await startTelemetry(library, services)).toBe(false);
    expect(capabilities).toEqual({});
    expect(metrics.getMeterProvider()).toBe(provider);
  });

  it("exports with a connection string: statsbeat off on this machine, the host's trace context the handler's", async () => {
    vi.stubEnv(
      'APPLICATIONINSIGHTS_CONNECTION_STRING',
      `InstrumentationKey=${crypto.randomUUID()};IngestionEndpoint=https://127.0.0.1:9/`,
    );
    // As Flex Consumption sets it: the distro then knows the platform and asks no VM metadata service.
    vi.stubEnv('WEBSITE_SKU', 'FlexConsumption');
    for (const name of [
      'APPLICATIONINSIGHTS_INSTRUMENTATION_LOGGING_LEVEL',
      'APPLICATIONINSIGHTS_STATSBEAT_DISABLED',
      'APPLICATION_INSIGHTS_NO_STATSBEAT',
      'APPLICATIONINSIGHTS_SDKSTATS_DISABLED',
    ])
      vi.stubEnv(name, undefined as unknown as string);
    const { library, hooks, capabilities } = functionsLibrary();
    const noopProvider = metrics.getMeterProvider();

    expect(await startTelemetry(library, services)).toBe(true);

    expect(process.env).toMatchObject({
      APPLICATIONINSIGHTS_INSTRUMENTATION_LOGGING_LEVEL: 'ERROR',
      APPLICATIONINSIGHTS_STATSBEAT_DISABLED: 'true',
      APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
      APPLICATIONINSIGHTS_SDKSTATS_DISABLED: 'true',
    });
    // The worker tells the host that it sends its own logs, which go through the log hook.
    expect(capabilities).toEqual({ WorkerOpenTelemetryEnabled: true });
    expect(hooks.log).toHaveLength(1);
    expect(metrics.getMeterProvider()).not.toBe(noopProvider);

    // An invocation the host traces: the handler runs in the host's trace, and the relay's spans are its children.
    const hostTraceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const hostSpanId = '00f067aa0ba902b7';
    let pollSpan: { traceId: string; parent?: string } | undefined;
    const invocation: Record<string, unknown> = {
      invocationContext: { traceContext: { traceParent: `00-${hostTraceId}-${hostSpanId}-01`, traceState: '' } },
      functionHandler: () =>
        tracePollRun('tenant', async (span) => {
          pollSpan = {
            traceId: span.spanContext().traceId,
            parent: (span as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId,
          };
        }),
    };
    for (const hook of hooks.preInvocation) hook(invocation);
    await (invocation.functionHandler as () => Promise<void>)();
    expect(pollSpan).toEqual({ traceId: hostTraceId, parent: hostSpanId });
    expect(trace.getActiveSpan()).toBeUndefined();
  });
});
