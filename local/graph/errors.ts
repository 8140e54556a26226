import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

/**
 * Microsoft Graph's error body: `{"error": {"code", "message", "innerError": {"date", "request-id",
 * "client-request-id"}}}` (microsoftgraph/microsoft-graph-docs-contrib concepts/errors.md, "Error resource
 * type"; the innerError as Graph writes it for the security API, e.g. wazuh/wazuh-documentation#7300:
 * `"innerError":{"date":"2024-05-08T08:26:36","request-id":"…","client-request-id":"…"}`: the date to the
 * second, without a zone).
 */
export class GraphApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Members the service adds to `error` for this kind of failure (e.g. `details: []`). */
    readonly extra: Record<string, unknown> = {},
    /** Members the service adds to `innerError` (the 429's `code`, `message`, `status`). */
    readonly innerExtra: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'GraphApiError';
  }
}

/**
 * An OData query the security API's validator refuses: 400 with an empty `code`, the message behind "The query
 * specified in the URI is not valid." and `details: []`, as the service answered `$top=100` on incidents
 * (wazuh/wazuh#28070: `{"error":{"code":"","message":"The query specified in the URI is not valid. The limit
 * of '50' for Top query has been exceeded. The value from the incoming request is '100'.","details":[],…}}`).
 * The wording of each reason is ASP.NET Core OData's (OData/AspNetCoreOData
 * src/Microsoft.AspNetCore.OData/Properties/SRResources.resx: UriQueryStringInvalid and the reason's entry)
 * or the OData URI parser's.
 */
export function invalidQuery(reason: string): GraphApiError {
  return new GraphApiError(400, '', `The query specified in the URI is not valid. ${reason}`, {}, { details: [] });
}

export function badRequest(message: string): GraphApiError {
  return new GraphApiError(400, 'BadRequest', message);
}

/**
 * 429 as Graph's throttling page shows it: code TooManyRequests, "Please retry again later.", an innerError
 * carrying `code` "429", `message` "Please retry after" and `status` "429", and `Retry-After` in seconds
 * (microsoftgraph/microsoft-graph-docs-contrib concepts/throttling.md, "Sample response"; "All the resources
 * and APIs described in the Service-specific limits provide a Retry-After header except where indicated",
 * and the security limits are not so indicated).
 */
export function tooManyRequests(retryAfterSeconds: number): GraphApiError {
  return new GraphApiError(
    429,
    'TooManyRequests',
    'Please retry again later.',
    { 'Retry-After': String(retryAfterSeconds) },
    {},
    { code: '429', message: 'Please retry after', status: '429' },
  );
}

/** The code Graph writes for a status an injected fault asks for (concepts/errors.md's codes where it has one). */
export function codeForStatus(status: number): string {
  const codes: Record<number, string> = {
    400: 'BadRequest',
    401: 'InvalidAuthenticationToken',
    403: 'Forbidden',
    404: 'NotFound',
    405: 'MethodNotAllowed',
    409: 'Conflict',
    429: 'TooManyRequests',
    500: 'generalException',
    502: 'BadGateway',
    503: 'serviceNotAvailable',
    504: 'GatewayTimeout',
  };
  return codes[status] ?? (status >= 500 ? 'generalException' : 'BadRequest');
}

interface RequestIds {
  requestId: string;
  clientRequestId: string;
}

/**
 * Every answer carries `request-id` and `client-request-id` headers: the client's `client-request-id` echoed
 * when it sent one, else the request id (concepts/errors.md's innerError; Graph's SDKs send client-request-id).
 */
export function assignRequestIds() {
  return (req: Request, res: Response, next: NextFunction) => {
    const requestId = randomUUID();
    const sent = req.get('client-request-id');
    const clientRequestId = sent && sent.length <= 200 ? sent : requestId;
    res.locals.requestIds = { requestId, clientRequestId } satisfies RequestIds;
    res.set({ 'request-id': requestId, 'client-request-id': clientRequestId });
    next();
  };
}

export function sendGraphError(res: Response, error: GraphApiError, now: number): void {
  const ids = (res.locals.requestIds as RequestIds | undefined) ?? {
    requestId: randomUUID(),
    clientRequestId: randomUUID(),
  };
  const innerError = {
    ...error.innerExtra,
    date: new Date(now).toISOString().slice(0, 19),
    'request-id': ids.requestId,
    'client-request-id': ids.clientRequestId,
  };
  res
    .status(error.status)
    .set(error.headers)
    .type('application/json')
    .send(JSON.stringify({ error: { code: error.code, message: error.message, ...error.extra, innerError } }));
}
