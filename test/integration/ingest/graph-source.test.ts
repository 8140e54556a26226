import { randomUUID } from 'node:crypto';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { generateGraphTenant, type GraphIncident } from '../../../local/graph/server.js';
import { GRAPH_APP_ROLES, GRAPH_RESOURCE } from '../../../local/demo.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { loadConfig } from '../../../shared/config/config.js';
import { enrichDependencies, handleIncidentEvent } from '../../../shared/enrich/enrich-handler.js';
import { DEFAULT_ROUTE_NAME, loadRoutingRules } from '../../../shared/route/routing.js';
import { deadLetterQueueOf } from '../../../shared/messages/dead-letter.js';
import {
  envelopeSchema,
  eventIdOf,
  GRAPH_EVENT_SCHEMA,
  graphEnvelopeFor,
  type IncidentEnvelope,
} from '../../../shared/messages/events.js';
import { pollRequest, pollRequestSchema, pollTenant, type PollRequest } from '../../../shared/ingest/ingest.js';
import { QUEUE_NAMES } from '../../../shared/storage/queues.js';
import { createServices, type Services } from '../../../shared/services.js';
import { drainQueue } from '../../support/queues.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * A tenant read through Microsoft Graph, end to end against Azurite and the Graph and Entra stand-ins with
 * the real clients: the poller pages with Graph's nextLinks and hands a continuation on with the link, the
 * events are keyed as the same versions read through Defender would be (v2 envelopes), and the enricher
 * enriches and routes them as a Defender tenant's.
 */
