import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import type { Incident } from '../../../local/defender/generator.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { CallBudget, type BudgetClass } from '../../../shared/sources/call-budget.js';
import { loadConfig } from '../../../shared/config/config.js';
import { DefenderClient } from '../../../shared/sources/defender/client.js';
import {
  enrichDependencies,
  handleIncidentEvent,
  MAX_DEQUEUE_COUNT,
  type EnrichDependencies,
} from '../../../shared/enrich/enrich-handler.js';
import { RetryableError } from '../../../shared/errors.js';
import { envelopeFor, type IncidentEnvelope } from '../../../shared/messages/events.js';
import { QUEUE_NAMES } from '../../../shared/storage/queues.js';
import { replayIncidents, replayRequestSchema } from '../../../shared/route/replay.js';
import { loadRoutingRules } from '../../../shared/route/routing.js';
import { createServices, type Services } from '../../../shared/services.js';
import { drainQueue } from '../../support/queues.js';
import { highRisk, seedIncident as seedIncidentIn } from '../../support/seeded-incidents.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { startThrottlingStorage } from '../../support/throttling-storage.js';

/**
 * The CPU quota resets every quarter hour: a test that marks it spent must not straddle the reset.
 * Waits out the rest of the stand-in's 15-minute quota cycle when less than `marginMs` is left, so that a
 * quota marked spent stays spent for the whole test (a loaded CI machine ran this test for 51 s).
 */
async function clearOfCycleEnd(
  defender: { hunting: { state(tenantId: string): { cycleEndsAt: string } } },
  tenantId: string,
  marginMs = 120_000,
): Promise<void> {
  const left = Date.parse(defender.hunting.state(tenantId).cycleEndsAt) - Date.now();
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 1_000));
}

/**
 * The enricher end to end with the demo routes: five outcomes per path — what it returns, the state it
 * writes (delivery log, Defender write-back), the calls it makes (Defender, webhooks), the messages it
 * enqueues (routed queues, dead letters) and what it logs.
 */
