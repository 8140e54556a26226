import express, { type NextFunction, type Request, type Response } from 'express';
import { decodeJwt } from 'jose';
import { TokenRejectedError, type TokenRejection, type TokenVerifier, type VerifiedToken } from '../common/bearer.js';
import type { FaultBoard, FaultTarget } from '../common/faults.js';
import type { HuntingQuota } from '../defender/hunting-quota.js';
import { GraphApiError, badRequest, codeForStatus, sendGraphError, tooManyRequests } from './errors.js';
import { HUNTING_RESULTS_CONTEXT, parseHuntingRequest, runHuntingQuery } from './hunting.js';
import { applyIncidentUpdate, parseCommentBody, parseIncidentUpdate } from './incident-update.js';
import { matchesFilter } from './odata-filter.js';
import { parseEntityQuery, parseListQuery, readOptions } from './odata-query.js';
import { contextProjection, serializeIncident } from './serialize.js';
import { canonicalQuery, type SkipTokens } from './skiptoken.js';
import { UNAUTHENTICATED, type CallStats, type Endpoint } from './stats.js';
import type { GraphIncidentStore } from './store.js';
import type { GraphThrottle } from './throttle.js';
import { formatTimestamp, ticksFromMs } from '../defender/timestamps.js';

/**
 * The token audiences Graph accepts: "In v1.0 tokens, [aud] can be the client ID or the resource URI used in
 * the request" (MicrosoftDocs/entra-docs access-token-claims-reference.md), so a token requested for
 * `https://graph.microsoft.com/.default` carries the URI, one requested by Graph's app id
 * (`00000003-0000-0000-c000-000000000000/.default`) the app id. Graph's tokens are v1.0.
 */
export const GRAPH_AUDIENCES = [
  'https://graph.microsoft.com',
  'https://graph.microsoft.com/',
  '00000003-0000-0000-c000-000000000000',
];

/**
 * The fault board's target for this stand-in. `FaultTarget` (local/common/faults.ts) does not list 'graph' yet;
 * the board matches targets by name, so 'graph' faults never touch the other stand-ins.
 */
export const GRAPH_FAULT_TARGET: FaultTarget = 'graph';

/**
 * Application permission (roles) or delegated permission (scp), same names, per operation: list and get take
 * SecurityIncident.Read.All or SecurityIncident.ReadWrite.All, update and comment SecurityIncident.ReadWrite.All
 * (api-reference/v1.0/api/security-list-incidents.md, security-incident-get.md, security-incident-update.md,
 * security-incident-post-comments.md, "Permissions"); runHuntingQuery ThreatHunting.Read.All, "Higher privileged
 * permissions: Not available." (api-reference/v1.0/includes/permissions/security-security-runhuntingquery-permissions.md).
 */
const PERMISSIONS = {
  read: ['SecurityIncident.Read.All', 'SecurityIncident.ReadWrite.All'],
  write: ['SecurityIncident.ReadWrite.All'],
  hunt: ['ThreatHunting.Read.All'],
} as const;
type Permission = keyof typeof PERMISSIONS;

const MAX_BODY = '1mb';
const JSON_TYPE = 'application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8';
const MAX_ID_LENGTH = 128;

export interface ApiDependencies {
  store: GraphIncidentStore;
  verifier: TokenVerifier;
  faults: FaultBoard;
  stats: CallStats;
  throttle: GraphThrottle;
  /** Per tenant: advanced hunting's CPU quota and query timeout, which runHuntingQuery's queries are charged to. */
  huntingQuota: HuntingQuota;
  skipTokens: SkipTokens;
  now: () => number;
  /** The public base URL (known once the server listens), for `@odata.context` and `@odata.nextLink`. */
  baseUrl: () => string;
  /** Where a 401's WWW-Authenticate sends a client for a token (Graph names login.microsoftonline.com). */
  authorityHost: string;
  log: (line: string) => void;
}

interface Caller {
  tenantId: string;
  clientId: string;
  roles: string[];
  scopes: string[];
  /** A user's token (scp) rather than an app's (roles). */
  delegated: boolean;
  /** Who a comment or change is attributed to: the user's UPN, or the app's name (or id) for app tokens. */
  author: string;
}

