import * as z from 'zod';
import {
  ApiCaller,
  retryAfterHeader,
  type ApiCallOptions,
  type ApiService,
  type ServiceError,
  type TokenSource,
} from '../api-call.js';
import {
  ANALYST_RESERVE,
  CallBudget,
  PUSH_CAP,
  type ApiCallBudget,
  type BudgetClass,
  type BudgetLimits,
} from '../call-budget.js';
import { PermanentError, RetryableError } from '../../errors.js';
import { recordGraphCall } from '../../telemetry/metrics.js';
import { traceGraphCall } from '../../telemetry/tracing.js';
import { normalizeTimestamp } from '../../timestamps.js';
import type { Tenant } from '../../tenants/tenants.js';
import type { HuntingResult } from '../defender/client.js';

/**
 * The Microsoft Graph security incidents API (`/v1.0/security/incidents`; microsoftgraph/microsoft-graph-docs-contrib
 * api-reference/v1.0/api/security-list-incidents.md, security-incident-get.md, security-incident-update.md,
 * security-incident-post-comments.md): list with $filter/$top/$expand, following `@odata.nextLink`; get;
 * update; comment; and advanced hunting (security-security-runhuntingquery.md). Calls go through
 * `ApiCaller` (api-call.ts), as the Defender client's do: the tenant's budget under the client's class,
 * retries with back-off and jitter, 429 with Retry-After, one token renewal on 401, failures naming the
 * tenant and the call.
 *
 * The tenant's token goes to the configured Graph origin only: a nextLink is followed only to the
 * incidents collection there, redirects are never followed, and an incident id in a path is digits only.
 */

/** The documented $top maximum for security/incidents: the service refuses more ("The limit of '50' for Top query has been exceeded", wazuh/wazuh#28070). */
export const GRAPH_PAGE_SIZE = 50;

/**
 * Graph's limit for any request on /security is 150 requests a minute per app per tenant
 * (includes/throttling-security-detections-incidents.md, included by concepts/throttling-limits.md); a
 * little under it, as DEFAULT_BUDGET is under Defender's. Graph states no hourly limit: 8,000 an hour
 * keeps a sustained poll under the minute rate too. Counted apart from the Defender API's calls.
 */
export const GRAPH_BUDGET: BudgetLimits = {
  perMinute: 135,
  perHour: 8000,
  shares: { analystReserve: ANALYST_RESERVE, pushCap: PUSH_CAP },
  service: 'graph',
};

/** An incident as Graph returns it (microsoft.graph.security.incident); unknown fields are kept as they are. */
export interface GraphIncident {
  id: string;
  lastUpdateDateTime: string;
  createdDateTime?: string;
  status?: string;
  severity?: string;
  redirectIncidentId?: string | null;
  incidentWebUrl?: string;
  customTags?: string[];
  comments?: unknown[];
  alerts?: unknown[];
  [field: string]: unknown;
}

/** What PATCH takes (security-incident-update.md, "Request body"); `customTags` replaces the list. */
export interface GraphIncidentUpdate {
  status?: string;
  assignedTo?: string;
  classification?: string;
  determination?: string;
  customTags?: string[];
}

/** One page of a listing, less the versions its earlier pages already held. */
export interface GraphIncidentPage {
  incidents: GraphIncident[];
  /** `skip` given plus the incidents listed so far, duplicates included: progress, not a place to resume from. */
  nextSkip: number;
  /** Where the listing goes on (Graph's @odata.nextLink, checked); undefined on the last page. */
  nextLink?: string;
  /** A page without a nextLink: the listing is complete. */
  last: boolean;
}

export interface GraphClientOptions extends ApiCallOptions {
  /** Graph's base, e.g. https://graph.microsoft.com. */
  apiUrl: string;
  tokens: TokenSource;
}

const COLLECTION = '/v1.0/security/incidents';
const RUN_HUNTING_QUERY = '/v1.0/security/runHuntingQuery';
const INCIDENT_ID = /^[0-9]{1,19}$/;

