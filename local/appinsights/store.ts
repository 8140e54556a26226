import type { TelemetryEnvelope } from './envelopes.js';

/**
 * What the component ingested, in memory and bounded: the latest items for queries, running totals per
 * metric name that outlive the items (so a long `npm start` still counts from the first second), and the
 * counts a screen shows. Nothing here is read by the ingestion path; it is the stand-in's record for
 * tests and people, the local counterpart of querying the component.
 */

/** The table each item lands in, as Application Insights names them (`customMetrics`, `requests`, …). */
export type TelemetryType = 'metric' | 'request' | 'dependency' | 'message' | 'exception' | 'event' | 'other';

export interface RecordedItem {
  /** Order of arrival, from 1. */
  seq: number;
  type: TelemetryType;
  /** Metric name, request or dependency name, event name; a message's text. */
  name: string;
  time: string;
  /** `ai.operation.id`: the trace id every item of one operation shares. */
  operationId?: string;
  /** `ai.operation.parentId`: the span id of the parent. */
  parentId?: string;
  /** `customDimensions`: a metric's dimensions, a span's attributes. */
  properties: Record<string, string>;
  /** Metrics: the point's value (a counter's delta, a histogram's sum), and its count, min and max. */
  value?: number;
  count?: number;
  min?: number;
  max?: number;
  /** Requests and dependencies: their id (the span id), duration, outcome. */
  id?: string;
  duration?: string;
  success?: boolean;
  resultCode?: string;
  /** The envelope as it arrived. */
  envelope: TelemetryEnvelope;
}

export interface MetricTotals {
  /** Data points received. */
  points: number;
  /** Sum of the points' values: for a counter (exported as deltas), its total so far. */
  sum: number;
  last: number;
  /** The sum per `dimension=value` (e.g. `status=429`), for the first values seen of each dimension. */
  byDimension: Record<string, number>;
}

export interface TelemetrySummary {
  itemsReceived: number;
  itemsAccepted: number;
  itemsRejected: number;
  /** Requests refused before their items were read: 401, 403, 413 and unparsable bodies. */
  requestsRefused: number;
  /** Live Metrics pings answered (the distro's, every 5 s). */
  livePings: number;
  metrics: Record<string, MetricTotals>;
}

export interface TelemetryQuery {
  type?: TelemetryType;
  name?: string;
}

const DEFAULT_MAX_ITEMS = 10_000;
/** Bounds on the totals, against a client that invents names or dimension values without end. */
const MAX_METRIC_NAMES = 500;
const MAX_DIMENSION_VALUES = 200;

const TYPES: Record<string, TelemetryType> = {
  MetricData: 'metric',
  RequestData: 'request',
  RemoteDependencyData: 'dependency',
  MessageData: 'message',
  ExceptionData: 'exception',
  EventData: 'event',
};

const asString = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const asNumber = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined);

function stringRecord(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null) return {};
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === 'string' ? v : String(v)]));
}

/** One envelope as rows: a metric envelope may carry several points (the exporter sends one). */
function toRecords(envelope: TelemetryEnvelope): Omit<RecordedItem, 'seq'>[] {
  const baseType = envelope.data?.baseType ?? '';
  const base = envelope.data?.baseData ?? {};
  const type = TYPES[baseType] ?? 'other';
  const common = {
    type,
    time: envelope.time,
    operationId: envelope.tags?.['ai.operation.id'],
    parentId: envelope.tags?.['ai.operation.parentId'],
    properties: stringRecord(base.properties),
    envelope,
  };
  if (type === 'metric') {
    return (base.metrics as Record<string, unknown>[]).map((point) => ({
      ...common,
      name: String(point.name),
      value: asNumber(point.value),
      count: asNumber(point.count),
      min: asNumber(point.min),
      max: asNumber(point.max),
    }));
  }
  const name =
    type === 'message'
      ? asString(base.message)
      : type === 'exception'
        ? asString((base.exceptions as Record<string, unknown>[])[0]?.message)
        : asString(base.name);
  return [
    {
      ...common,
      name: name ?? envelope.name,
      id: asString(base.id),
      duration: asString(base.duration),
      success: typeof base.success === 'boolean' ? base.success : undefined,
      resultCode: asString(base.responseCode) ?? asString(base.resultCode),
    },
  ];
}

const emptyCounts = () => ({ itemsReceived: 0, itemsAccepted: 0, itemsRejected: 0, requestsRefused: 0, livePings: 0 });

export class TelemetryStore {
  readonly #maxItems: number;
  #items: RecordedItem[] = [];
  #seq = 0;
  readonly #totals = new Map<string, MetricTotals>();
  #counts = emptyCounts();

  constructor(maxItems = DEFAULT_MAX_ITEMS) {
    this.#maxItems = maxItems;
  }

  /** Records one answered batch: its accepted envelopes and how many items it had. */
  recordBatch(accepted: TelemetryEnvelope[], received: number): void {
    this.#counts.itemsReceived += received;
    this.#counts.itemsAccepted += accepted.length;
    this.#counts.itemsRejected += received - accepted.length;
    for (const envelope of accepted) {
      for (const record of toRecords(envelope)) {
        this.#items.push({ ...record, seq: ++this.#seq });
        if (record.type === 'metric') this.#addToTotals(record);
      }
    }
    if (this.#items.length > this.#maxItems) this.#items.splice(0, this.#items.length - this.#maxItems);
  }

  recordRefused(): void {
    this.#counts.requestsRefused += 1;
  }

  recordLivePing(): void {
    this.#counts.livePings += 1;
  }

  #addToTotals(record: Omit<RecordedItem, 'seq'>): void {
    let totals = this.#totals.get(record.name);
    if (!totals) {
      if (this.#totals.size >= MAX_METRIC_NAMES) return;
      totals = { points: 0, sum: 0, last: 0, byDimension: {} };
      this.#totals.set(record.name, totals);
    }
    const value = record.value ?? 0;
    totals.points += 1;
    totals.sum += value;
    totals.last = value;
    for (const [dimension, dimensionValue] of Object.entries(record.properties)) {
      const key = `${dimension}=${dimensionValue}`;
      if (key in totals.byDimension) totals.byDimension[key]! += value;
      else if (Object.keys(totals.byDimension).length < MAX_DIMENSION_VALUES) totals.byDimension[key] = value;
    }
  }

  /** The latest items (oldest first), optionally of one type and one name. */
  items(query: TelemetryQuery = {}): RecordedItem[] {
    return this.#items.filter(
      (item) => (!query.type || item.type === query.type) && (query.name === undefined || item.name === query.name),
    );
  }

  /** Metric points of one name (or all), with their dimensions and values. */
  metrics(name?: string): RecordedItem[] {
    return this.items({ type: 'metric', name });
  }

  /** Requests and dependencies: the spans, with their operation id and parent id. */
  spans(): RecordedItem[] {
    return this.#items.filter((item) => item.type === 'request' || item.type === 'dependency');
  }

  metricTotals(name: string): MetricTotals {
    const totals = this.#totals.get(name);
    return totals
      ? { ...totals, byDimension: { ...totals.byDimension } }
      : { points: 0, sum: 0, last: 0, byDimension: {} };
  }

  summary(): TelemetrySummary {
    return {
      ...this.#counts,
      metrics: Object.fromEntries([...this.#totals.keys()].map((name) => [name, this.metricTotals(name)])),
    };
  }

  clear(): void {
    this.#items = [];
    this.#totals.clear();
    this.#counts = emptyCounts();
  }
}
