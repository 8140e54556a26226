import type { ApiCallBudget, BudgetClass } from './call-budget.js';
import { isRetryable, PermanentError, RetryableError } from '../errors.js';
import type { Tenant } from '../tenants/tenants.js';

/**
 * One call to a tenant's incident API as both clients (Defender XDR, Microsoft Graph) make it: a call
 * taken from the tenant's budget under the client's class (a `push` call never waits for it), sent with
 * the tenant's token and a timeout, and its answer classified. 5xx, 408, timeouts and network failures
 * are retried with exponential back-off and jitter; a 429 waits its Retry-After (and tells the budget,
 * so that every instance sharing it holds back); a 401 renews the token once; anything else is a
 * `PermanentError`. Every failure names the tenant and the operation. What differs per service (its
 * name in messages, its error body, where a 429 says its wait, headers, telemetry) is an `ApiService`.
 */

export interface TokenSource {
  getToken(tenant: Tenant): Promise<string>;
  invalidate(tenant: Tenant): void;
}

export interface ApiCallOptions {
  budget?: ApiCallBudget;
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

export type ApiCallSettings = Required<Omit<ApiCallOptions, 'budget' | 'budgetClass'>>;

/** The error a service's answer holds, as its client reads it. */
export interface ServiceError {
  code?: string;
  message?: string;
}

/** What makes a service's calls its own. */
export interface ApiService {
  /** How messages name it: "Defender throttled the call (429)", "Microsoft Graph refused the token (401)". */
  name: string;
  /** Request headers of its own, beside authorization, accept and content-type. */
  headers?: Readonly<Record<string, string>>;
  /** `manual`: a redirect is an answer like any other (refused), never followed with the token. Default `follow`. */
  redirect?: 'follow' | 'manual';
  /** The name the budget knows `api` by, for holding calls after a 429: each API of its own, or one for all. */
  budgetApi(api: string): string;
  /** Its error body, read leniently: any text may come back. */
  parseError(text: string): ServiceError;
  /** How long a 429 says to wait, if it says. */
  retryAfterMs(headers: Headers, error: ServiceError, now: number): number | undefined;
  /** Runs one attempt in a span; `answered` hears the HTTP status. */
  trace<T>(tenantId: string, api: string, call: (answered: (status: number) => void) => Promise<T>): Promise<T>;
  /** Counts an answered call (the service's metric). */
  record(tenantId: string, status: number): void;
}

export interface ApiCall {
  /** What failures name, e.g. `listIncidents`, `getIncident 42`; its first word is the API (budget, traces). */
  operation: string;
  method: 'GET' | 'PATCH' | 'POST';
  /** On the caller's origin: a call anywhere else is refused before the token is read. */
  url: URL;
  body?: unknown;
  /** false: a call this client timed out on is not sent again (the server may still be running it). */
  retryTimeouts?: boolean;
}

/** A call the client gave up waiting for (its own `timeoutMs`). */
export class ClientTimeoutError extends RetryableError {}

/** A 401: the caller renews the token once before it gives up. */
class UnauthorizedOnce extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** The API a call is to: its operation's first word (`listIncidents`, `getIncident`, …). */
export function apiOf(operation: string): string {
  return operation.split(' ')[0]!;
}

/** Retry-After as seconds or an HTTP date (RFC 9110, section 10.2.3). */
export function retryAfterHeader(header: string | null, now: number = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export class ApiCaller {
  readonly budget: ApiCallBudget;
  readonly budgetClass: BudgetClass;
  readonly settings: ApiCallSettings;
  #calls = new Map<string, number>();
  readonly #service: ApiService;
  /** Undefined for an apiUrl that is no URL: no call's URL can be built from it either. */
  readonly #origin: string | undefined;
  readonly #tokens: TokenSource;

  constructor(
    service: ApiService,
    /** The service's base URL: calls go to its origin only. */
    apiUrl: string,
    tokens: TokenSource,
    options: ApiCallOptions & { budget: ApiCallBudget },
  ) {
    this.#service = service;
    this.#origin = URL.canParse(apiUrl) ? new URL(apiUrl).origin : undefined;
    this.#tokens = tokens;
    this.budget = options.budget;
    this.budgetClass = options.budgetClass ?? 'poll';
    this.settings = {
      maxRetries: options.maxRetries ?? 4,
      baseDelayMs: options.baseDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      timeoutMs: options.timeoutMs ?? 30_000,
      maxWaitMs: options.maxWaitMs ?? 60_000,
      sleep: options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
    };
  }

  /** Calls sent (attempts included), by tenant, by this caller and its views. */
  get calls(): Map<string, number> {
    return this.#calls;
  }

  /**
   * How long a call of `operation` would wait now for this caller's share of the tenant's budget (0: it
   * goes at once), counting a 429 hold on the API the service keeps the call's budget under (Graph holds
   * every /security call together, Defender each API apart).
   */
  budgetWait(tenantId: string, operation: string): number {
    return this.budget.waitTime(tenantId, this.budgetClass, this.#service.budgetApi(apiOf(operation)));
  }

  /** This caller spending another class of the same budget, with the same service, tokens, settings and call counters. */
  withBudgetClass(budgetClass: BudgetClass): ApiCaller {
    const view = new ApiCaller(this.#service, this.#origin ?? '', this.#tokens, {
      ...this.settings,
      budget: this.budget,
      budgetClass,
    });
    view.#calls = this.#calls;
    return view;
  }

  async send<T>(tenant: Tenant, call: ApiCall): Promise<T> {
    const context = { tenantId: tenant.tenantId, operation: call.operation };
    if (call.url.origin !== this.#origin)
      throw new PermanentError(
        `Refused to send the tenant's token to ${call.url.origin}: ${this.#service.name} is ${this.#origin}`,
        context,
      );
    const api = apiOf(call.operation);
    const budgetApi = this.#service.budgetApi(api);
    const o = this.settings;
    let tokenRenewed = false;
    for (let attempt = 0; ; attempt++) {
      // A push-triggered call is optional enrichment: it never waits for the budget (its caller notes what it skipped).
      await this.budget.take(
        tenant.tenantId,
        this.budgetClass === 'push' ? 0 : o.maxWaitMs,
        this.budgetClass,
        budgetApi,
      );
      let failure: RetryableError;
      try {
        return await this.#service.trace(tenant.tenantId, api, (answered) => this.#attempt<T>(tenant, call, answered));
      } catch (err) {
        if (err instanceof UnauthorizedOnce && !tokenRenewed) {
          // The token may have been revoked or the tenant's consent re-granted: one fresh token.
          tokenRenewed = true;
          this.#tokens.invalidate(tenant);
          attempt -= 1;
          continue;
        }
        if (err instanceof UnauthorizedOnce)
          throw new PermanentError(`${this.#service.name} refused the token (401): ${err.message}`, {
            ...context,
            status: 401,
            code: err.code ?? 'Unauthorized',
          });
        if (!(err instanceof RetryableError)) throw err;
        if (err.status === 429 && err.retryAfterMs !== undefined)
          await this.#tellBudget(tenant, err.retryAfterMs, budgetApi);
        if (err instanceof ClientTimeoutError && call.retryTimeouts === false) throw err;
        failure = err;
      }
      if (attempt >= o.maxRetries) throw failure;
      const backoff = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** attempt);
      const delay = failure.retryAfterMs ?? backoff / 2 + o.random() * (backoff / 2);
      if (delay > o.maxWaitMs) throw failure;
      await o.sleep(delay);
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

  /** One call; `answered` hears the HTTP status of the service's answer, if one came. */
  async #attempt<T>(tenant: Tenant, call: ApiCall, answered: (status: number) => void): Promise<T> {
    const service = this.#service;
    const context = { tenantId: tenant.tenantId, operation: call.operation };
    const token = await this.#tokens.getToken(tenant);
    this.#calls.set(tenant.tenantId, (this.#calls.get(tenant.tenantId) ?? 0) + 1);

    let response: Response;
    let text: string;
    try {
      response = await fetch(call.url, {
        method: call.method,
        headers: {
          ...service.headers,
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(call.body ? { 'content-type': 'application/json' } : {}),
        },
        body: call.body ? JSON.stringify(call.body) : undefined,
        redirect: service.redirect ?? 'follow',
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      answered(response.status);
      service.record(tenant.tenantId, response.status);
      text = await response.text();
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new ClientTimeoutError(
          `${service.name} did not answer within ${this.settings.timeoutMs / 1000} s`,
          context,
          { cause: err },
        );
      }
      if (isRetryable(err) || (err as Error).name === 'TypeError') {
        throw new RetryableError(`${service.name} could not be reached: ${(err as Error).message}`, context, {
          cause: err,
        });
      }
      throw err;
    }

    if (response.ok) {
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new RetryableError(`${service.name} answered with a body that is not JSON`, {
          ...context,
          status: response.status,
        });
      }
    }
    const error = service.parseError(text);
    const detail = { ...context, status: response.status, code: error.code };
    if (response.status === 401) throw new UnauthorizedOnce(error.message ?? 'Unauthorized', error.code);
    if (response.status === 429) {
      const retryAfterMs = service.retryAfterMs(response.headers, error, this.settings.now());
      throw new RetryableError(`${service.name} throttled the call (429): ${error.message ?? 'TooManyRequests'}`, {
        ...detail,
        retryAfterMs,
      });
    }
    if (response.status === 408 || response.status >= 500) {
      const code = error.code ? ` ${error.code}` : '';
      throw new RetryableError(`${service.name} failed (${response.status}${code})`, detail);
    }
    const why =
      response.status === 403
        ? `${service.name} denied the call (403), a permission is missing`
        : `${service.name} rejected the call (${response.status})`;
    const said = [error.code, error.message].filter(Boolean).join(' ');
    throw new PermanentError(said ? `${why}: ${said}` : why, detail);
  }
}