/**
 * Graph as `ApiCaller` calls it. Its limit counts every request on /security together, so a 429 holds
 * back all of the tenant's Graph calls (one budget API, `security`), but for advanced hunting's: its 429
 * is also the tenant's hunting quota, "blocked ... until after the next 15-minute cycle"
 * (api-reference/v1.0/resources/security-api-overview.md, "Advanced hunting"), which must not stop the
 * tenant's incidents being read: hunting's budget API is `security/runHuntingQuery`, held by its own 429s
 * and by any hold on `security` (shared-budget.ts), while its own holds leave the rest of `security` free.
 * A hunting 429 that was the request rate after all costs the listing one 429 of its own, which holds it.
 *
 * `Prefer: include-unknown-enum-members`: without it Graph writes the members of an evolvable enum
 * added after `unknownFutureValue` (an incident's `awaitingAction` status, alerts' newer service
 * sources) as `unknownFutureValue`, and routing rules could not tell them apart. The relay reads enums
 * as open strings, which is the condition Graph sets for asking ("If your application is prepared to
 * handle unknown enum members, it should opt-in", concepts/best-practices-concept.md, "Evolvable enums").
 */
const GRAPH: ApiService = {
  name: 'Microsoft Graph',
  headers: { prefer: 'include-unknown-enum-members' },
  redirect: 'manual',
  budgetApi: (api) => (api === 'runHuntingQuery' ? 'security/runHuntingQuery' : 'security'),
  parseError,
  // Graph says its wait in Retry-After only (concepts/throttling.md); its body says "Please retry again later."
  retryAfterMs: (headers, _error, now) => retryAfterHeader(headers.get('retry-after'), now),
  trace: traceGraphCall,
  record: recordGraphCall,
};

const timestamp = z.string().refine((value) => {
  try {
    normalizeTimestamp(value);
    return true;
  } catch {
    return false;
  }
}, 'must be an ISO 8601 UTC timestamp');
const incidentSchema = z.looseObject({ id: z.string().min(1), lastUpdateDateTime: timestamp });
const pageSchema = z.looseObject({ value: z.array(incidentSchema), '@odata.nextLink': z.string().optional() });
const commentsSchema = z.looseObject({ value: z.array(z.unknown()) });
// microsoft.graph.security.huntingQueryResults: the page's examples write a column `name`/`type`, its last sample `Name`/`Type`.
const huntingColumnSchema = z
  .looseObject({
    name: z.string().optional(),
    Name: z.string().optional(),
    type: z.string().optional(),
    Type: z.string().optional(),
  })
  .transform((c) => ({ Name: c.name ?? c.Name, Type: c.type ?? c.Type }))
  .refine(
    (c): c is { Name: string; Type: string } => c.Name !== undefined && c.Type !== undefined,
    'a column without its name or type',
  );
const huntingResultsSchema = z.looseObject({
  schema: z.array(huntingColumnSchema),
  results: z.array(z.record(z.string(), z.unknown())),
});

export class GraphClient {
  readonly budget: ApiCallBudget;
  readonly budgetClass: BudgetClass;
  #caller: ApiCaller;
  /** This client and its views, one per budget class, shared by all of them. */
  #views = new Map<BudgetClass, GraphClient>();
  readonly #options: GraphClientOptions;
  /** {apiUrl}/v1.0/security/incidents: the one collection a nextLink may lead to. */
  readonly #collection: URL;
  readonly #runHuntingQuery: URL;

