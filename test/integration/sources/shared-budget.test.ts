import { createHttpHeaders, type PipelinePolicy } from '@azure/core-rest-pipeline';
import { RestError, TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { BudgetSpentError, type BudgetClass, type BudgetLimits } from '../../../shared/sources/call-budget.js';
import { RetryableError } from '../../../shared/errors.js';
import { SharedCallBudget, SLOT_MS } from '../../../shared/sources/shared-budget.js';

/**
 * The Defender call budget shared by instances through one Table entity per tenant: several
 * SharedCallBudget objects on one table stand for several instances of the app.
 */
const storage = inject('storage');
let tables = 0;
const table = () =>
  TableClient.fromConnectionString(storage.connectionString, `budget${Date.now().toString(36)}${tables++}`, {
    allowInsecureConnection: true,
  });
const TENANT = '11111111-2222-3333-4444-555555555555';

/** Takes calls of the class until the budget is spent (no waiting); how many it got. */
async function takeUntilSpent(
  budget: SharedCallBudget,
  budgetClass: BudgetClass = 'poll',
  tenantId = TENANT,
): Promise<number> {
  let taken = 0;
  for (;;) {
    try {
      await budget.take(tenantId, 0, budgetClass);
      taken += 1;
    } catch (err) {
      if (err instanceof BudgetSpentError) return taken;
      throw err;
    }
  }
}

/** Starts a test early in a 10-second slot, so that a burst does not straddle two (the grants of one slot lapse at its end). */
async function atSlotStart(): Promise<void> {
  const into = Date.now() % SLOT_MS;
  if (into > 2_000) await new Promise((resolve) => setTimeout(resolve, SLOT_MS - into + 50));
}

/** The error a promise rejects with (undefined if it resolves). */
const refusal = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => undefined,
    (err: unknown) => err,
  );

