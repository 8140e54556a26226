import { RetryableError } from '../errors.js';

/**
 * A per-tenant budget of API calls that keeps a steady state under the documented limits: the Defender
 * API's by default (50 calls a minute, 1500 an hour, per tenant and app), or another service's
 * (`BudgetLimits.service`, e.g. Microsoft Graph's GRAPH_BUDGET). It is a courtesy of this instance, not
 * a guarantee across instances: 429 answers are still honoured wherever they come from.
 *
 * The budget has three classes of calls, so that no kind of traffic can starve another:
 * - `analyst`: the analyst endpoints, on-behalf-of a signed-in analyst. They have a reservation
 *   (`ANALYST_RESERVE`) that no other class may use, and may also use whatever of the rest is free.
 * - `push`: the enrichment of pushed incidents (envelope `source: 'webhook'`). Capped (`PUSH_CAP`),
 *   within the shared rest: whoever can push cannot spend the tenant's budget.
 * - `poll`: the poller and the enrichment of polled incidents. The shared rest: the total less the
 *   analysts' reservation, less what pushes took of it.
 * Every class also stays within the total. Each limit is a sliding window (a minute and an hour).
 */
export type BudgetClass = 'poll' | 'analyst' | 'push';

export interface BudgetRate {
  perMinute: number;
  perHour: number;
}

export interface BudgetShares {
  /** Calls only analysts may make: polling and pushes together stay within the total less this. */
  analystReserve: BudgetRate;
  /** The most calls the enrichment of pushed incidents may make, taken from the shared rest. */
  pushCap: BudgetRate;
}

/** The services whose calls a budget counts, as its messages name them. */
export const BUDGETED_SERVICES = { defender: 'Defender', graph: 'Microsoft Graph' } as const;
export type BudgetedService = keyof typeof BUDGETED_SERVICES;

/** The total per tenant; without `shares`, every class takes from it alike (one window, as before the classes). */
export interface BudgetLimits extends BudgetRate {
  shares?: BudgetShares;
  /** Whose limits these are (default `defender`): named in the budget's messages, and counted apart from other services' calls. */
  service?: BudgetedService;
}

/** An analyst is a person waiting on a page: 10 a minute serves a busy analyst's clicks whatever the poller and pushers do. */
export const ANALYST_RESERVE: BudgetRate = { perMinute: 10, perHour: 300 };
/** Pushes come from outside and can come in storms: at most 10 fetches a minute for them, the poller finds the rest anyway. */
export const PUSH_CAP: BudgetRate = { perMinute: 10, perHour: 150 };

/** A little under the documented limits, leaving room for other instances and clocks that disagree. */
export const DEFAULT_BUDGET: BudgetLimits = {
  perMinute: 45,
  perHour: 1400,
  shares: { analystReserve: ANALYST_RESERVE, pushCap: PUSH_CAP },
};

/** What an API client spends its calls from: this instance's budget (`CallBudget`) or the one all instances share (`SharedCallBudget`). */
export interface ApiCallBudget {
  /** Milliseconds until the tenant may make another call of the class (0: now) to `api` (e.g. Defender's `listIncidents`), as far as this instance knows. */
  waitTime(tenantId: string, budgetClass?: BudgetClass, api?: string): number;
  /** Waits (at most `maxWaitMs`) for a call of the class to `api`, else throws a `BudgetSpentError`. */
  take(tenantId: string, maxWaitMs?: number, budgetClass?: BudgetClass, api?: string): Promise<void>;
  /** The service answered 429 to a call of `api` for the tenant: hold those calls for `retryAfterMs` (the shared budget tells every instance). */
  throttled?(tenantId: string, retryAfterMs: number, api: string): Promise<void>;
  /** Per tenant, the share of the per-minute budget used, as far as this instance knows (the budget gauge). */
  minuteShares?(): ReadonlyMap<string, number>;
}

/** The Defender client's budget (the name it had before there were other services). */
export type DefenderCallBudget = ApiCallBudget;

/** The start of the message that a class's budget is spent: "The tenant's Defender API call budget for analysts". */
export function spentBudgetName(service: BudgetedService, budgetClass: BudgetClass): string {
  const budget = `The tenant's ${BUDGETED_SERVICES[service]} API call budget`;
  if (budgetClass === 'poll') return budget;
  return `${budget} for ${budgetClass === 'push' ? 'pushed incidents' : 'analysts'}`;
}

/** The budget of a class is spent for longer than the caller would wait; `budgetClass` says which. */
export class BudgetSpentError extends RetryableError {
  constructor(
    message: string,
    readonly budgetClass: BudgetClass,
    context: { tenantId: string; retryAfterMs: number },
  ) {
    super(message, context);
  }
}

interface Window {
  /** The classes whose calls count against this window's limits. */
  counts: ReadonlySet<BudgetClass>;
  rate: BudgetRate;
}

