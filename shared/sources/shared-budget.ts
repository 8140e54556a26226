import { RestError, type TableClient } from '@azure/data-tables';
import type { FullOperationResponse } from '@azure/core-client';
import {
  BUDGETED_SERVICES,
  BudgetSpentError,
  CallBudget,
  DEFAULT_BUDGET,
  spentBudgetName,
  type BudgetClass,
  type BudgetedService,
  type BudgetLimits,
} from './call-budget.js';
import { RetryableError } from '../errors.js';
import { LazyTable } from '../storage/table.js';

/**
 * The per-tenant call budget of `call-budget.ts`, shared by every instance of the app: one Table
 * entity per tenant and service counts the calls all instances made, in 10-second slots, for the last
 * hour (the Defender API's in row `calls`, another service's in a row of its own: their limits differ).
 *
 * - An instance takes calls in grants: it adds a grant to the current slot with an ETag-conditional
 *   write (one storage operation), and spends it without storage until the slot ends. A grant starts
 *   at one call and doubles (up to `MAX_GRANT`) while the instance keeps using them up, so a busy
 *   tenant costs about one write per ten calls, a quiet one one write per call. A write that loses a
 *   race (412) reads the entity again and retries: the counts never exceed the limits.
 * - A call counts at the end of its slot, so it leaves the minute (and hour) window no earlier than
 *   it really should; unused calls of a grant stay counted until then (the cost of cheap grants).
 * - Time is the storage service's (its `Date` header), not the instance's clock: instances whose
 *   clocks disagree still agree on slots.
 * - Nothing is held: a crashed instance's grant simply lapses with its slot.
 * - A 429 from the service (`throttled`) is written for all instances: none calls that API of the
 *   tenant before its Retry-After has passed (each Defender API has limits of its own). An instance
 *   learns of it with its next write, so at most the rest of its grant (one slot) goes out first.
 */
export const CALL_BUDGET_TABLE = 'callbudget';
/** Each service's row; Defender's keeps the name it had alone (`budget-usage.ts` reads it). */
/** Each service's counts are a row of their own in the tenant's partition. */
export const BUDGET_ROWS: Record<BudgetedService, string> = { defender: 'calls', graph: 'graph-calls' };
export const SLOT_MS = 10_000;
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/**
 * The most calls one grant holds. Larger grants cost fewer writes, and fewer races between instances
 * (each write makes the others' view stale: their next write loses and reads again), but a grant's
 * unused calls count for every instance until this one's next write gives them back (or they leave
 * the minute window). Ten is a little under a quarter of the 45 a minute (`npm run bench`, figure 4b).
 */
export const MAX_GRANT = 10;
/** Lost races in a row before the take is given back as retryable (a storm of instances on one tenant). */
const MAX_RACES = 8;
const CLASSES: readonly BudgetClass[] = ['poll', 'analyst', 'push'];

interface BudgetEntity {
  partitionKey: string;
  rowKey: string;
  /** JSON: slot number → calls per class, in the order of CLASSES. */
  slots: string;
  /** JSON: API → epoch ms (storage time) before which no instance calls it for the tenant (a 429's Retry-After). */
  blocked: string;
}

interface Grant {
  slot: number;
  left: number;
  size: number;
}

interface TenantState {
  /** undefined: not read yet; null: no entity exists. */
  etag?: string | null;
  slots: Map<number, number[]>;
  blocked: Map<string, number>;
  grants: Map<BudgetClass, Grant>;
  /** Calls of lapsed grants this instance never made, per slot and class: given back with its next write. */
  unused: Map<number, number[]>;
  /** Storage work for this tenant runs one at a time in this instance. */
  queue: Promise<unknown>;
}

export interface SharedBudgetOptions {
  limits?: BudgetLimits;
  /** The instance's clock; storage time is derived from it and the service's Date header. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface SharedBudgetStats {
  /** Calls taken from the budget. */
  calls: number;
  /** Storage operations made for them (reads and writes). */
  storageOperations: number;
  /** Writes that lost a race to another instance. */
  races: number;
}

export class SharedCallBudget {
  readonly #table: LazyTable;
  readonly #limits: BudgetLimits;
  readonly #service: BudgetedService;
  readonly #row: string;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #tenants = new Map<string, TenantState>();
  /** Storage time minus this instance's time, from the last response's Date header. */
  #offsetMs = 0;
  readonly stats: SharedBudgetStats = { calls: 0, storageOperations: 0, races: 0 };

