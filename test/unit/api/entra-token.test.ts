import { createServer, type Server } from 'node:net';
import { errors, exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  EntraTokenValidator,
  SigningKeysUnavailableError,
  TokenValidationError,
  UNVERIFIED_TOKEN_MESSAGE,
  V1_ISSUER_HOST,
  type EntraTokenValidatorOptions,
} from '../../../shared/api/entra-token.js';
import { describeError } from '../../../shared/telemetry/redact.js';

/**
 * The Entra token validator on its own, with real RS256 tokens signed by a key made here and Entra's
 * key sets answered by a stand-in for `fetch`: which tokens are refused, with what answer (and what
 * the log is told), which key set a token's tenant and version fetch, how often, and when Entra not
 * giving its keys is an outage (503) rather than an invalid token (401).
 */
const AUTHORITY = 'https://login.test';
const TENANT = '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f';
const OTHER_TENANT = '0c9d7e3a-5b1f-4d2c-8e6a-3f4b5c6d7e8f';
const API_CLIENT_ID = '11111111-2222-4333-8444-555555555555';
const API_URI = 'api://defender-relay';
const CALLER = '99999999-8888-4777-8666-555555555555';
const KID = 'test-key';

const realFetch = globalThis.fetch;
let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let jwk: JWK;
/** Every key set fetched, in order. */
let fetched: string[];
/** How the Entra stand-in answers a request for a key set (by default: the test key, at any address). */
let answer: (url: string, init?: RequestInit) => Response | Promise<Response>;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  privateKey = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: KID, use: 'sig', kty: 'RSA' };
});
beforeEach(() => {
  fetched = [];
  answer = () => Response.json({ keys: [jwk] });
  vi.stubGlobal('fetch', async (url: string | URL, init?: RequestInit) => {
    fetched.push(String(url));
    return answer(String(url), init);
  });
});
afterEach(() => {
  vi.unstubAllGlobals();
});

const now = () => Math.floor(Date.now() / 1000);
const issuer = (version: 1 | 2, tenant = TENANT) =>
  version === 1 ? `${V1_ISSUER_HOST}/${tenant}/` : `${AUTHORITY}/${tenant}/v2.0`;

/** An access token as Entra issues it (v2.0 unless `ver` says otherwise), with `claims` changing or (undefined) removing its claims. */
async function tokenWith(claims: Record<string, unknown> = {}): Promise<string> {
  const version = claims.ver === '1.0' ? 1 : 2;
  const tenant = typeof claims.tid === 'string' ? claims.tid : TENANT;
  const payload: Record<string, unknown> = {
    aud: version === 1 ? API_URI : API_CLIENT_ID,
    iss: issuer(version, tenant),
    iat: now() - 10,
    nbf: now() - 10,
    exp: now() + 3600,
    tid: TENANT,
    ver: '2.0',
    oid: '12121212-3434-4565-8787-909090909090',
    [version === 1 ? 'appid' : 'azp']: CALLER,
    roles: ['Incidents.Submit'],
    ...claims,
  };
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
  return new SignJWT(payload as JWTPayload).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: KID }).sign(privateKey);
}

/** A token naming `tid` whose signature is not Entra's (refused once the key set is fetched). */
function unsignedFor(tid: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT', kid: KID })}.${part({ tid, ver: '2.0', iss: issuer(2, tid), aud: API_CLIENT_ID, exp: now() + 3600 })}.${Buffer.alloc(256, 1).toString('base64url')}`;
}

const validator = (options: Partial<EntraTokenValidatorOptions> = {}) =>
  new EntraTokenValidator({ authorityHost: AUTHORITY, audiences: [API_CLIENT_ID, API_URI], ...options });

async function refusal(attempt: Promise<unknown>): Promise<TokenValidationError> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenValidationError);
  return err as TokenValidationError;
}

async function outage(attempt: Promise<unknown>): Promise<SigningKeysUnavailableError> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SigningKeysUnavailableError);
  return err as SigningKeysUnavailableError;
}

