import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '../../../functions/status.js';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { usageOf } from '../../../shared/sources/budget-usage.js';
import { encodeMessage } from '../../../shared/storage/queues.js';
import { CALL_BUDGET_TABLE, SharedCallBudget, SLOT_MS } from '../../../shared/sources/shared-budget.js';
import { GRAPH_BUDGET } from '../../../shared/sources/graph/client.js';
import { pollIntervalOf } from '../../../shared/status/status-report.js';
import { TENANT_STATUS_TABLE, TenantStatusStore } from '../../../shared/tenants/tenant-status.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { deliveredRequest } from '../../support/host-request.js';

/**
 * GET/POST /api/status as the host calls it, on an Azurite of this file's own (the page reads the
 * app's real queue and table names) and the stand-ins. The browser's view of the same page is in
 * test/e2e/status-page.test.ts.
 */
describe('status page', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let queues: QueueServiceClient;
  const originalEnv = { ...process.env };
  const logs: string[] = [];

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 64 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    Object.assign(process.env, appSettingsFor(stack.world, azurite.connectionString, stack));
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  }, 60_000);
  afterAll(async () => {
    process.env = originalEnv;
    await Promise.all([stack?.close(), azurite?.stop()]);
  });

  async function call(init: { method?: string; query?: string; body?: string; headers?: Record<string, string> } = {}) {
    const request = deliveredRequest({
      method: init.method ?? 'GET',
      url: `http://localhost:7071/api/status${init.query ?? ''}`,
      body: init.body === undefined ? undefined : { string: init.body },
      headers: {
        ...(init.body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
        ...init.headers,
      },
    });
    const context = new InvocationContext({ logHandler: (_level, ...args) => logs.push(args.join(' ')) });
    return (await status(request as HttpRequest, context)) as HttpResponseInit & {
      body?: string;
      headers?: Record<string, string>;
    };
  }
  const deadLetterQueue = () => queues.getQueueClient('incidents-deadletter');
  const deadLetterOf = (tenantId: string, incidentId: number, reason: string) =>
    encodeMessage({
      reason,
      failedAt: new Date().toISOString(),
      message: { eventId: `${tenantId}:${incidentId}:2026-12-01T08:00:00Z`, tenantId, source: 'poll' },
    });

  it("shows each tenant's last poll, events of the last 24 hours, lag and last failure, from the status table", async () => {
    const [app, partner] = [stack.world.tenants[0]!, stack.world.tenants[1]!];
    const statusStore = new TenantStatusStore(
      TableClient.fromConnectionString(azurite.connectionString, TENANT_STATUS_TABLE, {
        allowInsecureConnection: true,
      }),
    );
    const now = Date.now();
    await statusStore.recordPoll(
      app.tenantId,
      { outcome: 'failed', error: 'AADSTS700016: application not found', eventsEnqueued: 0 },
      { at: new Date(now - 60_000) },
    );
    await statusStore.recordPoll(
      app.tenantId,
      { outcome: 'polled', eventsEnqueued: 17, checkpoint: new Date(now - 2 * 60_000).toISOString() },
      { at: new Date(now - 30_000) },
    );
    await statusStore.recordPoll(partner.tenantId, {
      outcome: 'failed',
      error: 'Defender answered 403',
      eventsEnqueued: 0,
      checkpoint: new Date(now - 3 * 3_600_000).toISOString(),
    });

    const page = await call();
    expect(page.status).toBe(200);
    expect(page.headers?.['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers?.['content-security-policy']).toContain("default-src 'none'");
    const html = page.body!;
    const rowOf = (tenantId: string) => html.split(`data-tenant-id="${tenantId}"`)[1]!.split('</tr>')[0]!;
    const appRow = rowOf(app.tenantId);
    expect(appRow).toContain(app.displayName.replace(/&/g, '&amp;'));
    expect(appRow).toMatch(/data-field="events-24h">17</);
    expect(appRow).toContain('>polled<');
    expect(appRow).toContain('AADSTS700016: application not found'); // the last failure, kept after the success
    expect(appRow).toMatch(/data-lag-seconds="(11\d|12\d)"/);
    expect(appRow).not.toContain('(behind)');
    // Three hours behind: flagged, and counted in the summary.
    const partnerRow = rowOf(partner.tenantId);
    expect(partnerRow).toContain('(behind)');
    expect(partnerRow).toContain('Defender answered 403');
    expect(html).toMatch(/<span class="bad">1 failing<\/span>, <span class="bad">1 behind<\/span>/);
    expect(html).toMatch(/<meta http-equiv="refresh" content="30">/);
    // No script: the page reads without JavaScript.
    expect(html).not.toMatch(/<script/i);
  });

  it("shows the calls a tenant's API is holding back after a 429, and until when, beside its budget", async () => {
    const woodgrove = stack.world.tenants.find((t) => t.source === 'graph')!;
    const budgetTable = TableClient.fromConnectionString(azurite.connectionString, CALL_BUDGET_TABLE, {
      allowInsecureConnection: true,
    });
    await budgetTable.createTable();
    // Graph's hunting quota spent: hunting is held for ten minutes, the tenant's other calls are not.
    const until = Date.now() + 600_000;
    await new SharedCallBudget(budgetTable, { limits: GRAPH_BUDGET }).throttled(
      woodgrove.tenantId,
      600_000,
      'security/runHuntingQuery',
    );
    const html = (await call()).body!;
    const row = html.split(`data-tenant-id="${woodgrove.tenantId}"`)[1]!.split('</tr>')[0]!;
    const held = /data-field="held">held: security\/runHuntingQuery until (\d\d:\d\d:\d\d)Z</.exec(row);
    expect(held, row).not.toBeNull();
    expect(Math.abs(Date.parse(`${new Date(until).toISOString().slice(0, 11)}${held![1]}Z`) - until)).toBeLessThan(
      5_000,
    );
    expect(row).toMatch(/data-field="budget">\d+\/135, \d+\/8000</);
  });

  it('lists queue depths and the dead letters, escaping what came from outside, and never a secret', async () => {
    await deadLetterQueue().createIfNotExists();
    await queues.getQueueClient('incidents-poison').createIfNotExists();
    await queues.getQueueClient('incidents-poison').sendMessage(encodeMessage({ eventId: 'x' }));
    const tenantId = stack.world.tenants[0]!.tenantId;
    await deadLetterQueue().sendMessage(
      deadLetterOf(tenantId, 7, 'destination siem refused: <script>alert(1)</script>'),
    );
    await deadLetterQueue().sendMessage(deadLetterOf(tenantId, 8, 'x'.repeat(5_000)));
    await deadLetterQueue().sendMessage(Buffer.from('not json at all').toString('base64'));
    await deadLetterQueue().sendMessage('%%% not base64');

    const html = (await call()).body!;
    expect(html).toMatch(
      /data-queue="incidents-deadletter"><td><code>incidents-deadletter<\/code><\/td><td class="n bad">4</,
    );
    expect(html).toMatch(/data-queue="incidents-poison"><td><code>incidents-poison<\/code><\/td><td class="n bad">1</);
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain(`${tenantId}:7:2026-12-01T08:00:00Z`);
    expect(html).not.toContain('x'.repeat(301)); // a long reason is shortened
    expect(html.match(/not a dead letter the relay wrote/g)).toHaveLength(2);
    const secrets = [stack.world.appIdentity.clientSecret, ...stack.world.apps.map((a) => a.clientSecret)];
    for (const secret of secrets) expect(html + logs.join('\n')).not.toContain(secret);
    for (const tenant of stack.world.tenants) expect(html).not.toContain(tenant.clientSecretName);
  });

  it('replays from its form, then sends the browser back to the page with the counts (post/redirect/get)', async () => {
    const before = (await deadLetterQueue().getProperties()).approximateMessagesCount!;
    const answer = await call({
      method: 'POST',
      query: '?code=operator-key',
      body: 'action=replay&source=deadletter',
      headers: { origin: 'http://localhost:7071' },
    });
    expect(answer.status).toBe(303);
    const location = new URL(answer.headers!.location!);
    expect(location.pathname).toBe('/api/status');
    expect(location.searchParams.get('code')).toBe('operator-key'); // the page the operator opened
    const moved = Number(location.searchParams.get('replayed'));
    expect(moved).toBe(2); // the two dead letters the relay wrote; the two unreadable ones stay
    expect((await deadLetterQueue().getProperties()).approximateMessagesCount).toBe(before - moved);
    const html = (await call({ query: location.search })).body!;
    expect(html).toContain('Replay moved 2 event(s) back onto <code>incidents</code>; 2 left in place.');
  });

  it('refuses a replay from another origin, and a form that is not a replay', async () => {
    const depth = async () => (await deadLetterQueue().getProperties()).approximateMessagesCount;
    const before = await depth();
    const crossSite = await call({
      method: 'POST',
      body: 'action=replay&source=all',
      headers: { origin: 'https://attacker.example' },
    });
    expect(crossSite.status).toBe(403);
    expect((await call({ method: 'POST', body: 'action=replay&source=everything' })).status).toBe(400);
    expect((await call({ method: 'POST', body: 'action=delete&source=all' })).status).toBe(400);
    expect((await call({ method: 'POST', body: 'action=replay&source=all', headers: { origin: 'null' } })).status).toBe(
      403,
    );
    expect(await depth()).toBe(before);
    // A notice that is not a count is not shown.
    expect((await call({ query: '?replayed=<b>9</b>' })).body).not.toContain('Replay moved');
  });
});

describe('status page figures', () => {
  it('reads the poll interval of the plain NCRONTAB schedules, and no other', () => {
    expect(pollIntervalOf('0 */5 * * * *')).toBe(300);
    expect(pollIntervalOf('0 * * * * *')).toBe(60);
    expect(pollIntervalOf('*/30 * * * * *')).toBe(30);
    expect(pollIntervalOf('0 0 */2 * * *')).toBe(7200);
    expect(pollIntervalOf('0 15 * * * *')).toBe(3600);
    expect(pollIntervalOf('0 0 6 * * *')).toBe(86_400);
    expect(pollIntervalOf('0 */5 9-17 * * *')).toBeUndefined();
    expect(pollIntervalOf('0 */5 * * * 1-5')).toBeUndefined();
    expect(pollIntervalOf('*/10 5 * * * *')).toBeUndefined();
    expect(pollIntervalOf('*/5 * * * *')).toBeUndefined(); // five fields: not NCRONTAB
  });

  it('counts budget use in the last minute and hour as the shared budget does (a call counts at the end of its slot)', () => {
    const now = 100 * 3_600_000;
    const slot = (msAgo: number) => Math.floor((now - msAgo) / SLOT_MS);
    const slots = JSON.stringify({
      [slot(0)]: [3, 1, 0],
      [slot(55_000)]: [2, 0, 0],
      [slot(65_000)]: [10, 0, 0],
      [slot(3_600_000 + 20_000)]: [100, 0, 0],
    });
    expect(usageOf(slots, now)).toMatchObject({
      lastMinute: 6,
      lastHour: 16,
      limits: { perMinute: 45, perHour: 1400 },
    });
    expect(usageOf('{"1":"x"}', now)).toMatchObject({ lastMinute: 0, lastHour: 0 });
    expect(usageOf('not json', now)).toMatchObject({ lastMinute: 0, lastHour: 0 });
    // Holds still running, soonest end first; one that ran out, or is not a time, holds nothing.
    const blocked = JSON.stringify({
      listIncidents: now + 90_000,
      getIncident: now - 1,
      security: now + 30_000,
      x: 'y',
    });
    expect(usageOf('{}', now, undefined, blocked).held).toEqual([
      { api: 'security', until: new Date(now + 30_000).toISOString() },
      { api: 'listIncidents', until: new Date(now + 90_000).toISOString() },
    ]);
    expect(usageOf('{}', now, undefined, 'not json').held).toEqual([]);
  });
});
