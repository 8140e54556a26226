/**
 * The app's failures, split the way the Functions host needs them: a retryable failure is rethrown so
 * the host retries the message with back-off; a permanent one is recorded with its reason and not
 * retried, since five identical attempts would only delay the dead-letter.
 */
export interface FailureContext {
  /** The tenant the failure concerns, when there is one. */
  tenantId?: string;
  /** What was being done, e.g. `listIncidents`, `getSecret tenant-x-secret`. */
  operation?: string;
  /** The HTTP status the failure came with, if any. */
  status?: number;
  /** The service's own error code (e.g. `TooManyRequests`, `AADSTS7000215`, `SecretNotFound`). */
  code?: string;
}

export abstract class RelayError extends Error {
  abstract readonly retryable: boolean;
  readonly tenantId?: string;
  readonly operation?: string;
  readonly status?: number;
  readonly code?: string;

  constructor(message: string, context: FailureContext = {}, options?: { cause?: unknown }) {
    const where = [context.tenantId && `tenant ${context.tenantId}`, context.operation].filter(Boolean).join(', ');
    super(where ? `${message} (${where})` : message, options);
    this.name = new.target.name;
    Object.assign(this, context);
  }
}

/** Worth trying again later: throttling, 5xx, timeouts, network errors. */
export class RetryableError extends RelayError {
  readonly retryable = true;
  /** When the service said to come back, if it did. */
  readonly retryAfterMs?: number;
  constructor(
    message: string,
    context: FailureContext & { retryAfterMs?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(message, context, options);
    this.retryAfterMs = context.retryAfterMs;
  }
}

/** Will fail the same way every time until someone changes something: bad input, missing permission, wrong secret. */
export class PermanentError extends RelayError {
  readonly retryable = false;
}

/** Normalises anything thrown into an Error (the pattern of `ensureErrorType` in @azure/functions). */
export function ensureError(err: unknown): Error {
  if (err instanceof Error) return err;
  if (typeof err === 'string') return new Error(err);
  try {
    return new Error(JSON.stringify(err));
  } catch {
    return new Error(String(err));
  }
}

const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'REQUEST_SEND_ERROR',
]);

/** Whether a failure is worth retrying: typed errors say so; otherwise HTTP 408/429/5xx and network errors are, or a failure they caused. */
export function isRetryable(err: unknown): boolean {
  return retryable(err, new Set());
}

/** `seen`: the failures already looked at along the `cause` chain, which may loop. */
function retryable(err: unknown, seen: Set<unknown>): boolean {
  if (err instanceof RelayError) return err.retryable;
  const e = err as
    { statusCode?: unknown; status?: unknown; code?: unknown; cause?: unknown; name?: unknown } | undefined;
  const status =
    typeof e?.statusCode === 'number' ? e.statusCode : typeof e?.status === 'number' ? e.status : undefined;
  if (status !== undefined) return status === 408 || status === 429 || status >= 500;
  if (typeof e?.code === 'string' && RETRYABLE_NETWORK_CODES.has(e.code)) return true;
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return true;
  seen.add(err);
  return e?.cause !== undefined && !seen.has(e.cause) ? retryable(e.cause, seen) : false;
}

/**
 * A failure as a short category, for a metric dimension or a span attribute, where its message (which
 * may quote a service's answer) must not go: `throttled` (a 429, a spent call budget or hunting quota),
 * `timeout`, `busy` (another invocation holds the event), `unavailable` (anything else worth retrying)
 * or `permanent`.
 */
export type FailureCategory = 'throttled' | 'timeout' | 'busy' | 'unavailable' | 'permanent';

const THROTTLING_ERRORS = new Set(['BudgetSpentError', 'HuntingRefusedError']);

export function failureCategory(err: unknown): FailureCategory {
  if (!isRetryable(err)) return 'permanent';
  const e = err as { name?: unknown; status?: unknown; statusCode?: unknown; code?: unknown } | undefined;
  const name = typeof e?.name === 'string' ? e.name : '';
  if (e?.status === 429 || e?.statusCode === 429 || THROTTLING_ERRORS.has(name)) return 'throttled';
  if (name.endsWith('TimeoutError') || e?.code === 'Timeout' || e?.code === 'ETIMEDOUT') return 'timeout';
  if (name === 'EventBusy') return 'busy';
  return 'unavailable';
}