  constructor(table: TableClient, options: SharedBudgetOptions = {}) {
    this.#table = new LazyTable(table);
    this.#limits = options.limits ?? DEFAULT_BUDGET;
    this.#service = this.#limits.service ?? 'defender';
    this.#row = BUDGET_ROWS[this.#service];
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    // Checks the shares once, as the per-instance budget does.
    new CallBudget(this.#limits);
  }

  /**
   * Milliseconds until the tenant may make another call of the class, from what this instance last
   * saw of the shared counts (0 when it has a grant left, or has not read them yet): for deciding to
   * skip an optional call, not a promise that `take` will not wait.
   */
  waitTime(tenantId: string, budgetClass: BudgetClass = 'poll', api?: string): number {
    const state = this.#tenants.get(tenantId);
    if (!state) return 0;
    const now = this.#storageNow();
    const grant = state.grants.get(budgetClass);
    if (grant && grant.slot === slotOf(now) && grant.left > 0) return blockedFor(state, api, now);
    return this.#wait(tenantId, state, budgetClass, now, api);
  }

  /** Waits (at most `maxWaitMs`) for a call of the class; past that, a `BudgetSpentError` (retryable) so the work resumes later. */
  async take(tenantId: string, maxWaitMs = 20_000, budgetClass: BudgetClass = 'poll', api?: string): Promise<void> {
    for (;;) {
      const wait = await this.#serially(tenantId, (state) => this.#tryTake(tenantId, state, budgetClass, api));
      if (wait === 0) {
        this.stats.calls += 1;
        return;
      }
      if (wait > maxWaitMs) {
        const which = spentBudgetName(this.#service, budgetClass);
        throw new BudgetSpentError(
          `${which} is spent for the next ${Math.ceil(wait / 1000)} s (counted across all instances)`,
          budgetClass,
          { tenantId, retryAfterMs: wait },
        );
      }
      await this.#sleep(wait);
    }
  }

  /**
   * Per tenant this instance has taken calls for: the share of the per-minute budget that all instances
   * used in the last minute, as this instance last read the counts (for the budget gauge; no storage).
   */
  minuteShares(): Map<string, number> {
    const now = this.#storageNow();
    const shares = new Map<string, number>();
    for (const [tenantId, state] of this.#tenants) {
      let calls = 0;
      for (const [slot, counts] of state.slots) {
        // A call counts at the end of its slot, as the budget counts it.
        if ((slot + 1) * SLOT_MS <= now - MINUTE_MS) continue;
        const unused = state.unused.get(slot);
        counts.forEach((n, i) => (calls += Math.max(0, n - (unused?.[i] ?? 0))));
      }
      shares.set(tenantId, calls / this.#limits.perMinute);
    }
    return shares;
  }

  /** The service answered 429 to a call of `api` for the tenant: no instance calls that API of the tenant for `retryAfterMs`. */
  async throttled(tenantId: string, retryAfterMs: number, api: string): Promise<void> {
    await this.#serially(tenantId, async (state) => {
      if (state.etag === undefined) await this.#read(tenantId, state);
      const until = this.#storageNow() + retryAfterMs;
      for (let race = 0; race < MAX_RACES; race++) {
        if ((state.blocked.get(api) ?? 0) >= until) return;
        if (await this.#write(tenantId, state, state.slots, new Map(state.blocked).set(api, until))) return;
      }
      state.blocked.set(api, Math.max(state.blocked.get(api) ?? 0, until));
    });
  }

  /** 0 when a call was taken; else how long until one may be. */
  async #tryTake(
    tenantId: string,
    state: TenantState,
    budgetClass: BudgetClass,
    api: string | undefined,
  ): Promise<number> {
    // The first read also sets the clock: slots are storage time, whatever this instance's clock says.
    if (state.etag === undefined) await this.#read(tenantId, state);
    const now = this.#storageNow();
    const slot = slotOf(now);
    const blocked = blockedFor(state, api, now);
    if (blocked > 0) return blocked;
    const grant = state.grants.get(budgetClass);
    if (grant && grant.slot === slot && grant.left > 0) {
      grant.left -= 1;
      return 0;
    }
    if (grant?.left) {
      addTo(state.unused, grant.slot, budgetClass, grant.left);
      grant.left = 0;
    }
    // A grant used up in this slot or the last one: the tenant is busy here, ask for twice as many.
    const wanted = grant && slot - grant.slot <= 1 ? Math.min(MAX_GRANT, grant.size * 2) : 1;
    for (let race = 0; race < MAX_RACES; race++) {
      const wait = this.#wait(tenantId, state, budgetClass, now, api);
      if (wait > 0) return wait;
      const size = this.#fit(tenantId, state, budgetClass, now, wanted);
      const slots = new Map(state.slots);
      addTo(slots, slot, budgetClass, size);
      if (await this.#write(tenantId, state, slots, state.blocked)) {
        state.grants.set(budgetClass, { slot, left: size - 1, size });
        return 0;
      }
    }
    throw new RetryableError(
      `The tenant's ${BUDGETED_SERVICES[this.#service]} call budget is contended by other instances (${MAX_RACES} writes lost in a row)`,
      { tenantId, retryAfterMs: SLOT_MS },
    );
  }

  /** The per-instance budget's rules, applied to the shared counts (each call at the end of its slot). */
  #model(tenantId: string, state: TenantState, now: number): CallBudget {
    const model = new CallBudget(this.#limits, () => now);
    const calls: { at: number; budgetClass: BudgetClass }[] = [];
    // Stryker disable next-line MethodExpression,ArithmeticOperator: equivalent: the slots are already in time order (JSON's integer keys parse in ascending order and the current slot is added last); the sort only guards that
    for (const [slot, counts] of [...state.slots].sort(([a], [b]) => a - b)) {
      CLASSES.forEach((budgetClass, index) => {
        for (let i = 0; i < (counts[index] ?? 0); i++) calls.push({ at: (slot + 1) * SLOT_MS, budgetClass });
      });
    }
    model.load(tenantId, calls);
    return model;
  }

  #wait(tenantId: string, state: TenantState, budgetClass: BudgetClass, now: number, api: string | undefined): number {
    return Math.max(this.#model(tenantId, state, now).waitTime(tenantId, budgetClass), blockedFor(state, api, now));
  }

  /** How many of `wanted` calls fit now (at least one: the caller checked). */
  #fit(tenantId: string, state: TenantState, budgetClass: BudgetClass, now: number, wanted: number): number {
    const model = this.#model(tenantId, state, now);
    let size = 0;
    while (size < wanted && model.tryTake(tenantId, budgetClass)) size += 1;
    return Math.max(size, 1);
  }