/** The router for `{url}/v1.0`. */
export function createApiRouter(deps: ApiDependencies): express.Router {
  const router = express.Router();
  const readBody = express.raw({ type: () => true, limit: MAX_BODY });
  const collection = '/security/incidents';
  const entity = '/security/incidents/:id';
  const comments = '/security/incidents/:id/comments';
  // The documented request line, and the namespace-qualified name the Graph SDKs send (they are generated from
  // the OpenAPI description, which has only that one: msgraph-sdk-python's request builder for it has the URL
  // template "{+baseurl}/security/microsoft.graph.security.runHuntingQuery").
  const hunting = ['/security/runHuntingQuery', '/security/microsoft.graph.security.runHuntingQuery'];

  router.use(recordCall(deps));
  router.use(applyFault(deps));
  router.use(authenticate(deps));

  router.get(collection, requireTenant(deps), limit(deps), requirePermission('read'), (req, res) => {
    const caller = callerOf(res);
    const options = readOptions(searchParams(req));
    const query = parseListQuery(options);
    // A follow-up page sends the nextLink's options as they are; any $skip beside its token makes another query.
    const token = options.get('$skiptoken');
    const offset =
      token === undefined ? query.skip : deps.skipTokens.resolve(token, caller.tenantId, canonicalQuery(options));
    // What a nextLink carries: the query's options, the offset being the token's.
    const continued = new Map([...options].filter(([name]) => name !== '$skip' && name !== '$skiptoken'));
    const include = prefersUnknownEnums(req);
    const body = deps.store.page(
      caller.tenantId,
      (incident) => matchesFilter(incident, query.filter),
      offset,
      query.top,
      (page, total) => {
        const more = query.top > 0 && offset + query.top < total;
        return JSON.stringify({
          '@odata.context': `${deps.baseUrl()}/v1.0/$metadata#security/incidents${contextProjection(query)}`,
          ...(query.count ? { '@odata.count': total } : {}),
          ...(more ? { '@odata.nextLink': nextLink(deps, continued, caller.tenantId, offset + query.top) } : {}),
          value: page.map((incident) =>
            serializeIncident(incident, {
              expandAlerts: query.expandAlerts,
              select: query.select,
              includeUnknownEnums: include,
            }),
          ),
        });
      },
    );
    sendOData(res, body);
  });

  router.get(entity, requireTenant(deps), limit(deps), requirePermission('read'), (req, res) => {
    const caller = callerOf(res);
    const query = parseEntityQuery(readOptions(searchParams(req)));
    const incident = findIncident(deps, caller, req.params.id);
    sendEntity(res, deps, incident, { ...query, includeUnknownEnums: prefersUnknownEnums(req) });
  });

  router.patch(entity, requireTenant(deps), limit(deps), requirePermission('write'), readBody, (req, res) => {
    const caller = callerOf(res);
    const id = incidentIdOf(req.params.id);
    const update = parseIncidentUpdate(parseJsonBody(req));
    const updated = deps.store.update(caller.tenantId, id, (incident) =>
      applyIncidentUpdate(incident, update, caller.author),
    );
    if (!updated) throw notFound(id);
    sendEntity(res, deps, updated, { expandAlerts: false, includeUnknownEnums: prefersUnknownEnums(req) });
  });

  router.post(comments, requireTenant(deps), limit(deps), requirePermission('write'), readBody, (req, res) => {
    const caller = callerOf(res);
    const id = incidentIdOf(req.params.id);
    const comment = parseCommentBody(parseJsonBody(req));
    const createdDateTime = formatTimestamp(ticksFromMs(deps.now()));
    const updated = deps.store.update(caller.tenantId, id, (incident) => {
      incident.comments = [
        ...(incident.comments ?? []),
        { comment, createdByDisplayName: caller.author, createdDateTime },
      ];
      incident.lastModifiedBy = caller.author;
    });
    if (!updated) throw notFound(id);
    // "an updated list of all alertComment resources of the incident" (security-incident-post-comments.md).
    sendOData(
      res,
      JSON.stringify({
        '@odata.context': `${deps.baseUrl()}/v1.0/$metadata#security/incidents('${encodeURIComponent(id)}')/comments`,
        value: updated.comments,
      }),
    );
  });

  // Throttled as any request on /security (throttle.ts); then the body, then the tenant's hunting CPU quota,
  // the query and its run time (hunting.ts), in the Defender stand-in's order for its advanced hunting API.
  router.post(hunting, requireTenant(deps), limit(deps), requirePermission('hunt'), readBody, (req, res) => {
    const caller = callerOf(res);
    const now = deps.now();
    const request = parseHuntingRequest(parseJsonBody(req), now);
    const answer = runHuntingQuery(
      deps.store.huntingSource(caller.tenantId),
      deps.huntingQuota,
      caller.tenantId,
      request,
      now,
    );
    sendOData(
      res,
      JSON.stringify({ '@odata.context': `${deps.baseUrl()}/v1.0/$metadata${HUNTING_RESULTS_CONTEXT}`, ...answer }),
    );
  });

  for (const path of [collection, entity, comments, ...hunting]) {
    router.all(path, (req) => {
      throw new GraphApiError(
        405,
        codeForStatus(405),
        `The HTTP method '${req.method}' is not allowed on ${req.baseUrl}${req.path}.`,
      );
    });
  }
  router.use((req) => {
    throw unknownSegment(req.path);
  });
  router.use(answerError(deps));
  return router;
}

