import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Verifies defender-relay's `X-Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
 * (the key is the secret's text as UTF-8), within a tolerance for clock skew and replays.
 */
export const TOLERANCE_SECONDS = 300;

export function verifyRelaySignature(
  header: string | null,
  key: string,
  rawBody: Uint8Array,
  nowSeconds = Math.floor(Date.now() / 1000),
): { ok: true } | { ok: false; reason: string } {
  const match = header ? /^t=(\d{1,12}),v1=([0-9a-f]{64})$/.exec(header) : null;
  if (!match) return { ok: false, reason: 'X-Relay-Signature is missing or not t=<unix>,v1=<hex>' };
  const timestamp = Number(match[1]);
  if (Math.abs(nowSeconds - timestamp) > TOLERANCE_SECONDS)
    return { ok: false, reason: `the signature's time is more than ${TOLERANCE_SECONDS} s from now` };
  const expected = createHmac('sha256', Buffer.from(key, 'utf8'))
    .update(`${timestamp}.`, 'utf8')
    .update(rawBody)
    .digest();
  const given = Buffer.from(match[2]!, 'hex');
  return timingSafeEqual(expected, given)
    ? { ok: true }
    : { ok: false, reason: 'the signature does not match the body' };
}
