import { describe, expect, it } from 'vitest';
import { CallBudget } from '../../shared/call-budget.js';
import { RetryableError } from '../../shared/errors.js';
import { retryAfter } from '../../shared/defender-client.js';
import { minusMilliseconds, normalizeTimestamp } from '../../shared/timestamps.js';

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
});

describe('429 answers', () => {
  it('honours Retry-After in seconds or as a date, else the time stated in the body', () => {
    expect(retryAfter('7', undefined)).toBe(7_000);
    expect(retryAfter(null, 'Rate limit is exceeded. Try again in 12 seconds.')).toBe(12_000);
    expect(retryAfter(new Date(Date.now() + 30_000).toUTCString(), undefined)).toBeGreaterThan(25_000);
    expect(retryAfter(null, 'Too many requests')).toBeUndefined();
  });
});

describe('Defender timestamps', () => {
  it('normalises to seven fractional digits so that string order is time order', () => {
    expect(normalizeTimestamp('2020-09-06T14:46:57.0733333Z')).toBe('2020-09-06T14:46:57.0733333Z');
    expect(normalizeTimestamp('2020-09-06T14:46:57.29Z')).toBe('2020-09-06T14:46:57.2900000Z');
    expect(normalizeTimestamp('2020-09-06T14:46:57Z')).toBe('2020-09-06T14:46:57.0000000Z');
    expect(normalizeTimestamp('2020-09-06T14:46:57.29Z') > normalizeTimestamp('2020-09-06T14:46:57.0733333Z')).toBe(true);
    expect(minusMilliseconds('2020-09-06T14:46:57.29Z', 60_000)).toBe('2020-09-06T14:45:57.2900000Z');
    expect(() => normalizeTimestamp('yesterday')).toThrow(/Not an ISO 8601/);
  });
});