function searchParams(req: Request): URLSearchParams {
  return new URL(req.originalUrl, 'https://localhost').searchParams;
}

/** `Prefer: include-unknown-enum-members` (Graph best practices, evolvable enumerations). */
function prefersUnknownEnums(req: Request): boolean {
  return /(^|[,;\s])include-unknown-enum-members($|[,;\s])/i.test(req.get('prefer') ?? '');
}

/** The request's URL again with the query options it continues and a skiptoken for the next offset. */
function nextLink(deps: ApiDependencies, continued: Map<string, string>, tenantId: string, offset: number): string {
  const skiptoken = deps.skipTokens.issue({ tenantId, query: canonicalQuery(continued), offset });
  const query = [...continued, ['$skiptoken', skiptoken] as const]
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join('&');
  return `${deps.baseUrl()}/v1.0/security/incidents?${query}`;
}

function sendEntity(
  res: Response,
  deps: ApiDependencies,
  incident: Parameters<typeof serializeIncident>[0],
  options: Parameters<typeof serializeIncident>[1],
): void {
  const projection = contextProjection(options);
  sendOData(
    res,
    JSON.stringify({
      '@odata.context': `${deps.baseUrl()}/v1.0/$metadata#security/incidents${projection}/$entity`,
      ...serializeIncident(incident, options),
    }),
  );
}

/**
 * 200 with the body and Graph's headers as the service writes them (`Content-Type: application/json;
 * odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8`, `OData-Version: 4.0`),
 * sent as bytes so Express does not rewrite the media type's parameters.
 */
function sendOData(res: Response, body: string): void {
  res.status(200).set({ 'Content-Type': JSON_TYPE, 'OData-Version': '4.0' }).send(Buffer.from(body, 'utf8'));
}

function incidentIdOf(raw: unknown): string {
  return typeof raw === 'string' ? raw : String(raw);
}

/** The caller's tenant's incident, or 404: an id of another tenant is as unknown as one that never existed. */
function findIncident(deps: ApiDependencies, caller: Caller, raw: unknown) {
  const id = incidentIdOf(raw);
  const incident = id.length <= MAX_ID_LENGTH ? deps.store.get(caller.tenantId, id) : undefined;
  if (!incident) throw notFound(id);
  return incident;
}

/**
 * 404 for an incident the tenant does not have. Graph's pages document no body for it; the code is the one
 * Graph's workloads use for a missing entity (`NotFound`), the message the stand-in's.
 */
