import type { ReadableStream } from 'node:stream/web';
import type { AppConfig } from '../config/config.js';
import { envelopeFor, type IncidentEnvelope } from '../messages/events.js';
import { redactingLogger, type Logger } from '../telemetry/logging.js';
import { QUEUE_NAMES, type MessageSender } from '../storage/queues.js';
import { describeError } from '../telemetry/redact.js';
import type { ReplayGuard } from './replay-guard.js';
import type { Services } from '../services.js';
import { TenantNotFoundError, type TenantRegistry } from '../tenants/tenants.js';
import { WebhookAuthError, type SignedCaller, type WebhookAuthenticator, type WebhookCaller } from './webhook-auth.js';
import { readIncidentBatch, type IncidentProblem } from './webhook-incidents.js';
import { SIGNATURE_HEADER } from './webhook-signature.js';

/**
 * POST /api/incidents: incidents pushed by Logic Apps, Sentinel automation or a partner system.
 * Authenticate (Entra token with the app role, or HMAC signature), read and check the body, resolve
 * the tenant, then enqueue one event per incident version on `incidents`, all or nothing: an
 * invalid incident means nothing is enqueued, and a storage failure is answered 503 with what did go.
 */
export interface PushRequest {
  method: string;
  /** The request's URL: its path is part of what an HMAC signature covers. */
  url: string;
  headers: { get(name: string): string | null };
  query: { get(name: string): string | null };
  body: ReadableStream<Uint8Array> | null;
}

export interface PushResponse {
  status: number;
  jsonBody: unknown;
  headers?: Record<string, string>;
}

export interface WebhookPushDeps {
  webhook: AppConfig['webhook'];
  auth: WebhookAuthenticator;
  replayGuard: Pick<ReplayGuard, 'remember' | 'forget' | 'pruneExpired'>;
  registry: Pick<TenantRegistry, 'get'>;
  sender: Pick<MessageSender, 'sendEvent'>;
  logger: Logger;
  now?: () => Date;
}

/** The dependencies from the app's services (what the function passes). */
export function webhookPushDeps(
  services: Pick<Services, 'config' | 'webhookAuth' | 'replayGuard' | 'registry' | 'sender'>,
  logger: Logger,
): WebhookPushDeps {
  return {
    webhook: services.config.webhook,
    auth: services.webhookAuth,
    replayGuard: services.replayGuard,
    registry: services.registry,
    sender: services.sender,
    logger: redactingLogger(logger),
  };
}

/** Sends of one request in flight at once: a batch of 100 goes out quickly without flooding the queue. */
const SEND_CONCURRENCY = 8;
const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NO_STORE = { 'Cache-Control': 'no-store' };

/** A request not accepted (refused, or failed on the relay's side): what to answer; the message is the log line's reason. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly jsonBody: Record<string, unknown>,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const refuse = (status: number, error: string, headers?: Record<string, string>) =>
  new Refusal(status, error, { error }, headers);

export async function pushIncidents(request: PushRequest, deps: WebhookPushDeps): Promise<PushResponse> {
  const seen: RequestSummary = {};
  const logLine = (outcome: string) =>
    `webhook push: tenant=${seen.tenant ?? '-'} caller=${seen.caller ?? '-'} incidents=${seen.count ?? '-'} outcome=${outcome}`;
  try {
    const response = await accept(request, deps, seen);
    deps.logger.info(logLine(`${response.status} ${(response.jsonBody as { accepted: number }).accepted} enqueued`));
    return { ...response, headers: { ...NO_STORE, ...response.headers } };
  } catch (err) {
    const refusal = asRefusal(err);
    if (err instanceof WebhookAuthError && err.clientId) seen.caller = err.clientId;
    // The log may say what the answer must not (why a credential was refused before it was verified).
    const reason = err instanceof WebhookAuthError ? err.detail : refusal.message;
    // Only failures on the relay's side (5xx) carry a cause.
    const detail = refusal.cause ? ` (${describeError(refusal.cause)})` : '';
    const line = logLine(`${refusal.status} ${reason}${detail}`);
    if (refusal.status >= 500) deps.logger.error(line);
    else deps.logger.warn(line);
    return { status: refusal.status, jsonBody: refusal.jsonBody, headers: { ...NO_STORE, ...refusal.headers } };
  }
}

/** What the log line says about the request; filled in as the request is understood. */
interface RequestSummary {
  tenant?: string;
  /** The calling application's client id, or `hmac`. */
  caller?: string;
  count?: number;
}