describe('the Defender call budget shared by instances', () => {
  const limits: BudgetLimits = { perMinute: 12, perHour: 100 };

  it('lets three racing instances take no more than the tenant limit between them, and the limit is used', async () => {
    await atSlotStart();
    const client = table();
    const instances = [0, 1, 2].map(() => new SharedCallBudget(client, { limits }));
    const taken = await Promise.all(instances.map((budget) => takeUntilSpent(budget)));
    const total = taken.reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(12);
    // Grants held but not spent stay counted: each instance keeps spending its own, so none is lost here.
    expect(total).toBe(12);
    expect(instances.reduce((n, b) => n + b.stats.races, 0)).toBeGreaterThan(0);
  });

  it("agrees on the windows whatever the instances' clocks say (storage time, not theirs)", async () => {
    await atSlotStart();
    const client = table();
    const skews = [-180_000, 0, 240_000];
    const instances = skews.map((skew) => new SharedCallBudget(client, { limits, now: () => Date.now() + skew }));
    const total = (await Promise.all(instances.map((budget) => takeUntilSpent(budget)))).reduce((a, b) => a + b, 0);
    expect(total).toBe(12);
    // Another instance's view, read afresh, says when the next call may be: within the minute, not minutes off.
    const late = new SharedCallBudget(client, { limits, now: () => Date.now() - 600_000 });
    const spent = await refusal(late.take(TENANT, 0));
    expect(spent).toBeInstanceOf(BudgetSpentError);
    expect((spent as BudgetSpentError).retryAfterMs).toBeGreaterThan(40_000);
    expect((spent as BudgetSpentError).retryAfterMs).toBeLessThanOrEqual(70_000);
  });

  it("keeps the analysts' reservation across instances: the poller on one instance cannot spend it", async () => {
    await atSlotStart();
    const client = table();
    const shares = {
      perMinute: 12,
      perHour: 100,
      shares: { analystReserve: { perMinute: 3, perHour: 30 }, pushCap: { perMinute: 2, perHour: 20 } },
    };
    const poller = new SharedCallBudget(client, { limits: shares });
    const pusher = new SharedCallBudget(client, { limits: shares });
    const analyst = new SharedCallBudget(client, { limits: shares });
    expect(await takeUntilSpent(pusher, 'push')).toBe(2);
    expect(await takeUntilSpent(poller, 'poll')).toBe(7);
    expect(await takeUntilSpent(analyst, 'analyst')).toBe(3);
  });

  it('costs well under one storage operation per call for a busy tenant', async () => {
    await atSlotStart();
    const budget = new SharedCallBudget(table(), { limits: { perMinute: 45, perHour: 1400 } });
    for (let i = 0; i < 40; i++) await budget.take(TENANT, 0);
    expect(budget.stats.calls).toBe(40);
    // One read, then grants of 1, 2, 4, 8 and 10 calls: about a fifth of an operation per call.
    expect(budget.stats.storageOperations / budget.stats.calls).toBeLessThanOrEqual(0.2);
  });

  it('stops every instance calling an API Defender answered 429 for the tenant, until its Retry-After; other APIs and tenants go on', async () => {
    const client = table();
    const throttledOne = new SharedCallBudget(client, { limits });
    const other = new SharedCallBudget(client, { limits });
    await throttledOne.throttled(TENANT, 30_000, 'listIncidents');
    const held = await refusal(other.take(TENANT, 1_000, 'poll', 'listIncidents'));
    expect(held).toBeInstanceOf(BudgetSpentError);
    expect((held as BudgetSpentError).retryAfterMs).toBeGreaterThan(25_000);
    expect(other.waitTime(TENANT, 'poll', 'listIncidents')).toBeGreaterThan(25_000);
    // Each Defender API has limits of its own; other tenants are not held back either.
    await other.take(TENANT, 0, 'poll', 'updateIncident');
    await other.take('99999999-2222-3333-4444-555555555555', 0, 'poll', 'listIncidents');
  });

  it('holds an API named as a path by its own 429s and by a hold on any parent; its own hold leaves the parent free', async () => {
    const client = table();
    const one = new SharedCallBudget(client, { limits });
    const other = new SharedCallBudget(client, { limits });
    // Graph: advanced hunting's quota 429 holds hunting only; a 429 on /security holds hunting too.
    await one.throttled(TENANT, 30_000, 'security/runHuntingQuery');
    expect(await refusal(other.take(TENANT, 0, 'poll', 'security/runHuntingQuery'))).toBeInstanceOf(BudgetSpentError);
    expect(other.waitTime(TENANT, 'poll', 'security/runHuntingQuery')).toBeGreaterThan(25_000);
    await other.take(TENANT, 0, 'poll', 'security');
    const tenant2 = '99999999-2222-3333-4444-555555555556';
    await one.throttled(tenant2, 30_000, 'security');
    expect(await refusal(other.take(tenant2, 0, 'poll', 'security/runHuntingQuery'))).toBeInstanceOf(BudgetSpentError);
    // A name that only begins like another is not its child.
    await other.take(tenant2, 0, 'poll', 'securityX');
  });

  it("keeps services apart: Microsoft Graph's calls have a row of their own, its limits and its name", async () => {
    await atSlotStart();
    const client = table();
    const defender = new SharedCallBudget(client, { limits });
    const graph = new SharedCallBudget(client, { limits: { perMinute: 5, perHour: 50, service: 'graph' } });
    expect(await takeUntilSpent(graph)).toBe(5);
    const spent = await refusal(graph.take(TENANT, 0));
    expect((spent as Error).message).toMatch(
      /^The tenant's Microsoft Graph API call budget is spent for the next \d+ s \(counted across all instances\)/,
    );
    // A 429 from Graph holds Graph's calls only.
    await graph.throttled(TENANT, 60_000, 'security');
    expect(await takeUntilSpent(defender)).toBe(12);
    const rows = [];
    for await (const entity of client.listEntities({ queryOptions: { filter: `PartitionKey eq '${TENANT}'` } }))
      rows.push(entity.rowKey);
    expect(rows.sort()).toEqual(['calls', 'graph-calls']);
  });

  it("keeps tenants apart: one tenant spending its budget leaves another's whole", async () => {
    await atSlotStart();
    const client = table();
    const a = new SharedCallBudget(client, { limits });
    const b = new SharedCallBudget(client, { limits });
    expect(await takeUntilSpent(a, 'poll', TENANT)).toBe(12);
    expect(await takeUntilSpent(b, 'poll', '99999999-2222-3333-4444-555555555555')).toBe(12);
  });
});

