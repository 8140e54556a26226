import { describe, expect, it } from 'vitest';
import { BudgetSpentError, CallBudget, DEFAULT_BUDGET } from '../../../shared/sources/call-budget.js';
import type { HuntingResult } from '../../../shared/sources/defender/client.js';
import {
  enrichWithApi,
  MAX_REDIRECT_HOPS,
  type ApiEnrichmentDeps,
  type HuntingQuerySpec,
} from '../../../shared/enrich/enrichment.js';
import { PermanentError, RetryableError } from '../../../shared/errors.js';
import type { Tenant } from '../../../shared/tenants/tenants.js';

/**
 * `enrichWithApi`'s decisions against a scripted Defender client: which calls it makes, what a
 * failure of each kind becomes. The integration test runs the same paths against the stand-in.
 */
const tenant: Tenant = {
  tenantId: '8d2a6f0e-1c3b-4e5f-9a7b-2c4d6e8f0a1b',
  displayName: 'Fabrikam',
  context: 'application',
  clientId: '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9',
  credential: { kind: 'secret', secretName: 'fabrikam' },
  enabled: true,
  source: 'defender',
  firstRunLookbackHours: 24,
};

const withAlerts = (incidentId: number, fields: Record<string, unknown> = {}) => ({
  incidentId,
  status: 'Active',
  severity: 'High',
  alerts: [
    {
      status: 'New',
      severity: 'High',
      devices: [{ mdatpDeviceId: 'd1', deviceDnsName: 'pc1.contoso.com', riskScore: 'Medium' }],
      entities: [{ entityType: 'User', accountName: 'adele' }],
    },
  ],
  ...fields,
});

function scriptedDefender(
  options: { incidents?: Record<number, unknown | Error>; hunting?: HuntingResult | Error; budget?: CallBudget } = {},
) {
  const log: string[] = [];
  const budget = options.budget ?? new CallBudget();
  const defender: ApiEnrichmentDeps['defender'] = {
    // As the clients do: the wait for the share of the budget its class spends (a spread can change the class).
    budgetWait(tenantId) {
      return budget.waitTime(tenantId, this.budgetClass ?? 'poll');
    },
    async getIncident(_tenant, incidentId) {
      log.push(`getIncident ${incidentId}`);
      const answer = options.incidents?.[incidentId];
      if (answer instanceof Error) throw answer;
      if (answer === undefined)
        throw new PermanentError('Defender rejected the call (404): NotFound', { status: 404, code: 'NotFound' });
      return answer as never;
    },
    async runHuntingQuery(_tenant, query) {
      log.push(`hunt ${query}`);
      if (options.hunting instanceof Error) throw options.hunting;
      return options.hunting ?? { Schema: [], Results: [] };
    },
  };
  return { defender, log };
}

const logons: HuntingQuerySpec = {
  name: 'recent-logons',
  query: 'DeviceLogonEvents | where DeviceName in ({deviceNames})',
  maxRows: 2,
};

