import express, { type NextFunction, type Request, type Response } from 'express';
import { decodeJwt } from 'jose';
import { TokenRejectedError, type TokenVerifier } from '../common/bearer.js';
import type { FaultBoard } from '../common/faults.js';
import { runAdvancedHunting } from './advanced-hunting.js';
import { DefenderApiError, codeForStatus, sendDefenderError, tooManyRequests } from './errors.js';
import { applyIncidentUpdate, parseIncidentUpdate } from './incident-update.js';
import { KqlError } from './kql.js';
import { FilterSyntaxError, matchesFilter, parseIncidentFilter, type FilterClause } from './odata-filter.js';
import type { HuntingQuota } from './hunting-quota.js';
import { acquireAll, type RateLimiter } from './rate-limiter.js';
import { UNAUTHENTICATED, type CallStats, type Endpoint } from './stats.js';
import type { IncidentStore } from './store.js';
import { formatTimestamp, ticksFromMs } from './timestamps.js';

/** The token audiences Defender accepts: the resource URI with and without the trailing slash. */
export const DEFENDER_AUDIENCES = ['https://api.security.microsoft.com', 'https://api.security.microsoft.com/'];
const MAX_PAGE_SIZE = 100;
const MAX_BODY = '1mb';

/** Application permission (roles) or delegated permission (scp) that grants each operation. */
const PERMISSIONS = {
  read: { roles: ['Incident.Read.All', 'Incident.ReadWrite.All'], scopes: ['Incident.Read', 'Incident.ReadWrite'] },
  write: { roles: ['Incident.ReadWrite.All'], scopes: ['Incident.ReadWrite'] },
  hunt: { roles: ['AdvancedHunting.Read.All'], scopes: ['AdvancedHunting.Read'] },
} as const;
type Permission = keyof typeof PERMISSIONS;

export interface ApiDependencies {
  store: IncidentStore;
  verifier: TokenVerifier;
  faults: FaultBoard;
  stats: CallStats;
  /** Per tenant and app: the incidents endpoints share one budget, advanced hunting has its own. */
  incidentLimiter: RateLimiter;
  /** Get incident's own quota, counted on top of the shared one. */
  getIncidentLimiter: RateLimiter;
  huntingLimiter: RateLimiter;
  /** Per tenant: advanced hunting's CPU quota and query timeout. */
  huntingQuota: HuntingQuota;
  now: () => number;
  /** The public base URL (known once the server listens), for `@odata.context`. */
  baseUrl: () => string;
  log: (line: string) => void;
}

interface Caller {
  tenantId: string;
  clientId: string;
  roles: string[];
  scopes: string[];
  /** Who a comment is attributed to: the user's UPN, or the app id for app tokens. */
  author: string;
}

export function createApiRouter(deps: ApiDependencies): express.Router {
  const router = express.Router();
  const readBody = express.raw({ type: () => true, limit: MAX_BODY });

  router.use(recordCall(deps));
  router.use(applyFault(deps));
  router.use(authenticate(deps));

  router.get('/incidents', limit(deps, 'incident'), requirePermission('read'), (req, res) => {
    const caller = callerOf(res);
    const { filter, top, skip } = parseListQuery(req);
    const body = deps.store.listPage(
      caller.tenantId,
      (incident) => matchesFilter(incident, filter),
      skip,
      top,
      (page) =>
        JSON.stringify({ '@odata.context': `${deps.baseUrl()}/api/$metadata#Incidents`, value: shuffle([...page]) }),
    );
    res.type('application/json').send(body);
  });

  // Get incident's page gives it "100 calls per minute and 1,500 calls per hour" (MicrosoftDocs/defender-docs
  // defender-xdr/api-get-incident.md, "Limitations"); the incidents API's page gives the API 50 a minute and
  // 1,500 an hour and says "Each method also has its own quotas" (api-incident.md, "Quotas and resource
  // allocation"). "Also": the method's quota counts in addition to the shared one, not instead of it. At the
  // documented numbers the shared 50 a minute is reached first; get incident's own shows when the shared
  // quota is configured higher (`limits`), and a client must honour a 429 from either.
  router.get('/incidents/:id', limit(deps, 'incident', 'getIncident'), requirePermission('read'), (req, res) => {
    const caller = callerOf(res);
    const id = parseIncidentId(req.params.id);
    const incident = deps.store.get(caller.tenantId, id);
    if (!incident) throw notFound(id);
    res.json(incident);
  });

  router.patch('/incidents/:id', limit(deps, 'incident'), requirePermission('write'), readBody, (req, res) => {
    const caller = callerOf(res);
    const id = parseIncidentId(req.params.id);
    const update = parseIncidentUpdate(parseJsonBody(req));
    const nowIso = formatTimestamp(ticksFromMs(deps.now()));
    const updated = deps.store.update(caller.tenantId, id, (incident) =>
      applyIncidentUpdate(incident, update, caller.author, nowIso),
    );
    if (!updated) throw notFound(id);
    res.json(updated);
  });

  router.post('/advancedhunting/run', limit(deps, 'hunting'), requirePermission('hunt'), readBody, (req, res) => {
    const caller = callerOf(res);
    const body = parseJsonBody(req);
    const query = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).Query : undefined;
    if (query === undefined)
      throw new DefenderApiError(
        400,
        'MissingRequiredParameter',
        "The body must set 'Query' (case-sensitive) to a KQL query.",
      );
    if (typeof query !== 'string' || query.trim() === '')
      throw new DefenderApiError(400, 'InvalidInput', "'Query' must be a non-empty string.");
    // Over the tenant's CPU quota: 429 until the next 15-minute cycle; a query over three minutes: the timeout error.
    deps.huntingQuota.admit(caller.tenantId);
    try {
      res.json(
        runAdvancedHunting(deps.store.list(caller.tenantId), query, deps.now(), (rows) =>
          deps.huntingQuota.run(caller.tenantId, rows),
        ),
      );
    } catch (err) {
      if (err instanceof KqlError) throw new DefenderApiError(400, 'BadRequest', err.message);
      throw err;
    }
  });

  for (const path of ['/incidents', '/incidents/:id', '/advancedhunting/run']) {
    router.all(path, (req) => {
      throw new DefenderApiError(
        405,
        'MethodNotAllowed',
        `The method ${req.method} is not allowed on ${req.baseUrl}${req.path}.`,
      );
    });
  }
  router.use((req) => {
    throw new DefenderApiError(404, 'ResourceNotFound', `No resource at ${req.baseUrl}${req.path}.`);
  });
  router.use(answerError(deps));
  return router;
}