/** What a test does to one instance's storage traffic (entity reads and writes; table creation passes untouched). */
interface Traffic {
  /** Runs before each entity write is sent: another instance writing first. */
  beforeWrite?: () => Promise<void>;
  /** Entity reads, or writes, answer this status (as Table storage does when the identity lacks a role). */
  failReads?: number;
  failWrites?: number;
  /** Responses carry no Date header. */
  noDate?: boolean;
}

/**
 * A table whose clock the test holds: every response's Date header reads `clock.ms` (kept at whole
 * seconds), and each instance's own clock reads `clock.ms` plus its skew. Storage time, as the budget
 * derives it (the middle of the Date header's second), is then exactly `clock.ms + 500`.
 */
function clockedTable() {
  const name = `budget${Date.now().toString(36)}${tables++}`;
  const clock = { ms: Math.floor(Date.now() / SLOT_MS) * SLOT_MS + 60 * SLOT_MS };
  const plain = TableClient.fromConnectionString(storage.connectionString, name, { allowInsecureConnection: true });
  const slot = (ms = clock.ms + 500) => Math.floor(ms / SLOT_MS);

  function client(traffic: Traffic): TableClient {
    const policy: PipelinePolicy = {
      name: 'test-storage-traffic',
      async sendRequest(request, next) {
        const entity = !new URL(request.url).pathname.endsWith('/Tables');
        const write = entity && request.method !== 'GET';
        const status = entity && (write ? traffic.failWrites : traffic.failReads);
        if (write) await traffic.beforeWrite?.();
        const response = status
          ? {
              request,
              status,
              headers: createHttpHeaders({
                'content-type': 'application/json',
                'x-ms-error-code': 'AuthorizationPermissionMismatch',
              }),
              bodyAsText: JSON.stringify({
                'odata.error': {
                  code: 'AuthorizationPermissionMismatch',
                  message: {
                    lang: 'en-US',
                    value: 'This request is not authorized to perform this operation using this permission.',
                  },
                },
              }),
            }
          : await next(request);
        if (traffic.noDate) response.headers.delete('date');
        else response.headers.set('date', new Date(clock.ms).toUTCString());
        return response;
      },
    };
    return TableClient.fromConnectionString(storage.connectionString, name, {
      allowInsecureConnection: true,
      additionalPolicies: [{ policy, position: 'perRetry' }],
    });
  }

  /** One instance of the app: its budget on the table, with its own clock skew and storage traffic. */
  function instance(
    limits: BudgetLimits,
    options: { skew?: { ms: number }; traffic?: Traffic; slept?: number[] } = {},
  ) {
    const skew = options.skew ?? { ms: 0 };
    return new SharedCallBudget(client(options.traffic ?? {}), {
      limits,
      now: () => clock.ms + skew.ms,
      sleep: async (ms) => {
        options.slept?.push(ms);
        clock.ms += ms;
      },
    });
  }

  /** The entity's calls per slot (poll, analyst, push), as instances left it. */
  async function counts(tenantId = TENANT): Promise<Record<string, number[]>> {
    const entity = await plain.getEntity<{ slots: string }>(tenantId, 'calls');
    return JSON.parse(entity.slots) as Record<string, number[]>;
  }

  return { clock, plain, slot, instance, counts };
}