  async #read(tenantId: string, state: TenantState): Promise<void> {
    const table = await this.#table.ready();
    this.stats.storageOperations += 1;
    try {
      const entity = await table.getEntity<BudgetEntity>(tenantId, this.#row, {
        onResponse: (response) => this.#clock(response),
      });
      state.etag = entity.etag;
      state.slots = parseSlots(entity.slots);
      state.blocked = parseBlocked(entity.blocked);
    } catch (err) {
      if (!(err instanceof RestError && err.statusCode === 404)) throw err;
      state.etag = null;
      state.slots = new Map();
      state.blocked = new Map();
    }
  }

  /** Writes the counts if nobody else did since they were read; false (after reading them again) when someone did. */
  async #write(
    tenantId: string,
    state: TenantState,
    slots: Map<number, number[]>,
    blocked: Map<string, number>,
  ): Promise<boolean> {
    const table = await this.#table.ready();
    const now = this.#storageNow();
    // Slots that left the hour window are dropped: the entity stays small. Calls of lapsed grants that
    // were never made are taken off their slot, so a grant costs the tenant only what it used.
    const kept = new Map<number, number[]>();
    for (const [slot, counts] of slots) {
      // Stryker disable next-line EqualityOperator: equivalent for `<`: a slot ending exactly an hour ago counts for nothing in the model either (it forgets calls an hour old), and the next write drops it
      if ((slot + 1) * SLOT_MS <= now - HOUR_MS) continue;
      const unused = state.unused.get(slot);
      kept.set(slot, unused ? counts.map((n, i) => Math.max(0, n - (unused[i] ?? 0))) : counts);
    }
    const entity: BudgetEntity = {
      partitionKey: tenantId,
      rowKey: this.#row,
      slots: JSON.stringify(Object.fromEntries(kept)),
      // One entry per API (Defender's few, Graph's one), so it stays small; one whose time has passed blocks nothing.
      blocked: JSON.stringify(Object.fromEntries(blocked)),
    };
    this.stats.storageOperations += 1;
    try {
      const onResponse = (response: FullOperationResponse) => this.#clock(response);
      const written = state.etag
        ? await table.updateEntity(entity, 'Replace', { etag: state.etag, onResponse })
        : // Stryker disable next-line ObjectLiteral: equivalent: a create always follows the read that found nothing (404), whose response has just set the clock
          await table.createEntity(entity, { onResponse });
      state.etag = written.etag;
      state.slots = kept;
      state.blocked = blocked;
      state.unused.clear();
      return true;
    } catch (err) {
      // 412: changed since read; 409: created meanwhile (another instance took calls first); 404: deleted
      // meanwhile (an operator cleared the table). Read again and start from what is there.
      if (!(err instanceof RestError && [412, 409, 404].includes(err.statusCode ?? 0))) throw err;
      this.stats.races += 1;
      await this.#read(tenantId, state);
      return false;
    }
  }

  /** Storage time from the Date header (whole seconds: the middle of that second is the best guess). */
  #clock(response: FullOperationResponse): void {
    // Stryker disable next-line StringLiteral: equivalent: any stand-in for a missing header parses to NaN, as '' does
    const date = Date.parse(response.headers.get('date') ?? '');
    if (Number.isFinite(date)) this.#offsetMs = date + 500 - this.#now();
  }

  #storageNow(): number {
    return this.#now() + this.#offsetMs;
  }

  #serially<T>(tenantId: string, work: (state: TenantState) => Promise<T>): Promise<T> {
    let state = this.#tenants.get(tenantId);
    if (!state) {
      state = { slots: new Map(), blocked: new Map(), grants: new Map(), unused: new Map(), queue: Promise.resolve() };
      this.#tenants.set(tenantId, state);
    }
    const run = state.queue.then(() => work(state));
    state.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * How long the API stays blocked for the tenant (0 when no API is named or it is not blocked). An API
 * named as a path is blocked by a hold on any of its parents too: Graph's `security/runHuntingQuery` by
 * a hold on all of `security`, while a hold on it alone leaves the rest of `security` free.
 */
