import type { DataCollectionRule } from './rules.js';
import type { RowStore } from './store.js';

/**
 * The stand-in's control surface, for tests and other processes (no auth; local only, like the other
 * stand-ins' `/_control`):
 *
 * - `GET /_control/rules`: the rules, their immutable ids and streams with their columns.
 * - `GET /_control/rows?rule=…&stream=…&limit=…`: the latest rows stored (the last `limit`, default 1000),
 *   oldest first: `{ rule, stream, receivedAt, oid, columns }`.
 * - `GET /_control/problems?rule=…&stream=…`: what the rule's error log would hold (see rows.ts).
 * - `GET /_control/summary`: calls accepted and refused, rows received and stored, problems, rows per stream.
 * - `DELETE /_control/rows`: forgets rows, problems and counts.
 */
export const CONTROL_PREFIX = '/_control';

export function handleControl(
  store: RowStore,
  rules: () => DataCollectionRule[],
  method: string,
  path: string,
  query: URLSearchParams,
): { status: number; body: unknown } {
  const route = path.slice(CONTROL_PREFIX.length);
  const filter = { rule: query.get('rule') ?? undefined, stream: query.get('stream') ?? undefined };
  if (route === '/rules' && method === 'GET')
    return {
      status: 200,
      body: {
        rules: rules().map((r) => ({
          name: r.name,
          immutableId: r.immutableId,
          streams: Object.fromEntries([...r.streams].map(([name, columns]) => [name, { columns }])),
        })),
      },
    };
  if (route === '/summary' && method === 'GET') return { status: 200, body: store.summary() };
  if (route === '/problems' && method === 'GET') return { status: 200, body: { problems: store.problems(filter) } };
  if (route === '/rows' && method === 'DELETE') {
    store.clear();
    return { status: 204, body: undefined };
  }
  if (route === '/rows' && method === 'GET') {
    const limit = Number(query.get('limit') ?? 1000);
    if (!Number.isInteger(limit) || limit < 1)
      return { status: 400, body: { error: 'limit must be a positive integer' } };
    return { status: 200, body: { rows: store.rows(filter).slice(-limit) } };
  }
  return { status: 404, body: { error: `No control route ${method} ${path}` } };
}