describe('the shared Defender call budget, on a storage clock the test holds', () => {
  const limits: BudgetLimits = { perMinute: 12, perHour: 100 };

  it("grows a busy instance's grants 1, 2, 4, 8, 10 (never more) within a slot, one storage write each", async () => {
    const { instance, counts, slot } = clockedTable();
    const budget = instance({ perMinute: 45, perHour: 1400 });
    const seen: [number, number, number][] = [];
    for (let call = 1; call <= 26; call++) {
      await budget.take(TENANT, 0);
      if ([1, 2, 4, 8, 16, 25, 26].includes(call))
        seen.push([call, (await counts())[slot()]![0]!, budget.stats.storageOperations]);
    }
    // [calls made, calls the entity counts, storage operations]: the first call also reads the entity.
    expect(seen).toEqual([
      [1, 1, 2],
      [2, 3, 3],
      [4, 7, 4],
      [8, 15, 5],
      [16, 25, 6],
      [25, 25, 6],
      [26, 35, 7],
    ]);
  });

  it('keeps a large grant while the tenant stays busy from one slot to the next, and starts again at one after a quiet slot', async () => {
    const { clock, instance, counts, slot } = clockedTable();
    const budget = instance(limits);
    await budget.take(TENANT, 0);
    await budget.take(TENANT, 0);
    clock.ms += SLOT_MS;
    await budget.take(TENANT, 0);
    expect((await counts())[slot()]).toEqual([4, 0, 0]);
    await budget.take(TENANT, 0);
    clock.ms += 2 * SLOT_MS;
    await budget.take(TENANT, 0);
    expect((await counts())[slot()]).toEqual([1, 0, 0]);
  });

  it('gives back the calls of a grant that lapsed unused, and never spends them in a later slot', async () => {
    const { clock, instance, counts, slot } = clockedTable();
    const budget = instance({ perMinute: 3, perHour: 100 });
    await budget.take(TENANT, 0);
    await budget.take(TENANT, 0);
    // A grant of 2 with one call left: the instance may call now without asking storage...
    expect(budget.waitTime(TENANT)).toBe(0);
    await budget.take(TENANT, 0);
    // ...and once it is spent, the three calls count until a minute after their slot ends.
    expect(budget.waitTime(TENANT)).toBe(SLOT_MS + 60_000 - 500);
    // A grant that lapses with a call left does not make that call later: the calls made count on.
    const other = '99999999-2222-3333-4444-555555555555';
    await budget.take(other, 0);
    await budget.take(other, 0);
    clock.ms += SLOT_MS;
    expect(budget.waitTime(other)).toBe(60_000 - 500);
    expect(await refusal(budget.take(other, 0))).toBeInstanceOf(BudgetSpentError);

    // With room left, a grant of 2 with one call unused when its slot ends: that call is taken off its
    // slot with the next write (which takes a grant of 4 for the busy tenant), not made later.
    const roomy = instance(limits);
    clock.ms += 10 * SLOT_MS;
    const first = slot();
    await roomy.take(TENANT, 0);
    await roomy.take(TENANT, 0);
    clock.ms += SLOT_MS;
    await roomy.take(TENANT, 0);
    expect(await counts()).toMatchObject({ [first]: [2, 0, 0], [slot()]: [4, 0, 0] });
  });

  it('counts a call until a minute after the end of its slot, never earlier', async () => {
    const { clock, instance } = clockedTable();
    for (let i = 0; i < 3; i++) await instance({ perMinute: 3, perHour: 100 }).take(TENANT, 0);
    clock.ms += 60_000;
    const late = instance({ perMinute: 3, perHour: 100 });
    const spent = await refusal(late.take(TENANT, 0));
    expect(spent).toBeInstanceOf(BudgetSpentError);
    expect((spent as BudgetSpentError).retryAfterMs).toBe(SLOT_MS - 500);
    clock.ms += SLOT_MS;
    await late.take(TENANT, 0);
  });

  it('puts a call in the slot the storage clock says, whatever the instance clock, and keeps that clock through responses without a Date header', async () => {
    const { clock, instance, counts, slot } = clockedTable();
    const traffic: Traffic = {};
    const budget = instance(limits, { skew: { ms: -45_000 }, traffic });
    await budget.take(TENANT, 0);
    expect(Object.keys(await counts())).toEqual([String(slot())]);
    traffic.noDate = true;
    clock.ms += SLOT_MS;
    await budget.take(TENANT, 0);
    clock.ms += SLOT_MS;
    await budget.take(TENANT, 0);
    expect(Object.keys(await counts())).toEqual([slot() - 2, slot() - 1, slot()].map(String));
  });

  it('follows the storage clock when the instance clock steps (an NTP correction): its next write resynchronises it', async () => {
    const { instance, clock } = clockedTable();
    const skew = { ms: 0 };
    const stepped = instance(limits, { skew });
    await stepped.take(TENANT, 0);
    skew.ms = -120_000;
    clock.ms += 1_000;
    // The first call after the step lands two minutes back (its slot was chosen before any response)...
    await stepped.take(TENANT, 0);
    let taken = 2;
    while (
      await stepped.take(TENANT, 0).then(
        () => true,
        () => false,
      )
    )
      taken += 1;
    // ...but the rest of the minute's calls count now, so another instance finds the budget spent.
    expect(taken).toBeLessThanOrEqual(14);
    const other = instance(limits);
    expect(await refusal(other.take(TENANT, 0))).toBeInstanceOf(BudgetSpentError);
  });

  it('drops slots from the entity once they leave the hour, and not while their calls still count', async () => {
    const { clock, instance, counts, slot } = clockedTable();
    const hourly = { perMinute: 12, perHour: 20 };
    const budget = instance(hourly);
    for (let i = 0; i < 10; i++) await budget.take(TENANT, 0);
    const first = slot();
    // An hour later the first slot's calls still count for 10 s (each counts from its slot's end).
    clock.ms += 3_600_000;
    await budget.take(TENANT, 0);
    expect((await counts())[first]).toEqual([10, 0, 0]);
    expect(await takeUntilSpent(instance(hourly))).toBe(20 - 11);
    clock.ms += 2 * SLOT_MS;
    await budget.take(TENANT, 0);
    expect((await counts())[first]).toBeUndefined();
  });

  it('waits for a call when the wait is exactly what the caller allows, and says how long the budget is spent for, and for whom', async () => {
    const shares = {
      perMinute: 12,
      perHour: 100,
      shares: { analystReserve: { perMinute: 3, perHour: 30 }, pushCap: { perMinute: 2, perHour: 20 } },
    };
    const { instance } = clockedTable();
    const slept: number[] = [];
    const budget = instance(shares, { slept });
    await budget.throttled(TENANT, 5_000, 'listIncidents');
    const messages = await Promise.all(
      (['poll', 'analyst', 'push'] as const).map(async (budgetClass) => {
        const err = await refusal(budget.take(TENANT, 4_999, budgetClass, 'listIncidents'));
        expect(err).toBeInstanceOf(BudgetSpentError);
        return (err as Error).message;
      }),
    );
    expect(messages).toEqual([
      `The tenant's Defender API call budget is spent for the next 5 s (counted across all instances) (tenant ${TENANT})`,
      `The tenant's Defender API call budget for analysts is spent for the next 5 s (counted across all instances) (tenant ${TENANT})`,
      `The tenant's Defender API call budget for pushed incidents is spent for the next 5 s (counted across all instances) (tenant ${TENANT})`,
    ]);
    await budget.take(TENANT, 5_000, 'poll', 'listIncidents');
    expect(slept).toEqual([5_000]);
  });

  it("records a 429 with one storage operation, and never shortens another instance's longer Retry-After", async () => {
    const { instance } = clockedTable();
    const first = instance(limits);
    await first.throttled(TENANT, 60_000, 'listIncidents');
    expect(first.stats.storageOperations).toBe(2);
    // Known counts: one write; another API has a hold of its own.
    await first.throttled(TENANT, 30_000, 'getIncident');
    expect(first.stats.storageOperations).toBe(3);
    // A shorter or equal hold seen by another instance changes nothing: its read shows the longer one.
    const second = instance(limits);
    await second.throttled(TENANT, 10_000, 'listIncidents');
    await second.throttled(TENANT, 60_000, 'listIncidents');
    expect([second.stats.storageOperations, second.stats.races]).toEqual([1, 0]);
    const third = instance(limits);
    const held = await refusal(third.take(TENANT, 0, 'poll', 'listIncidents'));
    expect((held as BudgetSpentError).retryAfterMs).toBe(60_000);
    expect(third.waitTime(TENANT, 'poll', 'getIncident')).toBe(30_000);
  });

  it('reads again and takes its grant when another instance created the entity first (409)', async () => {
    const { instance, counts, slot } = clockedTable();
    let raced = false;
    const other = instance(limits);
    const budget = instance(limits, {
      traffic: {
        beforeWrite: async () => {
          if (raced) return;
          raced = true;
          await other.take(TENANT, 0);
        },
      },
    });
    await budget.take(TENANT, 0);
    expect(budget.stats.races).toBe(1);
    expect((await counts())[slot()]).toEqual([2, 0, 0]);
  });

  it('gives up after 8 writes lost in a row with a retryable error, still holding back a 429 it could not record', async () => {
    const { instance, plain } = clockedTable();
    let touches = 0;
    const budget = instance(limits, {
      traffic: {
        beforeWrite: async () => {
          await plain.upsertEntity({ partitionKey: TENANT, rowKey: 'calls', touches: ++touches }, 'Merge');
        },
      },
    });
    await budget.throttled(TENANT, 30_000, 'listIncidents');
    expect(budget.stats.races).toBe(8);
    const held = await refusal(budget.take(TENANT, 0, 'poll', 'listIncidents'));
    expect(held).toBeInstanceOf(BudgetSpentError);
    expect((held as BudgetSpentError).retryAfterMs).toBe(30_000);
    const contended = await refusal(budget.take(TENANT, 0, 'poll', 'getIncident'));
    expect(contended).toBeInstanceOf(RetryableError);
    expect(contended).not.toBeInstanceOf(BudgetSpentError);
    expect((contended as RetryableError).message).toBe(
      `The tenant's Defender call budget is contended by other instances (8 writes lost in a row) (tenant ${TENANT})`,
    );
    expect((contended as RetryableError).retryAfterMs).toBe(SLOT_MS);
    expect(budget.stats.races).toBe(16);
  });

  it('grants nothing when storage refuses to read or write the budget: the refusal surfaces as it is', async () => {
    const unreadable = clockedTable();
    await unreadable.instance(limits).take(TENANT, 0);
    const reader = unreadable.instance(limits, { traffic: { failReads: 403 } });
    expect(await refusal(reader.take(TENANT, 0))).toMatchObject({ name: 'RestError', statusCode: 403 });
    const writer = clockedTable().instance(limits, { traffic: { failWrites: 403 } });
    const refused = await refusal(writer.take(TENANT, 0));
    expect(refused).toBeInstanceOf(RestError);
    expect(refused).toMatchObject({ statusCode: 403 });
    expect([reader.stats.calls, writer.stats.calls, writer.stats.races]).toEqual([0, 0, 0]);
  });

  it('starts afresh when the entity is deleted under it (an operator clearing the table)', async () => {
    const { instance, plain, counts, slot } = clockedTable();
    const budget = instance(limits);
    await budget.take(TENANT, 0);
    await plain.deleteEntity(TENANT, 'calls');
    // The first call's count went with the entity; the second takes the busy tenant's grant of 2.
    await budget.take(TENANT, 0);
    expect((await counts())[slot()]).toEqual([2, 0, 0]);
  });

  it('reads a corrupt or hostile entity as no calls, never as calls given back, and heals it', async () => {
    const { instance, plain, counts, slot } = clockedTable();
    await plain.createTable();
    await plain.createEntity({
      partitionKey: TENANT,
      rowKey: 'calls',
      slots: JSON.stringify({ [slot()]: [-100, '7', null] }),
      blocked: '{not json',
    });
    expect(await takeUntilSpent(instance(limits))).toBe(12);
    expect((await counts())[slot()]).toEqual([12, 0, 0]);
    await plain.updateEntity({ partitionKey: TENANT, rowKey: 'calls', slots: '"a string"', blocked: '[1]' }, 'Replace');
    expect(await takeUntilSpent(instance(limits))).toBe(12);
  });
});