describe('enrichWithApi', () => {
  it('makes no call for an incident that holds its alerts and asks for no hunting', async () => {
    const { defender, log } = scriptedDefender();
    const incident = withAlerts(10);
    const result = await enrichWithApi({ incident, tenant }, { defender });
    expect(log).toEqual([]);
    expect(result).toMatchObject({
      incident,
      calls: 0,
      notes: [],
      enrichment: { alertCount: 1, tenantDisplayName: 'Fabrikam', needsFullIncident: false },
    });
    expect(result.fetchedIncident).toBeUndefined();
  });

  it('fetches the merge target of a redirected incident and scores it as that incident', async () => {
    const { defender, log } = scriptedDefender({ incidents: { 20: withAlerts(20) } });
    const incident = { incidentId: 11, status: 'Redirected', redirectIncidentId: 20, alerts: [] };
    const result = await enrichWithApi({ incident, tenant }, { defender });
    expect(log).toEqual(['getIncident 20']);
    expect(result.incident).toBe(incident);
    expect(incident.alerts).toEqual([]);
    expect(result.fetchedIncident).toEqual(withAlerts(20));
    expect(result.enrichment).toMatchObject({
      incidentId: 11,
      portalUrl: expect.stringContaining('/incidents/11?'),
      redirectedTo: { incidentId: 20, portalUrl: expect.stringContaining('/incidents/20?') },
      alertCount: 1,
      needsFullIncident: false,
      priority: 50 + 15 + 2 + 10,
    });
    expect(result.enrichment.priorityReasons[0]).toBe('merged into incident 20: scored as that incident');
    expect(result.calls).toBe(1);
  });

  it('fetches a thin incident by its own id, and follows the merge it finds there', async () => {
    const { defender, log } = scriptedDefender({
      incidents: {
        30: { incidentId: 30, status: 'Redirected', redirectIncidentId: 31, alerts: [] },
        31: withAlerts(31),
      },
    });
    const result = await enrichWithApi({ incident: { incidentId: 30 }, tenant }, { defender });
    expect(log).toEqual(['getIncident 30', 'getIncident 31']);
    expect(result.enrichment).toMatchObject({ redirectedTo: { incidentId: 31 }, alertCount: 1 });
    expect(result.calls).toBe(2);
  });

  it(`stops following merges after ${MAX_REDIRECT_HOPS} fetches and on a loop, with a note`, async () => {
    const chain = Object.fromEntries(
      [41, 42, 43, 44, 45].map((id) => [
        id,
        { incidentId: id, status: 'Redirected', redirectIncidentId: id + 1, alerts: [] },
      ]),
    );
    const long = scriptedDefender({ incidents: chain });
    const result = await enrichWithApi(
      { incident: { incidentId: 40, redirectIncidentId: 41 }, tenant },
      { defender: long.defender },
    );
    expect(long.log).toHaveLength(MAX_REDIRECT_HOPS);
    expect(result.notes).toEqual([
      expect.stringContaining('not followed further'),
      expect.stringContaining('holds no alerts either'),
    ]);

    const loop = scriptedDefender({
      incidents: { 51: { incidentId: 51, redirectIncidentId: 52 }, 52: { incidentId: 52, redirectIncidentId: 51 } },
    });
    await enrichWithApi({ incident: { incidentId: 50, redirectIncidentId: 51 }, tenant }, { defender: loop.defender });
    expect(loop.log).toEqual(['getIncident 51', 'getIncident 52']);
  });

  it('notes a permanent failure of the full-incident fetch and keeps going; rethrows a retryable one', async () => {
    const gone = scriptedDefender();
    const result = await enrichWithApi(
      { incident: { incidentId: 60, redirectIncidentId: 61 }, tenant, hunting: [logons] },
      { defender: gone.defender },
    );
    expect(result.enrichment).toMatchObject({ needsFullIncident: true, redirectedTo: { incidentId: 61 } });
    expect(result.notes[0]).toMatch(/^the full incident 61 could not be fetched.*404/);
    expect(result.enrichment.notes).toEqual(result.notes);

    const throttled = scriptedDefender({
      incidents: { 61: new RetryableError('Defender throttled the call (429)', { tenantId: tenant.tenantId }) },
    });
    await expect(
      enrichWithApi({ incident: { incidentId: 60, redirectIncidentId: 61 }, tenant }, { defender: throttled.defender }),
    ).rejects.toBeInstanceOf(RetryableError);

    const broken = scriptedDefender({ incidents: { 61: new TypeError('bug') } });
    await expect(
      enrichWithApi({ incident: { incidentId: 60, redirectIncidentId: 61 }, tenant }, { defender: broken.defender }),
    ).rejects.toThrow('bug');
  });

  it('notes an incident without alerts or an id, and an answer that is not an incident', async () => {
    const none = scriptedDefender();
    expect((await enrichWithApi({ incident: 'junk', tenant }, { defender: none.defender })).notes).toEqual([
      expect.stringContaining('no incidentId'),
    ]);
    expect(none.log).toEqual([]);
    const odd = scriptedDefender({ incidents: { 70: ['not', 'an', 'incident'] } });
    expect((await enrichWithApi({ incident: { incidentId: 70 }, tenant }, { defender: odd.defender })).notes).toEqual([
      expect.stringContaining('not an incident'),
    ]);
  });

  it('runs a hunting query with the placeholders filled and keeps at most maxRows rows', async () => {
    const rows = [
      { DeviceName: 'pc1.contoso.com', n: 1 },
      { DeviceName: 'pc1.contoso.com', n: 2 },
      { DeviceName: 'pc1.contoso.com', n: 3 },
    ];
    const { defender, log } = scriptedDefender({ hunting: { Schema: [], Results: rows } });
    const result = await enrichWithApi({ incident: withAlerts(80), tenant, hunting: [logons] }, { defender });
    expect(log).toEqual(['hunt DeviceLogonEvents | where DeviceName in ("pc1.contoso.com")']);
    expect(result.enrichment.hunting['recent-logons']).toEqual({
      rows: rows.slice(0, 2),
      rowCount: 3,
      truncated: true,
    });
    expect(result).toMatchObject({ calls: 1, notes: [] });
  });

  it('skips a query without calling when the budget is spent, its placeholder is empty, it is invalid or named twice', async () => {
    const budget = new CallBudget({ perMinute: 1, perHour: 1 });
    budget.tryTake(tenant.tenantId);
    const spent = scriptedDefender({ budget });
    const result = await enrichWithApi(
      { incident: withAlerts(81), tenant, hunting: [logons] },
      { defender: spent.defender },
    );
    expect(spent.log).toEqual([]);
    expect(result.notes).toEqual(["advanced hunting 'recent-logons' skipped: the tenant's API budget is spent"]);
    expect(result.calls).toBe(0);

    const other = scriptedDefender();
    const skipped = await enrichWithApi(
      {
        incident: withAlerts(82),
        tenant,
        hunting: [
          { name: 'by-ip', query: 'DeviceLogonEvents | where RemoteIP in ({ips})' },
          { name: 'bad', query: 'X | where A in ({nope})' },
          logons,
          logons,
        ],
      },
      { defender: other.defender },
    );
    expect(other.log).toHaveLength(1);
    expect(skipped.notes).toEqual([
      expect.stringMatching(/^advanced hunting 'by-ip' skipped: the incident has no values for \{ips\}/),
      expect.stringMatching(
        /^advanced hunting 'bad' skipped: the query is invalid \(query: unknown placeholder \{nope\}/,
      ),
      "advanced hunting 'recent-logons' skipped: another query of the route has the same name",
    ]);
  });

  it.each([
    [
      'a missing permission',
      new PermanentError('Defender denied the call (403), a permission is missing: Forbidden', { status: 403 }),
      /failed: .*403/,
    ],
    [
      'throttling after retries',
      new RetryableError('Defender throttled the call (429)', { status: 429 }),
      /failed for now \(not retried, the query is optional\): .*429/,
    ],
    ['anything else', new Error('socket hang up'), /failed unexpectedly: .*socket hang up/],
  ])('turns %s during hunting into a note, never a failure', async (_label, error, note) => {
    const { defender } = scriptedDefender({ hunting: error });
    const result = await enrichWithApi({ incident: withAlerts(90), tenant, hunting: [logons] }, { defender });
    expect(result.notes).toEqual([expect.stringMatching(note)]);
    expect(result.enrichment.hunting).toEqual({});
    expect(result.calls).toBe(1);
  });
});

describe('enrichWithApi for a pushed incident (budget class push)', () => {
  const pushSpent = () =>
    new BudgetSpentError(
      "The tenant's Defender API call budget for pushed incidents is spent for the next 42 s",
      'push',
      { tenantId: tenant.tenantId, retryAfterMs: 42_000 },
    );
  const NOT_FETCHED = "the full incident was not fetched: the tenant's budget for pushed incidents is spent";

  it('routes a pushed incident without alerts with a note when the push share is spent, instead of failing or waiting', async () => {
    const { defender, log } = scriptedDefender({ incidents: { 30: pushSpent() } });
    const result = await enrichWithApi(
      { incident: { incidentId: 30, status: 'Active', severity: 'Medium', alerts: [] }, tenant },
      { defender: { ...defender, budgetClass: 'push' } },
    );
    expect(log).toEqual(['getIncident 30']);
    expect(result.notes).toEqual([NOT_FETCHED]);
    expect(result.enrichment).toMatchObject({ incidentId: 30, needsFullIncident: true, notes: [NOT_FETCHED] });
    expect(result.fetchedIncident).toBeUndefined();
    expect(result.calls).toBe(0);
  });

  it('keeps what an earlier hop of a merge chain fetched, and names the merge target it did not fetch', async () => {
    const { defender } = scriptedDefender({
      incidents: { 20: { incidentId: 20, status: 'Redirected', redirectIncidentId: 21, alerts: [] }, 21: pushSpent() },
    });
    const result = await enrichWithApi(
      { incident: { incidentId: 11, redirectIncidentId: 20, alerts: [] }, tenant },
      { defender: { ...defender, budgetClass: 'push' } },
    );
    expect(result.notes).toEqual([
      "the full incident 21 was not fetched: the tenant's budget for pushed incidents is spent",
    ]);
    expect(result.fetchedIncident).toMatchObject({ incidentId: 20 });
    expect(result.calls).toBe(1);
  });

  it('a polled incident still needs its fetch: a spent budget is a retryable failure, as before', async () => {
    const pollSpent = new BudgetSpentError("The tenant's Defender API call budget is spent for the next 42 s", 'poll', {
      tenantId: tenant.tenantId,
      retryAfterMs: 42_000,
    });
    const { defender } = scriptedDefender({ incidents: { 30: pollSpent } });
    await expect(enrichWithApi({ incident: { incidentId: 30, alerts: [] }, tenant }, { defender })).rejects.toBe(
      pollSpent,
    );
  });

  it('skips hunting with a note naming the push share when it is spent, though polling could still call', async () => {
    const budget = new CallBudget(DEFAULT_BUDGET);
    while (budget.tryTake(tenant.tenantId, 'push'));
    const { defender, log } = scriptedDefender({ budget });
    const result = await enrichWithApi(
      { incident: withAlerts(12), tenant, hunting: [logons] },
      { defender: { ...defender, budgetClass: 'push' } },
    );
    expect(log).toEqual([]);
    expect(result.notes).toEqual([
      "advanced hunting 'recent-logons' skipped: the tenant's budget for pushed incidents is spent",
    ]);
    const polled = await enrichWithApi({ incident: withAlerts(12), tenant, hunting: [logons] }, { defender });
    expect(polled.notes).toEqual([]);
    expect(log).toHaveLength(1);
  });
});