/** Names the call for the stats before anything else runs, so faulted and refused calls count too. */
function endpointOf(method: string, path: string): Endpoint {
  const p = path.toLowerCase().replace(/\/$/, '');
  if (p === '/api/incidents' && method === 'GET') return 'listIncidents';
  if (/^\/api\/incidents\/[^/]+$/.test(p))
    return method === 'PATCH' ? 'updateIncident' : method === 'GET' ? 'getIncident' : 'other';
  if (p === '/api/advancedhunting/run' && method === 'POST') return 'advancedHunting';
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

/**
 * For the stats only: a call refused before its token was verified (fault, 401) is still put on
 * the tenant and client it claims to be, so a benchmark sees its own 429s and errors.
 */
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
    const fault = deps.faults.take('defender', path);
    if (!fault) return next();
    deps.log(`defender: fault ${fault.kind} on ${req.method} ${path}`);
    switch (fault.kind) {
      case 'delay':
        await new Promise((resolve) => setTimeout(resolve, fault.ms));
        return next();
      case 'outage':
        req.socket.destroy();
        return;
      case 'malformed':
        // A body cut off mid-way, as a dropped connection behind a proxy delivers it.
        res
          .status(200)
          .type('application/json')
          .send(
            `{"@odata.context":"${deps.baseUrl()}/api/$metadata#Incidents","value":[{"incidentId":1,"incidentName":"Multi-stage inc`,
          );
        return;
      case 'status': {
        const status = fault.status;
        if (status === 429) throw tooManyRequests(fault.retryAfterSeconds ?? 1, fault.retryAfterHeader !== false);
        const headers: Record<string, string> =
          fault.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(fault.retryAfterSeconds) };
        throw new DefenderApiError(status, codeForStatus(status), faultMessage(status), headers);
      }
    }
  };
}

function faultMessage(status: number): string {
  if (status === 500) return 'An unexpected error occurred. Please retry.';
  if (status === 503) return 'The service is temporarily unavailable. Please retry later.';
  return `The request failed with status ${status}.`;
}

function authenticate(deps: ApiDependencies) {
  return async (req: Request, res: Response, next: NextFunction) => {
    let verified;
    try {
      verified = await deps.verifier.verifyAuthorization(req.headers.authorization, { audience: DEFENDER_AUDIENCES });
    } catch (err) {
      if (err instanceof TokenRejectedError)
        throw new DefenderApiError(401, 'Unauthorized', `Unauthorized: ${err.message}`);
      throw err;
    }
    const tenantId = verified.claims.tid;
    if (!deps.store.hasTenant(tenantId)) {
      throw new DefenderApiError(
        403,
        'Forbidden',
        `Tenant ${tenantId} has no Microsoft Defender XDR data: the service is not provisioned for this tenant.`,
      );
    }
    const caller: Caller = {
      tenantId,
      clientId: verified.clientId,
      roles: verified.roles,
      scopes: verified.scopes,
      author: verified.claims.upn ?? verified.clientId,
    };
    res.locals.caller = caller;
    next();
  };
}

function limit(deps: ApiDependencies, ...budgets: ('incident' | 'getIncident' | 'hunting')[]) {
  const limiters = budgets.map((budget) =>
    budget === 'incident'
      ? deps.incidentLimiter
      : budget === 'getIncident'
        ? deps.getIncidentLimiter
        : deps.huntingLimiter,
  );
  return (_req: Request, res: Response, next: NextFunction) => {
    const caller = callerOf(res);
    const decision = acquireAll(limiters, `${caller.tenantId}\n${caller.clientId}`);
    if (!decision.allowed) throw tooManyRequests(decision.retryAfterSeconds);
    next();
  };
}

