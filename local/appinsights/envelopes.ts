import type { TelemetryErrorDetails } from './errors.js';

/**
 * The telemetry envelope (`TelemetryItem`) and its data (`MonitorBase`), with the wire names the exporter
 * writes (@azure/monitor-opentelemetry-exporter 1.0.0-beta.47 `src/generated/models/models.ts`,
 * `telemetryItemSerializer`, `monitorBaseSerializer`) and the required fields of the service's swagger
 * (azure-rest-api-specs `specification/applicationinsights/data-plane/Monitor.Exporters/preview/v2.1/swagger.json`).
 */
export interface TelemetryEnvelope {
  ver?: number;
  /** Required: the item's type name, e.g. `Microsoft.ApplicationInsights.Metric`. */
  name: string;
  /** Required: ISO 8601 UTC. */
  time: string;
  sampleRate?: number;
  seq?: string;
  iKey?: string;
  /** Context tags: `ai.operation.id`, `ai.operation.parentId`, `ai.cloud.role`, … */
  tags?: Record<string, string>;
  data?: { baseType?: string; baseData?: Record<string, unknown> };
}

/** "Maximum telemetry item size: 64 KB" (MicrosoftDocs/azure-monitor-docs `articles/azure-monitor/includes/application-insights-limits.md`). */
export const MAX_ITEM_BYTES = 64 * 1024;
/** "Maximum telemetry items per batch: 64,000" (same table). */
export const MAX_ITEMS_PER_BATCH = 64_000;

/**
 * The fields each domain requires (swagger `required`), checked the way the service reports them. The
 * service's message for a missing one: "109: Field 'time' on type 'Envelope' is required but missing or
 * empty. Expected: string, Actual: undefined" (as quoted in microsoft/ApplicationInsights-dotnet
 * `docs/ServerTelemetryChannel error handling.md` and in answers users logged from the service).
 */
const REQUIRED: Record<string, [field: string, expected: 'string' | 'number' | 'boolean' | 'array'][]> = {
  RequestData: [
    ['id', 'string'],
    ['duration', 'string'],
    ['responseCode', 'string'],
    ['success', 'boolean'],
  ],
  RemoteDependencyData: [
    ['name', 'string'],
    ['duration', 'string'],
  ],
  MessageData: [['message', 'string']],
  MetricData: [['metrics', 'array']],
  ExceptionData: [['exceptions', 'array']],
  EventData: [['name', 'string']],
  AvailabilityData: [
    ['id', 'string'],
    ['name', 'string'],
    ['duration', 'string'],
    ['success', 'boolean'],
  ],
};

function missing(field: string, type: string, expected: string, actual: unknown): string {
  const shown = actual === undefined ? 'undefined' : typeof actual === 'string' ? actual : JSON.stringify(actual);
  return `109: Field '${field}' on type '${type}' is required but missing or empty. Expected: ${expected}, Actual: ${shown}`;
}

function present(value: unknown, expected: 'string' | 'number' | 'boolean' | 'array'): boolean {
  if (expected === 'array') return Array.isArray(value) && value.length > 0;
  if (expected === 'string') return typeof value === 'string' && value !== '';
  return typeof value === expected;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The first reason the service would refuse this item, or undefined to accept it. */
export function itemProblem(item: unknown, instrumentationKey: string): string | undefined {
  if (!isObject(item)) return 'The telemetry item is not a JSON object';
  if (Buffer.byteLength(JSON.stringify(item)) > MAX_ITEM_BYTES)
    return `The telemetry item exceeds the maximum size of ${MAX_ITEM_BYTES} bytes`;
  for (const field of ['name', 'time'] as const)
    if (!present(item[field], 'string')) return missing(field, 'Envelope', 'string', item[field]);
  if (Number.isNaN(Date.parse(String(item.time)))) return `Field 'time' on type 'Envelope' is not a valid date time`;
  // The key names the component the item goes to; only this component exists here.
  if (typeof item.iKey !== 'string' || item.iKey.toLowerCase() !== instrumentationKey.toLowerCase())
    return 'Invalid instrumentation key';
  const data = item.data;
  if (data === undefined) return undefined;
  if (!isObject(data)) return missing('data', 'Envelope', 'object', data);
  const baseType = typeof data.baseType === 'string' ? data.baseType : undefined;
  if (!baseType) return undefined;
  const baseData = data.baseData;
  if (!isObject(baseData)) return missing('baseData', 'Data', 'object', baseData);
  for (const [field, expected] of REQUIRED[baseType] ?? [])
    if (!present(baseData[field], expected)) return missing(field, baseType, expected, baseData[field]);
  if (baseType === 'MetricData') return metricPointsProblem(baseData.metrics as unknown[]);
  if (baseType === 'ExceptionData') return exceptionDetailsProblem(baseData.exceptions as unknown[]);
  return undefined;
}

/** Each data point requires `name` and `value` (swagger `DataPoint`). */
function metricPointsProblem(points: unknown[]): string | undefined {
  for (const point of points) {
    if (!isObject(point)) return missing('metrics', 'MetricData', 'DataPoint', point);
    if (!present(point.name, 'string')) return missing('name', 'DataPoint', 'string', point.name);
    if (!present(point.value, 'number')) return missing('value', 'DataPoint', 'double', point.value);
  }
  return undefined;
}

/** Each exception requires `message` (swagger `ExceptionDetails`). */
function exceptionDetailsProblem(exceptions: unknown[]): string | undefined {
  for (const details of exceptions) {
    if (!isObject(details) || !present(details.message, 'string'))
      return missing('message', 'ExceptionDetails', 'string', isObject(details) ? details.message : details);
  }
  return undefined;
}

/** Splits a batch into accepted envelopes and per-item errors (status 400, the service's per-item code). */
export function validateBatch(
  items: unknown[],
  instrumentationKey: string,
): { accepted: TelemetryEnvelope[]; errors: TelemetryErrorDetails[] } {
  const accepted: TelemetryEnvelope[] = [];
  const errors: TelemetryErrorDetails[] = [];
  items.forEach((item, index) => {
    const problem = itemProblem(item, instrumentationKey);
    if (problem) errors.push({ index, statusCode: 400, message: problem });
    else accepted.push(item as TelemetryEnvelope);
  });
  return { accepted, errors };
}
