import { randomUUID } from 'node:crypto';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { UsernamePasswordCredential } from '@azure/identity';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { generateIncidents } from '../../../local/defender/generator.js';
import { RELAY_USER_SCOPE } from '../../../local/demo.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { PUSH_CAP } from '../../../shared/sources/call-budget.js';
import { loadConfig } from '../../../shared/config/config.js';
import {
  enrichDependencies,
  handleIncidentEvent,
  type EnrichDependencies,
  type EnrichOutcome,
} from '../../../shared/enrich/enrich-handler.js';
import { envelopeFor, type IncidentEnvelope } from '../../../shared/messages/events.js';
import { createServices, type Services } from '../../../shared/services.js';
import { listIncidentsForAnalyst, type AnalystResponse } from '../../../shared/api/user-incidents.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * Issue 10, finding 4: a pusher must not spend a tenant's Defender budget. A storm of pushed
 * incidents without alerts (each would need its full incident fetched) is enriched while an analyst
 * of the same tenant lists incidents; the analysts' share must serve every one of their calls, the
 * push-triggered fetches stay within the push share, and every pushed event is still routed.
 */
describe('Defender budget classes: a push storm leaves the analysts served', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let services: Services;
  let deps: EnrichDependencies;
  const logs: string[] = [];
  const log = {
    info: (m: string) => logs.push(m),
    warn: (m: string) => logs.push(m),
    error: (m: string) => logs.push(m),
  };

  beforeAll(async () => {
    // Azurite of its own: the storm routes 100 events to the demo's queues, which other files drain.
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 256 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    services = createServices(loadConfig(appSettingsFor(stack.world, azurite.connectionString, stack)));
    deps = enrichDependencies(services);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
  });

  const NOT_FETCHED = "the full incident was not fetched: the tenant's budget for pushed incidents is spent";
  /** A pushed event must not wait for the budget: far longer than an enrichment takes, far shorter than a budget wait (a minute). */
  const MUST_SETTLE_MS = 5_000;

  async function signIn(): Promise<string> {
    const { analyst, analystClient, relayApi } = stack.world;
    const credential = new UsernamePasswordCredential(
      analyst.tenantId,
      analystClient.clientId,
      analyst.userPrincipalName,
      analyst.password,
      {
        authorityHost: stack.entra.url,
        disableInstanceDiscovery: true,
      },
    );
    return (await credential.getToken(`${relayApi.identifierUri}/${RELAY_USER_SCOPE}`)).token;
  }

  const listAsAnalyst = (token: string): Promise<AnalystResponse> =>
    listIncidentsForAnalyst(
      new HttpRequest({
        method: 'GET',
        url: 'http://localhost/api/incidents?top=10',
        headers: { authorization: `Bearer ${token}` },
      }),
      services.userContext,
      new InvocationContext({ logHandler: (_level, ...args) => logs.push(args.map(String).join(' ')) }),
    );

  /** `count` low-severity incidents in the Defender stand-in, and their events as a push without alerts would send them. */
  function pushedWithoutAlerts(tenantId: string, count: number): IncidentEnvelope[] {
    const store = stack.defender.store;
    const incidents = generateIncidents({
      tenantId,
      count,
      seed: randomUUID(),
      startId: store.nextIncidentId(tenantId),
      redirectedShare: 0,
    });
    for (const incident of incidents) {
      // The default route (archive, SIEM) for all: no hunting or write-back, so the fetch is the only call.
      incident.severity = 'Low';
      incident.status = 'Active';
      for (const alert of incident.alerts) alert.severity = 'Low';
    }
    store.upsert(tenantId, incidents);
    return incidents.map((incident) => {
      const { alerts: _alerts, ...withoutAlerts } = store.get(tenantId, incident.incidentId)!;
      return envelopeFor(tenantId, withoutAlerts, 'webhook');
    });
  }

  /** The event's outcome, or 'waited' when it had not settled within MUST_SETTLE_MS. */
  async function enrichWithin(envelope: IncidentEnvelope): Promise<EnrichOutcome | 'waited' | Error> {
    const settled = handleIncidentEvent(envelope, deps, log).catch((err: unknown) =>
      err instanceof Error ? err : new Error(String(err)),
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'waited'>((resolve) => (timer = setTimeout(() => resolve('waited'), MUST_SETTLE_MS)));
    try {
      return await Promise.race([settled, waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  it(
    'routes 100 pushed incidents without alerts, fetches only the push share, and serves every analyst call',
    { timeout: 120_000 },
    async () => {
      const tenantId = stack.world.analyst.tenantId;
      const tenantApp = stack.world.tenants.find((t) => t.tenantId === tenantId)!.clientId;
      const events = pushedWithoutAlerts(tenantId, 100);
      const token = await signIn();
      const fetchesBefore = stack.defender.stats.for(tenantId, tenantApp).byEndpoint.getIncident ?? 0;
      const relayCallsBefore = services.defender.calls.get(tenantId) ?? 0;

      // 20 rounds: five pushed events (as a queue batch runs them, concurrently) and one analyst call beside them.
      const outcomes: (EnrichOutcome | 'waited' | Error)[] = [];
      const analystStatuses: number[] = [];
      for (let round = 0; round < 20; round++) {
        const batch = events.slice(round * 5, round * 5 + 5);
        const [analyst, ...enriched] = await Promise.all([listAsAnalyst(token), ...batch.map(enrichWithin)]);
        analystStatuses.push(analyst.status);
        outcomes.push(...enriched);
      }

      const routed = outcomes.filter(
        (o): o is Extract<EnrichOutcome, { status: 'routed' }> =>
          typeof o === 'object' && !(o instanceof Error) && o.status === 'routed',
      );
      const withNote = routed.filter((o) => o.enrichment.notes.includes(NOT_FETCHED));
      const fetched = routed.filter((o) => !o.enrichment.notes.includes(NOT_FETCHED));
      const served = analystStatuses.filter((s) => s === 200).length;
      const standInFetches =
        (stack.defender.stats.for(tenantId, tenantApp).byEndpoint.getIncident ?? 0) - fetchesBefore;
      console.log(
        `push storm: ${events.length} pushed incidents without alerts, ${fetched.length} fetched, ${withNote.length} routed with a note` +
          `${routed.length < events.length ? ` (${events.length - routed.length} not routed: ${outcomes.filter((o) => o === 'waited').length} waited for the budget)` : ''}` +
          `; analyst calls served ${served}/${analystStatuses.length}${served < analystStatuses.length ? ` (statuses ${[...new Set(analystStatuses)].join(', ')})` : ''}`,
      );

      expect(analystStatuses).toEqual(Array(20).fill(200)); // no 503 "Defender is busy"
      expect(outcomes.filter((o) => o === 'waited' || o instanceof Error)).toEqual([]); // nothing waited, nothing threw
      expect(routed).toHaveLength(events.length);
      expect(fetched.length).toBe(PUSH_CAP.perMinute); // the storm lasts well under a minute
      expect(withNote).toHaveLength(events.length - PUSH_CAP.perMinute);
      for (const outcome of fetched) expect(outcome.apiCalls).toBe(1);
      for (const outcome of withNote) expect(outcome.apiCalls).toBe(0);
      expect(standInFetches).toBeLessThanOrEqual(PUSH_CAP.perMinute);
      expect((services.defender.calls.get(tenantId) ?? 0) - relayCallsBefore).toBe(standInFetches);
      // The note travels with the routed event and its log line.
      expect(
        logs.some((l) => l.includes(`enrichIncident ${withNote[0]!.eventId}: routed by`) && l.includes(NOT_FETCHED)),
      ).toBe(true);
    },
  );

  it('a polled event without alerts still waits for its fetch: the push share is not the poller’s', async () => {
    const tenantId = stack.world.analyst.tenantId;
    const [pushed] = pushedWithoutAlerts(tenantId, 1);
    const polled: IncidentEnvelope = { ...pushed!, source: 'poll' };
    const outcome = await enrichWithin(polled);
    expect(outcome).toMatchObject({ status: 'routed', apiCalls: 1 });
    expect((outcome as Extract<EnrichOutcome, { status: 'routed' }>).enrichment.notes).not.toContain(NOT_FETCHED);
  });
});