function notFound(id: string): GraphApiError {
  const shown = id.length > MAX_ID_LENGTH ? `${id.slice(0, MAX_ID_LENGTH)}…` : id;
  return new GraphApiError(404, 'NotFound', `The incident '${shown}' was not found.`);
}

/** runHuntingQuery's segment, plain and namespace-qualified, lower-cased (Graph's segments ignore case). */
const HUNTING_SEGMENTS = ['runhuntingquery', 'microsoft.graph.security.runhuntingquery'];

/** The /security navigation properties of the v1.0 schema (msgraph-metadata cleanMetadata.xml, entity `security`). */
const SECURITY_NAVIGATION = [
  'alerts',
  'alerts_v2',
  'attacksimulation',
  'auditlog',
  'cases',
  'collaboration',
  'datasecurityandgovernance',
  'identities',
  'incidents',
  'labels',
  'securescorecontrolprofiles',
  'securescores',
  'subjectrightsrequests',
  'threatintelligence',
  'triggers',
  'triggertypes',
];

/**
 * A path Graph does not have answers 400 BadRequest "Resource not found for the segment '…'."; what Graph has
 * but the stand-in does not serve (the rest of v1.0, the other /security collections, an incident's alerts
 * navigation) answers 501 NotImplemented, saying so, rather than pretending it does not exist.
 */
function unknownSegment(path: string): GraphApiError {
  const segments = path.split('/').filter(Boolean);
  const notServed = (what: string) =>
    new GraphApiError(
      501,
      'NotImplemented',
      `The Microsoft Graph stand-in does not serve ${what}; it serves /v1.0/security/incidents and /v1.0/security/runHuntingQuery.`,
    );
  if (segments[0]?.toLowerCase() !== 'security') return notServed(`/v1.0/${segments[0] ?? ''}`);
  const collection = segments[1]?.toLowerCase() ?? '';
  if (HUNTING_SEGMENTS.includes(collection))
    return badRequest(`Resource not found for the segment '${segments[2] ?? ''}'.`);
  if (collection !== 'incidents')
    return SECURITY_NAVIGATION.includes(collection)
      ? notServed(`/v1.0/security/${segments[1]}`)
      : badRequest(`Resource not found for the segment '${segments[1] ?? 'security'}'.`);
  if (segments[3]?.toLowerCase() === 'alerts') return notServed("an incident's alerts navigation (use $expand=alerts)");
  return badRequest(`Resource not found for the segment '${segments[3] ?? segments[segments.length - 1] ?? ''}'.`);
}

/** Names the call for the stats before anything else runs, so faulted and refused calls count too. */
function endpointOf(method: string, path: string): Endpoint {
  const p = path.toLowerCase().replace(/\/$/, '');
  if (p === '/v1.0/security/incidents' && method === 'GET') return 'listIncidents';
  if (/^\/v1\.0\/security\/incidents\/[^/]+$/.test(p))
    return method === 'PATCH' ? 'updateIncident' : method === 'GET' ? 'getIncident' : 'other';
  if (/^\/v1\.0\/security\/incidents\/[^/]+\/comments$/.test(p) && method === 'POST') return 'createComment';
  if (HUNTING_SEGMENTS.some((segment) => p === `/v1.0/security/${segment}`) && method === 'POST')
    return 'runHuntingQuery';
  return 'other';
}

function recordCall(deps: ApiDependencies) {
  return (req: Request, res: Response, next: NextFunction) => {
    const endpoint = endpointOf(req.method, pathOf(req));
    res.on('finish', () => {
      const { tenantId, clientId } =
        (res.locals.caller as Caller | undefined) ?? unverifiedIdentity(req.headers.authorization);
      deps.stats.record(tenantId, clientId, endpoint, res.statusCode);
    });
    next();
  };
}

