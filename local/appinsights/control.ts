import type { TelemetryStore, TelemetryType } from './store.js';

/**
 * The stand-in's control surface, for tests and `npm start`'s screen in other processes (no auth; local
 * only, like the other stand-ins' `/_control`):
 *
 * - `GET /_control/telemetry?type=metric|request|dependency|message|exception|event&name=…&limit=…`: the
 *   latest recorded items (the last `limit`, default 1000), oldest first, without their raw envelopes
 *   unless `envelopes=true`.
 * - `GET /_control/summary`: items received, accepted and rejected, requests refused, Live Metrics pings,
 *   and per metric name its running totals (`sum`, `points`, `last`, `byDimension`).
 * - `DELETE /_control/telemetry`: forgets everything recorded.
 */

export const CONTROL_PREFIX = '/_control';

const TYPES: readonly TelemetryType[] = ['metric', 'request', 'dependency', 'message', 'exception', 'event', 'other'];

export interface ControlAnswer {
  status: number;
  body: unknown;
}

export function handleControl(
  store: TelemetryStore,
  method: string,
  path: string,
  query: URLSearchParams,
): ControlAnswer {
  const route = path.slice(CONTROL_PREFIX.length);
  if (route === '/summary' && method === 'GET') return { status: 200, body: store.summary() };
  if (route === '/telemetry' && method === 'DELETE') {
    store.clear();
    return { status: 204, body: undefined };
  }
  if (route === '/telemetry' && method === 'GET') {
    const type = query.get('type') ?? undefined;
    if (type !== undefined && !TYPES.includes(type as TelemetryType))
      return { status: 400, body: { error: `type must be one of ${TYPES.join(', ')}` } };
    const limit = Number(query.get('limit') ?? 1000);
    if (!Number.isInteger(limit) || limit < 1)
      return { status: 400, body: { error: 'limit must be a positive integer' } };
    const withEnvelopes = query.get('envelopes') === 'true';
    const items = store
      .items({ type: type as TelemetryType | undefined, name: query.get('name') ?? undefined })
      .slice(-limit)
      .map(({ envelope, ...item }) => (withEnvelopes ? { ...item, envelope } : item));
    return { status: 200, body: { items } };
  }
  return { status: 404, body: { error: `No control route ${method} ${path}` } };
}
