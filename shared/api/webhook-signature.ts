import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * HMAC signatures in `X-Relay-Signature`, two versions:
 *
 *   v1 (the relay's deliveries to webhook destinations):
 *     t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body bytes>">
 *   v2 (requests pushed to the relay by callers that cannot get Entra tokens):
 *     t=<unix seconds>,v2=<hex HMAC-SHA256 of "<t>.<tenant id>.<METHOD> <path>.<raw body bytes>">
 *
 * v2 binds the tenant and the request line, so a signature is valid for exactly one request to one
 * tenant: it cannot be moved to another tenant's query or another endpoint. The timestamp is inside
 * the signed text, so it cannot be moved to replay an old request; the replay guard remembers each
 * accepted signature for the tolerance window.
 */
export const SIGNATURE_HEADER = 'x-relay-signature';

export type SignatureVersion = 'v1' | 'v2';

export interface ParsedSignature {
  timestamp: number;
  /** One or more signatures of the version asked for (more than one while a sender rotates keys); 32 bytes each. */
  signatures: Buffer[];
}

export class SignatureError extends Error {
  constructor(message: string) {
    super(message);
    // Stryker disable next-line StringLiteral: both callers (webhook-auth) tell it by instanceof and answer with its message; the name reaches no one
    this.name = 'SignatureError';
  }
}

const expectedForm = (version: SignatureVersion) =>
  `X-Relay-Signature must look like t=<unix seconds>,${version}=<64 hex digits of HMAC-SHA256>`;

/**
 * Parses the header for one version; other keys (another version) are ignored, anything malformed is
 * refused without echoing it. A pushed request signed the old way (v1 only) is told what changed.
 */
export function parseSignatureHeader(header: string, version: SignatureVersion = 'v1'): ParsedSignature {
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  let otherVersion = false;
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SignatureError(expectedForm(version));
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined || !/^\d{1,12}$/.test(value)) throw new SignatureError(expectedForm(version));
      timestamp = Number(value);
    } else if (key === version) {
      if (!/^[0-9a-f]{64}$/i.test(value)) throw new SignatureError(expectedForm(version));
      signatures.push(Buffer.from(value, 'hex'));
    } else if (/^v\d+$/.test(key)) otherVersion = true;
  }
  if (timestamp !== undefined && signatures.length === 0 && otherVersion && version === 'v2') {
    throw new SignatureError(
      `Pushed requests are signed with v2, which covers the tenant and the request: t=<unix seconds>,v2=<hex HMAC-SHA256 of "<t>.<tenant id>.POST /api/incidents.<raw body>">`,
    );
  }
  if (timestamp === undefined || signatures.length === 0) throw new SignatureError(expectedForm(version));
  return { timestamp, signatures };
}

/** HMAC-SHA256 of `<t>.<body>`; the key is the secret's text as UTF-8 (what `openssl dgst -hmac` uses). */
export function computeSignature(key: string, timestamp: number, body: Uint8Array): Buffer {
  return createHmac('sha256', Buffer.from(key, 'utf8')).update(`${timestamp}.`, 'utf8').update(body).digest();
}

/** The header a sender computes (used by tests and by anyone writing a client in Node). */
export function signatureHeader(
  key: string,
  body: Uint8Array | string,
  timestamp = Math.floor(Date.now() / 1000),
): string {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return `t=${timestamp},v1=${computeSignature(key, timestamp, bytes).toString('hex')}`;
}

/** Whether any of the header's signatures is the body's signature under `key` (constant-time compare). */
export function signatureMatches(parsed: ParsedSignature, key: string, body: Uint8Array): boolean {
  return anyEqual(parsed.signatures, computeSignature(key, parsed.timestamp, body));
}

/** What a v2 signature binds besides the body: the tenant the request is for, and the request line. */
export interface SignedRequest {
  /** Lower-case tenant GUID, as in `?tenantId=`. */
  tenantId: string;
  /** Upper-case HTTP method. */
  method: string;
  /** The URL path without the query, e.g. `/api/incidents`. */
  path: string;
}

/** HMAC-SHA256 of `<t>.<tenantId>.<METHOD> <path>.<body>` (v2). */
export function computePushSignature(key: string, timestamp: number, request: SignedRequest, body: Uint8Array): Buffer {
  return createHmac('sha256', Buffer.from(key, 'utf8'))
    .update(`${timestamp}.${request.tenantId}.${request.method} ${request.path}.`, 'utf8')
    .update(body)
    .digest();
}

/** The v2 header a sender of a push computes (used by tests and by anyone writing a client in Node). */
export function pushSignatureHeader(
  key: string,
  request: SignedRequest,
  body: Uint8Array | string,
  timestamp = Math.floor(Date.now() / 1000),
): string {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return `t=${timestamp},v2=${computePushSignature(key, timestamp, request, bytes).toString('hex')}`;
}

/** Whether any of the header's v2 signatures is this request's under `key` (constant-time compare). */
export function pushSignatureMatches(
  parsed: ParsedSignature,
  key: string,
  request: SignedRequest,
  body: Uint8Array,
): boolean {
  return anyEqual(parsed.signatures, computePushSignature(key, parsed.timestamp, request, body));
}

/** Compares every candidate, so the time taken says nothing about which one (if any) matched. */
function anyEqual(candidates: Buffer[], expected: Buffer): boolean {
  return candidates.reduce((matched, candidate) => timingSafeEqual(candidate, expected) || matched, false);
}

/** Refuses a timestamp further than `toleranceSeconds` from now, in either direction. */
export function checkTimestamp(timestamp: number, nowSeconds: number, toleranceSeconds: number): void {
  const skew = nowSeconds - timestamp;
  if (Math.abs(skew) > toleranceSeconds) {
    // Stryker disable next-line EqualityOperator: skew is never 0 here (|skew| > toleranceSeconds, a positive integer)
    const where = skew > 0 ? `${skew} s old` : `${-skew} s in the future`;
    throw new SignatureError(
      `The signature's timestamp is ${where}; at most ${toleranceSeconds} s either way is accepted: sign each request when sending it (and check the sender's clock)`,
    );
  }
}
