import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../local/defender/rate-limiter.js';

function documentedLimiter() {
  let now = 1_700_000_000_000;
  const limiter = new RateLimiter(
    [
      { limit: 50, windowMs: 60_000 },
      { limit: 1500, windowMs: 3_600_000 },
    ],
    () => now,
  );
  return { limiter, advance: (ms: number) => (now += ms) };
}

describe('the rate limiter', () => {
  it('admits 50 calls in a minute and throttles the 51st until the oldest leaves the window', () => {
    const { limiter, advance } = documentedLimiter();
    for (let i = 0; i < 50; i += 1) {
      expect(limiter.tryAcquire('t|c').allowed).toBe(true);
      advance(100); // 50 calls over 5 s: the first was 5 s ago
    }
    expect(limiter.tryAcquire('t|c')).toEqual({ allowed: false, retryAfterSeconds: 55 });
    advance(54_900);
    expect(limiter.tryAcquire('t|c').allowed).toBe(false);
    advance(100); // exactly 60 s after the first call
    expect(limiter.tryAcquire('t|c').allowed).toBe(true);
    expect(limiter.tryAcquire('t|c').allowed).toBe(false);
  });

  it('rounds Retry-After up to whole seconds and never below 1', () => {
    const { limiter, advance } = documentedLimiter();
    for (let i = 0; i < 50; i += 1) limiter.tryAcquire('k');
    advance(59_999);
    expect(limiter.tryAcquire('k')).toEqual({ allowed: false, retryAfterSeconds: 1 });
    advance(-59_998);
    expect(limiter.tryAcquire('k')).toEqual({ allowed: false, retryAfterSeconds: 60 });
  });

  it('does not count throttled calls, so waiting the advertised time is enough', () => {
    const { limiter, advance } = documentedLimiter();
    for (let i = 0; i < 50; i += 1) limiter.tryAcquire('k');
    for (let i = 0; i < 100; i += 1) expect(limiter.tryAcquire('k').allowed).toBe(false);
    advance(60_000);
    for (let i = 0; i < 50; i += 1) expect(limiter.tryAcquire('k').allowed).toBe(true);
  });

  it('admits 1500 calls in an hour and then throttles until the hour rolls', () => {
    const { limiter, advance } = documentedLimiter();
    // 50 calls per minute for 30 minutes: within the minute limit, at the hour limit.
    for (let minute = 0; minute < 30; minute += 1) {
      for (let i = 0; i < 50; i += 1) expect(limiter.tryAcquire('k').allowed).toBe(true);
      advance(60_000);
    }
    const refused = limiter.tryAcquire('k');
    expect(refused.allowed).toBe(false);
    // The first calls were made 30 minutes ago: they leave the hour window in 30 minutes.
    expect(refused).toEqual({ allowed: false, retryAfterSeconds: 30 * 60 });
    advance(30 * 60_000 - 1000);
    expect(limiter.tryAcquire('k').allowed).toBe(false);
    advance(1000);
    expect(limiter.tryAcquire('k').allowed).toBe(true);
  });

  it('keeps separate budgets per key (tenant and app)', () => {
    const { limiter } = documentedLimiter();
    for (let i = 0; i < 50; i += 1) limiter.tryAcquire('tenantA|app');
    expect(limiter.tryAcquire('tenantA|app').allowed).toBe(false);
    expect(limiter.tryAcquire('tenantB|app').allowed).toBe(true);
    expect(limiter.tryAcquire('tenantA|otherApp').allowed).toBe(true);
    limiter.reset();
    expect(limiter.tryAcquire('tenantA|app').allowed).toBe(true);
  });
});