describe('entra token: refused before its signature is checked, with the one answer any unverified token gets (the log says why)', () => {
  it('no Authorization header: 401 asking for a bearer token', async () => {
    for (const header of [undefined, null, '']) {
      expect(await refusal(validator().validate(header))).toMatchObject({
        status: 401,
        message: 'No bearer token: send Authorization: Bearer <token>',
      });
    }
  });

  it('another scheme, or a bearer credential that is no JWT: the log says it is not a bearer JWT', async () => {
    const token = await tokenWith();
    for (const header of [
      `Basic ${Buffer.from('user:pass').toString('base64')}`,
      `Bearer${token}`,
      'Bearer not-a-jwt',
      `Token ${token}`,
    ]) {
      expect(await refusal(validator().validate(header)), header).toMatchObject({
        status: 401,
        message: UNVERIFIED_TOKEN_MESSAGE,
        detail: 'the Authorization header is not a bearer JWT',
      });
    }
    expect(fetched).toEqual([]);
  });

  it('three dotted parts whose payload is not JSON: the log says it is not a valid JWT', async () => {
    expect(await refusal(validator().validate('Bearer eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln'))).toMatchObject({
      status: 401,
      message: UNVERIFIED_TOKEN_MESSAGE,
      detail: 'the bearer token is not a valid JWT',
    });
  });

  it.each([
    ['no tid', { tid: undefined }],
    ['tid "common"', { tid: 'common' }],
    ['a tid that is a path', { tid: `${TENANT}/../evil` }],
    ['a tid that is no string', { tid: 42 }],
    ['an empty tid', { tid: '' }],
  ])('%s: refused, no key set fetched for it, and the log says it has no valid tid claim', async (_why, claims) => {
    const token = await tokenWith(claims);
    expect(await refusal(validator().validate(`Bearer ${token}`))).toMatchObject({
      status: 401,
      message: UNVERIFIED_TOKEN_MESSAGE,
      detail: 'the token has no valid tid claim',
    });
    expect(fetched).toEqual([]);
  });
});

describe('entra token: the Authorization header', () => {
  it('takes the scheme in any case, one or more spaces before the token (RFC 6750: 1*SP), and whitespace around the value', async () => {
    const token = await tokenWith();
    for (const header of [
      `Bearer ${token}`,
      `bearer ${token}`,
      `BEARER   ${token}`,
      `Bearer\t${token}`,
      `  Bearer ${token} `,
    ]) {
      await expect(validator().validate(header), JSON.stringify(header.slice(0, 12))).resolves.toMatchObject({
        tenantId: TENANT,
        clientId: CALLER,
      });
    }
  });
});

describe('entra token: the claims, once the signature verified (the answer says what is wrong)', () => {
  it('a token not valid yet (nbf beyond the clock tolerance): 401 saying so', async () => {
    const token = await tokenWith({ nbf: now() + 300 });
    expect(await refusal(validator().validate(`Bearer ${token}`))).toMatchObject({
      status: 401,
      message: 'The token is not valid yet',
    });
  });

  it('a token without exp: 401 naming the claim, never accepted as valid forever', async () => {
    const token = await tokenWith({ exp: undefined });
    expect(await refusal(validator().validate(`Bearer ${token}`))).toMatchObject({
      status: 401,
      message: "The token's exp claim is not acceptable",
    });
  });

  it('allows 60 s of clock skew by default: a token expired 30 s ago is accepted, one expired 90 s ago is refused', async () => {
    await expect(validator().validate(`Bearer ${await tokenWith({ exp: now() - 30 })}`)).resolves.toMatchObject({
      tenantId: TENANT,
    });
    expect(await refusal(validator().validate(`Bearer ${await tokenWith({ exp: now() - 90 })}`))).toMatchObject({
      status: 401,
      message: 'The token has expired',
    });
  });

  it('takes the configured clock tolerance instead: 5 s refuses a token expired 30 s ago', async () => {
    const token = await tokenWith({ exp: now() - 30 });
    expect(await refusal(validator({ clockToleranceSeconds: 5 }).validate(`Bearer ${token}`))).toMatchObject({
      status: 401,
      message: 'The token has expired',
    });
  });
});