function blockedFor(state: TenantState, api: string | undefined, now: number): number {
  if (api === undefined) return 0;
  // `security/runHuntingQuery` → `security`, `security/runHuntingQuery`.
  const selfAndParents = api.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  const until = Math.max(...selfAndParents.map((name) => state.blocked.get(name) ?? 0));
  return Math.max(0, until - now);
}

function addTo(slots: Map<number, number[]>, slot: number, budgetClass: BudgetClass, calls: number): void {
  const counts = [...(slots.get(slot) ?? [0, 0, 0])];
  counts[CLASSES.indexOf(budgetClass)]! += calls;
  slots.set(slot, counts);
}

function slotOf(time: number): number {
  return Math.floor(time / SLOT_MS);
}

/**
 * The entity's properties are read defensively: anything that can write the table could have written
 * them. A count that is not a positive number counts as none (it must never give calls back), and a
 * property that is not JSON is read as empty, so the next write heals the entity rather than the
 * tenant's calls failing until someone deletes it.
 */
function parseSlots(json: string | undefined): Map<number, number[]> {
  const slots = new Map<number, number[]>();
  for (const [slot, counts] of Object.entries(parseObject(json))) {
    if (Array.isArray(counts))
      slots.set(
        Number(slot),
        counts.map((n) => (typeof n === 'number' ? Math.max(0, n) : 0)),
      );
  }
  return slots;
}

/** The `blocked` column: budget API → until when (ms); what is not a number is dropped. */
export function parseBlocked(json: string | undefined): Map<string, number> {
  const blocked = new Map<string, number>();
  for (const [api, until] of Object.entries(parseObject(json))) {
    if (typeof until === 'number') blocked.set(api, until);
  }
  return blocked;
}

/** A JSON object's entries; null, and text that is not JSON, read as none (other values have none that count). */
function parseObject(json: string | undefined): Record<string, unknown> {
  try {
    // Stryker disable next-line StringLiteral: equivalent: '' fails to parse and reads as none, as '{}' does
    return (JSON.parse(json ?? '{}') as Record<string, unknown> | null) ?? {};
  } catch {
    return {};
  }
}
