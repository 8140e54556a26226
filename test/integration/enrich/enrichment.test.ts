import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { FaultBoard } from '../../../local/common/faults.js';
import { generateIncidents, type Incident } from '../../../local/defender/generator.js';
import { startDefender } from '../../../local/defender/server.js';
import { DEFENDER_RESOURCE } from '../../../local/demo.js';
import { CallBudget } from '../../../shared/sources/call-budget.js';
import { loadConfig } from '../../../shared/config/config.js';
import { DefenderClient } from '../../../shared/sources/defender/client.js';
import { deriveEnrichment, enrichWithApi, type HuntingQuerySpec } from '../../../shared/enrich/enrichment.js';
import { RetryableError } from '../../../shared/errors.js';
import { createServices, type Services } from '../../../shared/services.js';
import type { Tenant } from '../../../shared/tenants/tenants.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { TENANT_CREDENTIAL_TAGS } from '../../../shared/auth/credential-fence.js';

/** The CPU quota resets every quarter hour: a test that marks it spent must not straddle the reset, so it starts well before one. */
async function clearOfCycleEnd(
  defender: { hunting: { state(tenantId: string): { cycleEndsAt: string } } },
  tenantId: string,
  marginMs = 45_000,
): Promise<void> {
  const left = Date.parse(defender.hunting.state(tenantId).cycleEndsAt) - Date.now();
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 1_000));
}

/**
 * `enrichWithApi` against the Defender stand-in with the app's real client and real tokens: the calls
 * it makes (as the stand-in counted them), what it records, and what each failure becomes.
 */