describe('entra token: what the principal carries', () => {
  it('roles: only the string values of roles; a token without roles has none', async () => {
    await expect(
      validator().validate(
        `Bearer ${await tokenWith({ roles: ['Incidents.Submit', 7, null, { role: 'x' }, 'Other'] })}`,
      ),
    ).resolves.toMatchObject({ roles: ['Incidents.Submit', 'Other'] });
    await expect(validator().validate(`Bearer ${await tokenWith({ roles: undefined })}`)).resolves.toMatchObject({
      roles: [],
    });
    await expect(
      validator().validate(`Bearer ${await tokenWith({ roles: 'Incidents.Submit' })}`),
    ).resolves.toMatchObject({ roles: [] });
  });

  it('scopes: scp split on spaces; an empty scp is no scope (an app token, as one without scp)', async () => {
    await expect(
      validator().validate(`Bearer ${await tokenWith({ scp: 'access_as_user  Other ' })}`),
    ).resolves.toMatchObject({ scopes: ['access_as_user', 'Other'] });
    await expect(validator().validate(`Bearer ${await tokenWith({ scp: '' })}`)).resolves.toMatchObject({ scopes: [] });
    await expect(validator().validate(`Bearer ${await tokenWith({ scp: ' ' })}`)).resolves.toMatchObject({
      scopes: [],
    });
    await expect(validator().validate(`Bearer ${await tokenWith()}`)).resolves.toMatchObject({ scopes: [] });
  });
});

