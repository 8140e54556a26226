import { randomUUID } from 'node:crypto';
import type { Response } from 'express';

/** A failure answered in Defender's error shape: `{"error":{"code","message","target"}}`. */
export class DefenderApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'DefenderApiError';
  }
}

/** 429 TooManyRequests: the wait in the message, and in Retry-After unless `withHeader` is false. */
export function tooManyRequests(retryAfterSeconds: number, withHeader = true): DefenderApiError {
  return new DefenderApiError(
    429,
    'TooManyRequests',
    `Rate limit is exceeded. Try again in ${retryAfterSeconds} seconds.`,
    withHeader ? { 'Retry-After': String(retryAfterSeconds) } : {},
  );
}

/** The code Defender uses for a status when a fault asks for that status. */
export function codeForStatus(status: number): string {
  const codes: Record<number, string> = {
    400: 'BadRequest',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'NotFound',
    405: 'MethodNotAllowed',
    409: 'Conflict',
    413: 'RequestEntityTooLarge',
    429: 'TooManyRequests',
    500: 'InternalServerError',
    502: 'BadGateway',
    503: 'ServiceUnavailable',
    504: 'GatewayTimeout',
  };
  return codes[status] ?? (status >= 500 ? 'InternalServerError' : 'BadRequest');
}

/** Writes the error; `target` is a fresh tracking id, as every Defender error carries one. */
export function sendDefenderError(res: Response, error: DefenderApiError): void {
  res
    .status(error.status)
    .set(error.headers)
    .json({ error: { code: error.code, message: error.message, target: randomUUID() } });
}
