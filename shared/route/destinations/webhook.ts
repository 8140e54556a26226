import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { PermanentError, RetryableError, type FailureContext } from '../../errors.js';
import { redact } from '../../telemetry/redact.js';
import type { NamedDestination } from '../routing.js';
import {
  checkDestinationUrl,
  DestinationBlockedError,
  pinnedLookup,
  resolveSafeAddresses,
  type ResolvedAddress,
} from '../ssrf.js';
import { signatureHeader } from '../../api/webhook-signature.js';
import { slackPayload, teamsPayload } from './formats.js';
import type { DeliveryDeps, RoutedMessage } from './types.js';

export type HttpDestination = Extract<NamedDestination, { type: 'webhook' | 'teams' | 'slack' }>;

export const EVENT_ID_HEADER = 'X-Relay-Event-Id';
export const SIGNATURE_HEADER = 'X-Relay-Signature';

/** Keep-alive pool shared by webhook posts; a pooled socket was connected to an address that passed the SSRF check. */
const sharedAgent = new Agent({ keepAlive: true, maxSockets: 50 });

/** The longest answer body read (for the error message); the rest is discarded. */
const MAX_ANSWER_BYTES = 2048;

const TLS_FAILURES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/;

/**
 * Posts a routed message to a webhook, Teams or Slack destination. The body is generic JSON (signed
 * with HMAC-SHA256 when the destination has `hmacSecretName`), or a Teams or Slack message.
 */
export async function deliverToHttp(
  destination: HttpDestination,
  message: RoutedMessage,
  deps: DeliveryDeps,
): Promise<{ status: number }> {
  const url = destination.url ?? (await deps.secrets.get(destination.urlSecretName!));
  const body = JSON.stringify(
    destination.type === 'teams'
      ? teamsPayload(message)
      : destination.type === 'slack'
        ? slackPayload(message)
        : message,
  );
  const headers: Record<string, string> = { 'Content-Type': 'application/json', [EVENT_ID_HEADER]: message.eventId };
  // W3C Trace Context as HTTP carries it; only a generic webhook's body repeats it (a Teams or Slack payload has no place for it).
  if (message.traceparent) headers.traceparent = message.traceparent;
  if (message.tracestate) headers.tracestate = message.tracestate;
  if (destination.type === 'webhook' && destination.hmacSecretName) {
    const key = await deps.secrets.get(destination.hmacSecretName);
    const now = Math.floor((deps.now?.() ?? new Date()).getTime() / 1000);
    headers[SIGNATURE_HEADER] = signatureHeader(key, body, now);
  }
  return postJson(destination.name, url, body, headers, deps, message.tenantId);
}

/**
 * POSTs `body` to `url` after the SSRF checks, connecting only to the checked addresses, within the
 * timeout, following no redirect. Errors name the destination and host only: Teams and Slack URLs
 * carry their secret in the path.
 */
export async function postJson(
  destinationName: string,
  url: string,
  body: string,
  headers: Record<string, string>,
  deps: Pick<DeliveryDeps, 'policy' | 'lookup' | 'agent'>,
  tenantId?: string,
): Promise<{ status: number }> {
  let target: URL;
  let context: FailureContext = { tenantId, operation: `deliver to destination "${destinationName}"` };
  const signal = AbortSignal.timeout(deps.policy.timeoutMs);
  let addresses: ResolvedAddress[];
  try {
    target = checkDestinationUrl(url, deps.policy);
    context = { ...context, operation: `deliver to destination "${destinationName}" (host ${target.host})` };
    addresses = await withAbort(resolveSafeAddresses(target.hostname, deps.policy, deps.lookup), signal);
  } catch (err) {
    if (err instanceof DestinationBlockedError)
      throw new PermanentError(
        `Destination refused by the SSRF guard: ${err.message}`,
        { ...context, code: 'DestinationBlocked' },
        { cause: err },
      );
    throw networkFailure(err, context, signal, deps.policy.timeoutMs);
  }

  let answer: { status: number; headers: IncomingMessage['headers']; text: string };
  try {
    answer = await new Promise((resolve, reject) => {
      const req = request(
        target,
        {
          method: 'POST',
          headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)), 'User-Agent': 'defender-relay' },
          lookup: pinnedLookup(addresses),
          agent: deps.agent ?? sharedAgent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            if (size < MAX_ANSWER_BYTES) chunks.push(chunk);
            size += chunk.length;
          });
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8').slice(0, MAX_ANSWER_BYTES),
            }),
          );
          res.on('error', reject);
        },
      );
      // The deadline covers connecting, sending and reading the whole answer.
      const onAbort = () => req.destroy(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal.removeEventListener('abort', onAbort));
      req.on('error', reject);
      if (signal.aborted) onAbort();
      else req.end(body);
    });
  } catch (err) {
    throw networkFailure(err, context, signal, deps.policy.timeoutMs);
  }

  const { status } = answer;
  if (status >= 200 && status < 300) return { status };
  const said = answerSnippet(answer.text);
  const failure = { ...context, status };
  if (status >= 300 && status < 400) {
    const location = hostOf(answer.headers.location);
    throw new PermanentError(
      `The destination answered a redirect (${status}${location ? ` to host ${location}` : ''}); redirects are not followed, configure the final URL`,
      failure,
    );
  }
  if (status === 408 || status === 429 || status >= 500) {
    throw new RetryableError(`The destination answered ${status}${said}`, {
      ...failure,
      retryAfterMs: retryAfterMs(answer.headers['retry-after']),
    });
  }
  throw new PermanentError(`The destination refused the message with ${status}${said}`, failure);
}

function networkFailure(err: unknown, context: FailureContext, deadline: AbortSignal, timeoutMs: number): Error {
  const e = err as { name?: string; code?: string; message?: string };
  // A socket destroyed by the deadline mid-answer surfaces as a reset: the deadline is the cause.
  if (deadline.aborted || e.name === 'AbortError' || e.name === 'TimeoutError') {
    return new RetryableError(
      `The destination did not answer within ${timeoutMs} ms`,
      { ...context, code: 'Timeout' },
      { cause: err },
    );
  }
  if (typeof e.code === 'string' && TLS_FAILURES.test(e.code)) {
    return new PermanentError(
      `TLS to the destination failed (${e.code}): its certificate is not trusted for this host`,
      { ...context, code: e.code },
      { cause: err },
    );
  }
  return new RetryableError(
    `Could not reach the destination (${e.code ?? e.message ?? 'network error'})`,
    { ...context, code: e.code },
    { cause: err },
  );
}

function withAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function answerSnippet(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  return oneLine ? `: ${redact(oneLine)}` : '';
}

function hostOf(location: string | undefined): string | undefined {
  if (!location) return undefined;
  try {
    return new URL(location).host;
  } catch {
    return undefined;
  }
}

/** Retry-After as seconds or an HTTP date, in milliseconds. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