/** For the stats only: a call refused before its token was verified is put on the tenant and client it claims. */
function unverifiedIdentity(header: string | undefined): { tenantId: string; clientId: string } {
  try {
    const claims = decodeJwt(header?.replace(/^Bearer\s+/i, '') ?? '');
    const clientId = claims.appid ?? claims.azp;
    if (typeof claims.tid === 'string' && typeof clientId === 'string') return { tenantId: claims.tid, clientId };
  } catch {
    // Not a JWT at all: the call is counted as unauthenticated.
  }
  return { tenantId: UNAUTHENTICATED, clientId: UNAUTHENTICATED };
}

function applyFault(deps: ApiDependencies) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const path = pathOf(req);
    const fault = deps.faults.take(GRAPH_FAULT_TARGET, path);
    if (!fault) return next();
    deps.log(`graph: fault ${fault.kind} on ${req.method} ${path}`);
    switch (fault.kind) {
      case 'delay':
        await new Promise((resolve) => setTimeout(resolve, fault.ms));
        return next();
      case 'outage':
        req.socket.destroy();
        return;
      case 'malformed':
        // A body cut off mid-way, as a dropped connection behind a proxy delivers it.
        sendOData(
          res,
          `{"@odata.context":"${deps.baseUrl()}/v1.0/$metadata#security/incidents","value":[{"@odata.type":"#microsoft.graph.security.incident","id":"1","displayName":"Multi-stage inc`,
        );
        return;
      case 'status': {
        if (fault.status === 429) {
          const error = tooManyRequests(fault.retryAfterSeconds ?? 1);
          if (fault.retryAfterHeader === false) delete error.headers['Retry-After'];
          throw error;
        }
        const headers: Record<string, string> =
          fault.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(fault.retryAfterSeconds) };
        throw new GraphApiError(fault.status, codeForStatus(fault.status), faultMessage(fault.status), headers);
      }
    }
  };
}

/** The descriptions concepts/errors.md gives the codes (generalException, serviceNotAvailable). */
function faultMessage(status: number): string {
  if (status === 500) return 'An unspecified error has occurred.';
  if (status === 503)
    return 'The service is not available. Try the request again after a delay. There may be a Retry-After header.';
  return `The request failed with status ${status}.`;
}

/**
 * 401 InvalidAuthenticationToken, with the message Graph gives each kind of bad token as its clients record
 * them ("Access token is empty.", "IDX14100: JWT is not well formed, …", "Access token validation failure.
 * Invalid audience.", "Lifetime validation failed, the token is expired.") and Graph's challenge:
 * `WWW-Authenticate: Bearer realm="", authorization_uri="…/common/oauth2/authorize",
 * client_id="00000003-0000-0000-c000-000000000000"` (MicrosoftDocs/azure-docs
 * articles/key-vault/general/authentication-requests-and-responses.md, the Graph example).
 */
function unauthorized(reason: TokenRejection, header: string | undefined, authorityHost: string): GraphApiError {
  const token = header?.replace(/^Bearer\s+/i, '').trim() ?? '';
  const messages: Record<TokenRejection, string> = {
    missing: 'Access token is empty.',
    malformed: token.includes('.')
      ? 'Access token validation failure.'
      : 'IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or JWE Compact Serialization Format.',
    invalid_signature: 'Access token validation failure.',
    expired: 'Lifetime validation failed, the token is expired.',
    wrong_audience: 'Access token validation failure. Invalid audience.',
    wrong_issuer: 'Access token validation failure. Invalid issuer.',
  };
  return new GraphApiError(401, 'InvalidAuthenticationToken', messages[reason], {
    'WWW-Authenticate': `Bearer realm="", authorization_uri="${authorityHost.replace(/\/$/, '')}/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`,
  });
}