  constructor(options: GraphClientOptions) {
    const apiUrl = options.apiUrl.replace(/\/+$/, '');
    this.#options = options;
    this.#collection = new URL(apiUrl + COLLECTION);
    this.#runHuntingQuery = new URL(apiUrl + RUN_HUNTING_QUERY);
    this.#caller = new ApiCaller(GRAPH, apiUrl, options.tokens, {
      ...options,
      budget: options.budget ?? new CallBudget(GRAPH_BUDGET),
    });
    this.budget = this.#caller.budget;
    this.budgetClass = this.#caller.budgetClass;
    this.#views.set(this.budgetClass, this);
  }

  /** Calls sent (attempts included), by tenant, by this client and its views. */
  get calls(): Map<string, number> {
    return this.#caller.calls;
  }

  /** How long a call of `operation` would wait now for this client's share of the tenant's budget (0: at once). */
  budgetWait(tenantId: string, operation: string): number {
    return this.#caller.budgetWait(tenantId, operation);
  }

  /** This client spending another class of the same budget (same tokens, settings and call counters); views are kept, so this is cheap. */
  withBudgetClass(budgetClass: BudgetClass): GraphClient {
    let view = this.#views.get(budgetClass);
    if (!view) {
      view = new GraphClient({ ...this.#options, budget: this.budget, budgetClass });
      view.#caller = this.#caller.withBudgetClass(budgetClass);
      view.#views = this.#views;
      this.#views.set(budgetClass, view);
    }
    return view;
  }

  /**
   * The incidents updated at or after `since`, with their alerts, page by page as they arrive: the
   * first page filtered on lastUpdateDateTime (a DateTimeOffset literal, unquoted), then each
   * `@odata.nextLink` as Graph wrote it (concepts/paging.md: the whole URL, opaque) until a page has
   * none, at most `maxPages` pages. `nextLink` resumes a listing from a page's link instead of starting
   * it (`since` is then in the link). A version listed twice in one listing is yielded once. A link
   * that leads anywhere but this client's incidents collection is refused (`PermanentError`) before any
   * request is sent to it, so that neither a hostile answer nor a tampered continuation gets the token.
   */
  async *incidentPagesSince(
    tenant: Tenant,
    since: string,
    options: { maxPages?: number; skip?: number; nextLink?: string } = {},
  ): AsyncGenerator<GraphIncidentPage, void, undefined> {
    let url =
      options.nextLink === undefined
        ? this.#firstPage(since)
        : this.#followable(tenant, options.nextLink, 'the continuation it was given');
    const listed = new Set<string>();
    const requested = new Set<string>();
    let skip = options.skip ?? 0;
    for (let pages = 0; options.maxPages === undefined || pages < options.maxPages; pages++) {
      requested.add(url.href);
      const page = await this.#listPage(tenant, url);
      skip += page.value.length;
      const incidents = page.value.filter((incident) => {
        const version = `${incident.id}|${normalizeTimestamp(incident.lastUpdateDateTime)}`;
        if (listed.has(version)) return false;
        listed.add(version);
        return true;
      });
      const nextLink = page['@odata.nextLink'];
      if (nextLink === undefined) {
        yield { incidents, nextSkip: skip, last: true };
        return;
      }
      // Checked before the page is handed over: a caller must not keep a link that would be refused.
      const next = this.#followable(tenant, nextLink, "Microsoft Graph's answer");
      if (requested.has(next.href))
        throw new RetryableError("Microsoft Graph's nextLink leads back to a page this listing has already read", {
          tenantId: tenant.tenantId,
          operation: 'listIncidents',
        });
      yield { incidents, nextSkip: skip, nextLink, last: false };
      url = next;
    }
  }

  /**
   * One page of incidents with their alerts, by offset (security-list-incidents.md: `$filter`, `$skip`,
   * `$top`, `$expand`), as the analyst endpoints page them; the page's nextLink is not followed. A `$top`
   * over Graph's 50 or a negative `$skip` is refused before anything is sent.
   */
  async listIncidentsPage(
    tenant: Tenant,
    options: { filter?: string; top?: number; skip?: number },
  ): Promise<GraphIncident[]> {
    const top = options.top ?? GRAPH_PAGE_SIZE;
    const skip = options.skip ?? 0;
    if (!Number.isSafeInteger(top) || top < 1 || top > GRAPH_PAGE_SIZE || !Number.isSafeInteger(skip) || skip < 0)
      throw new PermanentError(
        `A page of Microsoft Graph incidents is 1 to ${GRAPH_PAGE_SIZE} from an offset of 0 or more, not $top=${top} $skip=${skip}: nothing was sent`,
        { tenantId: tenant.tenantId, operation: 'listIncidents' },
      );
    const query: [string, string][] = [['$expand', 'alerts']];
    if (options.filter) query.push(['$filter', options.filter]);
    query.push(['$top', String(top)]);
    if (skip > 0) query.push(['$skip', String(skip)]);
    const url = new URL(`${this.#collection.href}?${query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`);
    return (await this.#listPage(tenant, url)).value;
  }

  /** The incident with its alerts (security-incident-get.md, `$expand=alerts`). */
  async getIncident(tenant: Tenant, incidentId: number | string): Promise<GraphIncident> {
    const id = this.#incidentId(tenant, incidentId, 'getIncident');
    const body = await this.#caller.send<unknown>(tenant, {
      operation: `getIncident ${id}`,
      method: 'GET',
      url: new URL(`${this.#collection.href}/${id}?$expand=alerts`),
    });
    return incidentOf(body, tenant, `getIncident ${id}`);
  }

  /** PATCH (security-incident-update.md): Graph answers the updated incident (without its alerts). */
  async updateIncident(
    tenant: Tenant,
    incidentId: number | string,
    update: GraphIncidentUpdate,
  ): Promise<GraphIncident> {
    const id = this.#incidentId(tenant, incidentId, 'updateIncident');
    const body = await this.#caller.send<unknown>(tenant, {
      operation: `updateIncident ${id}`,
      method: 'PATCH',
      url: new URL(`${this.#collection.href}/${id}`),
      body: update,
    });
    return incidentOf(body, tenant, `updateIncident ${id}`);
  }

  /**
   * Adds a comment (security-incident-post-comments.md); Graph answers every alertComment of the
   * incident, which this returns. A comment this client timed out on is not sent again: the first may
   * still be added, and a second would be a duplicate the analysts see.
   */
  async addComment(tenant: Tenant, incidentId: number | string, comment: string): Promise<unknown> {
    const id = this.#incidentId(tenant, incidentId, 'addComment');
    const operation = `addComment ${id}`;
    const body = await this.#caller.send<unknown>(tenant, {
      operation,
      method: 'POST',
      url: new URL(`${this.#collection.href}/${id}/comments`),
      body: { '@odata.type': 'microsoft.graph.security.alertComment', comment },
      retryTimeouts: false,
    });
    const parsed = commentsSchema.safeParse(body);
    if (!parsed.success)
      throw new RetryableError('Microsoft Graph answered the comment without the list of comments', {
        tenantId: tenant.tenantId,
        operation,
      });
    return parsed.data.value;
  }

  /**
   * Advanced hunting through Graph (security-security-runhuntingquery.md: POST {"Query"}, application or
   * delegated ThreatHunting.Read.All, the default 30 days), answered in the Defender API's shape
   * (`Schema` of `Name`/`Type`, `Results`) so that routes' hunting reads one shape. A query that timed
   * out is not sent again: it may still be running, and spending the tenant's hunting quota.
   */
  async runHuntingQuery(tenant: Tenant, query: string): Promise<HuntingResult> {
    const operation = 'runHuntingQuery';
    const body = await this.#caller.send<unknown>(tenant, {
      operation,
      method: 'POST',
      url: this.#runHuntingQuery,
      body: { Query: query },
      retryTimeouts: false,
    });
    const parsed = huntingResultsSchema.safeParse(body);
    if (!parsed.success)
      throw new RetryableError(`Microsoft Graph answered the hunting query with ${describeIssue(parsed.error)}`, {
        tenantId: tenant.tenantId,
        operation,
      });
    return { Schema: parsed.data.schema, Results: parsed.data.results };
  }

  /** `$expand=alerts&$filter=lastUpdateDateTime ge <since>&$top=50`, written as Graph's own nextLinks are (names as they are, values percent-encoded). */
  #firstPage(since: string): URL {
    const options: [string, string][] = [
      ['$expand', 'alerts'],
      ['$filter', `lastUpdateDateTime ge ${normalizeTimestamp(since)}`],
      ['$top', String(GRAPH_PAGE_SIZE)],
    ];
    return new URL(`${this.#collection.href}?${options.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`);
  }

  async #listPage(tenant: Tenant, url: URL): Promise<{ value: GraphIncident[]; '@odata.nextLink'?: string }> {
    const body = await this.#caller.send<unknown>(tenant, { operation: 'listIncidents', method: 'GET', url });
    const parsed = pageSchema.safeParse(body);
    if (!parsed.success) {
      throw new RetryableError(`Microsoft Graph answered the incident list with ${describeIssue(parsed.error)}`, {
        tenantId: tenant.tenantId,
        operation: 'listIncidents',
      });
    }
    return parsed.data as { value: GraphIncident[]; '@odata.nextLink'?: string };
  }

  /** The link as a URL to request, if it leads to this client's incidents collection (an absolute URL, as Graph writes nextLinks: concepts/paging.md). */
  #followable(tenant: Tenant, link: string, from: string): URL {
    const url = URL.canParse(link) ? new URL(link) : undefined;
    const collection = this.#collection;
    if (
      url &&
      url.origin === collection.origin &&
      url.pathname.toLowerCase() === collection.pathname.toLowerCase() &&
      url.username === '' &&
      url.password === ''
    )
      return url;
    // Only where it leads, never its query: what a hostile link carries is not repeated into logs.
    const where = url ? `${url.protocol}//${url.host}${url.pathname}`.slice(0, 200) : 'a link that is no URL';
    throw new PermanentError(
      `Refused a nextLink from ${from} to ${where}: the tenant's token goes only to ${collection.origin}${collection.pathname}`,
      { tenantId: tenant.tenantId, operation: 'listIncidents' },
    );
  }

  /** Graph's incident ids are decimal digits (security-incident.md's examples, Defender's incidentId); anything else would change the path. */
  #incidentId(tenant: Tenant, incidentId: unknown, operation: string): string {
    const id =
      typeof incidentId === 'number' && Number.isSafeInteger(incidentId) && incidentId >= 0
        ? String(incidentId)
        : incidentId;
    if (typeof id === 'string' && INCIDENT_ID.test(id)) return id;
    const shown = typeof id === 'string' ? JSON.stringify(id.slice(0, 40)) : typeof id;
    throw new PermanentError(`A Microsoft Graph incident id is decimal digits, not ${shown}: nothing was sent`, {
      tenantId: tenant.tenantId,
      operation,
    });
  }
}

/** Graph's entity answer, less its response metadata (`@odata.context`); unknown fields kept. */
function incidentOf(body: unknown, tenant: Tenant, operation: string): GraphIncident {
  const parsed = incidentSchema.safeParse(body);
  if (!parsed.success)
    throw new RetryableError(`Microsoft Graph answered with ${describeIssue(parsed.error)}`, {
      tenantId: tenant.tenantId,
      operation,
    });
  const { '@odata.context': _context, ...incident } = parsed.data;
  return incident as GraphIncident;
}

/** The first problem, by path and zod's words: never the value, which is the service's text. */
function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'an unexpected shape';
  return `${issue.path.length ? issue.path.join('.') : 'the body'}: ${issue.message}`;
}

/**
 * Graph's error body: `{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`
 * (concepts/errors.md). The OData validator's 400s have an empty code, read as none; any other text is its own message.
 */
function parseError(text: string): ServiceError {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } } | null;
    const code = body?.error?.code;
    const message = body?.error?.message;
    return {
      code: typeof code === 'string' && code !== '' ? code : undefined,
      message: typeof message === 'string' && message !== '' ? message : undefined,
    };
  } catch {
    return { message: text.slice(0, 200) || undefined };
  }
}
