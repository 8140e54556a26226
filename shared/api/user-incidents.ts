import type { IncidentUpdate } from '../sources/defender/client.js';
import {
  incidentFilter,
  parseIncidentId,
  parseIncidentUpdate,
  parseListQuery,
  RequestValidationError,
  type IncidentListQuery,
} from '../sources/defender/incident-requests.js';
import type { GraphIncident } from '../sources/graph/client.js';
import { graphIncidentUpdate, graphListRequest } from '../sources/graph/incident-requests.js';
import { PermanentError, RetryableError } from '../errors.js';
import { redactingLogger, type Logger } from '../telemetry/logging.js';
import { describeError } from '../telemetry/redact.js';
import { UserContextError, type Analyst, type UserContext } from '../auth/user-context.js';

/**
 * The analyst endpoints, HTTP-shaped but free of the Functions runtime: `GET /api/incidents` (the
 * caller's view of their tenant) and `PATCH /api/incidents/{tenantId}/{incidentId}`, both acting
 * as the signed-in analyst through the user context, through the API the analyst's tenant is read
 * through (its registry `source`): Defender, or Microsoft Graph. The query and the update body are the
 * same for both; the incidents come back as that API gives them, and the list says which (`api`).
 */

/** The API an analyst's tenant is read through, as the list answer names it. */
export type IncidentApiName = 'defender' | 'graph';

const SERVICE_NAMES: Record<IncidentApiName, string> = { defender: 'Microsoft Defender', graph: 'Microsoft Graph' };

const apiOf = (analyst: Analyst): IncidentApiName => (analyst.tenant.source === 'graph' ? 'graph' : 'defender');

/** The parts of an HTTP request these endpoints read (an `HttpRequest` from @azure/functions fits). */
export interface AnalystRequest {
  headers: { get(name: string): string | null };
  query: URLSearchParams;
  params: Record<string, string | undefined>;
  text(): Promise<string>;
}

export interface AnalystResponse {
  status: number;
  jsonBody: unknown;
  headers?: Record<string, string>;
}

/** An update body is a handful of fields and a comment of at most 1,000 characters. */
export const MAX_UPDATE_BODY_BYTES = 16 * 1024;

export async function listIncidentsForAnalyst(
  request: AnalystRequest,
  userContext: UserContext,
  logger: Logger,
): Promise<AnalystResponse> {
  const log = redactingLogger(logger);
  let api: IncidentApiName = 'defender';
  try {
    const analyst = await userContext.authenticate(request.headers.get('authorization'));
    api = apiOf(analyst);
    const query = parseListQuery(request.query, analyst.userPrincipalName);
    const incidents =
      api === 'graph'
        ? await listThroughGraph(analyst, query, userContext)
        : await listThroughDefender(analyst, query, userContext);
    return {
      status: 200,
      jsonBody: { tenantId: analyst.tenantId, api, incidents, top: query.top, skip: query.skip },
    };
  } catch (err) {
    return refusal(err, 'list incidents', log, api);
  }
}

async function listThroughDefender(
  analyst: Analyst,
  query: IncidentListQuery,
  userContext: UserContext,
): Promise<unknown[]> {
  const defender = await userContext.defenderFor(analyst, 'read');
  return defender.listIncidentsPage(analyst.tenant, {
    filter: incidentFilter(query),
    top: query.top,
    skip: query.skip,
  });
}

async function listThroughGraph(
  analyst: Analyst,
  query: IncidentListQuery,
  userContext: UserContext,
): Promise<GraphIncident[]> {
  // Translated (and its $top checked) before the exchange: a bad query costs no token and no call.
  const page = graphListRequest(query);
  const graph = await userContext.graphFor(analyst, 'read');
  return graph.listIncidentsPage(analyst.tenant, page);
}

export async function updateIncidentForAnalyst(
  request: AnalystRequest,
  userContext: UserContext,
  logger: Logger,
): Promise<AnalystResponse> {
  const log = redactingLogger(logger);
  let api: IncidentApiName = 'defender';
  try {
    const analyst = await userContext.authenticate(request.headers.get('authorization'));
    api = apiOf(analyst);
    const pathTenant = (request.params.tenantId ?? '').toLowerCase();
    if (pathTenant !== analyst.tenantId) {
      throw new UserContextError(
        403,
        `You are signed in to tenant ${analyst.tenantId}: you cannot change incidents of tenant ${pathTenant.slice(0, 64) || '(none)'}.`,
      );
    }
    const incidentId = parseIncidentId(request.params.incidentId);
    const update = parseIncidentUpdate(await readJsonBody(request), analyst.userPrincipalName);
    const incident =
      api === 'graph'
        ? await updateThroughGraph(analyst, incidentId, update, userContext, log)
        : await (await userContext.defenderFor(analyst, 'write')).updateIncident(analyst.tenant, incidentId, update);
    // Who changed what, for the audit trail: field names only (a comment's text is the analyst's business).
    log.info(
      `Incident ${incidentId} in tenant ${analyst.tenantId} updated by ${analyst.userPrincipalName ?? analyst.objectId ?? 'an unnamed user'}: ` +
        Object.keys(update).join(', '),
    );
    return { status: 200, jsonBody: incident };
  } catch (err) {
    return refusal(err, `update incident ${request.params.incidentId ?? ''}`.trim(), log, api);
  }
}

