import type { JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  SIGNING_KEYS_UNAVAILABLE_MESSAGE,
  SigningKeysUnavailableError,
  type EntraPrincipal,
} from '../../../shared/api/entra-token.js';
import {
  WebhookAuthenticator,
  WebhookAuthError,
  type HmacKeySource,
  type WebhookAuthenticatorOptions,
} from '../../../shared/api/webhook-auth.js';
import { parseWebhookAccess, WebhookAccess } from '../../../shared/api/webhook-access.js';
import { pushSignatureHeader, type SignedRequest } from '../../../shared/api/webhook-signature.js';

const FABRIKAM = '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f';
const SECRET_NAME = 'fabrikam-push-hmac-key';
const REQUEST: SignedRequest = { tenantId: FABRIKAM, method: 'POST', path: '/api/incidents' };
const BODY = Buffer.from('{"incidentId":924565,"lastUpdateTime":"2020-09-06T14:46:57.29Z"}');
const START = Date.parse('2025-03-01T12:00:00Z');

/**
 * A Key Vault secret behind the app's SecretCache: `get` answers from the cache once the secret was
 * read, `refresh` reads the vault's current version. `reads` counts trips to the vault.
 */
class Vault implements HmacKeySource {
  reads = 0;
  #cached: string | undefined;
  constructor(public current: string) {}
  async get(): Promise<string> {
    return this.#cached ?? this.refresh();
  }
  async refresh(): Promise<string> {
    this.reads += 1;
    this.#cached = this.current;
    return this.current;
  }
}

function authenticator(
  vault: HmacKeySource,
  clock: { now: number },
  hmacKeys: { name: string; secretName: string; mayPushFor: string[] }[] = [
    { name: 'fabrikam-siem', secretName: SECRET_NAME, mayPushFor: [FABRIKAM] },
  ],
  tokens: WebhookAuthenticatorOptions['tokens'] = {
    validate: () => Promise.reject(new Error('no token in these tests')),
  },
): WebhookAuthenticator {
  const parsed = parseWebhookAccess({ hmacKeys });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const access = new WebhookAccess(parsed.access, []);
  return new WebhookAuthenticator({
    tokens,
    requiredRole: 'Incidents.Submit',
    access: () => access,
    hmac: { keys: vault, toleranceSeconds: 300 },
    now: () => clock.now,
  });
}

/** A push signed now (by the authenticator's clock) with `key`, for Fabrikam unless `request` says otherwise. */
const signedWith = (key: string, clock: { now: number }, request = REQUEST) =>
  pushSignatureHeader(key, request, BODY, Math.floor(clock.now / 1000));

async function refusal(attempt: Promise<unknown>): Promise<WebhookAuthError> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WebhookAuthError);
  return err as WebhookAuthError;
}

describe('webhook auth: HMAC keys rotated in Key Vault', () => {
  it('accepts a sender already signing with the rotated key: a mismatch reads the key from Key Vault again', async () => {
    const vault = new Vault('key-before-rotation');
    const clock = { now: START };
    const auth = authenticator(vault, clock);
    await expect(
      auth.authenticateSignature(signedWith('key-before-rotation', clock), BODY, REQUEST),
    ).resolves.toMatchObject({ kind: 'hmac', keyName: 'fabrikam-siem' });

    vault.current = 'key-after-rotation';
    clock.now += 1_000;
    await expect(
      auth.authenticateSignature(signedWith('key-after-rotation', clock), BODY, REQUEST),
    ).resolves.toMatchObject({ kind: 'hmac', keyName: 'fabrikam-siem' });
    expect(vault.reads).toBe(2);
    // The old key no longer signs.
    expect(
      (await refusal(auth.authenticateSignature(signedWith('key-before-rotation', clock), BODY, REQUEST))).status,
    ).toBe(401);
  });

  it('reads Key Vault again at most once a minute however many signatures do not match, so a key rotated meanwhile is taken a minute after the last read', async () => {
    const vault = new Vault('the key');
    const clock = { now: START };
    const auth = authenticator(vault, clock);
    // Forged requests: the first mismatch reads the key again, the next ones within the minute do not.
    for (let i = 0; i < 5; i++) {
      expect(
        (await refusal(auth.authenticateSignature(signedWith('a guessed key', clock), BODY, REQUEST))).status,
      ).toBe(401);
      clock.now += 1_000;
    }
    expect(vault.reads).toBe(2);
    const lastRead = START;

    vault.current = 'the rotated key';
    clock.now = lastRead + 59_999;
    expect(
      (await refusal(auth.authenticateSignature(signedWith('the rotated key', clock), BODY, REQUEST))).status,
    ).toBe(401);
    expect(vault.reads).toBe(2);
    clock.now = lastRead + 60_000;
    await expect(
      auth.authenticateSignature(signedWith('the rotated key', clock), BODY, REQUEST),
    ).resolves.toMatchObject({ kind: 'hmac', keyName: 'fabrikam-siem' });
    expect(vault.reads).toBe(3);
  });

  it("a tenant's forged signatures never hold up another tenant's rotated key: each key has its own re-read slot", async () => {
    const NORTHWIND = '0b7a1c55-3e2d-4f6a-8b9c-1d2e3f4a5b6c';
    const NORTHWIND_REQUEST: SignedRequest = { ...REQUEST, tenantId: NORTHWIND };
    const vaults: Record<string, Vault> = {
      [SECRET_NAME]: new Vault('fabrikam key'),
      'northwind-push-hmac-key': new Vault('northwind key'),
    };
    const keys: HmacKeySource = { get: (name) => vaults[name]!.get(), refresh: (name) => vaults[name]!.refresh() };
    const clock = { now: START };
    const auth = authenticator(keys, clock, [
      { name: 'fabrikam-siem', secretName: SECRET_NAME, mayPushFor: [FABRIKAM] },
      { name: 'northwind-siem', secretName: 'northwind-push-hmac-key', mayPushFor: [NORTHWIND] },
    ]);
    await expect(
      auth.authenticateSignature(signedWith('northwind key', clock, NORTHWIND_REQUEST), BODY, NORTHWIND_REQUEST),
    ).resolves.toMatchObject({ keyName: 'northwind-siem' });

    // Anyone sends a forged request for Fabrikam once a minute, each one just before Northwind's sender pushes.
    for (let minute = 1; minute <= 10; minute++) {
      clock.now = START + minute * 60_000;
      expect(
        (await refusal(auth.authenticateSignature(signedWith('a guessed key', clock), BODY, REQUEST))).status,
      ).toBe(401);
      if (minute === 3) vaults['northwind-push-hmac-key']!.current = 'northwind key, rotated';
      clock.now += 1_000;
      const northwindKey = minute >= 3 ? 'northwind key, rotated' : 'northwind key';
      await expect(
        auth.authenticateSignature(signedWith(northwindKey, clock, NORTHWIND_REQUEST), BODY, NORTHWIND_REQUEST),
        `minute ${minute}`,
      ).resolves.toMatchObject({ keyName: 'northwind-siem' });
    }
    // Northwind's key was read when first needed and once after its rotation; Fabrikam's when first needed, then once a minute for the forgeries.
    expect(vaults['northwind-push-hmac-key']!.reads).toBe(2);
    expect(vaults[SECRET_NAME]!.reads).toBe(11);
  });
});

