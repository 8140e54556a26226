import { describe, expect, it } from 'vitest';
import {
  checkTimestamp,
  computePushSignature,
  computeSignature,
  parseSignatureHeader,
  pushSignatureHeader,
  pushSignatureMatches,
  signatureHeader,
  signatureMatches,
  SignatureError,
} from '../../../shared/api/webhook-signature.js';

/** Vectors computed independently with `printf '%s' "<t>.<body>" | openssl dgst -sha256 -hmac "$KEY"`. */
const KEY = 'relay-test-key';
const T = 1700000000;
const BODY = '{"incidentId":924565,"lastUpdateTime":"2020-09-06T14:46:57.29Z"}';
const BODY_SIGNATURE = 'c3fcf5a54b965528c65e40f4be9143f2fd5a0015129054147164c4dd483fa3ba';
const EMPTY_SIGNATURE = '3afa4fab38334e79c9b25f86de02be8b460677af3fa8f8380dfab89bc897012b';

describe('webhook signature', () => {
  it('computes HMAC-SHA256 over "<t>.<raw body bytes>" as openssl does', () => {
    expect(computeSignature(KEY, T, Buffer.from(BODY)).toString('hex')).toBe(BODY_SIGNATURE);
    expect(computeSignature(KEY, T, new Uint8Array()).toString('hex')).toBe(EMPTY_SIGNATURE);
    expect(signatureHeader(KEY, BODY, T)).toBe(`t=${T},v1=${BODY_SIGNATURE}`);
  });

  it('signs with the current time when not given one, so a receiver checking the timestamp accepts the header', () => {
    const now = Math.floor(Date.now() / 1000);
    const v1 = parseSignatureHeader(signatureHeader(KEY, BODY));
    expect(() => checkTimestamp(v1.timestamp, now, 5)).not.toThrow();
    expect(signatureMatches(v1, KEY, Buffer.from(BODY))).toBe(true);
    const request = { tenantId: '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f', method: 'POST', path: '/api/incidents' };
    const v2 = parseSignatureHeader(pushSignatureHeader(KEY, request, BODY), 'v2');
    expect(() => checkTimestamp(v2.timestamp, now, 5)).not.toThrow();
    expect(pushSignatureMatches(v2, KEY, request, Buffer.from(BODY))).toBe(true);
  });

  it('parses the header in any order, with spaces, upper-case hex and extra v1 values (key rotation)', () => {
    const parsed = parseSignatureHeader(
      ` v1=${BODY_SIGNATURE.toUpperCase()} , t=${T},v1=${EMPTY_SIGNATURE},v0=ignored`,
    );
    expect(parsed.timestamp).toBe(T);
    expect(parsed.signatures.map((s) => s.toString('hex'))).toEqual([BODY_SIGNATURE, EMPTY_SIGNATURE]);
    expect(signatureMatches(parsed, KEY, Buffer.from(BODY))).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['no timestamp', `v1=${BODY_SIGNATURE}`],
    ['no signature', `t=${T}`],
    ['timestamp not a number', `t=yesterday,v1=${BODY_SIGNATURE}`],
    ['two timestamps', `t=${T},t=${T + 1},v1=${BODY_SIGNATURE}`],
    ['short signature', `t=${T},v1=${BODY_SIGNATURE.slice(2)}`],
    ['base64 signature', `t=${T},v1=${Buffer.from(BODY_SIGNATURE, 'hex').toString('base64')}`],
    ['not key=value', `${T};${BODY_SIGNATURE}`],
    ['sha256= prefix (GitHub style)', `sha256=${BODY_SIGNATURE}`],
    // Only a pushed request (v2) is told about v2: a v1 receiver gets the v1 form.
    ['only a v2 signature', `t=${T},v2=${BODY_SIGNATURE}`],
  ])('refuses a malformed header (%s) without echoing it', (_case, header) => {
    expect(() => parseSignatureHeader(header)).toThrow(SignatureError);
    try {
      parseSignatureHeader(header);
    } catch (err) {
      expect((err as Error).message).toContain('t=<unix seconds>,v1=');
      if (header) expect((err as Error).message).not.toContain(header);
    }
  });

  it('does not match a tampered body, another timestamp or another key', () => {
    const header = parseSignatureHeader(`t=${T},v1=${BODY_SIGNATURE}`);
    expect(signatureMatches(header, KEY, Buffer.from(BODY.replace('924565', '924566')))).toBe(false);
    expect(signatureMatches({ ...header, timestamp: T + 1 }, KEY, Buffer.from(BODY))).toBe(false);
    expect(signatureMatches(header, 'another-key', Buffer.from(BODY))).toBe(false);
    // The signed bytes are the raw body: re-serialised JSON (other spacing) is another body.
    expect(signatureMatches(header, KEY, Buffer.from(JSON.stringify(JSON.parse(BODY), null, 1)))).toBe(false);
  });

  it('accepts a timestamp within the tolerance either way and refuses one beyond it, saying which way', () => {
    expect(() => checkTimestamp(T, T + 300, 300)).not.toThrow();
    expect(() => checkTimestamp(T, T - 300, 300)).not.toThrow();
    expect(() => checkTimestamp(T, T + 301, 300)).toThrow(/timestamp is 301 s old; at most 300 s/);
    expect(() => checkTimestamp(T, T - 301, 300)).toThrow(/timestamp is 301 s in the future; at most 300 s/);
  });

  describe('v2, the signature of a pushed request', () => {
    /** Computed independently: `{ printf '%s.%s.POST /api/incidents.' "$T" "$TENANT"; printf '%s' "$BODY"; } | openssl dgst -sha256 -hmac "$KEY"`. */
    const TENANT = '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f';
    const OTHER_TENANT = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    const PUSH_SIGNATURE = '51c7d7149c58ae30c0ca079e3dcd213d5f7f1cf33eef444b0bc80c6d51b1aace';
    const OTHER_TENANT_SIGNATURE = '142f8eb57402360dd1ef7c61532cf24e58d60ff0e3e2b8d42533249b6a837c96';
    const request = { tenantId: TENANT, method: 'POST', path: '/api/incidents' };

    it('signs "<t>.<tenant>.<METHOD> <path>.<raw body>" as openssl does', () => {
      expect(computePushSignature(KEY, T, request, Buffer.from(BODY)).toString('hex')).toBe(PUSH_SIGNATURE);
      expect(
        computePushSignature(KEY, T, { ...request, tenantId: OTHER_TENANT }, Buffer.from(BODY)).toString('hex'),
      ).toBe(OTHER_TENANT_SIGNATURE);
      expect(pushSignatureHeader(KEY, request, BODY, T)).toBe(`t=${T},v2=${PUSH_SIGNATURE}`);
    });

    it('is valid for exactly one tenant and one request line', () => {
      const parsed = parseSignatureHeader(`t=${T},v2=${PUSH_SIGNATURE}`, 'v2');
      expect(pushSignatureMatches(parsed, KEY, request, Buffer.from(BODY))).toBe(true);
      expect(pushSignatureMatches(parsed, KEY, { ...request, tenantId: OTHER_TENANT }, Buffer.from(BODY))).toBe(false);
      expect(pushSignatureMatches(parsed, KEY, { ...request, path: '/api/incidents/x' }, Buffer.from(BODY))).toBe(
        false,
      );
      expect(pushSignatureMatches(parsed, KEY, { ...request, method: 'PUT' }, Buffer.from(BODY))).toBe(false);
      // The body's v1 signature (no tenant in it) is not a v2 signature.
      expect(
        pushSignatureMatches(
          parseSignatureHeader(`t=${T},v2=${BODY_SIGNATURE}`, 'v2'),
          KEY,
          request,
          Buffer.from(BODY),
        ),
      ).toBe(false);
    });

    it('tells a sender still signing v1 what changed, and reads only v2 values', () => {
      expect(() => parseSignatureHeader(`t=${T},v1=${BODY_SIGNATURE}`, 'v2')).toThrow(
        /signed with v2, which covers the tenant/,
      );
      expect(
        parseSignatureHeader(`t=${T},v1=${BODY_SIGNATURE},v2=${PUSH_SIGNATURE}`, 'v2').signatures.map((s) =>
          s.toString('hex'),
        ),
      ).toEqual([PUSH_SIGNATURE]);
      expect(() => parseSignatureHeader(`t=${T},v2=xyz`, 'v2')).toThrow('t=<unix seconds>,v2=');
    });

    it.each([
      ['v1', true],
      ['v3', true],
      ['v10', true],
      ['sha256', false],
      ['v1-sha256', false],
      ['hmac-v1', false],
    ])(
      'with only a %s= value, says v2 is what changed only if that is another signature version (%s)',
      (key, anotherVersion) => {
        const header = `t=${T},${key}=${BODY_SIGNATURE}`;
        expect(() => parseSignatureHeader(header, 'v2')).toThrow(SignatureError);
        expect(() => parseSignatureHeader(header, 'v2')).toThrow(
          anotherVersion
            ? /^Pushed requests are signed with v2, which covers the tenant/
            : /^X-Relay-Signature must look like t=<unix seconds>,v2=/,
        );
      },
    );
  });
});