describe('a tenant whose source is Microsoft Graph', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let services: Services;
  let queues: QueueServiceClient;
  const logs: string[] = [];
  const logger = {
    info: (m: string) => logs.push(m),
    warn: (m: string) => logs.push(m),
    error: (m: string) => logs.push(m),
  };

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 256 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    services = createServices(loadConfig(appSettingsFor(stack.world, azurite.connectionString, stack)));
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
  });

  const drainEvents = async () => (await drainQueue(queues, QUEUE_NAMES.incidents)) as IncidentEnvelope[];
  /** The multi-tenant (partner) app the Graph tenants here consent to. */
  const partnerApp = () => stack.world.apps.find((a) => a.multiTenant)!;
  /** What the Graph stand-in counted of the partner app's calls for the tenant. */
  const graphCalls = (tenantId: string) => stack.graph.stats.for(tenantId, partnerApp().clientId);

  /** The enricher, routing every event to the archive queue with the default route's `writeBack` and `hunting`. */
  function archivingWith(defaultRoute: { writeBack?: object; hunting?: object[] }) {
    const table = loadRoutingRules(
      {
        destinations: { archive: { type: 'queue', queueName: 'routed-archive' } },
        rules: [],
        defaultRoute: { destinations: ['archive'], ...defaultRoute },
      },
      { allowedHosts: ['localhost'] },
    );
    return { ...enrichDependencies(services), routing: () => table };
  }

  /**
   * A partner-context tenant that granted Graph permissions only (`roles`, the demo's by default), holding
   * `count` incidents of the last day and their hunting data.
   */
  async function addGraphTenant(count: number, seed: string, roles = GRAPH_APP_ROLES): Promise<string> {
    const tenantId = randomUUID();
    stack.entra.registry.addTenant({ tenantId, displayName: `Graph ${seed}` });
    stack.entra.registry.grantAppPermissions(tenantId, partnerApp().clientId, GRAPH_RESOURCE, roles);
    stack.graph.store.provisionTenant(tenantId, `Graph ${seed}`);
    stack.graph.store.seed(
      tenantId,
      generateGraphTenant({ tenantId, count, seed, since: new Date(Date.now() - 86_400_000) }),
    );
    await services.registry.put({
      tenantId,
      displayName: `Graph ${seed}`,
      context: 'partner',
      source: 'graph',
      clientId: partnerApp().clientId,
      credential: { kind: 'secret', secretName: 'partner-app-client-secret' },
    });
    return tenantId;
  }

  const versionsOf = (tenantId: string) =>
    stack.graph.store.list(tenantId).map((i) => eventIdOf(tenantId, Number(i.id), i.lastUpdateDateTime));

  it('enqueues every version once as a v2 event, through continuations that carry Graph nextLinks', async () => {
    const tenantId = await addGraphTenant(120, 'paged');
    // One page (50) per run: the first run and two continuations.
    const deps = { ...services, graph: services.graph, maxPagesPerRun: 1 };
    let request: PollRequest = pollRequest(tenantId, 'manual');
    const statuses: string[] = [];
    for (let run = 0; run < 5; run++) {
      const outcome = await pollTenant(request, deps);
      statuses.push(outcome.status);
      if (outcome.status !== 'continued') break;
      const [next] = (await drainQueue(queues, QUEUE_NAMES.pollRequests)) as PollRequest[];
      request = pollRequestSchema.parse(next);
      expect(request.continuation?.nextLink).toMatch(new RegExp(`^${stack.graph.url}/v1.0/security/incidents\\?`));
    }
    expect(statuses).toEqual(['continued', 'continued', 'polled']);
    const events = await drainEvents();
    expect(events.map((e) => e.eventId).sort()).toEqual(versionsOf(tenantId).sort());
    for (const event of events) {
      expect(envelopeSchema.safeParse(event).success).toBe(true);
      expect(event).toMatchObject({ schema: GRAPH_EVENT_SCHEMA, api: 'graph', tenantId });
      expect(event.incident).toMatchObject({ id: String(event.incidentId) });
    }

    // The next poll lists the overlap again and enqueues nothing twice.
    expect(await pollTenant(pollRequest(tenantId, 'schedule'), services)).toMatchObject({
      status: 'polled',
      enqueued: 0,
    });
    expect(await drainEvents()).toEqual([]);
  });

  it('dead-letters an incident whose id is not a Defender incident id, and enqueues the others', async () => {
    const tenantId = await addGraphTenant(3, 'odd-id');
    const [template] = stack.graph.store.list(tenantId);
    stack.graph.store.upsert(tenantId, [{ ...template!, id: 'not-a-number' }]);
    const outcome = await pollTenant(pollRequest(tenantId, 'manual'), services);
    expect(outcome).toMatchObject({ status: 'polled', enqueued: 3 });
    expect(outcome.refused).toHaveLength(1);
    expect(outcome.refused[0]!.reason).toContain('Microsoft Graph');
    const letters = (await drainQueue(queues, deadLetterQueueOf(QUEUE_NAMES.incidents))) as {
      message: Record<string, unknown>;
    }[];
    expect(letters.map((l) => l.message)).toEqual([{ tenantId, api: 'graph', id: 'not-a-number' }]);
    await drainEvents();
  });

  it('refuses a continuation whose nextLink leads anywhere but Graph: nothing is fetched or enqueued', async () => {
    const tenantId = await addGraphTenant(2, 'foreign-link');
    const forged = {
      ...pollRequest(tenantId, 'continuation'),
      continuation: {
        since: new Date(Date.now() - 3_600_000).toISOString(),
        skip: 50,
        nextLink: `https://attacker.example/v1.0/security/incidents?$skiptoken=x`,
      },
    };
    await expect(pollTenant(pollRequestSchema.parse(forged), services)).rejects.toThrow(
      /Refused a nextLink .*the tenant's token goes only to/,
    );
    expect(await drainEvents()).toEqual([]);
  });

  it('enriches and routes a Graph incident as a Defender one, keeping the incident as Graph gave it', async () => {
    const tenantId = await addGraphTenant(10, 'enrich');
    await pollTenant(pollRequest(tenantId, 'manual'), services);
    const events = await drainEvents();
    expect(events).toHaveLength(10);
    const deps = enrichDependencies(services);
    for (const event of events) {
      const outcome = await handleIncidentEvent(event, deps, logger);
      expect(outcome.status).toBe('routed');
      if (outcome.status !== 'routed') continue;
      const graphIncident = event.incident as Record<string, unknown>;
      expect(outcome.enrichment.tenantId).toBe(tenantId);
      expect(outcome.enrichment.incidentId).toBe(event.incidentId);
      // The portal link is the incident's own incidentWebUrl.
      expect(outcome.enrichment.portalUrl).toBe(graphIncident.incidentWebUrl);
      const alerts = (graphIncident.alerts as unknown[]).length;
      // A merged incident holds no alerts: its merge target is fetched through Graph.
      if (alerts > 0) expect(outcome.enrichment.alertCount).toBe(alerts);
      else expect(outcome.apiCalls).toBeGreaterThan(0);
    }
  });

  it.each([
    { writeBack: { tag: 'relayed:graph-test' }, shows: (i: GraphIncident) => i.customTags },
    {
      writeBack: { comment: 'sent to the SOC queue' },
      shows: (i: GraphIncident) => i.comments.map((c) => c.comment),
    },
  ])(
    'writes back through Graph ($writeBack: customTags by PATCH, a comment by the comments endpoint) and knows the echo',
    async ({ writeBack, shows }) => {
      const tenantId = await addGraphTenant(4, `write-back-${Object.keys(writeBack)[0]}`);
      await pollTenant(pollRequest(tenantId, 'manual'), services);
      const [event] = (await drainEvents()).filter((e) => (e.incident as { status?: string }).status !== 'resolved');
      expect(event).toBeDefined();
      const deps = archivingWith({ writeBack });
      expect(await handleIncidentEvent(event, deps, logger)).toMatchObject({ status: 'routed' });
      const written = stack.graph.store.list(tenantId).find((i) => i.id === String(event!.incidentId))!;
      expect(shows(written).join('\n')).toContain(
        'tag' in writeBack ? writeBack.tag : `[defender-relay] ${writeBack.comment}`,
      );
      expect(written.lastUpdateDateTime).not.toBe(event!.lastUpdateTime);

      // The next poll lists the version the write-back made: an echo, not news.
      const echo = graphEnvelopeFor(
        tenantId,
        written,
        { incidentId: event!.incidentId, lastUpdateTime: written.lastUpdateDateTime },
        'poll',
      );
      expect(await handleIncidentEvent(echo, deps, logger)).toMatchObject({ status: 'echo' });
      await drainQueue(queues, 'routed-archive');
    },
  );

  it.each([
    { granted: 'with ThreatHunting.Read.All', roles: GRAPH_APP_ROLES, hunts: true },
    { granted: 'without ThreatHunting.Read.All', roles: ['SecurityIncident.ReadWrite.All'], hunts: false },
  ])(
    "runs a route's advanced hunting through Graph $granted: the device's logons in enrichment, or a note and routed all the same",
    async ({ roles, hunts }) => {
      const tenantId = await addGraphTenant(12, `hunting-${hunts}`, roles);
      await pollTenant(pollRequest(tenantId, 'manual'), services);
      // DeviceLogonEvents holds a row per device and user of an alert: an incident with an alert that has both.
      const hasLogons = (alert: unknown) => {
        const types = ((alert as { evidence?: { '@odata.type'?: string }[] }).evidence ?? []).map(
          (v) => v['@odata.type'],
        );
        return (
          types.includes('#microsoft.graph.security.deviceEvidence') &&
          types.includes('#microsoft.graph.security.userEvidence')
        );
      };
      const event = (await drainEvents()).find((e) =>
        ((e.incident as { alerts?: unknown[] }).alerts ?? []).some(hasLogons),
      );
      expect(event, 'an incident with an alert on a device and a user').toBeDefined();
      const deps = archivingWith({
        hunting: [{ name: 'logons', query: 'DeviceLogonEvents | where DeviceName in ({deviceNames}) | take 50' }],
      });
      const outcome = await handleIncidentEvent(event!, deps, logger);
      expect(outcome).toMatchObject({ status: 'routed' });
      if (outcome.status !== 'routed') return;
      // One query, sent once (a refusal is not retried).
      expect(graphCalls(tenantId).byEndpoint.runHuntingQuery).toBe(1);
      const devices = outcome.enrichment.entities.devices.map((d) => d.deviceDnsName);
      if (hunts) {
        const { rows, rowCount } = outcome.enrichment.hunting.logons!;
        expect(rowCount).toBeGreaterThan(0);
        for (const row of rows) expect(devices).toContain(row.DeviceName);
      } else {
        expect(outcome.enrichment.hunting.logons).toBeUndefined();
        expect(outcome.enrichment.notes.join('\n')).toMatch(
          /advanced hunting 'logons' failed: .*ThreatHunting\.Read\.All/,
        );
      }
      await drainQueue(queues, 'routed-archive');
    },
  );

  it("skips write-back and hunting without waiting while Graph holds the tenant's /security calls after a 429, and routes", async () => {
    const tenantId = await addGraphTenant(6, 'held');
    await pollTenant(pollRequest(tenantId, 'manual'), services);
    const event = (await drainEvents()).find((e) => ((e.incident as { alerts?: unknown[] }).alerts ?? []).length > 0);
    expect(event, 'an incident that holds its alerts (nothing to fetch)').toBeDefined();
    // Graph's 429 holds every call on /security (one budget API): write-back's PATCH and hunting alike.
    await services.graph.budget.throttled!(tenantId, 45_000, 'security'); // shorter than the client would wait
    const deps = archivingWith({
      writeBack: { tag: 'relayed:held' },
      hunting: [{ name: 'logons', query: 'DeviceLogonEvents | take 5' }],
    });
    const callsBefore = graphCalls(tenantId).calls;
    const started = Date.now();
    const outcome = await handleIncidentEvent(event!, deps, logger);
    expect(outcome).toMatchObject({ status: 'routed' });
    // The client would wait up to a minute for the hold: both were skipped before it, as courtesies are.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(graphCalls(tenantId).calls).toBe(callsBefore);
    if (outcome.status === 'routed')
      expect(outcome.enrichment.notes).toContain("advanced hunting 'logons' skipped: the tenant's API budget is spent");
    expect(logs.join('\n')).toContain(
      `write-back for route ${DEFAULT_ROUTE_NAME} skipped: the tenant's API budget is spent`,
    );
    await drainQueue(queues, 'routed-archive');
  });

  it("holds only hunting when the tenant's hunting CPU quota is spent: the next event's query is skipped unsent, polling goes on", async () => {
    const tenantId = await addGraphTenant(6, 'hunting-quota');
    await pollTenant(pollRequest(tenantId, 'manual'), services);
    const [first, second] = (await drainEvents()).filter(
      (e) => ((e.incident as { alerts?: unknown[] }).alerts ?? []).length > 0,
    );
    expect(second, 'two incidents that hold their alerts').toBeDefined();
    // Graph answers a spent quota 429 with the wait to the next 15-minute cycle (security-api-overview.md).
    // Cycles follow the clock: one about to end would free the quota (and give a wait the client waits out).
    const cycleLeft = Date.parse(stack.graph.hunting.state(tenantId).cycleEndsAt) - Date.now();
    if (cycleLeft < 75_000) await new Promise((r) => setTimeout(r, cycleLeft + 1_000));
    stack.graph.hunting.configure(tenantId, { quotaSpent: true });
    const deps = archivingWith({ hunting: [{ name: 'logons', query: 'DeviceLogonEvents | take 5' }] });
    const calls = () => graphCalls(tenantId).byEndpoint;

    const refused = await handleIncidentEvent(first!, deps, logger);
    expect(refused).toMatchObject({ status: 'routed' });
    if (refused.status === 'routed')
      expect(refused.enrichment.notes.join('\n')).toMatch(
        /advanced hunting 'logons' failed for now .*throttled the call \(429\)/,
      );
    const skipped = await handleIncidentEvent(second!, deps, logger);
    if (skipped.status === 'routed')
      expect(skipped.enrichment.notes).toContain("advanced hunting 'logons' skipped: the tenant's API budget is spent");
    expect(calls().runHuntingQuery).toBe(1);

    // The incidents are still read: the hold is hunting's, not every /security call's for fifteen minutes.
    const listedBefore = calls().listIncidents ?? 0;
    const started = Date.now();
    expect(await pollTenant(pollRequest(tenantId, 'manual'), services)).toMatchObject({ status: 'polled' });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(calls().listIncidents).toBe(listedBefore + 1);
    await drainQueue(queues, 'routed-archive');
  }, 120_000);
});
