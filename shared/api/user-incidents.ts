import {
  incidentFilter,
  parseIncidentId,
  parseIncidentUpdate,
  parseListQuery,
  RequestValidationError,
} from '../sources/defender/incident-requests.js';
import { PermanentError, RetryableError } from '../errors.js';
import { redactingLogger, type Logger } from '../telemetry/logging.js';
import { describeError } from '../telemetry/redact.js';
import { UserContextError, type UserContext } from '../auth/user-context.js';

/**
 * The analyst endpoints, HTTP-shaped but free of the Functions runtime: `GET /api/incidents` (the
 * caller's view of their tenant) and `PATCH /api/incidents/{tenantId}/{incidentId}`, both acting
 * as the signed-in analyst through the user context.
 */

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
  try {
    const analyst = await userContext.authenticate(request.headers.get('authorization'));
    const query = parseListQuery(request.query, analyst.userPrincipalName);
    const defender = await userContext.defenderFor(analyst, 'read');
    const incidents = await defender.listIncidentsPage(analyst.tenant, {
      filter: incidentFilter(query),
      top: query.top,
      skip: query.skip,
    });
    return { status: 200, jsonBody: { tenantId: analyst.tenantId, incidents, top: query.top, skip: query.skip } };
  } catch (err) {
    return refusal(err, 'list incidents', log);
  }
}

export async function updateIncidentForAnalyst(
  request: AnalystRequest,
  userContext: UserContext,
  logger: Logger,
): Promise<AnalystResponse> {
  const log = redactingLogger(logger);
  try {
    const analyst = await userContext.authenticate(request.headers.get('authorization'));
    const pathTenant = (request.params.tenantId ?? '').toLowerCase();
    if (pathTenant !== analyst.tenantId) {
      throw new UserContextError(
        403,
        `You are signed in to tenant ${analyst.tenantId}: you cannot change incidents of tenant ${pathTenant.slice(0, 64) || '(none)'}.`,
      );
    }
    const incidentId = parseIncidentId(request.params.incidentId);
    const update = parseIncidentUpdate(await readJsonBody(request), analyst.userPrincipalName);
    const defender = await userContext.defenderFor(analyst, 'write');
    const incident = await defender.updateIncident(analyst.tenant, incidentId, update);
    // Who changed what, for the audit trail: field names only (a comment's text is the analyst's business).
    log.info(
      `Incident ${incidentId} in tenant ${analyst.tenantId} updated by ${analyst.userPrincipalName ?? analyst.objectId ?? 'an unnamed user'}: ` +
        Object.keys(update).join(', '),
    );
    return { status: 200, jsonBody: incident };
  } catch (err) {
    return refusal(err, `update incident ${request.params.incidentId ?? ''}`.trim(), log);
  }
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
function refusal(err: unknown, operation: string, log: Logger): AnalystResponse {
  if (err instanceof RequestValidationError)
    return { status: 400, jsonBody: { error: 'The request is not valid', problems: err.problems } };
  if (err instanceof UserContextError) {
    if (err.status >= 500) log.error(`${operation}: ${err.detail}`);
    return answer(err.status, err.message, err.retryAfterSeconds);
  }
  if (err instanceof RetryableError) {
    log.warn(`${operation}: Defender did not answer after retries: ${describeError(err)}`);
    const seconds = err.retryAfterMs !== undefined ? Math.max(1, Math.ceil(err.retryAfterMs / 1000)) : undefined;
    return answer(503, 'Microsoft Defender is busy or unavailable; try again shortly.', seconds);
  }
  if (err instanceof PermanentError) {
    switch (err.status) {
      case 400:
        return answer(400, `Microsoft Defender refused the request: ${err.message}`);
      case 403:
        return answer(403, `Microsoft Defender denied the call: ${err.message}`);
      case 404:
        return answer(404, `No such incident, or not one you can see: ${err.message}`);
      default:
        log.error(`${operation}: ${describeError(err)}`);
        return answer(502, `Microsoft Defender refused the call (${err.status ?? 'no status'}).`);
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
