import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ANALYST_RESERVE,
  BudgetSpentError,
  CallBudget,
  DEFAULT_BUDGET,
  PUSH_CAP,
  type BudgetClass,
} from '../../../shared/sources/call-budget.js';
import { RetryableError } from '../../../shared/errors.js';
import { DefenderClient, retryAfter } from '../../../shared/sources/defender/client.js';
import type { Tenant } from '../../../shared/tenants/tenants.js';
import { minusMilliseconds, normalizeTimestamp } from '../../../shared/timestamps.js';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms), sleep: async (ms: number) => void (now += ms) };
}

describe('per-tenant call budget', () => {
  it('allows the minute limit, then says how long to wait', () => {
    const c = clock();
    const budget = new CallBudget({ perMinute: 45, perHour: 1400 }, c.now, c.sleep);
    for (let i = 0; i < 45; i++) expect(budget.tryTake('t1')).toBe(true);
    expect(budget.tryTake('t1')).toBe(false);
    expect(budget.waitTime('t1')).toBe(60_000);
    expect(budget.tryTake('t2')).toBe(true); // another tenant is unaffected
    c.advance(60_001);
    expect(budget.tryTake('t1')).toBe(true);
  });

  it('keeps a steady state under the hourly limit', async () => {
    const c = clock();
    const budget = new CallBudget({ perMinute: 45, perHour: 1400 }, c.now, c.sleep);
    const started = c.now();
    for (let i = 0; i < 1500; i++) await budget.take('t1', Infinity);
    // 1500 calls cannot fit in one rolling hour under a 1400 budget.
    expect(c.now() - started).toBeGreaterThan(3_600_000);
  });

  it('gives the work back with a retryable error when the wait is too long', async () => {
    const c = clock();
    const budget = new CallBudget({ perMinute: 1, perHour: 10 }, c.now, c.sleep);
    await budget.take('t1');
    const error = await budget.take('t1', 5_000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect((error as RetryableError).retryAfterMs).toBe(60_000);
    expect((error as RetryableError).tenantId).toBe('t1');
  });

  it('serves a caller who will wait exactly as long as the budget needs', async () => {
    const c = clock();
    const budget = new CallBudget({ perMinute: 1, perHour: 10 }, c.now, c.sleep);
    await budget.take('t1');
    await budget.take('t1', 60_000);
    expect(c.now()).toBe(1_060_000);
  });

  it('frees a call when the minute or the hour since it has passed, to the millisecond, and forgets calls an hour old', () => {
    const c = clock();
    const budget = new CallBudget({ perMinute: 2, perHour: 3 }, c.now, c.sleep);
    expect(budget.tryTake('t1')).toBe(true);
    expect(budget.tryTake('t1')).toBe(true);
    c.advance(59_999);
    expect(budget.waitTime('t1')).toBe(1);
    c.advance(1);
    expect(budget.tryTake('t1')).toBe(true); // the minute's two calls are a minute old: free
    // The hour is full (3): the next call waits until the first two are an hour old.
    expect(budget.tryTake('t1')).toBe(false);
    expect(budget.waitTime('t1')).toBe(3_540_000);
    c.advance(3_539_999);
    expect(budget.waitTime('t1')).toBe(1);
    c.advance(1);
    expect(budget.tryTake('t1')).toBe(true);
    expect(budget.tryTake('t1')).toBe(true); // both calls of the first minute are forgotten
    // Now the third call (made at minute 1) is the oldest of the hour: it frees the next in a minute.
    expect(budget.waitTime('t1')).toBe(60_000);
  });

  it('waits on a timer by default: the event loop stays free while a call waits for the budget', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    try {
      let reads = 0;
      const now = () => {
        if (++reads > 100) throw new Error('the budget reads the clock in a loop instead of sleeping');
        return Date.now();
      };
      const budget = new CallBudget({ perMinute: 1, perHour: 10 }, now);
      await budget.take('t1');
      let served = false;
      const second = budget.take('t1', 60_000).then(() => void (served = true));
      await vi.advanceTimersByTimeAsync(59_999);
      expect(served).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await second;
      expect(served).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('budget classes: poll, analyst and push shares of one tenant budget', () => {
  /** Takes calls of one class until the budget refuses one; how many it gave. */
  const takeAll = (budget: CallBudget, cls: BudgetClass, tenantId = 't1') => {
    let n = 0;
    while (budget.tryTake(tenantId, cls)) n += 1;
    return n;
  };

  it('has the documented shares: an analyst reservation and a push cap inside 45/min and 1400/h', () => {
    expect(DEFAULT_BUDGET).toMatchObject({
      perMinute: 45,
      perHour: 1400,
      shares: { analystReserve: ANALYST_RESERVE, pushCap: PUSH_CAP },
    });
    expect(ANALYST_RESERVE).toEqual({ perMinute: 10, perHour: 300 });
    expect(PUSH_CAP).toEqual({ perMinute: 10, perHour: 150 });
  });

  it('caps push-triggered calls, and a push storm leaves polling and analysts their calls', () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    expect(takeAll(budget, 'push')).toBe(10);
    expect(budget.waitTime('t1', 'push')).toBe(60_000);
    expect(budget.waitTime('t1', 'poll')).toBe(0);
    expect(budget.waitTime('t1', 'analyst')).toBe(0);
    expect(takeAll(budget, 'poll')).toBe(25); // the shared rest: 45 - 10 reserved - 10 pushed
    expect(takeAll(budget, 'analyst')).toBe(10); // the reservation is intact
    expect(budget.tryTake('t2', 'push')).toBe(true); // another tenant is unaffected
  });

  it('never lets polling or pushes take the analysts’ reservation, in a minute or in an hour', () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    expect(takeAll(budget, 'poll')).toBe(35);
    expect(budget.tryTake('t1', 'push')).toBe(false);
    expect(budget.waitTime('t1', 'poll')).toBe(60_000);
    expect(takeAll(budget, 'analyst')).toBe(10);
    expect(budget.waitTime('t1', 'analyst')).toBe(60_000);

    // Over an hour, polling and pushes together stop at 1400 - 300: the analysts keep 300.
    const hourly = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    let others = 0;
    for (let minute = 0; minute < 60; minute++) {
      if (minute > 0) c.advance(60_000);
      others += takeAll(hourly, 'push') + takeAll(hourly, 'poll');
    }
    expect(others).toBe(1100);
    expect(hourly.tryTake('t1', 'poll')).toBe(false);
    // The hour's last minute: polling is stopped by the hour, the analysts may use the whole minute.
    expect(takeAll(hourly, 'analyst')).toBe(45);
  });

  it('keeps the analysts’ 300 an hour against a whole hour of polling and pushes', () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    const started = c.now();
    const taken: Record<BudgetClass, number> = { poll: 0, push: 0, analyst: 0 };
    // Every 2 s for an hour, each class asks for a call; the sum stays within the limits and the analysts get theirs.
    while (c.now() - started < 3_600_000) {
      for (const cls of ['push', 'poll', 'analyst'] as const) if (budget.tryTake('t1', cls)) taken[cls] += 1;
      c.advance(2_000);
    }
    expect(taken.push).toBeLessThanOrEqual(150);
    expect(taken.push + taken.poll).toBeLessThanOrEqual(1100);
    expect(taken.push + taken.poll + taken.analyst).toBeLessThanOrEqual(1400);
    expect(taken.analyst).toBeGreaterThanOrEqual(300);
  });

  it('lets analysts use the shared rest when nobody else needs it, never more than the total', () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    expect(takeAll(budget, 'analyst')).toBe(45);
    expect(budget.waitTime('t1', 'poll')).toBe(60_000);
    expect(budget.waitTime('t1', 'push')).toBe(60_000);
  });

  it('says per class how long to wait: the push cap lapses first, the shared rest later', () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    takeAll(budget, 'push'); // 10 pushes at t0
    c.advance(30_000);
    takeAll(budget, 'poll'); // 25 polls at t0 + 30 s
    expect(budget.waitTime('t1', 'push')).toBe(30_000); // the push cap frees at t0 + 60 s...
    expect(budget.waitTime('t1', 'poll')).toBe(30_000); // ...and with it the shared rest
    c.advance(30_001);
    expect(budget.waitTime('t1', 'push')).toBe(0);
    expect(takeAll(budget, 'push')).toBe(10);
    expect(budget.waitTime('t1', 'poll')).toBe(29_999); // the next frees when the polls' minute ends
    expect(budget.waitTime('t1', 'analyst')).toBe(0);
  });

  it('a push-class take waits for nothing when asked not to: it fails at once with a BudgetSpentError naming the class', async () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    takeAll(budget, 'push');
    const error = await budget.take('t1', 0, 'push').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BudgetSpentError);
    expect(error).toBeInstanceOf(RetryableError);
    expect((error as BudgetSpentError).budgetClass).toBe('push');
    expect(c.now()).toBe(1_000_000); // no time passed: nothing waited
    await budget.take('t1', 0, 'analyst'); // the analysts are served at once
  });

  it('tells the operator whose share is spent and for how many seconds, rounded up', async () => {
    const c = clock();
    const budget = new CallBudget(DEFAULT_BUDGET, c.now, c.sleep);
    const refusal = async (cls: BudgetClass) =>
      (await budget.take('t1', 0, cls).catch((e: unknown) => e)) as BudgetSpentError;
    takeAll(budget, 'push'); // 10 pushes at t0
    c.advance(30_999); // each share frees 29.001 s from now, when the pushes are a minute old
    let error = await refusal('push');
    expect(error.message).toBe(
      "The tenant's Defender API call budget for pushed incidents is spent for the next 30 s (tenant t1)",
    );
    expect(error.retryAfterMs).toBe(29_001);
    takeAll(budget, 'poll');
    error = await refusal('poll');
    expect(error.message).toBe("The tenant's Defender API call budget is spent for the next 30 s (tenant t1)");
    expect(error.budgetClass).toBe('poll');
    takeAll(budget, 'analyst');
    error = await refusal('analyst');
    expect(error.message).toBe(
      "The tenant's Defender API call budget for analysts is spent for the next 30 s (tenant t1)",
    );
    expect(error.budgetClass).toBe('analyst');
  });

  it("names the service whose budget is spent: Microsoft Graph's budget is Graph's", async () => {
    const c = clock();
    const budget = new CallBudget({ ...DEFAULT_BUDGET, service: 'graph' }, c.now, c.sleep);
    const refusal = async (cls: BudgetClass) =>
      ((await budget.take('t1', 0, cls).catch((e: unknown) => e)) as BudgetSpentError).message;
    takeAll(budget, 'push');
    expect(await refusal('push')).toBe(
      "The tenant's Microsoft Graph API call budget for pushed incidents is spent for the next 60 s (tenant t1)",
    );
    takeAll(budget, 'poll');
    expect(await refusal('poll')).toBe(
      "The tenant's Microsoft Graph API call budget is spent for the next 60 s (tenant t1)",
    );
    takeAll(budget, 'analyst');
    expect(await refusal('analyst')).toBe(
      "The tenant's Microsoft Graph API call budget for analysts is spent for the next 60 s (tenant t1)",
    );
  });

  it('with plain limits and no shares, every class takes from one window, as before', () => {
    const c = clock();
    const budget = new CallBudget({ perMinute: 3, perHour: 10 }, c.now, c.sleep);
    expect(budget.tryTake('t1', 'push')).toBe(true);
    expect(budget.tryTake('t1', 'poll')).toBe(true);
    expect(budget.tryTake('t1', 'analyst')).toBe(true);
    expect(budget.tryTake('t1', 'analyst')).toBe(false);
    expect(budget.tryTake('t1', 'push')).toBe(false);
    expect(budget.tryTake('t1', 'poll')).toBe(false);
    for (const cls of ['poll', 'analyst', 'push'] as const) expect(budget.waitTime('t1', cls)).toBe(60_000);
  });

  it('refuses shares that leave polling nothing', () => {
    expect(
      () =>
        new CallBudget({
          perMinute: 45,
          perHour: 1400,
          shares: { analystReserve: { perMinute: 45, perHour: 300 }, pushCap: PUSH_CAP },
        }),
    ).toThrow(/reserv/);
  });

  it('refuses a reservation that leaves polling nothing in the hour, though some in the minute, saying what it must leave', () => {
    expect(
      () =>
        new CallBudget({
          perMinute: 45,
          perHour: 1400,
          shares: { analystReserve: { perMinute: 10, perHour: 1400 }, pushCap: PUSH_CAP },
        }),
    ).toThrow("The analysts' reservation (10/min, 1400/h) must leave polling some of the total (45/min, 1400/h)");
    // One call an hour left is some.
    expect(
      () =>
        new CallBudget({
          perMinute: 45,
          perHour: 1400,
          shares: { analystReserve: { perMinute: 10, perHour: 1399 }, pushCap: PUSH_CAP },
        }),
    ).not.toThrow();
  });
});

