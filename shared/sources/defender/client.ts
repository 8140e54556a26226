import { CallBudget, type BudgetClass, type DefenderCallBudget } from '../call-budget.js';
import { isRetryable, PermanentError, RetryableError } from '../../errors.js';
import { recordDefenderCall } from '../../telemetry/metrics.js';
import { normalizeTimestamp } from '../../timestamps.js';
import type { Tenant } from '../../tenants/tenants.js';
import { traceDefenderCall } from '../../telemetry/tracing.js';

/**
 * The Defender XDR incidents API, as `defender-api.md` describes it: list with $filter/$top/$skip,
 * get, update, advanced hunting. Retries 5xx and network errors with back-off and jitter, honours
 * 429 (Retry-After header or the time in the body), renews the token once on 401, and spends the
 * tenant's call budget under the client's budget class (see call-budget.ts): `withBudgetClass` gives
 * a view of the same client, sharing budget, tokens and call counters, that spends another class.
 * Every failure names the tenant and the call.
 */

/** An incident as Defender returns it; unknown fields are kept as they are. */
export interface DefenderIncident {
  incidentId: number;
  lastUpdateTime: string;
  createdTime?: string;
  status?: string;
  severity?: string;
  redirectIncidentId?: number | null;
  alerts?: unknown[];
  [field: string]: unknown;
}

export interface IncidentUpdate {
  status?: string;
  assignedTo?: string;
  classification?: string;
  determination?: string;
  tags?: string[];
  comment?: string;
}

export interface HuntingResult {
  Schema: { Name: string; Type: string }[];
  Results: Record<string, unknown>[];
  Stats?: unknown;
}

export interface TokenSource {
  getToken(tenant: Tenant): Promise<string>;
  invalidate(tenant: Tenant): void;
}

export interface DefenderClientOptions {
  apiUrl: string;
  tokens: TokenSource;
  budget?: DefenderCallBudget;
  /** Whose share of the budget the calls spend (default `poll`). A `push` call never waits for the budget: it fails at once with a `BudgetSpentError`. */
  budgetClass?: BudgetClass;
  /** Attempts after the first for retryable failures. */
  maxRetries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  timeoutMs?: number;
  /** The longest wait for a 429 or the budget before giving the work back to the queue. */
  maxWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

export const PAGE_SIZE = 100; // the documented maximum of $top

/** Which Defender API a call is to (its operation's first word: `listIncidents`, `getIncident`, …): each has limits of its own. */
function apiOf(call: { operation: string }): string {
  return call.operation.split(' ')[0]!;
}

/** One page of a listing, less the versions its earlier pages already held. */
export interface IncidentPage {
  incidents: DefenderIncident[];
  /** The $skip the listing reached: where its next page starts. */
  nextSkip: number;
  /** A short page: the listing is complete. */
  last: boolean;
}

interface Call {
  operation: string;
  method: 'GET' | 'PATCH' | 'POST';
  path: string;
  query?: Record<string, string>;
  body?: unknown;
  /** false: a call this client timed out on is not sent again (the server may still be running it). */
  retryTimeouts?: boolean;
}

/**
 * Advanced hunting refused for the tenant for longer than the client waits: a 429 for its CPU quota
 * ("blocked ... until after the next 15-minute cycle", api-advanced-hunting.md) or a call quota. The
 * client remembers it and sends no query for the tenant until then (`sent` false): hunting is
 * optional, and asking again would only spend the tenant's call budget on more 429s.
 */
export class HuntingRefusedError extends RetryableError {
  constructor(
    message: string,
    /** Whether this call reached Defender (the 429 itself) or was not sent (remembered). */
    readonly sent: boolean,
    /** What is spent: `cpu` (the tenant's CPU quota) or `calls` (a call quota). */
    readonly quota: 'cpu' | 'calls',
    context: { tenantId: string; operation: string; retryAfterMs: number; status?: number; code?: string },
  ) {
    super(message, context);
  }
}

/** A call the client gave up waiting for (its own `timeoutMs`). */
class ClientTimeoutError extends RetryableError {}

interface HuntingRefusal {
  until: number;
  quota: 'cpu' | 'calls';
  said: string;
}

export class DefenderClient {
  readonly budget: DefenderCallBudget;
  readonly budgetClass: BudgetClass;
  #calls = new Map<string, number>();
  /** Per tenant: advanced hunting refused until when, and why (shared by the views). */
  #huntingRefused = new Map<string, HuntingRefusal>();
  /** This client and its views, one per budget class, shared by all of them. */
  #views = new Map<BudgetClass, DefenderClient>();
  readonly #o: Required<Omit<DefenderClientOptions, 'budget' | 'budgetClass'>>;