/**
 * The update through Graph: the fields by PATCH first, then the comment through the comments endpoint
 * (Graph's PATCH takes none). In that order a failure between the two leaves only field values set, which
 * the analyst may send again unchanged; the other way round a resend would add the comment twice. The answer
 * is Graph's incident: PATCH's answer, or for a comment alone the incident as read before commenting, with
 * the comments Graph answered the comment with (every comment of the incident, security-incident-post-comments.md).
 */
async function updateThroughGraph(
  analyst: Analyst,
  incidentId: number,
  update: IncidentUpdate,
  userContext: UserContext,
  log: Logger,
): Promise<GraphIncident> {
  const { patch, comment } = graphIncidentUpdate(update);
  const graph = await userContext.graphFor(analyst, 'write');
  const { tenant } = analyst;
  // A comment alone: read the incident first, so a failure to read it leaves no comment behind.
  let incident = patch
    ? await graph.updateIncident(tenant, incidentId, patch)
    : await graph.getIncident(tenant, incidentId);
  if (comment === undefined) return incident;
  try {
    incident = { ...incident, comments: (await graph.addComment(tenant, incidentId, comment)) as unknown[] };
  } catch (err) {
    if (!patch) throw err;
    const fields = Object.keys(update).filter((field) => field !== 'comment');
    log.warn(
      `Incident ${incidentId} in tenant ${analyst.tenantId}: ${fields.join(', ')} updated, the comment not added: ${describeError(err)}`,
    );
    const updated = `Incident ${incidentId} was updated (${fields.join(', ')}), but Microsoft Graph did not add the comment`;
    if (err instanceof RetryableError)
      throw new UserContextError(
        503,
        `${updated} (busy or unavailable): send the update again shortly; its fields are already set.`,
        err.retryAfterMs !== undefined ? Math.max(1, Math.ceil(err.retryAfterMs / 1000)) : undefined,
      );
    if (err instanceof PermanentError)
      throw new UserContextError(502, `${updated}: ${err.message}. Its fields are already set.`);
    throw err;
  }
  return incident;
}

async function readJsonBody(request: AnalystRequest): Promise<unknown> {
  const type = request.headers.get('content-type');
  if (type && !/^application\/(merge-patch\+)?json\b/i.test(type)) {
    throw new UserContextError(415, `Send the update as application/json, not ${type.slice(0, 60)}.`);
  }
  const declared = Number(request.headers.get('content-length') ?? '0');
  const tooLarge = new UserContextError(413, `The update body may be at most ${MAX_UPDATE_BODY_BYTES} bytes.`);
  if (declared > MAX_UPDATE_BODY_BYTES) throw tooLarge;
  const text = await request.text();
  if (Buffer.byteLength(text) > MAX_UPDATE_BODY_BYTES) throw tooLarge;
  if (text.trim() === '') throw new RequestValidationError(['body: send a JSON object with the fields to change']);
  try {
    return JSON.parse(text);
  } catch {
    throw new RequestValidationError(['body: not valid JSON']);
  }
}

/** The answer for a failure: the caller learns what to fix; anything unexpected is logged and rethrown (500). */
function refusal(err: unknown, operation: string, log: Logger, api: IncidentApiName): AnalystResponse {
  const service = SERVICE_NAMES[api];
  if (err instanceof RequestValidationError)
    return { status: 400, jsonBody: { error: 'The request is not valid', problems: err.problems } };
  if (err instanceof UserContextError) {
    if (err.status >= 500) log.error(`${operation}: ${err.detail}`);
    return answer(err.status, err.message, err.retryAfterSeconds);
  }
  if (err instanceof RetryableError) {
    log.warn(`${operation}: ${service} did not answer after retries: ${describeError(err)}`);
    const seconds = err.retryAfterMs !== undefined ? Math.max(1, Math.ceil(err.retryAfterMs / 1000)) : undefined;
    return answer(503, `${service} is busy or unavailable; try again shortly.`, seconds);
  }
  if (err instanceof PermanentError) {
    switch (err.status) {
      case 400:
        return answer(400, `${service} refused the request: ${err.message}`);
      case 403:
        return answer(403, `${service} denied the call: ${err.message}`);
      case 404:
        return answer(404, `No such incident, or not one you can see: ${err.message}`);
      default:
        log.error(`${operation}: ${describeError(err)}`);
        return answer(502, `${service} refused the call (${err.status ?? 'no status'}).`);
    }
  }
  log.error(`${operation}: ${describeError(err)}`);
  throw err;
}

function answer(status: number, error: string, retryAfterSeconds?: number): AnalystResponse {
  return {
    status,
    jsonBody: { error },
    ...(retryAfterSeconds !== undefined ? { headers: { 'Retry-After': String(retryAfterSeconds) } } : {}),
  };
}
