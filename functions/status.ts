import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { replayIncidents } from '../shared/route/replay.js';
import { getServices } from '../shared/services.js';
import { CALL_BUDGET_TABLE } from '../shared/sources/shared-budget.js';
import { renderStatusPage, type ReplayNotice } from '../shared/status/status-html.js';
import { gatherStatus } from '../shared/status/status-report.js';
import { replayFormSchema, sameOrigin } from '../shared/status/status-form.js';

/**
 * GET /api/status: the operator's page (tenants, queues, dead letters), HTML that reads without
 * JavaScript. POST (its replay form): dead letters back onto `incidents`, then back to the page
 * (post/redirect/get, so a reload does not replay again).
 */
export async function status(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const services = getServices();
  if (request.method === 'POST') {
    // A form on another site cannot replay with a key it found in this page's address.
    if (!sameOrigin(request.headers.get('origin'), request.url))
      return { status: 403, body: 'The replay form is accepted only from the status page itself.' };
    const form = replayFormSchema.safeParse(Object.fromEntries(new URLSearchParams(await request.text())));
    if (!form.success) return { status: 400, body: `Not a replay request: ${form.error.issues[0]?.message}` };
    const result = await replayIncidents({ source: form.data.source, max: 1_000 }, services.storage.queues);
    context.info(`status page: replay of ${form.data.source} moved ${result.moved} event(s), ${result.skipped} left`);
    const back = new URL(request.url);
    back.searchParams.set('replayed', String(result.moved));
    back.searchParams.set('skipped', String(result.skipped));
    return { status: 303, headers: { location: back.toString(), 'cache-control': 'no-store' } };
  }
  const report = await gatherStatus({
    registry: services.registry,
    tenantStatus: services.tenantStatus,
    budgetTable: services.storage.table(CALL_BUDGET_TABLE),
    queues: services.storage.queues,
    pollSchedule: services.config.pollSchedule,
  });
  return {
    status: 200,
    body: renderStatusPage(report, noticeOf(request.query)),
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      // Nothing on the page runs or loads from elsewhere; the form posts to the page itself.
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
      'x-content-type-options': 'nosniff',
    },
  };
}

function noticeOf(query: URLSearchParams): ReplayNotice | undefined {
  const count = (name: string) => {
    const value = query.get(name);
    return value && /^\d{1,6}$/.test(value) ? Number(value) : undefined;
  };
  const moved = count('replayed');
  return moved === undefined ? undefined : { moved, skipped: count('skipped') ?? 0 };
}

app.http('status', { methods: ['GET', 'POST'], authLevel: 'function', route: 'status', handler: status });