  constructor(options: DefenderClientOptions) {
    this.budget = options.budget ?? new CallBudget();
    this.budgetClass = options.budgetClass ?? 'poll';
    this.#views.set(this.budgetClass, this);
    this.#o = {
      maxRetries: 4,
      baseDelayMs: 500,
      maxDelayMs: 30_000,
      timeoutMs: 30_000,
      maxWaitMs: 60_000,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      random: Math.random,
      now: Date.now,
      ...options,
      apiUrl: options.apiUrl.replace(/\/+$/, ''),
    };
  }

  /** Calls sent (attempts included), by tenant, by this client and its views: the benchmark's Defender calls. */
  get calls(): Map<string, number> {
    return this.#calls;
  }

  /** This client spending another class of the same budget (same tokens, settings and call counters); views are kept, so this is cheap. */
  withBudgetClass(budgetClass: BudgetClass): DefenderClient {
    let view = this.#views.get(budgetClass);
    if (!view) {
      view = new DefenderClient({ ...this.#o, budget: this.budget, budgetClass });
      view.#calls = this.#calls;
      view.#huntingRefused = this.#huntingRefused;
      view.#views = this.#views;
      this.#views.set(budgetClass, view);
    }
    return view;
  }

  /** One page of incidents. */
  async listIncidentsPage(
    tenant: Tenant,
    options: { filter?: string; top?: number; skip?: number },
  ): Promise<DefenderIncident[]> {
    const query: Record<string, string> = { $top: String(options.top ?? PAGE_SIZE) };
    if (options.filter) query.$filter = options.filter;
    if (options.skip) query.$skip = String(options.skip);
    const body = await this.#send<{ value?: unknown }>(tenant, {
      operation: 'listIncidents',
      method: 'GET',
      path: '/api/incidents',
      query,
    });
    if (!Array.isArray(body.value)) {
      throw new RetryableError('Defender answered the incident list without a value array', {
        tenantId: tenant.tenantId,
        operation: 'listIncidents',
      });
    }
    return body.value as DefenderIncident[];
  }

  /**
   * The incidents updated at or after `since`, page by page as they arrive: $skip paging until a short
   * page, at most `maxPages` pages. Defender's order is not guaranteed, so a version listed twice in
   * one listing (an update shifting the pages) is yielded once; the caller needs no order. When the
   * page bound ends the listing, its last page has `last` false and `nextSkip` is where to go on.
   */
  async *incidentPagesSince(
    tenant: Tenant,
    since: string,
    options: { maxPages?: number; skip?: number } = {},
  ): AsyncGenerator<IncidentPage, void, undefined> {
    const filter = `lastUpdateTime ge ${normalizeTimestamp(since)}`;
    const listed = new Set<string>();
    let skip = options.skip ?? 0;
    for (let pages = 0; options.maxPages === undefined || pages < options.maxPages; pages++) {
      const page = await this.listIncidentsPage(tenant, { filter, top: PAGE_SIZE, skip });
      skip += page.length;
      const incidents = page.filter((incident) => {
        const version = `${incident.incidentId}|${normalizeTimestamp(incident.lastUpdateTime)}`;
        if (listed.has(version)) return false;
        listed.add(version);
        return true;
      });
      const last = page.length < PAGE_SIZE;
      yield { incidents, nextSkip: skip, last };
      if (last) return;
    }
  }