describe('enrichment with the Defender API', () => {
  let stack: TestStandIns;
  let services: Services;
  let tenant: Tenant;
  /** An active incident whose alerts put users on devices, and two incidents merged into it. */
  let target: Incident;
  let merged: Incident;

  const recentLogons: HuntingQuerySpec = {
    name: 'recent-logons',
    query: 'DeviceLogonEvents | where DeviceName in ({deviceNames}) | project DeviceName, AccountName, ActionType',
    maxRows: 5,
  };
  const statsFor = (t: Tenant) => stack.defender.stats.for(t.tenantId, t.clientId);
  /** The stand-in counts a call when its answer has finished, which may be just after the client read it. */
  const expectStats = (t: Tenant, expected: object) =>
    vi.waitFor(() => expect(statsFor(t)).toMatchObject(expected), { timeout: 2000, interval: 20 });
  /** A client of our own, for budgets and retries the shared one does not have. */
  const clientWith = (options: { budget?: CallBudget; maxRetries?: number; timeoutMs?: number } = {}) =>
    new DefenderClient({
      apiUrl: services.config.defender.apiUrl,
      tokens: services.tokens,
      baseDelayMs: 1,
      maxDelayMs: 5,
      ...options,
    });

  beforeAll(async () => {
    stack = await startTestStandIns();
    services = createServices(loadConfig(stack.appSettings));
    const demo = stack.world.tenants.find((t) => t.context === 'application')!;
    tenant = {
      tenantId: demo.tenantId,
      displayName: demo.displayName,
      context: demo.context,
      clientId: demo.clientId,
      credential: { kind: 'secret', secretName: demo.clientSecretName },
      enabled: true,
      source: 'defender',
      firstRunLookbackHours: 24,
    };
    const window = { since: new Date(Date.now() - 20 * 86_400_000), until: new Date() };
    const active = generateIncidents({
      tenantId: tenant.tenantId,
      count: 30,
      seed: 'enrichment',
      startId: 700_000,
      redirectedShare: 0,
      ...window,
    });
    const withLogons = (i: Incident) =>
      i.alerts.some((a) => a.devices.length > 0 && a.entities.some((e) => e.entityType === 'User'));
    target = active.find(withLogons)!;
    // redirectedShare 1: the second incident is merged into the first; here, into the target.
    const [, redirected] = generateIncidents({
      tenantId: tenant.tenantId,
      count: 2,
      seed: 'enrichment',
      startId: 800_000,
      redirectedShare: 1,
      ...window,
    });
    merged = { ...redirected!, redirectIncidentId: target.incidentId };
    stack.defender.store.upsert(tenant.tenantId, [target, merged]);
    expect(merged).toMatchObject({ status: 'Redirected', alerts: [] });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });
  beforeEach(async () => {
    // Let the previous test's last answers be counted before the counts start again.
    await new Promise((resolve) => setTimeout(resolve, 50));
    stack.defender.stats.reset();
  });
  afterEach(() => {
    stack.faults.clear();
    stack.defender.hunting.reset();
  });

  it('makes no Defender call for an incident that holds its alerts', async () => {
    const incident = structuredClone(target);
    const result = await enrichWithApi({ incident, tenant }, { defender: services.defender });
    expect(result.calls).toBe(0);
    expect(statsFor(tenant).calls).toBe(0);
    expect(services.defender.calls.get(tenant.tenantId)).toBeUndefined();
    expect(result.incident).toEqual(target);
    expect(result.enrichment).toMatchObject({
      alertCount: target.alerts.length,
      tenantDisplayName: tenant.displayName,
      portalUrl: target.incidentUri,
      notes: [],
    });
  });

  it('follows redirectIncidentId with one call and records the merge target’s fields beside the unchanged incident', async () => {
    const incident = structuredClone(merged);
    const result = await enrichWithApi({ incident, tenant }, { defender: services.defender });

    expect(result.calls).toBe(1);
    await expectStats(tenant, { calls: 1, byEndpoint: { getIncident: 1 }, errors: 0 });
    expect(result.incident).toEqual(merged);
    expect(result.fetchedIncident).toMatchObject({ incidentId: target.incidentId, alerts: target.alerts });

    const fromTarget = deriveEnrichment(target, { tenantId: tenant.tenantId, tenantDisplayName: tenant.displayName });
    expect(result.enrichment).toMatchObject({
      incidentId: merged.incidentId,
      portalUrl: merged.incidentUri,
      redirectedTo: { incidentId: target.incidentId, portalUrl: target.incidentUri },
      needsFullIncident: false,
      alertCount: fromTarget.alertCount,
      severities: fromTarget.severities,
      mitre: fromTarget.mitre,
      entities: fromTarget.entities,
      firstActivity: fromTarget.firstActivity,
      priority: fromTarget.priority,
    });
    expect(result.enrichment.priorityReasons[0]).toBe(
      `merged into incident ${target.incidentId}: scored as that incident`,
    );
  });

  it('runs a hunting query filled with the incident’s device names and stores the rows', async () => {
    const result = await enrichWithApi(
      { incident: target, tenant, hunting: [recentLogons] },
      { defender: services.defender },
    );
    const deviceNames = result.enrichment.entities.devices.map((d) => d.deviceDnsName);
    const hunting = result.enrichment.hunting['recent-logons']!;

    expect(result).toMatchObject({ calls: 1, notes: [] });
    await expectStats(tenant, { calls: 1, byEndpoint: { advancedHunting: 1 }, errors: 0 });
    expect(hunting.rowCount).toBeGreaterThan(0);
    expect(hunting.rows.length).toBe(Math.min(5, hunting.rowCount));
    expect(hunting.truncated).toBe(hunting.rowCount > 5);
    for (const row of hunting.rows) {
      expect(Object.keys(row).sort()).toEqual(['AccountName', 'ActionType', 'DeviceName']);
      expect(deviceNames).toContain(row.DeviceName);
    }
  });

  it('skips the hunting query with a note when the tenant’s budget is spent, after the required fetch took the last call', async () => {
    const defender = clientWith({ budget: new CallBudget({ perMinute: 1, perHour: 1 }) });
    const result = await enrichWithApi({ incident: merged, tenant, hunting: [recentLogons] }, { defender });

    expect(result.calls).toBe(1);
    await expectStats(tenant, { calls: 1, byEndpoint: { getIncident: 1 } });
    expect(result.enrichment).toMatchObject({ alertCount: target.alerts.length, hunting: {} });
    expect(result.enrichment.notes).toEqual([
      "advanced hunting 'recent-logons' skipped: the tenant's API budget is spent",
    ]);
  });

  it('notes a missing AdvancedHunting.Read.All permission instead of failing', async () => {
    // A tenant whose app may read incidents but not run advanced hunting.
    const limited: Tenant = {
      ...tenant,
      tenantId: randomUUID(),
      displayName: 'Limited Ltd',
      clientId: randomUUID(),
      credential: { kind: 'secret', secretName: 'limited-client-secret' },
    };
    const secret = randomBytes(24).toString('base64url');
    stack.entra.registry.addTenant({ tenantId: limited.tenantId, displayName: limited.displayName });
    stack.entra.registry.addApp({
      clientId: limited.clientId,
      displayName: 'limited reader',
      homeTenantId: limited.tenantId,
      multiTenant: false,
      secrets: [secret],
    });
    stack.entra.registry.grantAppPermissions(limited.tenantId, limited.clientId, DEFENDER_RESOURCE, [
      'Incident.Read.All',
    ]);
    await stack.keyVault.store.setSecret('limited-client-secret', secret, {
      contentType: 'client-secret',
      tags: TENANT_CREDENTIAL_TAGS,
    });
    stack.defender.store.provisionTenant(limited.tenantId, limited.displayName);
    const incident = generateIncidents({
      tenantId: limited.tenantId,
      count: 30,
      seed: 'limited',
      redirectedShare: 0,
    }).find((i) => i.alerts.some((a) => a.devices.length > 0));
    stack.defender.store.upsert(limited.tenantId, [incident!]);

    const result = await enrichWithApi(
      { incident, tenant: limited, hunting: [recentLogons] },
      { defender: clientWith() },
    );
    expect(result.calls).toBe(1);
    await expectStats(limited, { calls: 1, byEndpoint: { advancedHunting: 1 }, errors: 1 });
    expect(result.enrichment.hunting).toEqual({});
    expect(result.notes).toEqual([
      expect.stringMatching(/^advanced hunting 'recent-logons' failed: .*403.*AdvancedHunting\.Read\.All/),
    ]);
    expect(result.enrichment.alertCount).toBe(incident!.alerts.length);
  });

  it(
    'skips hunting without a call for the rest of the cycle once Defender says the tenant’s CPU quota is spent, and still enriches',
    { timeout: 90_000 },
    async () => {
      await clearOfCycleEnd(stack.defender, tenant.tenantId);
      stack.defender.hunting.configure(tenant.tenantId, { quotaSpent: true });
      const budget = new CallBudget();
      const defender = clientWith({ budget });
      const results = [];
      for (let i = 0; i < 3; i += 1)
        results.push(await enrichWithApi({ incident: target, tenant, hunting: [recentLogons] }, { defender }));

      // One call learns the quota is spent (no retries on it); the next incidents do not ask again.
      await expectStats(tenant, { calls: 1, throttled: 1, byEndpoint: { advancedHunting: 1 } });
      expect(defender.calls.get(tenant.tenantId)).toBe(1);
      expect(results.map((r) => r.calls)).toEqual([1, 0, 0]);
      expect(budget.waitTime(tenant.tenantId)).toBe(0);
      for (const result of results) {
        expect(result.enrichment).toMatchObject({ alertCount: target.alerts.length, hunting: {} });
        expect(result.notes).toEqual([
          expect.stringMatching(
            /^advanced hunting 'recent-logons' skipped: Defender's advanced hunting CPU quota for the tenant is spent for the next (1[0-5]|[1-9]) min .*exceeded processing resources/,
          ),
        ]);
      }
    },
  );

  it('notes a query Defender stopped at its 3-minute limit, without retrying it', async () => {
    stack.defender.hunting.configure(tenant.tenantId, { nextQueries: { runSeconds: 240, count: 5 } });
    const defender = clientWith();
    const result = await enrichWithApi({ incident: target, tenant, hunting: [recentLogons] }, { defender });
    expect(result.calls).toBe(1);
    expect(defender.calls.get(tenant.tenantId)).toBe(1);
    await expectStats(tenant, { calls: 1, errors: 1, byEndpoint: { advancedHunting: 1 } });
    expect(result.enrichment).toMatchObject({ alertCount: target.alerts.length, hunting: {} });
    expect(result.notes).toEqual([
      expect.stringMatching(/^advanced hunting 'recent-logons' failed: .*400.*Query exceeded the timeout period/),
    ]);
  });

  it('does not retry a hunting query it timed out on itself: a retry would run the query again', async () => {
    stack.faults.add('defender', { kind: 'delay', ms: 1_500 }, Infinity, '/api/advancedhunting/run');
    const defender = clientWith({ timeoutMs: 200 });
    const result = await enrichWithApi({ incident: target, tenant, hunting: [recentLogons] }, { defender });
    expect(defender.calls.get(tenant.tenantId)).toBe(1);
    expect(result.calls).toBe(1);
    expect(result.enrichment).toMatchObject({ alertCount: target.alerts.length, hunting: {} });
    expect(result.notes).toEqual([
      expect.stringMatching(
        /^advanced hunting 'recent-logons' failed for now \(not retried, the query is optional\): .*did not answer within 0\.2 s/,
      ),
    ]);
  });

  it('waits out a get-incident 429 for the time it gives, then fetches the merge target', async () => {
    // A stand-in of its own, with a clock the client's sleep moves, and the shared quota raised so get incident's own (100 a minute) shows.
    let offsetMs = 0;
    const own = await startDefender({
      tls: inject('tls'),
      verifier: stack.entra.verifier,
      faults: new FaultBoard(),
      limits: { perMinute: 100_000, perHour: 1_000_000 },
      now: () => Date.now() + offsetMs,
    });
    try {
      own.store.provisionTenant(tenant.tenantId, tenant.displayName);
      own.store.upsert(tenant.tenantId, [target, merged]);
      const slept: number[] = [];
      const defender = new DefenderClient({
        apiUrl: own.url,
        tokens: services.tokens,
        budget: new CallBudget({ perMinute: 100_000, perHour: 1_000_000 }),
        sleep: async (ms) => {
          slept.push(ms);
          offsetMs += ms;
        },
      });
      for (let i = 0; i < 100; i += 1) await defender.getIncident(tenant, target.incidentId);
      expect(slept).toEqual([]);

      const result = await enrichWithApi({ incident: structuredClone(merged), tenant }, { defender });
      expect(result.fetchedIncident).toMatchObject({ incidentId: target.incidentId });
      expect(result.notes).toEqual([]);
      expect(slept).toHaveLength(1);
      expect(slept[0]).toBeGreaterThanOrEqual(50_000);
      expect(slept[0]).toBeLessThanOrEqual(60_000);
      await vi.waitFor(
        () =>
          expect(own.stats.for(tenant.tenantId, tenant.clientId)).toMatchObject({
            throttled: 1,
            byEndpoint: { getIncident: 102 },
          }),
        { timeout: 2000, interval: 20 },
      );
    } finally {
      await own.close();
    }
  });

  it('notes a merge target that no longer exists (404) and routes what the event holds', async () => {
    const incident = { ...merged, redirectIncidentId: 999_999_999 };
    const result = await enrichWithApi({ incident, tenant }, { defender: services.defender });
    expect(result.calls).toBe(1);
    await expectStats(tenant, { calls: 1, errors: 1 });
    expect(result.enrichment).toMatchObject({
      needsFullIncident: true,
      alertCount: 0,
      redirectedTo: { incidentId: 999_999_999 },
    });
    expect(result.notes).toEqual([expect.stringMatching(/^the full incident 999999999 could not be fetched.*404/)]);
  });

  it('throws a RetryableError when Defender answers 503 to the required fetch, so the event is retried', async () => {
    stack.faults.add('defender', { kind: 'status', status: 503 }, Infinity, `/api/incidents/${target.incidentId}`);
    const attempt = enrichWithApi(
      { incident: merged, tenant, hunting: [recentLogons] },
      { defender: clientWith({ maxRetries: 2 }) },
    );
    await expect(attempt).rejects.toBeInstanceOf(RetryableError);
    await expect(attempt).rejects.toThrow(/503.*tenant .*getIncident/);
    await expectStats(tenant, { errors: 3, byEndpoint: { getIncident: 3 } });
  });
});