describe('DefenderClient budget classes', () => {
  afterEach(() => vi.unstubAllGlobals());
  const tenant = { tenantId: 't1', displayName: 'T1' } as Tenant;
  const tokens = { getToken: async () => 'token', invalidate: () => undefined };

  it('gives views of one client per class, sharing its budget, tokens and call counters', async () => {
    const fetch = vi.fn(
      async () =>
        new Response(JSON.stringify({ incidentId: 1, lastUpdateTime: '2024-01-01T00:00:00Z' }), { status: 200 }),
    );
    vi.stubGlobal('fetch', fetch);
    const c = clock();
    const client = new DefenderClient({
      apiUrl: 'https://defender.example',
      tokens,
      budget: new CallBudget(DEFAULT_BUDGET, c.now, c.sleep),
      sleep: c.sleep,
    });
    const push = client.withBudgetClass('push');
    expect(client.budgetClass).toBe('poll');
    expect(push.budgetClass).toBe('push');
    expect(push.budget).toBe(client.budget);
    expect(client.withBudgetClass('push')).toBe(push);
    expect(push.withBudgetClass('poll')).toBe(client);
    for (let i = 0; i < PUSH_CAP.perMinute; i++) await push.getIncident(tenant, 1);
    // The push share is spent: the next push call fails at once, without a request and without waiting.
    const error = await push.getIncident(tenant, 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BudgetSpentError);
    expect(c.now()).toBe(1_000_000);
    expect(fetch).toHaveBeenCalledTimes(PUSH_CAP.perMinute);
    await client.getIncident(tenant, 1); // polling still has the shared rest
    expect(client.calls.get('t1')).toBe(PUSH_CAP.perMinute + 1);
    expect(push.calls).toBe(client.calls);
  });
});