export interface Recorded {
  at: number;
  budgetClass: BudgetClass;
}

const ALL: ReadonlySet<BudgetClass> = new Set(['poll', 'analyst', 'push']);
const NOT_ANALYST: ReadonlySet<BudgetClass> = new Set(['poll', 'push']);
const PUSH: ReadonlySet<BudgetClass> = new Set(['push']);

export class CallBudget implements ApiCallBudget {
  readonly #calls = new Map<string, Recorded[]>();
  /** The windows each class must fit in. */
  readonly #windows: Record<BudgetClass, Window[]>;

  constructor(
    private readonly limits: BudgetLimits = DEFAULT_BUDGET,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    const total: Window = { counts: ALL, rate: limits };
    const shares = limits.shares;
    if (!shares) {
      this.#windows = { poll: [total], analyst: [total], push: [total] };
      return;
    }
    const { analystReserve, pushCap } = shares;
    if (analystReserve.perMinute >= limits.perMinute || analystReserve.perHour >= limits.perHour) {
      throw new Error(
        `The analysts' reservation (${analystReserve.perMinute}/min, ${analystReserve.perHour}/h) must leave polling some of the total (${limits.perMinute}/min, ${limits.perHour}/h)`,
      );
    }
    const sharedRest: Window = {
      counts: NOT_ANALYST,
      rate: {
        perMinute: limits.perMinute - analystReserve.perMinute,
        perHour: limits.perHour - analystReserve.perHour,
      },
    };
    this.#windows = {
      analyst: [total],
      poll: [total, sharedRest],
      push: [total, sharedRest, { counts: PUSH, rate: pushCap }],
    };
  }

  /** Milliseconds until the tenant may make another call of the class (0: now). */
  waitTime(tenantId: string, budgetClass: BudgetClass = 'poll'): number {
    const now = this.now();
    const calls = this.#recent(tenantId, now);
    let wait = 0;
    for (const { counts, rate } of this.#windows[budgetClass]) {
      const inHour = calls.filter((c) => counts.has(c.budgetClass)).map((c) => c.at);
      // Stryker disable next-line MethodExpression,ConditionalExpression,EqualityOperator: equivalent: calls are in time order, so the perMinute-th newest is the same with or without older calls, and one a minute old or older gives a wait <= 0
      const inMinute = inHour.filter((t) => t > now - 60_000);
      if (inMinute.length >= rate.perMinute)
        wait = Math.max(wait, (inMinute[inMinute.length - rate.perMinute] ?? now) + 60_000 - now);
      if (inHour.length >= rate.perHour)
        wait = Math.max(wait, (inHour[inHour.length - rate.perHour] ?? now) + 3_600_000 - now);
    }
    return wait;
  }

  /** Takes a call of the class from the budget if one is free now; false when it is spent (optional calls are skipped). */
  tryTake(tenantId: string, budgetClass: BudgetClass = 'poll'): boolean {
    if (this.waitTime(tenantId, budgetClass) > 0) return false;
    this.#record(tenantId, budgetClass);
    return true;
  }

  /** Waits (at most `maxWaitMs`) for a call of the class; past that, a `BudgetSpentError` (retryable) so the work resumes later. */
  async take(tenantId: string, maxWaitMs = 20_000, budgetClass: BudgetClass = 'poll'): Promise<void> {
    for (;;) {
      const wait = this.waitTime(tenantId, budgetClass);
      if (wait === 0) return this.#record(tenantId, budgetClass);
      if (wait > maxWaitMs) {
        const which = spentBudgetName(this.limits.service ?? 'defender', budgetClass);
        throw new BudgetSpentError(`${which} is spent for the next ${Math.ceil(wait / 1000)} s`, budgetClass, {
          tenantId,
          retryAfterMs: wait,
        });
      }
      await this.sleep(wait);
    }
  }

  /** Replaces what the budget knows of the tenant's calls (oldest first): the shared budget applies these rules to the counts of every instance. */
  load(tenantId: string, calls: readonly Recorded[]): void {
    this.#calls.set(tenantId, [...calls]);
  }

  #recent(tenantId: string, now: number): Recorded[] {
    // Stryker disable next-line MethodExpression,ConditionalExpression,EqualityOperator: forgetting only bounds memory: waits come from the perHour-th newest call, and one an hour old or older gives a wait <= 0
    const calls = (this.#calls.get(tenantId) ?? []).filter((c) => c.at > now - 3_600_000);
    this.#calls.set(tenantId, calls);
    return calls;
  }

  #record(tenantId: string, budgetClass: BudgetClass): void {
    const calls = this.#calls.get(tenantId) ?? [];
    calls.push({ at: this.now(), budgetClass });
    this.#calls.set(tenantId, calls);
  }
}