function authenticate(deps: ApiDependencies) {
  return async (req: Request, res: Response, next: NextFunction) => {
    let verified: VerifiedToken;
    try {
      verified = await deps.verifier.verifyAuthorization(req.headers.authorization, { audience: GRAPH_AUDIENCES });
    } catch (err) {
      if (err instanceof TokenRejectedError)
        throw unauthorized(err.reason, req.headers.authorization, deps.authorityHost);
      throw err;
    }
    const claims = verified.claims as VerifiedToken['claims'] & { app_displayname?: unknown; unique_name?: unknown };
    const delegated = typeof claims.scp === 'string';
    const userName =
      typeof claims.upn === 'string'
        ? claims.upn
        : typeof claims.unique_name === 'string'
          ? claims.unique_name
          : undefined;
    const appName = typeof claims.app_displayname === 'string' ? claims.app_displayname : verified.clientId;
    const caller: Caller = {
      tenantId: verified.claims.tid.toLowerCase(),
      clientId: verified.clientId,
      roles: verified.roles,
      scopes: verified.scopes,
      delegated,
      author: delegated && userName ? userName : appName,
    };
    res.locals.caller = caller;
    next();
  };
}

/**
 * A tenant the stand-in holds no data for is refused (403), as the Defender stand-in refuses a tenant without
 * Defender; no Graph page says what the real service answers (a stand-in choice).
 */
function requireTenant(deps: ApiDependencies) {
  return (_req: Request, res: Response, next: NextFunction) => {
    const { tenantId } = callerOf(res);
    if (!deps.store.hasTenant(tenantId))
      throw new GraphApiError(
        403,
        'Forbidden',
        `Tenant ${tenantId} has no Microsoft 365 Defender data: the security API is not provisioned for this tenant.`,
      );
    next();
  };
}

function limit(deps: ApiDependencies) {
  return (_req: Request, res: Response, next: NextFunction) => {
    const caller = callerOf(res);
    const decision = deps.throttle.admit(caller.tenantId, caller.clientId);
    if (!decision.allowed) throw tooManyRequests(decision.retryAfterSeconds);
    next();
  };
}

/**
 * 403 Forbidden without the permission, worded as Graph words it: for an app, "Missing application roles. API
 * required roles: SecurityIncident.Read.All,SecurityIncident.ReadWrite.All, application roles: ." (the
 * security API's own answer, wazuh/wazuh-documentation#7300); for a user's token, Graph's "Missing scope
 * permissions on the request. API requires one of '…'. Scopes on the request '…'".
 */
function requirePermission(permission: Permission) {
  const needed: readonly string[] = PERMISSIONS[permission];
  return (_req: Request, res: Response, next: NextFunction) => {
    const caller = callerOf(res);
    if (caller.delegated) {
      if (!caller.scopes.some((scope) => needed.includes(scope)))
        throw new GraphApiError(
          403,
          'Forbidden',
          `Missing scope permissions on the request. API requires one of '${needed.join(', ')}'. Scopes on the request '${caller.scopes.join(', ')}'`,
        );
    } else if (!caller.roles.some((role) => needed.includes(role))) {
      throw new GraphApiError(
        403,
        'Forbidden',
        `Missing application roles. API required roles: ${needed.join(',')}, application roles: ${caller.roles.join(',')}.`,
      );
    }
    next();
  };
}

/** Graph's answer to a body that is not JSON (BadRequest). */
function parseJsonBody(req: Request): unknown {
  const raw = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
  try {
    if (raw.trim() === '') throw new Error('empty');
    return JSON.parse(raw);
  } catch {
    throw badRequest(
      'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.',
    );
  }
}

function answerError(deps: ApiDependencies) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return;
    const now = deps.now();
    if (err instanceof GraphApiError) return sendGraphError(res, err, now);
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Express refusals: body too large (413), unsupported encoding, aborted upload, undecodable path.
      if (status === 413)
        return sendGraphError(
          res,
          new GraphApiError(413, 'RequestEntityTooLarge', `The request body exceeds ${MAX_BODY}.`),
          now,
        );
      return sendGraphError(res, badRequest(`The request could not be read: ${(err as Error).message}.`), now);
    }
    deps.log(`graph: unexpected error on ${req.method} ${pathOf(req)}: ${(err as Error)?.stack ?? String(err)}`);
    sendGraphError(res, new GraphApiError(500, 'generalException', 'An unspecified error has occurred.'), now);
  };
}

function callerOf(res: Response): Caller {
  return res.locals.caller as Caller;
}

function pathOf(req: Request): string {
  return req.originalUrl.split('?')[0] ?? req.originalUrl;
}
