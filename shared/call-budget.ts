import { RetryableError } from './errors.js';

/**
 * A per-tenant budget of Defender API calls that keeps a steady state under the documented limits
 * (50 calls a minute, 1500 an hour, per tenant and app). It is a courtesy of this instance, not a
 * guarantee across instances: 429 answers are still honoured wherever they come from.
 */
export interface BudgetLimits {
  perMinute: number;
  perHour: number;
}

/** A little under the documented limits, leaving room for other instances and clocks that disagree. */
export const DEFAULT_BUDGET: BudgetLimits = { perMinute: 45, perHour: 1400 };

export class CallBudget {
  readonly #calls = new Map<string, number[]>();

  constructor(
    private readonly limits: BudgetLimits = DEFAULT_BUDGET,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  /** Milliseconds until the tenant may make another call (0: now). */
  waitTime(tenantId: string): number {
    const now = this.now();
    const calls = this.#recent(tenantId, now);
    const inMinute = calls.filter((t) => t > now - 60_000);
    let wait = 0;
    if (inMinute.length >= this.limits.perMinute) wait = Math.max(wait, inMinute[inMinute.length - this.limits.perMinute]! + 60_000 - now);
    if (calls.length >= this.limits.perHour) wait = Math.max(wait, calls[calls.length - this.limits.perHour]! + 3_600_000 - now);
    return wait;
  }

  /** Takes a call from the budget if one is free now; false when it is spent (optional calls are skipped). */
  tryTake(tenantId: string): boolean {
    if (this.waitTime(tenantId) > 0) return false;
    this.#record(tenantId);
    return true;
  }

  /** Waits (at most `maxWaitMs`) for a call; past that, a retryable error so the work resumes later. */
  async take(tenantId: string, maxWaitMs = 20_000): Promise<void> {
    for (;;) {
      const wait = this.waitTime(tenantId);
      if (wait === 0) return this.#record(tenantId);
      if (wait > maxWaitMs) {
        throw new RetryableError(`The tenant's Defender API call budget is spent for the next ${Math.ceil(wait / 1000)} s`, { tenantId, retryAfterMs: wait });
      }
      await this.sleep(wait);
    }
  }

  #recent(tenantId: string, now: number): number[] {
    const calls = (this.#calls.get(tenantId) ?? []).filter((t) => t > now - 3_600_000);
    this.#calls.set(tenantId, calls);
    return calls;
  }

  #record(tenantId: string): void {
    const calls = this.#calls.get(tenantId) ?? [];
    calls.push(this.now());
    this.#calls.set(tenantId, calls);
  }
}