describe('429 answers', () => {
  it('honours Retry-After in seconds or as a date, else the time stated in the body', () => {
    expect(retryAfter('7', undefined)).toBe(7_000);
    expect(retryAfter(null, 'Rate limit is exceeded. Try again in 12 seconds.')).toBe(12_000);
    expect(retryAfter(new Date(Date.now() + 30_000).toUTCString(), undefined)).toBeGreaterThan(25_000);
    expect(retryAfter(null, 'Too many requests')).toBeUndefined();
    // Advanced hunting's CPU quota says its wait as a TimeSpan after "in"; a window length elsewhere is not a wait.
    expect(
      retryAfter(
        null,
        'You have exceeded processing resources allocated to this tenant. You can run queries again in 00:14:59.',
      ),
    ).toBe(899_000);
    expect(retryAfter(null, 'You can run queries again in 1.02:00:30.5000000.')).toBe((86_400 + 7_200 + 30) * 1000);
    expect(retryAfter(null, 'API calls quota exceeded! maximum allowed 45 per 00:01:00')).toBeUndefined();
  });
});

describe('Defender timestamps', () => {
  it('normalises to seven fractional digits so that string order is time order', () => {
    expect(normalizeTimestamp('2020-09-06T14:46:57.0733333Z')).toBe('2020-09-06T14:46:57.0733333Z');
    expect(normalizeTimestamp('2020-09-06T14:46:57.29Z')).toBe('2020-09-06T14:46:57.2900000Z');
    expect(normalizeTimestamp('2020-09-06T14:46:57Z')).toBe('2020-09-06T14:46:57.0000000Z');
    expect(normalizeTimestamp('2020-09-06T14:46:57.29Z') > normalizeTimestamp('2020-09-06T14:46:57.0733333Z')).toBe(
      true,
    );
    expect(minusMilliseconds('2020-09-06T14:46:57.29Z', 60_000)).toBe('2020-09-06T14:45:57.2900000Z');
    expect(() => normalizeTimestamp('yesterday')).toThrow(/Not an ISO 8601/);
  });
});