describe('enrichIncident: enrich and route, exactly once', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let services: Services;
  let deps: EnrichDependencies;
  let queues: QueueServiceClient;
  let logs: string[];
  const log = {
    info: (m: string) => logs.push(m),
    warn: (m: string) => logs.push(m),
    error: (m: string) => logs.push(m),
  };

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 256 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    services = createServices(loadConfig(appSettingsFor(stack.world, azurite.connectionString, stack)));
    deps = enrichDependencies(services);
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
  });
  beforeEach(async () => {
    logs = [];
    for (const r of Object.values(stack.receivers)) r.setFailures(0);
    for (const q of ['routed-high', 'routed-archive', 'incidents-deadletter', QUEUE_NAMES.incidents]) await drain(q);
  });

  const fabrikam = () => stack.world.tenants.find((t) => t.context === 'application')!;

  const drain = (queueName: string) => drainQueue(queues, queueName);

  /** A new incident in the Defender stand-in, shaped by `shape`, and its event as polling would send it. */
  function seedIncident(
    shape: (i: Incident) => void,
    tenantId = fabrikam().tenantId,
  ): { incident: Incident; envelope: IncidentEnvelope } {
    const incident = seedIncidentIn(stack.defender.store, tenantId, shape);
    return { incident, envelope: envelopeFor(tenantId, incident, 'poll') };
  }

  it('routes a high-priority incident to every destination of its rule, once, and writes back a tag', async () => {
    const { incident, envelope } = seedIncident(highRisk);
    const siemBefore = stack.receivers.siem.accepted().length;
    const teamsBefore = stack.receivers.teams.accepted().length;
    const defenderCallsBefore = services.defender.calls.get(envelope.tenantId) ?? 0;

    const outcome = await handleIncidentEvent(envelope, deps, log);
    expect(outcome).toMatchObject({
      status: 'routed',
      routes: ['high-to-soc'],
      destinations: ['soc-queue', 'teams', 'siem', 'sentinel'],
    });
    // One Sentinel row, as the app's identity sent it through the Logs Ingestion API.
    const rows = stack.logsIngestion.store
      .rows({ rule: stack.sentinelRule.ruleId })
      .filter((r) => r.columns.EventId === envelope.eventId);
    expect(rows.map((r) => r.columns)).toMatchObject([
      { IncidentId: incident.incidentId, Severity: 'High', Route: 'high-to-soc', IncidentTruncated: false },
    ]);

    const [routed] = (await drain('routed-high')) as {
      incident: Incident;
      enrichment: Record<string, unknown>;
      route: unknown;
      eventId: string;
    }[];
    expect(routed!.incident).toEqual(incident); // the original incident, unmodified
    expect(routed!.route).toEqual({ name: 'high-to-soc', destination: 'soc-queue' });
    expect(routed!.enrichment).toMatchObject({
      highestSeverity: 'High',
      portalUrl: `https://security.microsoft.com/incidents/${incident.incidentId}?tid=${envelope.tenantId}`,
    });
    expect(routed!.enrichment.priority as number).toBeGreaterThanOrEqual(60);

    const siem = stack.receivers.siem.accepted().slice(siemBefore);
    expect(siem).toHaveLength(1);
    expect(siem[0]!.signatureValid).toBe(true);
    expect(stack.receivers.teams.accepted().slice(teamsBefore)).toHaveLength(1);
    expect(stack.defender.store.get(envelope.tenantId, incident.incidentId)!.tags).toContain('relayed:high-to-soc');
    // The incident held its alerts: the only Defender calls are the hunting query and the write-back.
    expect((services.defender.calls.get(envelope.tenantId) ?? 0) - defenderCallsBefore).toBeLessThanOrEqual(2);
    expect(logs.join('\n')).toMatch(
      new RegExp(`enrichIncident ${envelope.eventId}: routed by high-to-soc to soc-queue, teams, siem`),
    );

    // Duplicate delivery of the same message: nothing happens twice.
    expect(await handleIncidentEvent(envelope, deps, log)).toEqual({ status: 'duplicate', eventId: envelope.eventId });
    expect(await drain('routed-high')).toEqual([]);
    expect(stack.receivers.siem.accepted().slice(siemBefore)).toHaveLength(1);

    // The next poll sees the version the write-back made: it is an echo, not news.
    const echo = stack.defender.store.get(envelope.tenantId, incident.incidentId)!;
    expect(echo.lastUpdateTime).not.toBe(incident.lastUpdateTime);
    expect(await handleIncidentEvent(envelopeFor(envelope.tenantId, echo, 'poll'), deps, log)).toMatchObject({
      status: 'echo',
    });
    expect(stack.receivers.siem.accepted().slice(siemBefore)).toHaveLength(1);

    // An analyst's change is news again.
    const changed = stack.defender.store.update(
      envelope.tenantId,
      incident.incidentId,
      (i) => void (i.assignedTo = 'tier2@contoso.example'),
    )!;
    expect(await handleIncidentEvent(envelopeFor(envelope.tenantId, changed, 'poll'), deps, log)).toMatchObject({
      status: 'routed',
    });
  });

  it('routes an event once when two deliveries of it run at the same time', async () => {
    const { envelope } = seedIncident(highRisk);
    const siemBefore = stack.receivers.siem.accepted().length;
    const results = await Promise.allSettled([
      handleIncidentEvent(envelope, deps, log),
      handleIncidentEvent(envelope, deps, log),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled' && r.value.status === 'routed')).toHaveLength(1);
    const other = results.find((r) => !(r.status === 'fulfilled' && r.value.status === 'routed'))!;
    // The other one either lost the race for the claim (retried later) or found the event already routed.
    if (other.status === 'rejected') expect(other.reason).toBeInstanceOf(RetryableError);
    else expect(other.value.status).toBe('duplicate');
    expect(await handleIncidentEvent(envelope, deps, log)).toMatchObject({ status: 'duplicate' });
    expect(await drain('routed-high')).toHaveLength(1);
    expect(stack.receivers.siem.accepted().length - siemBefore).toBe(1);
  });

  it('survives a destination that fails twice, delivering each destination exactly once', async () => {
    const { envelope } = seedIncident(highRisk);
    stack.receivers.siem.setFailures(2, 503);
    const teamsBefore = stack.receivers.teams.accepted().length;
    await expect(handleIncidentEvent(envelope, deps, log)).rejects.toBeInstanceOf(RetryableError);
    await expect(handleIncidentEvent(envelope, deps, log)).rejects.toBeInstanceOf(RetryableError);
    expect(await handleIncidentEvent(envelope, deps, log)).toMatchObject({ status: 'routed' });
    expect(await drain('routed-high')).toHaveLength(1);
    expect(stack.receivers.teams.accepted().length - teamsBefore).toBe(1);
    expect(
      stack.receivers.siem.accepted().filter((r) => (r.body as { eventId?: string }).eventId === envelope.eventId),
    ).toHaveLength(1);
    expect(logs.filter((l) => l.includes('will be retried'))).toHaveLength(2);
  });

  it('keeps failing (for the host to retry and finally poison) while a destination fails forever', async () => {
    const { envelope } = seedIncident(highRisk);
    stack.receivers.siem.setFailures(Infinity, 500);
    for (let attempt = 1; attempt <= MAX_DEQUEUE_COUNT; attempt++) {
      await expect(handleIncidentEvent(envelope, deps, log, { dequeueCount: attempt })).rejects.toThrow(
        /route high-to-soc → siem/,
      );
    }
    expect(await deps.deliveryLog.isRouted(envelope.eventId)).toBe(false);
    // The poison queue keeps only the message; the log keeps why.
    expect(logs.at(-1)).toMatch(
      new RegExp(`enrichIncident ${envelope.eventId} failed on attempt 5, moving to incidents-poison: .*siem.*500`),
    );
  });

  it('retries an event while Storage throttles (429) its queue destination, then routes it once; nothing is dead-lettered', async () => {
    const { envelope } = seedIncident(highRisk);
    const storage = await startThrottlingStorage(azurite.connectionString);
    try {
      const app = enrichDependencies(
        createServices(loadConfig(appSettingsFor(stack.world, storage.connectionString, stack))),
      );
      // The demo's soc-queue destination is the routed-high queue of the app's own account.
      storage.throttle(
        ({ service, path }) => service === 'queue' && /^\/devstoreaccount1\/routed-high(\/messages)?$/.test(path),
      );
      for (let attempt = 1; attempt <= 2; attempt++) {
        await expect(handleIncidentEvent(envelope, app, log, { dequeueCount: attempt })).rejects.toThrow(
          /route high-to-soc → soc-queue.*429/,
        );
      }
      expect(storage.throttled).toBeGreaterThanOrEqual(2);
      expect(
        logs.filter((l) => l.startsWith(`enrichIncident ${envelope.eventId} failed, will be retried`)),
      ).toHaveLength(2);
      expect(await drain('incidents-deadletter')).toEqual([]);
      expect(await deps.deliveryLog.isRouted(envelope.eventId)).toBe(false);

      storage.throttle(() => false);
      expect(await handleIncidentEvent(envelope, app, log, { dequeueCount: 3 })).toMatchObject({
        status: 'routed',
        destinations: ['soc-queue', 'teams', 'siem', 'sentinel'],
      });
      expect((await drain('routed-high')) as { eventId: string }[]).toMatchObject([{ eventId: envelope.eventId }]);
      expect(await drain('incidents-deadletter')).toEqual([]);
    } finally {
      await storage.close();
    }
  });

  it('dead-letters a permanent failure with its reason, and replay delivers what is missing, once', async () => {
    const { envelope } = seedIncident(highRisk);
    stack.receivers.siem.setFailures(1, 400);
    const outcome = await handleIncidentEvent(envelope, deps, log);
    expect(outcome).toMatchObject({
      status: 'dead-lettered',
      reason: expect.stringMatching(/route high-to-soc → siem \(webhook → localhost:\d+\).*400/),
    });
    const [dead] = (await drain('incidents-deadletter')) as { reason: string; message: IncidentEnvelope }[];
    expect(dead!.message).toEqual(envelope);
    expect(await drain('routed-high')).toHaveLength(1); // soc-queue was served before siem refused

    // Put it back as replay would, then let the enricher take it again.
    await services.sender.send('incidents-deadletter', dead);
    expect(await replayIncidents(replayRequestSchema.parse({ tenantId: envelope.tenantId }), queues)).toMatchObject({
      moved: 1,
    });
    const [replayed] = await drain(QUEUE_NAMES.incidents);
    expect(await handleIncidentEvent(replayed, deps, log)).toMatchObject({ status: 'routed' });
    expect(await drain('routed-high')).toEqual([]); // not delivered twice
    expect(
      stack.receivers.siem.accepted().filter((r) => (r.body as { eventId?: string }).eventId === envelope.eventId),
    ).toHaveLength(1);
  });

  it('dead-letters a webhook whose host resolves to a blocked address, without calling it', async () => {
    const strict = loadRoutingRules(stack.routesFile, { allowedHosts: ['localhost'], allowLoopback: false });
    const strictDeps: EnrichDependencies = {
      ...deps,
      routing: () => strict,
      deliveryDeps: { ...deps.deliveryDeps, policy: { ...deps.deliveryDeps.policy, allowLoopback: false } },
    };
    const { envelope } = seedIncident(highRisk);
    const siemBefore = stack.receivers.siem.requests.length;
    const outcome = await handleIncidentEvent(envelope, strictDeps, log);
    expect(outcome).toMatchObject({ status: 'dead-lettered', reason: expect.stringMatching(/teams/) });
    expect(stack.receivers.siem.requests.length).toBe(siemBefore);
    expect(
      stack.receivers.teams.requests.filter((r) => (r.body as { eventId?: string }).eventId === envelope.eventId),
    ).toEqual([]);
  });

  it('reads a claim-checked event, routes the whole incident and deletes the blob', async () => {
    const { incident, envelope } = seedIncident((i) => {
      i.severity = 'Low';
      i.status = 'Active';
      i.alerts[0]!.description = 'x'.repeat(70_000);
    });
    await services.sender.sendEvent(QUEUE_NAMES.incidents, envelope);
    const [message] = (await drain(QUEUE_NAMES.incidents)) as IncidentEnvelope[];
    expect(message!.incidentRef).toBeDefined();
    expect(await handleIncidentEvent(message, deps, log)).toMatchObject({ status: 'routed', routes: ['default'] });
    const archived = (
      (await drain('routed-archive')) as { incident?: Incident; incidentRef?: { blobUrl: string } }[]
    )[0]!;
    const routedIncident =
      archived.incident ??
      JSON.parse(
        (
          await (
            await services.storage.blobs()
          )
            .getContainerClient('routed-payloads')
            .getBlobClient(new URL(archived.incidentRef!.blobUrl).pathname.split('/routed-payloads/')[1]!)
            .downloadToBuffer()
        ).toString(),
      );
    expect(routedIncident).toEqual(incident);
    const blobName = new URL(message!.incidentRef!.blobUrl).pathname.split('/incident-payloads/')[1]!;
    expect(
      await (
        await services.storage.blobs()
      )
        .getContainerClient('incident-payloads')
        .getBlobClient(decodeURIComponent(blobName))
        .exists(),
    ).toBe(false);
  });

  it('follows a redirected incident to the one it was merged into, with one API call', async () => {
    const { incident: target } = seedIncident(highRisk);
    const { envelope } = seedIncident((i) => {
      i.status = 'Redirected';
      i.redirectIncidentId = target.incidentId;
      i.alerts = [];
    });
    const before = services.defender.calls.get(envelope.tenantId) ?? 0;
    const outcome = await handleIncidentEvent(envelope, deps, log);
    expect(outcome).toMatchObject({ status: 'routed', routes: ['closed-drop'], apiCalls: 1 });
    if (outcome.status !== 'routed') throw new Error('not routed');
    expect(outcome.enrichment.redirectedTo).toEqual({
      incidentId: target.incidentId,
      portalUrl: expect.stringContaining(`/incidents/${target.incidentId}?`),
    });
    expect(outcome.enrichment.alertCount).toBe(target.alerts.length);
    expect((services.defender.calls.get(envelope.tenantId) ?? 0) - before).toBe(1);
  });

  it('skips optional hunting with a note when the tenant budget is spent, and never fails the event for it', async () => {
    const spent = new CallBudget({ perMinute: 1, perHour: 1 });
    const defender = new DefenderClient({ apiUrl: stack.defender.url, tokens: services.tokens, budget: spent });
    spent.tryTake(fabrikam().tenantId);
    const { envelope } = seedIncident(highRisk);
    const outcome = await handleIncidentEvent(envelope, { ...deps, defender }, log);
    expect(outcome).toMatchObject({ status: 'routed', routes: ['high-to-soc'] });
    if (outcome.status !== 'routed') throw new Error('not routed');
    expect(outcome.enrichment.notes.join('\n')).toMatch(
      /advanced hunting 'recent-logons' skipped: the tenant's API budget is spent/,
    );
    expect(outcome.apiCalls).toBe(0);
    expect(logs.join('\n')).toMatch(/write-back for route high-to-soc skipped: the tenant's API budget is spent/);
    expect(stack.defender.store.get(envelope.tenantId, envelope.incidentId)!.tags).not.toContain('relayed:high-to-soc');
  });

  it('skips the write-back when the budget runs out between its check and its call (other instances took it), and routes the event rather than retry it toward poison', async () => {
    // The instance's view says a call is free; the shared counts say otherwise when the call is taken.
    class RacedBudget extends CallBudget {
      override waitTime(tenantId: string, budgetClass?: BudgetClass, api?: string): number {
        return api === 'updateIncident' ? 0 : super.waitTime(tenantId, budgetClass);
      }
    }
    const raced = new RacedBudget({ perMinute: 1, perHour: 1 });
    const defender = new DefenderClient({ apiUrl: stack.defender.url, tokens: services.tokens, budget: raced });
    raced.tryTake(fabrikam().tenantId);
    const { envelope } = seedIncident(highRisk);
    const outcome = await handleIncidentEvent(envelope, { ...deps, defender }, log, { dequeueCount: 1 });
    expect(outcome).toMatchObject({ status: 'routed', routes: ['high-to-soc'] });
    expect(logs.join('\n')).toMatch(/write-back for route high-to-soc skipped: .*budget/);
    expect(stack.defender.store.get(envelope.tenantId, envelope.incidentId)!.tags).not.toContain('relayed:high-to-soc');
  });

  it(
    'routes incidents while the tenant’s advanced hunting CPU quota is spent: one 429, then hunting skipped without a call, each noted',
    { timeout: 240_000 },
    async () => {
      const tenantId = fabrikam().tenantId;
      await clearOfCycleEnd(stack.defender, tenantId);
      stack.defender.hunting.configure(tenantId, { quotaSpent: true });
      try {
        const defender = new DefenderClient({ apiUrl: stack.defender.url, tokens: services.tokens });
        const outcomes = [];
        for (let i = 0; i < 3; i += 1)
          outcomes.push(await handleIncidentEvent(seedIncident(highRisk).envelope, { ...deps, defender }, log));
        for (const outcome of outcomes) {
          expect(outcome).toMatchObject({ status: 'routed', routes: ['high-to-soc'] });
          if (outcome.status !== 'routed') throw new Error('not routed');
          expect(outcome.enrichment.notes.join('\n')).toMatch(
            /advanced hunting 'recent-logons' skipped: Defender's advanced hunting CPU quota for the tenant is spent for the next \d+ min \(.*You have exceeded processing resources allocated to this tenant/,
          );
        }
        // Only the first event asked for hunting (the 429, not retried); each wrote back its tag.
        expect(outcomes.map((o) => (o.status === 'routed' ? o.apiCalls : -1))).toEqual([1, 0, 0]);
        expect(defender.calls.get(tenantId)).toBe(4);
        const routed = (await drain('routed-high')) as { enrichment: { notes: string[] } }[];
        expect(routed).toHaveLength(3);
        expect(routed.every((r) => r.enrichment.notes.some((n) => n.includes('CPU quota')))).toBe(true);
      } finally {
        stack.defender.hunting.reset();
      }
    },
  );

  it('dead-letters what can never be routed: an invalid event, an unknown tenant', async () => {
    expect(await handleIncidentEvent({ hello: 'world' }, deps, log)).toMatchObject({
      status: 'dead-lettered',
      reason: expect.stringMatching(/^invalid event: schema/),
    });
    const stranger = envelopeFor(randomUUID(), { incidentId: 1, lastUpdateTime: '2026-11-23T10:00:00Z' }, 'webhook');
    expect(await handleIncidentEvent(stranger, deps, log)).toMatchObject({
      status: 'dead-lettered',
      reason: expect.stringMatching(/is not registered/),
    });
    const dead = (await drain('incidents-deadletter')) as { reason: string }[];
    expect(dead.map((d) => d.reason)).toHaveLength(2);
    expect(logs.filter((l) => l.includes('dead-lettered'))).toHaveLength(2);
  });

  it('knows the maxDequeueCount host.json sets', () => {
    const hostJson = JSON.parse(readFileSync(new URL('../../../host.json', import.meta.url), 'utf8')) as {
      extensions: { queues: { maxDequeueCount: number } };
    };
    expect(hostJson.extensions.queues.maxDequeueCount).toBe(MAX_DEQUEUE_COUNT);
  });

  it('never logs a secret or a token', () => {
    const text = logs.join('\n');
    for (const secret of [
      stack.world.siemHmacKey,
      stack.world.appIdentity.clientSecret,
      ...stack.world.apps.map((a) => a.clientSecret),
    ])
      expect(text).not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });
});