  getIncident(tenant: Tenant, incidentId: number): Promise<DefenderIncident> {
    return this.#send(tenant, {
      operation: `getIncident ${incidentId}`,
      method: 'GET',
      path: `/api/incidents/${incidentId}`,
    });
  }

  updateIncident(tenant: Tenant, incidentId: number, update: IncidentUpdate): Promise<DefenderIncident> {
    return this.#send(tenant, {
      operation: `updateIncident ${incidentId}`,
      method: 'PATCH',
      path: `/api/incidents/${incidentId}`,
      body: update,
    });
  }

  /**
   * Runs an advanced hunting query. A query is optional work that costs the tenant CPU: one this client
   * timed out on is not sent again, and once Defender refuses hunting for longer than the client waits
   * (a `HuntingRefusedError`), no query for the tenant is sent until that time has passed.
   */
  async runHuntingQuery(tenant: Tenant, query: string): Promise<HuntingResult> {
    const operation = 'runHuntingQuery';
    const now = this.#o.now();
    const refused = this.#huntingRefused.get(tenant.tenantId);
    if (refused && refused.until > now) {
      throw new HuntingRefusedError(
        `Defender refuses advanced hunting for the tenant until ${new Date(refused.until).toISOString()}: ${refused.said}`,
        false,
        refused.quota,
        {
          tenantId: tenant.tenantId,
          operation,
          retryAfterMs: refused.until - now,
        },
      );
    }
    try {
      return await this.#send(tenant, {
        operation,
        method: 'POST',
        path: '/api/advancedhunting/run',
        body: { Query: query },
        retryTimeouts: false,
      });
    } catch (err) {
      // #send gives a 429 back at once when its wait is longer than the client waits.
      if (
        !(err instanceof RetryableError) ||
        err.status !== 429 ||
        err.retryAfterMs === undefined ||
        err.retryAfterMs <= this.#o.maxWaitMs
      )
        throw err;
      const refusal: HuntingRefusal = {
        until: this.#o.now() + err.retryAfterMs,
        quota: CPU_QUOTA_SPENT.test(err.message) ? 'cpu' : 'calls',
        said: err.message,
      };
      this.#huntingRefused.set(tenant.tenantId, refusal);
      throw new HuntingRefusedError(err.message, true, refusal.quota, {
        tenantId: tenant.tenantId,
        operation,
        retryAfterMs: err.retryAfterMs,
        status: 429,
        code: err.code,
      });
    }
  }

  async #send<T>(tenant: Tenant, call: Call): Promise<T> {
    const context = { tenantId: tenant.tenantId, operation: call.operation };
    let tokenRenewed = false;
    for (let attempt = 0; ; attempt++) {
      // A push-triggered call is optional enrichment: it never waits for the budget (its caller notes what it skipped).
      await this.budget.take(
        tenant.tenantId,
        this.budgetClass === 'push' ? 0 : this.#o.maxWaitMs,
        this.budgetClass,
        apiOf(call),
      );
      let failure: RetryableError;
      try {
        return await traceDefenderCall(tenant.tenantId, apiOf(call), (answered) =>
          this.#attempt<T>(tenant, call, answered),
        );
      } catch (err) {
        if (err instanceof UnauthorizedOnce && !tokenRenewed) {
          // The token may have been revoked or the tenant's consent re-granted: one fresh token.
          tokenRenewed = true;
          this.#o.tokens.invalidate(tenant);
          attempt -= 1;
          continue;
        }
        if (err instanceof UnauthorizedOnce)
          throw new PermanentError(`Defender refused the token (401): ${err.message}`, {
            ...context,
            status: 401,
            code: 'Unauthorized',
          });
        if (!(err instanceof RetryableError)) throw err;
        if (err.status === 429 && err.retryAfterMs !== undefined)
          await this.#tellBudget(tenant, err.retryAfterMs, apiOf(call));
        if (err instanceof ClientTimeoutError && call.retryTimeouts === false) throw err;
        failure = err;
      }
      if (attempt >= this.#o.maxRetries) throw failure;
      const backoff = Math.min(this.#o.maxDelayMs, this.#o.baseDelayMs * 2 ** attempt);
      const delay = failure.retryAfterMs ?? backoff / 2 + this.#o.random() * (backoff / 2);
      if (delay > this.#o.maxWaitMs) throw failure;
      await this.#o.sleep(delay);
    }
  }

  /** A 429 holds the tenant's calls on every instance sharing the budget; failing to record it only loses that courtesy. */
  async #tellBudget(tenant: Tenant, retryAfterMs: number, api: string): Promise<void> {
    try {
      await this.budget.throttled?.(tenant.tenantId, retryAfterMs, api);
    } catch {
      // The client still waits out the Retry-After itself.
    }
  }

  /** One call; `answered` hears the HTTP status of Defender's answer, if one came. */
  async #attempt<T>(tenant: Tenant, call: Call, answered: (status: number) => void): Promise<T> {
    const context = { tenantId: tenant.tenantId, operation: call.operation };
    const token = await this.#o.tokens.getToken(tenant);
    const url = new URL(this.#o.apiUrl + call.path);
    for (const [k, v] of Object.entries(call.query ?? {})) url.searchParams.set(k, v);
    this.calls.set(tenant.tenantId, (this.calls.get(tenant.tenantId) ?? 0) + 1);

    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method: call.method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(call.body ? { 'content-type': 'application/json' } : {}),
        },
        body: call.body ? JSON.stringify(call.body) : undefined,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      answered(response.status);
      recordDefenderCall(tenant.tenantId, response.status);
      text = await response.text();
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new ClientTimeoutError(`Defender did not answer within ${this.#o.timeoutMs / 1000} s`, context, {
          cause: err,
        });
      }
      if (isRetryable(err) || (err as Error).name === 'TypeError') {
        throw new RetryableError(`Defender could not be reached: ${(err as Error).message}`, context, { cause: err });
      }
      throw err;
    }

    if (response.ok) {
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new RetryableError('Defender answered with a body that is not JSON', {
          ...context,
          status: response.status,
        });
      }
    }
    const error = parseError(text);
    const detail = { ...context, status: response.status, code: error.code };
    if (response.status === 401) throw new UnauthorizedOnce(error.message ?? 'Unauthorized');
    if (response.status === 429) {
      const retryAfterMs =
        retryAfter(response.headers.get('retry-after'), error.message) ?? cpuQuotaWait(error.message, this.#o.now());
      throw new RetryableError(`Defender throttled the call (429): ${error.message ?? 'TooManyRequests'}`, {
        ...detail,
        retryAfterMs,
      });
    }
    if (response.status === 408 || response.status >= 500) {
      throw new RetryableError(`Defender failed (${response.status} ${error.code ?? ''})`.trim(), detail);
    }
    const why =
      response.status === 403
        ? 'Defender denied the call (403), a permission is missing'
        : `Defender rejected the call (${response.status})`;
    throw new PermanentError(`${why}: ${error.code ?? ''} ${error.message ?? ''}`.trim(), detail);
  }
}

