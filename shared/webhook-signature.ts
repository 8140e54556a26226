import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The HMAC signature of a pushed webhook request, for callers that cannot get Entra tokens:
 *
 *   X-Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body bytes>" under the shared key>
 *
 * The timestamp is inside the signed text, so it cannot be moved to replay an old request; the
 * replay guard remembers each accepted signature for the tolerance window.
 */
export const SIGNATURE_HEADER = 'x-relay-signature';

export interface ParsedSignature {
  timestamp: number;
  /** One or more v1 signatures (more than one while a sender rotates keys); 32 bytes each. */
  signatures: Buffer[];
}

export class SignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignatureError';
  }
}

const EXPECTED_FORM = 'X-Relay-Signature must look like t=<unix seconds>,v1=<64 hex digits of HMAC-SHA256>';

/** Parses the header; unknown keys (a future v2) are ignored, anything malformed is refused without echoing it. */
export function parseSignatureHeader(header: string): ParsedSignature {
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SignatureError(EXPECTED_FORM);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined || !/^\d{1,12}$/.test(value)) throw new SignatureError(EXPECTED_FORM);
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!/^[0-9a-f]{64}$/i.test(value)) throw new SignatureError(EXPECTED_FORM);
      signatures.push(Buffer.from(value, 'hex'));
    }
  }
  if (timestamp === undefined || signatures.length === 0) throw new SignatureError(EXPECTED_FORM);
  return { timestamp, signatures };
}

/** HMAC-SHA256 of `<t>.<body>`; the key is the secret's text as UTF-8 (what `openssl dgst -hmac` uses). */
export function computeSignature(key: string, timestamp: number, body: Uint8Array): Buffer {
  return createHmac('sha256', Buffer.from(key, 'utf8')).update(`${timestamp}.`, 'utf8').update(body).digest();
}

/** The header a sender computes (used by tests and by anyone writing a client in Node). */
export function signatureHeader(key: string, body: Uint8Array | string, timestamp = Math.floor(Date.now() / 1000)): string {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return `t=${timestamp},v1=${computeSignature(key, timestamp, bytes).toString('hex')}`;
}

/** Whether any of the header's signatures is the body's signature under `key` (constant-time compare). */
export function signatureMatches(parsed: ParsedSignature, key: string, body: Uint8Array): boolean {
  const expected = computeSignature(key, parsed.timestamp, body);
  // Compare every candidate, so the time taken says nothing about which one (if any) matched.
  return parsed.signatures.reduce((matched, candidate) => timingSafeEqual(candidate, expected) || matched, false);
}

/** Refuses a timestamp further than `toleranceSeconds` from now, in either direction. */
export function checkTimestamp(timestamp: number, nowSeconds: number, toleranceSeconds: number): void {
  const skew = nowSeconds - timestamp;
  if (Math.abs(skew) > toleranceSeconds) {
    const where = skew > 0 ? `${skew} s old` : `${-skew} s in the future`;
    throw new SignatureError(`The signature's timestamp is ${where}; at most ${toleranceSeconds} s either way is accepted: sign each request when sending it (and check the sender's clock)`);
  }
}