describe("entra token: the tenant's signing keys", () => {
  it('fetches each version from its own key set: v1.0 from /{tid}/discovery/keys, v2.0 from /{tid}/discovery/v2.0/keys', async () => {
    const v = validator();
    await expect(v.validate(`Bearer ${await tokenWith({ ver: '1.0' })}`)).resolves.toMatchObject({ version: 1 });
    await expect(v.validate(`Bearer ${await tokenWith({ ver: '2.0' })}`)).resolves.toMatchObject({ version: 2 });
    expect(fetched).toEqual([`${AUTHORITY}/${TENANT}/discovery/keys`, `${AUTHORITY}/${TENANT}/discovery/v2.0/keys`]);
  });

  it('takes an authority host given with trailing slashes: the same issuer and key set as without', async () => {
    const v = validator({ authorityHost: `${AUTHORITY}//` });
    expect(v.issuerFor(TENANT, 2)).toBe(`${AUTHORITY}/${TENANT}/v2.0`);
    await expect(v.validate(`Bearer ${await tokenWith()}`)).resolves.toMatchObject({ tenantId: TENANT, version: 2 });
    expect(fetched).toEqual([`${AUTHORITY}/${TENANT}/discovery/v2.0/keys`]);
  });

  it("fetches a tenant's key set once for many tokens, and keeps several tenants' key sets", async () => {
    const v = validator();
    for (const tid of [TENANT, TENANT, OTHER_TENANT, TENANT, OTHER_TENANT]) {
      await expect(v.validate(`Bearer ${await tokenWith({ tid })}`)).resolves.toMatchObject({ tenantId: tid });
    }
    expect(fetched).toEqual([
      `${AUTHORITY}/${TENANT}/discovery/v2.0/keys`,
      `${AUTHORITY}/${OTHER_TENANT}/discovery/v2.0/keys`,
    ]);
  });

  it('keeps the key sets of at most 1000 tenants: tokens naming ever new tenants evict the oldest, whose next token fetches its keys again', async () => {
    const v = validator();
    const tenants = Array.from(
      { length: 1001 },
      (_, i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    );
    const attempt = async (tid: string) =>
      expect((await refusal(v.validate(`Bearer ${unsignedFor(tid)}`))).detail).toBe('The token signature is not valid');
    for (const tid of tenants.slice(0, 1000)) await attempt(tid);
    expect(fetched).toHaveLength(1000);
    // 1000 tenants: the first one's key set is still kept.
    await attempt(tenants[0]!);
    expect(fetched).toHaveLength(1000);
    // The 1001st evicts the oldest.
    await attempt(tenants[1000]!);
    await attempt(tenants[0]!);
    expect(fetched.slice(1000)).toEqual([
      `${AUTHORITY}/${tenants[1000]}/discovery/v2.0/keys`,
      `${AUTHORITY}/${tenants[0]}/discovery/v2.0/keys`,
    ]);
  });

  it('Entra refusing the keys of a tenant it does not know (400): an invalid token (401); the log names the tenant, the status and the address', async () => {
    answer = () => Response.json({ error: 'invalid_tenant' }, { status: 400 });
    expect(await refusal(validator().validate(`Bearer ${await tokenWith()}`))).toMatchObject({
      status: 401,
      message: UNVERIFIED_TOKEN_MESSAGE,
      detail: `Entra ID refused the signing keys of tenant ${TENANT} (HTTP 400 from ${AUTHORITY}/${TENANT}/discovery/v2.0/keys): it does not know the tenant`,
    });
  });

  it.each([408, 429, 500, 503])(
    'Entra answering %i: an outage (503 to the caller), not an invalid token; the log line names the error and the status',
    async (status) => {
      answer = () => new Response('busy', { status });
      const err = await outage(validator().validate(`Bearer ${await tokenWith()}`));
      expect(err.message).toBe(
        `Entra ID's signing keys could not be fetched from ${AUTHORITY}/${TENANT}/discovery/v2.0/keys: HTTP ${status}`,
      );
      expect(describeError(err)).toBe(`SigningKeysUnavailableError: ${err.message}`);
    },
  );

  it('Entra answering 200 with something other than a JSON key set: an outage', async () => {
    for (const body of ['<html>sign in</html>', 'null', '{"keys":"none"}']) {
      answer = () => new Response(body, { status: 200 });
      const err = await outage(validator().validate(`Bearer ${await tokenWith()}`));
      expect(err.message, body).toBe(
        `Entra ID's signing keys could not be fetched from ${AUTHORITY}/${TENANT}/discovery/v2.0/keys: the answer (HTTP 200) is not a JSON key set`,
      );
    }
  });

  it("a key set not fetched within keysTimeoutMs: an outage saying so, with jose's timeout as its cause", async () => {
    answer = (_url, init) =>
      new Promise((_resolve, reject) => init!.signal!.addEventListener('abort', () => reject(init!.signal!.reason)));
    const err = await outage(validator({ keysTimeoutMs: 50 }).validate(`Bearer ${await tokenWith()}`));
    expect(err.message).toBe(
      `Entra ID's signing keys could not be fetched from ${AUTHORITY}/${TENANT}/discovery/v2.0/keys: no answer within 50 ms`,
    );
    expect(err.cause).toBeInstanceOf(errors.JWKSTimeout);
  });

  describe('Entra not answering: an outage; the log says what the network said', () => {
    let server: Server;
    let port: number;
    beforeAll(async () => {
      // Reads the request, then closes the connection without a word.
      server = createServer((socket) => socket.once('data', () => socket.end()));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as { port: number }).port;
    });
    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    it('connection refused: the network error, whose message names its code', async () => {
      const closed = await new Promise<number>((resolve) => {
        const probe = createServer().listen(0, '127.0.0.1', () => {
          const { port: free } = probe.address() as { port: number };
          probe.close(() => resolve(free));
        });
      });
      answer = (url) => realFetch(url.replace(AUTHORITY, `http://127.0.0.1:${closed}`));
      const err = await outage(validator().validate(`Bearer ${await tokenWith()}`));
      expect(err.message).toBe(
        `Entra ID's signing keys could not be fetched from ${AUTHORITY}/${TENANT}/discovery/v2.0/keys: no answer (connect ECONNREFUSED 127.0.0.1:${closed})`,
      );
      // fetch's error stays attached, with the network's below it.
      expect(err.cause).toMatchObject({ message: 'fetch failed', cause: { code: 'ECONNREFUSED' } });
    });

    it('connection closed without an answer: the code, then the message that does not name it', async () => {
      answer = (url) => realFetch(url.replace(AUTHORITY, `http://127.0.0.1:${port}`));
      const err = await outage(validator().validate(`Bearer ${await tokenWith()}`));
      expect(err.message).toBe(
        `Entra ID's signing keys could not be fetched from ${AUTHORITY}/${TENANT}/discovery/v2.0/keys: no answer (UND_ERR_SOCKET: other side closed)`,
      );
    });
  });
});

describe('entra token: refused by the signature check, the log saying why', () => {
  it('a protected header that is not JSON: what jose found', async () => {
    const [, payload, signature] = (await tokenWith()).split('.');
    const token = `${Buffer.from('not json').toString('base64url')}.${payload}.${signature}`;
    expect(await refusal(validator().validate(`Bearer ${token}`))).toMatchObject({
      status: 401,
      message: UNVERIFIED_TOKEN_MESSAGE,
      detail: 'The token could not be verified (JWS Protected Header is invalid)',
    });
  });

  it('a key in the set that jose will not use (modulus under 2048 bits): refused, the log saying only that it could not be verified', async () => {
    answer = () => Response.json({ keys: [{ ...jwk, n: 'AQAB' }] });
    expect(await refusal(validator().validate(`Bearer ${await tokenWith()}`))).toMatchObject({
      status: 401,
      message: UNVERIFIED_TOKEN_MESSAGE,
      detail: 'The token could not be verified',
    });
  });
});