class UnauthorizedOnce extends Error {}

function parseError(text: string): { code?: string; message?: string } {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    return {
      code: typeof body.error?.code === 'string' ? body.error.code : undefined,
      message: typeof body.error?.message === 'string' ? body.error.message : undefined,
    };
  } catch {
    return { message: text.slice(0, 200) || undefined };
  }
}

/**
 * 429: the Retry-After header (seconds or a date), else the wait in the body: "Try again in N seconds"
 * (the incidents API), or a TimeSpan after "in" ("You can run queries again in 00:14:59.", advanced
 * hunting's CPU quota; `[d.]hh:mm:ss[.fffffff]`).
 */
export function retryAfter(header: string | null, message: string | undefined): number | undefined {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  const m = /(\d+)\s*seconds?/i.exec(message ?? '');
  if (m) return Number(m[1]) * 1000;
  const span = /\bin\s+(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?/i.exec(message ?? '');
  if (!span) return undefined;
  const [, days, hours, minutes, seconds] = span.map(Number) as [number, number, number, number, number];
  return ((Number.isNaN(days) ? 0 : days) * 86_400 + hours * 3600 + minutes * 60 + seconds) * 1000;
}

/** Advanced hunting's CPU-quota 429 (advanced-hunting-errors.md, "CPU throttling"). */
const CPU_QUOTA_SPENT = /exceeded processing resources/i;
const CPU_CYCLE_MS = 15 * 60_000;

/**
 * A CPU-quota 429 whose wait could not be read: "blocked ... until after the next 15-minute cycle"
 * (api-advanced-hunting.md), so until the next quarter hour rather than a retry in seconds.
 */
function cpuQuotaWait(message: string | undefined, now: number): number | undefined {
  if (!CPU_QUOTA_SPENT.test(message ?? '')) return undefined;
  return (Math.floor(now / CPU_CYCLE_MS) + 1) * CPU_CYCLE_MS - now;
}