describe('webhook auth: Entra tokens, as the validator hands them over', () => {
  const APP_ID = '3b5f0c2e-8d4a-4e6f-9b1c-7a2d5e8f0c3b';
  /** An authenticator whose token validator answers every token with `validate`. */
  const withTokens = (validate: () => Promise<EntraPrincipal>) =>
    authenticator(new Vault('unused'), { now: START }, [], { validate });
  /** A verified token of the pushing application, carrying the app role and `claims`. */
  const principal = (claims: JWTPayload): EntraPrincipal => ({
    tenantId: FABRIKAM,
    clientId: APP_ID,
    version: 2,
    roles: ['Incidents.Submit'],
    scopes: [],
    token: 'eyJ.the.token',
    claims: { tid: FABRIKAM, azp: APP_ID, ...claims },
  });

  it("Entra ID's signing keys out of reach: 503 with Retry-After asking to retry; the log says the token could not be verified, and why (the cause)", async () => {
    const unreachable = new SigningKeysUnavailableError(
      `https://login.microsoftonline.com/${FABRIKAM}/discovery/v2.0/keys`,
      'HTTP 503',
    );
    const err = await refusal(withTokens(() => Promise.reject(unreachable)).authenticateBearer('Bearer eyJ.the.token'));
    expect(err).toMatchObject({
      status: 503,
      message: SIGNING_KEYS_UNAVAILABLE_MESSAGE,
      headers: { 'Retry-After': '10' },
      detail: 'the token could not be verified',
      cause: unreachable,
    });
  });

  it('a failure of the validator itself is passed on as it is (the push answers 500), never as Entra ID being out of reach', async () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'kid')");
    await expect(withTokens(() => Promise.reject(bug)).authenticateBearer('Bearer eyJ.the.token')).rejects.toBe(bug);
  });

  it.each([
    ['scp and idtyp', { scp: 'access_as_user', idtyp: 'user' }, 'scp "access_as_user", idtyp "user"'],
    ['scp only (idtyp is an optional claim)', { scp: 'access_as_user' }, 'scp "access_as_user"'],
    ['idtyp "user" only', { idtyp: 'user' }, 'idtyp "user"'],
  ])(
    "a signed-in user's token (%s): 403; the log names the application and the claims that made it a user's, never the user",
    async (_why, claims, named) => {
      const user = {
        upn: 'adele.vance@fabrikam.example',
        name: 'Adele Vance',
        oid: '9c1e2f4a-6b8d-4a0c-8e2f-1b3d5f7a9c0e',
      };
      const err = await refusal(
        withTokens(async () => ({
          ...principal({ ...claims, ...user }),
          userPrincipalName: user.upn,
        })).authenticateBearer('Bearer eyJ.the.token'),
      );
      expect(err.status).toBe(403);
      expect(err.clientId).toBe(APP_ID);
      expect(err.detail).toBe(
        `refused a signed-in user's (delegated) token: ${named}; pushing takes an application's token`,
      );
      for (const value of Object.values(user)) expect(err.detail).not.toContain(value);
    },
  );
});