function requirePermission(permission: Permission) {
  const { roles, scopes } = PERMISSIONS[permission];
  return (_req: Request, res: Response, next: NextFunction) => {
    const caller = callerOf(res);
    const granted =
      caller.roles.some((role) => (roles as readonly string[]).includes(role)) ||
      caller.scopes.some((scope) => (scopes as readonly string[]).includes(scope));
    if (!granted) {
      throw new DefenderApiError(
        403,
        'Forbidden',
        `Missing permission: this call needs the application permission ${roles.join(' or ')} (roles) or the delegated permission ${scopes.join(' or ')} (scp).`,
      );
    }
    next();
  };
}

/**
 * An OData query the service cannot take (a bad `$filter`, an unsupported or repeated option, a `$top`
 * or `$skip` that is not a whole number) is a 400 with code ODataError (defender-api.md, "Errors";
 * MicrosoftDocs/defender-docs defender-xdr/api-error-codes.md).
 */
function odataError(message: string): DefenderApiError {
  return new DefenderApiError(400, 'ODataError', `Invalid OData URI query: ${message}`);
}

function parseListQuery(req: Request): { filter: FilterClause[]; top: number; skip: number } {
  const params = new URL(req.originalUrl, 'https://localhost').searchParams;
  const unsupported = [...new Set(params.keys())].filter(
    (key) => key.startsWith('$') && !['$filter', '$top', '$skip'].includes(key),
  );
  if (unsupported.length > 0)
    throw odataError(`Query option(s) ${unsupported.join(', ')} are not supported: use $filter, $top and $skip.`);
  const single = (name: string): string | undefined => {
    const values = params.getAll(name);
    if (values.length > 1) throw odataError(`Query option ${name} was given ${values.length} times.`);
    return values[0];
  };
  const filterText = single('$filter');
  let filter: FilterClause[] = [];
  if (filterText !== undefined) {
    try {
      filter = parseIncidentFilter(filterText);
    } catch (err) {
      if (err instanceof FilterSyntaxError) throw odataError(`Invalid $filter: ${err.message}`);
      throw err;
    }
  }
  const top = wholeNumber('$top', single('$top')) ?? MAX_PAGE_SIZE;
  if (top > MAX_PAGE_SIZE)
    throw new DefenderApiError(
      400,
      'MaximumBatchSizeExceeded',
      `$top=${top} exceeds the maximum page size of ${MAX_PAGE_SIZE}.`,
    );
  const skip = wholeNumber('$skip', single('$skip')) ?? 0;
  return { filter, top, skip };
}

function wholeNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text.trim())) throw odataError(`${name} must be a non-negative whole number; got '${text}'.`);
  return Number(text);
}

function parseIncidentId(text: string | string[] | undefined): number {
  if (typeof text !== 'string' || !/^\d{1,15}$/.test(text))
    throw invalidInput(`The incident id must be an integer; got '${String(text)}'.`);
  return Number(text);
}

function parseJsonBody(req: Request): unknown {
  const raw = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
  if (raw.trim() === '')
    throw new DefenderApiError(400, 'InvalidRequestBody', 'The request body is empty: a JSON object is required.');
  try {
    return JSON.parse(raw);
  } catch {
    throw new DefenderApiError(400, 'InvalidRequestBody', 'The request body is not valid JSON.');
  }
}

function answerError(deps: ApiDependencies) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return;
    if (err instanceof DefenderApiError) return sendDefenderError(res, err);
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Express refusals: body too large (413), unsupported encoding, aborted upload, undecodable path.
      if (status === 413)
        return sendDefenderError(
          res,
          new DefenderApiError(413, 'RequestEntityTooLarge', `The request body exceeds the ${MAX_BODY} limit.`),
        );
      const aboutBody = /^(entity|request|encoding|charset)\./.test(String((err as { type?: unknown }).type));
      const code = aboutBody ? 'InvalidRequestBody' : 'BadRequest';
      return sendDefenderError(
        res,
        new DefenderApiError(status, code, `The request could not be read: ${(err as Error).message}.`),
      );
    }
    deps.log(`defender: unexpected error on ${req.method} ${pathOf(req)}: ${(err as Error)?.stack ?? String(err)}`);
    sendDefenderError(res, new DefenderApiError(500, 'InternalServerError', 'An unexpected error occurred.'));
  };
}

function callerOf(res: Response): Caller {
  return res.locals.caller as Caller;
}

function pathOf(req: Request): string {
  return req.originalUrl.split('?')[0] ?? req.originalUrl;
}

function invalidInput(message: string): DefenderApiError {
  return new DefenderApiError(400, 'InvalidInput', message);
}

function notFound(id: number): DefenderApiError {
  return new DefenderApiError(404, 'NotFound', `Incident ${id} was not found.`);
}

/** Order is not guaranteed by the real API; shuffling makes a client that relies on it fail here. */
function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
