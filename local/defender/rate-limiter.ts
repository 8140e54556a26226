/**
 * Rolling-window limits per key (the Defender API counts per tenant and per app): a call is
 * admitted when fewer than `limit` admitted calls fall in the last `windowMs` for every window.
 * Throttled calls are not recorded, so a client that waits the advertised time gets through.
 */

export interface RateWindow {
  limit: number;
  windowMs: number;
}

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export class RateLimiter {
  readonly #windows: RateWindow[];
  readonly #now: () => number;
  readonly #longestMs: number;
  /** Admission times per key, oldest first, trimmed to the longest window. */
  #admitted = new Map<string, number[]>();

  constructor(windows: RateWindow[], now: () => number = Date.now) {
    this.#windows = windows;
    this.#now = now;
    this.#longestMs = Math.max(...windows.map((w) => w.windowMs));
  }

  /** Admits and records the call, or says how many whole seconds until one would be admitted. */
  tryAcquire(key: string): RateDecision {
    return acquireAll([this], key);
  }

  /** Milliseconds until this key's next call would be admitted (0: now); records nothing. */
  waitMs(key: string): number {
    const now = this.#now();
    const times = (this.#admitted.get(key) ?? []).filter((t) => t > now - this.#longestMs);
    this.#admitted.set(key, times);
    let waitMs = 0;
    for (const { limit, windowMs } of this.#windows) {
      const inWindow = times.filter((t) => t > now - windowMs);
      if (inWindow.length >= limit) {
        // Enough of the oldest calls must leave the window for the count to drop below the limit.
        const mustExpire = inWindow[inWindow.length - limit] as number;
        waitMs = Math.max(waitMs, mustExpire + windowMs - now);
      }
    }
    return waitMs;
  }

  /** Records an admitted call. */
  record(key: string): void {
    const times = this.#admitted.get(key) ?? [];
    times.push(this.#now());
    this.#admitted.set(key, times);
  }

  reset(): void {
    this.#admitted.clear();
  }
}

/**
 * A call that several quotas count (get incident: the incidents API's shared one and its own) is
 * admitted only when every one of them admits it, and is then recorded in each; refused, it is
 * recorded in none, and the wait is the longest any of them asks.
 */
export function acquireAll(limiters: readonly RateLimiter[], key: string): RateDecision {
  const waitMs = Math.max(0, ...limiters.map((limiter) => limiter.waitMs(key)));
  if (waitMs > 0) return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  for (const limiter of limiters) limiter.record(key);
  return { allowed: true };
}