async function accept(request: PushRequest, deps: WebhookPushDeps, seen: RequestSummary): Promise<PushResponse> {
  const { webhook, auth } = deps;
  const kind = auth.credentialKind(request.headers, SIGNATURE_HEADER);
  seen.caller = kind === 'hmac' ? 'hmac' : undefined;
  checkContentType(request.headers.get('content-type'));
  checkContentLength(request.headers.get('content-length'), webhook.maxBodyBytes);

  // A token is checked before the body is read; a signature can only be checked over the body. Either
  // way, whom the caller may push for is settled before the body is parsed or the registry is read.
  let caller: WebhookCaller;
  let tenantId: string;
  let body: Buffer;
  if (kind === 'bearer') {
    const bearer = await auth.authenticateBearer(request.headers.get('authorization')!);
    seen.caller = bearer.clientId;
    tenantId = seen.tenant = tenantFromQuery(request.query.get('tenantId')) ?? bearer.tenantId;
    auth.authorizeBearer(bearer, tenantId);
    caller = bearer;
    body = await readBody(request.body, webhook.maxBodyBytes);
  } else {
    const fromQuery = tenantFromQuery(request.query.get('tenantId'));
    if (!fromQuery)
      throw refuse(400, 'Signed requests must name the tenant the incidents belong to: add ?tenantId=<tenant GUID>');
    tenantId = seen.tenant = fromQuery;
    body = await readBody(request.body, webhook.maxBodyBytes);
    const signed = await auth.authenticateSignature(request.headers.get(SIGNATURE_HEADER)!, body, {
      tenantId,
      method: request.method.toUpperCase(),
      path: new URL(request.url).pathname,
    });
    seen.caller = `hmac:${signed.keyName}`;
    caller = signed;
  }

  const batch = readIncidentBatch(parseJson(body));
  if (!batch.ok) throw invalidIncidents(batch.problems);
  seen.count = batch.incidents.length;
  await requireEnabledTenant(tenantId, deps.registry);

  // An incident version sent twice in one request is one event.
  const now = deps.now?.() ?? new Date();
  const envelopes = [
    ...new Map(
      batch.incidents.map((i) => envelopeFor(tenantId, i, 'webhook', now)).map((e) => [e.eventId, e]),
    ).values(),
  ];

  if (caller.kind === 'hmac') await rememberSignature(caller, deps);
  const { enqueued, failure } = await enqueueAll(envelopes, deps.sender);
  if (enqueued.length < envelopes.length) {
    // Let the sender retry the identical request: what did get through is deduplicated downstream by eventId.
    if (caller.kind === 'hmac') {
      // If the signature stays remembered, the retry this answer asks for is refused as a replay: say so.
      await deps.replayGuard
        .forget(caller.signature, caller.timestamp)
        .catch((err: unknown) =>
          deps.logger.warn(
            `webhook push: tenant ${tenantId}: could not forget the signature of a request not fully enqueued, so its retry will be refused as a replay (re-sign it with a new timestamp): ${describeError(err)}`,
          ),
        );
    }
    const error = `Storage did not take every incident (${enqueued.length} of ${envelopes.length} enqueued): retry the whole request; incidents already enqueued are not delivered twice`;
    const refusal = new Refusal(
      503,
      error,
      {
        error,
        accepted: enqueued.length,
        eventIds: enqueued,
        notEnqueued: envelopes.map((e) => e.eventId).filter((id) => !enqueued.includes(id)),
      },
      { 'Retry-After': '10' },
    );
    refusal.cause = failure;
    throw refusal;
  }
  return { status: 202, jsonBody: { tenantId, accepted: enqueued.length, eventIds: enqueued } };
}

function checkContentType(contentType: string | null): void {
  // Stryker disable next-line StringLiteral: a missing header is refused whatever stands in for it, as long as it is not application/json
  const header = contentType ?? '';
  const [mediaType, ...params] = header.split(';').map((p) => p.trim().toLowerCase());
  const charset = params
    .find((p) => p.startsWith('charset='))
    ?.slice('charset='.length)
    .replace(/"/g, '');
  if (mediaType !== 'application/json' || (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8')) {
    throw refuse(
      415,
      `Content-Type must be application/json (UTF-8); got ${contentType ? `'${contentType.slice(0, 100)}'` : 'none'}`,
    );
  }
}

/**
 * The Functions host forwards a request body only when Content-Length is > 0 (azure-functions-host
 * GrpcMessageConversionExtensions.ToRpcHttp): a body sent chunked, without one, arrives empty. Say so,
 * rather than answer that the body is empty. A declared length over the cap is refused before the
 * body is read. The host refuses a Content-Length that is not one non-negative integer before any
 * function runs (Kestrel; Node's HTTP parser locally), so what arrives here is a number.
 */
function checkContentLength(contentLength: string | null, maxBytes: number): void {
  if (contentLength === null) {
    throw refuse(
      411,
      'Send the body with a Content-Length header: the Functions host passes on no body sent without one (Transfer-Encoding: chunked)',
    );
  }
  if (Number(contentLength) > maxBytes) throw tooLarge(maxBytes);
}

const tooLarge = (maxBytes: number) =>
  refuse(413, `The body is larger than ${maxBytes} bytes (WEBHOOK_MAX_BODY_BYTES): send fewer incidents per request`);

/** Reads the body, stopping as soon as it passes the cap whatever Content-Length said. */
async function readBody(stream: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total);
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0)
    throw refuse(400, 'The body is empty: send an incident, an array of incidents or { "value": [ … ] } as JSON');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw refuse(400, 'The body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    // Stryker disable next-line MethodExpression: V8's JSON.parse messages are under 100 characters (they quote at most 10 characters either side of the error); the cap guards another engine
    throw refuse(400, `The body is not valid JSON: ${(err as Error).message.slice(0, 200)}`);
  }
}

