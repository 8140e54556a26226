import { IngestionError, type TrackResponse } from './errors.js';
import { MAX_ITEMS_PER_BATCH, validateBatch, type TelemetryEnvelope } from './envelopes.js';

/**
 * `POST {IngestionEndpoint}/v2.1/track`: the swagger's `track` operation (host template `{Host}/v2.1`,
 * path `/track`), which the exporter calls with a JSON array of envelopes (@azure/monitor-opentelemetry-exporter
 * 1.0.0-beta.47 `src/generated/api/operations.ts` `_trackSend`, `src/generated/api/applicationInsightsContext.ts`).
 * The swagger also lists `x-json-stream` (one envelope per line), taken here too.
 */

export interface TrackResult {
  status: number;
  reason?: string;
  body: TrackResponse;
  accepted: TelemetryEnvelope[];
}

/** The body's items, or 400 when it is neither a JSON array, one JSON object, nor JSON lines. */
export function parseItems(text: string): unknown[] {
  const trimmed = text.trim();
  try {
    if (trimmed.startsWith('[')) {
      const parsed: unknown = JSON.parse(trimmed);
      if (Array.isArray(parsed)) return parsed;
    } else if (trimmed.startsWith('{')) {
      return trimmed
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as unknown);
    }
  } catch {
    // Falls through to the refusal below.
  }
  throw new IngestionError(400, 'Invalid JSON: the body is not a JSON array of telemetry items');
}

/**
 * Answers a batch as the service does: 200 when every item is accepted; 206 with one error per refused item
 * (`index`, `statusCode`, `message`) when some are; 400 with the same body when none is (e.g.
 * `{"itemsReceived":1,"itemsAccepted":0,"errors":[{"index":0,"statusCode":400,"message":"Invalid instrumentation
 * key"}]}` with the status line `400 Invalid instrumentation key`, as quoted in microsoft/ApplicationInsights-PHP#70).
 */
export function track(items: unknown[], instrumentationKey: string): TrackResult {
  if (items.length > MAX_ITEMS_PER_BATCH)
    throw new IngestionError(
      400,
      `The batch has ${items.length} items; at most ${MAX_ITEMS_PER_BATCH} are accepted`,
      items.length,
    );
  const { accepted, errors } = validateBatch(items, instrumentationKey);
  const body = { itemsReceived: items.length, itemsAccepted: accepted.length, errors };
  if (errors.length === 0) return { status: 200, body, accepted };
  if (accepted.length > 0) return { status: 206, body, accepted };
  const keyOnly = errors.every((e) => e.message === 'Invalid instrumentation key');
  return { status: 400, reason: keyOnly ? 'Invalid instrumentation key' : 'Bad Request', body, accepted };
}
