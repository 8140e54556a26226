import { throttled } from './errors.js';

/**
 * "Maximum data/minute per DCR: 2 GB for both compressed and uncompressed data. Retry after the duration
 * listed in the Retry-After header in the response." and "Maximum requests/minute per DCR: 12,000. Retry
 * after the duration listed in the Retry-After header in the response." (Azure Monitor service limits,
 * "Logs Ingestion API"). Counted per rule over the last 60 seconds; tests lower them to reach them.
 */
export interface RateLimits {
  requestsPerMinute: number;
  bytesPerMinute: number;
}

export const DOCUMENTED_LIMITS: RateLimits = { requestsPerMinute: 12_000, bytesPerMinute: 2 * 1024 ** 3 };

const WINDOW_MS = 60_000;

export class RateWindow {
  readonly #calls = new Map<string, { at: number; bytes: number }[]>();

  constructor(
    public limits: RateLimits = DOCUMENTED_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts a call of `bytes` to the rule, or throws 429 with the seconds until the window has room again. */
  admit(immutableId: string, bytes: number): void {
    const now = this.now();
    const calls = (this.#calls.get(immutableId) ?? []).filter((c) => c.at > now - WINDOW_MS);
    this.#calls.set(immutableId, calls);
    const retryAfter = () => Math.max(1, Math.ceil((calls[0]!.at + WINDOW_MS - now) / 1000));
    if (calls.length >= this.limits.requestsPerMinute)
      throw throttled(`${this.limits.requestsPerMinute} requests`, retryAfter());
    const used = calls.reduce((sum, c) => sum + c.bytes, 0);
    if (calls.length > 0 && used + bytes > this.limits.bytesPerMinute)
      throw throttled(`${this.limits.bytesPerMinute} bytes`, retryAfter());
    calls.push({ at: now, bytes });
  }

  reset(): void {
    this.#calls.clear();
  }
}
