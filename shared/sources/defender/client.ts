import {
  ApiCaller,
  retryAfterHeader,
  type ApiCallOptions,
  type ApiService,
  type ServiceError,
  type TokenSource,
} from '../api-call.js';
import { CallBudget, type BudgetClass, type DefenderCallBudget } from '../call-budget.js';
import { RetryableError } from '../../errors.js';
import { recordDefenderCall } from '../../telemetry/metrics.js';
import { normalizeTimestamp } from '../../timestamps.js';
import type { Tenant } from '../../tenants/tenants.js';
import { traceDefenderCall } from '../../telemetry/tracing.js';

export type { TokenSource } from '../api-call.js';

/**
 * The Defender XDR incidents API, as `defender-api.md` describes it: list with $filter/$top/$skip,
 * get, update, advanced hunting. Its calls go through `ApiCaller` (api-call.ts): retries of 5xx and
 * network errors with back-off and jitter, 429 honoured (Retry-After header or the time in the body),
 * the token renewed once on 401, and the tenant's call budget spent under the client's budget class
 * (see call-budget.ts): `withBudgetClass` gives a view of the same client, sharing budget, tokens and
 * call counters, that spends another class. Every failure names the tenant and the call.
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

export interface DefenderClientOptions extends ApiCallOptions {
  apiUrl: string;
  tokens: TokenSource;
  budget?: DefenderCallBudget;
}

export const PAGE_SIZE = 100; // the documented maximum of $top

/**
 * Defender as `ApiCaller` calls it. Each Defender API (its operation's first word: `listIncidents`,
 * `getIncident`, …) has limits of its own, so a 429 holds back that API only.
 */
const DEFENDER: ApiService = {
  name: 'Defender',
  budgetApi: (api) => api,
  parseError,
  retryAfterMs: (headers, error, now) =>
    retryAfter(headers.get('retry-after'), error.message) ?? cpuQuotaWait(error.message, now),
  trace: traceDefenderCall,
  record: recordDefenderCall,
};

/** One page of a listing, less the versions its earlier pages already held. */
export interface IncidentPage {
  incidents: DefenderIncident[];
  /** The $skip the listing reached: where its next page starts. */
  nextSkip: number;
  /** A short page: the listing is complete. */
  last: boolean;
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

interface HuntingRefusal {
  until: number;
  quota: 'cpu' | 'calls';
  said: string;
}

export class DefenderClient {
  readonly budget: DefenderCallBudget;
  readonly budgetClass: BudgetClass;
  #caller: ApiCaller;
  /** Per tenant: advanced hunting refused until when, and why (shared by the views). */
  #huntingRefused = new Map<string, HuntingRefusal>();
  /** This client and its views, one per budget class, shared by all of them. */
  #views = new Map<BudgetClass, DefenderClient>();
  readonly #options: DefenderClientOptions;
  readonly #apiUrl: string;

  constructor(options: DefenderClientOptions) {
    this.#options = options;
    this.#apiUrl = options.apiUrl.replace(/\/+$/, '');
    this.#caller = new ApiCaller(DEFENDER, this.#apiUrl, options.tokens, {
      ...options,
      budget: options.budget ?? new CallBudget(),
    });
    this.budget = this.#caller.budget;
    this.budgetClass = this.#caller.budgetClass;
    this.#views.set(this.budgetClass, this);
  }

  /** Calls sent (attempts included), by tenant, by this client and its views: the benchmark's Defender calls. */
  get calls(): Map<string, number> {
    return this.#caller.calls;
  }

  /** How long a call of `operation` would wait now for this client's share of the tenant's budget (0: at once). */
  budgetWait(tenantId: string, operation: string): number {
    return this.#caller.budgetWait(tenantId, operation);
  }

  /** This client spending another class of the same budget (same tokens, settings and call counters); views are kept, so this is cheap. */
  withBudgetClass(budgetClass: BudgetClass): DefenderClient {
    let view = this.#views.get(budgetClass);
    if (!view) {
      view = new DefenderClient({ ...this.#options, budget: this.budget, budgetClass });
      view.#caller = this.#caller.withBudgetClass(budgetClass);
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
    const now = this.#caller.settings.now();
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
      // The caller gives a 429 back at once when its wait is longer than the client waits.
      if (
        !(err instanceof RetryableError) ||
        err.status !== 429 ||
        err.retryAfterMs === undefined ||
        err.retryAfterMs <= this.#caller.settings.maxWaitMs
      )
        throw err;
      const refusal: HuntingRefusal = {
        until: this.#caller.settings.now() + err.retryAfterMs,
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

  /** One call to `path` (with `query`), through the shared caller. */
  async #send<T>(tenant: Tenant, call: DefenderCall): Promise<T> {
    const url = new URL(this.#apiUrl + call.path);
    for (const [k, v] of Object.entries(call.query ?? {})) url.searchParams.set(k, v);
    return this.#caller.send<T>(tenant, {
      operation: call.operation,
      method: call.method,
      url,
      body: call.body,
      retryTimeouts: call.retryTimeouts,
    });
  }
}

interface DefenderCall {
  operation: string;
  method: 'GET' | 'PATCH' | 'POST';
  path: string;
  query?: Record<string, string>;
  body?: unknown;
  retryTimeouts?: boolean;
}

/** Defender's error body: `{"error": {"code", "message"}}`; any other text is its own message. */
function parseError(text: string): ServiceError {
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
  const stated = retryAfterHeader(header);
  if (stated !== undefined) return stated;
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
