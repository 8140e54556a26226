import { TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { BudgetSpentError, type BudgetClass, type BudgetLimits } from '../../shared/call-budget.js';
import { SharedCallBudget, SLOT_MS } from '../../shared/shared-budget.js';

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
    const refusal = await late.take(TENANT, 0).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refusal).toBeInstanceOf(BudgetSpentError);
    expect((refusal as BudgetSpentError).retryAfterMs).toBeGreaterThan(40_000);
    expect((refusal as BudgetSpentError).retryAfterMs).toBeLessThanOrEqual(70_000);
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
    // One read, then grants of 1, 2, 4 and 5 calls: about a quarter of an operation per call.
    expect(budget.stats.storageOperations / budget.stats.calls).toBeLessThanOrEqual(0.35);
  });

  it('stops every instance calling an API Defender answered 429 for the tenant, until its Retry-After; other APIs and tenants go on', async () => {
    const client = table();
    const throttledOne = new SharedCallBudget(client, { limits });
    const other = new SharedCallBudget(client, { limits });
    await throttledOne.throttled(TENANT, 30_000, 'listIncidents');
    const refusal = await other.take(TENANT, 1_000, 'poll', 'listIncidents').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refusal).toBeInstanceOf(BudgetSpentError);
    expect((refusal as BudgetSpentError).retryAfterMs).toBeGreaterThan(25_000);
    expect(other.waitTime(TENANT, 'poll', 'listIncidents')).toBeGreaterThan(25_000);
    // Each Defender API has limits of its own; other tenants are not held back either.
    await other.take(TENANT, 0, 'poll', 'updateIncident');
    await other.take('99999999-2222-3333-4444-555555555555', 0, 'poll', 'listIncidents');
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