function invalidIncidents(problems: IncidentProblem[]): Refusal {
  const incidents = new Set(problems.map((p) => p.index)).size;
  return new Refusal(400, `${problems.length} problem(s) in ${incidents} incident(s), nothing enqueued`, {
    errors: problems,
  });
}

/** The `tenantId` query parameter, lower-cased; undefined when absent. */
function tenantFromQuery(fromQuery: string | null): string | undefined {
  if (fromQuery === null) return undefined;
  if (!TENANT_ID.test(fromQuery.trim())) throw refuse(400, 'The tenantId query parameter must be a tenant GUID');
  return fromQuery.trim().toLowerCase();
}

async function requireEnabledTenant(tenantId: string, registry: Pick<TenantRegistry, 'get'>): Promise<void> {
  try {
    const tenant = await registry.get(tenantId);
    if (!tenant.enabled)
      throw refuse(
        403,
        `Tenant ${tenantId} (${tenant.displayName}) is disabled in the relay: incidents for it are not accepted`,
      );
  } catch (err) {
    if (err instanceof Refusal) throw err;
    if (err instanceof TenantNotFoundError) {
      throw refuse(
        404,
        `Tenant ${tenantId} is not registered with the relay: register it, or name the incidents' tenant with ?tenantId=<tenant GUID>`,
      );
    }
    throw unavailable('The tenant registry could not be read: retry the request', err);
  }
}

async function rememberSignature(caller: SignedCaller, deps: WebhookPushDeps): Promise<void> {
  let first: boolean;
  try {
    first = await deps.replayGuard.remember(caller.signature, caller.timestamp);
  } catch (err) {
    throw unavailable('The replay guard could not be consulted: retry the request', err);
  }
  if (!first)
    throw refuse(
      401,
      'This signed request was already accepted (replayed): sign each request anew, with a fresh timestamp',
    );
  await deps.replayGuard
    .pruneExpired()
    .catch((err: unknown) => deps.logger.warn(`webhook push: pruning old signatures failed: ${describeError(err)}`));
}

function unavailable(message: string, cause: unknown): Refusal {
  const refusal = refuse(503, message, { 'Retry-After': '10' });
  refusal.cause = cause;
  return refusal;
}

/** Sends every event; on a failure starts no more, lets the ones in flight finish, and says which went. */
async function enqueueAll(
  envelopes: IncidentEnvelope[],
  sender: Pick<MessageSender, 'sendEvent'>,
): Promise<{ enqueued: string[]; failure?: unknown }> {
  // Stryker disable next-line ArrayDeclaration: equivalent: an entry never set reads undefined, which the filter below takes as not sent, as it does false
  const sent = new Array<boolean>(envelopes.length).fill(false);
  let failed = false;
  let failure: unknown;
  let next = 0;
  const worker = async () => {
    while (!failed && next < envelopes.length) {
      const index = next++;
      try {
        await sender.sendEvent(QUEUE_NAMES.incidents, envelopes[index]!);
        sent[index] = true;
      } catch (err) {
        // The first failure is the one the log names.
        failure ??= err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SEND_CONCURRENCY, envelopes.length) }, worker));
  return { enqueued: envelopes.filter((_, i) => sent[i]).map((e) => e.eventId), ...(failed ? { failure } : {}) };
}

function asRefusal(err: unknown): Refusal {
  if (err instanceof Refusal) return err;
  if (err instanceof WebhookAuthError) {
    const refusal = refuse(err.status, err.message, err.headers);
    refusal.cause = err.cause;
    return refusal;
  }
  const refusal = refuse(500, 'The relay failed to take the incidents: retry later');
  refusal.cause = err;
  return refusal;
}
