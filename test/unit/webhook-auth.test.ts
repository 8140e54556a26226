import { describe, expect, it } from 'vitest';
import { WebhookAuthenticator, WebhookAuthError, type HmacKeySource } from '../../shared/webhook-auth.js';
import { parseWebhookAccess, WebhookAccess } from '../../shared/webhook-access.js';
import { pushSignatureHeader, type SignedRequest } from '../../shared/webhook-signature.js';

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
  hmacKeys: { name: string; secretName: string; mayPushFor: string[] }[] = [{ name: 'fabrikam-siem', secretName: SECRET_NAME, mayPushFor: [FABRIKAM] }],
): WebhookAuthenticator {
  const parsed = parseWebhookAccess({ hmacKeys });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const access = new WebhookAccess(parsed.access, []);
  return new WebhookAuthenticator({
    tokens: { validate: () => Promise.reject(new Error('no token in these tests')) },
    requiredRole: 'Incidents.Submit',
    access: () => access,
    hmac: { keys: vault, toleranceSeconds: 300 },
    now: () => clock.now,
  });
}

/** A push signed now (by the authenticator's clock) with `key`, for Fabrikam unless `request` says otherwise. */
const signedWith = (key: string, clock: { now: number }, request = REQUEST) => pushSignatureHeader(key, request, BODY, Math.floor(clock.now / 1000));

async function refusal(attempt: Promise<unknown>): Promise<WebhookAuthError> {
  const err = await attempt.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WebhookAuthError);
  return err as WebhookAuthError;
}

describe('webhook auth: HMAC keys rotated in Key Vault', () => {
  it('accepts a sender already signing with the rotated key: a mismatch reads the key from Key Vault again', async () => {
    const vault = new Vault('key-before-rotation');
    const clock = { now: START };
    const auth = authenticator(vault, clock);
    await expect(auth.authenticateSignature(signedWith('key-before-rotation', clock), BODY, REQUEST)).resolves.toMatchObject({ kind: 'hmac', keyName: 'fabrikam-siem' });

    vault.current = 'key-after-rotation';
    clock.now += 1_000;
    await expect(auth.authenticateSignature(signedWith('key-after-rotation', clock), BODY, REQUEST)).resolves.toMatchObject({ kind: 'hmac', keyName: 'fabrikam-siem' });
    expect(vault.reads).toBe(2);
    // The old key no longer signs.
    expect((await refusal(auth.authenticateSignature(signedWith('key-before-rotation', clock), BODY, REQUEST))).status).toBe(401);
  });

  it('reads Key Vault again at most once a minute however many signatures do not match, so a key rotated meanwhile is taken a minute after the last read', async () => {
    const vault = new Vault('the key');
    const clock = { now: START };
    const auth = authenticator(vault, clock);
    // Forged requests: the first mismatch reads the key again, the next ones within the minute do not.
    for (let i = 0; i < 5; i++) {
      expect((await refusal(auth.authenticateSignature(signedWith('a guessed key', clock), BODY, REQUEST))).status).toBe(401);
      clock.now += 1_000;
    }
    expect(vault.reads).toBe(2);
    const lastRead = START;

    vault.current = 'the rotated key';
    clock.now = lastRead + 59_999;
    expect((await refusal(auth.authenticateSignature(signedWith('the rotated key', clock), BODY, REQUEST))).status).toBe(401);
    expect(vault.reads).toBe(2);
    clock.now = lastRead + 60_000;
    await expect(auth.authenticateSignature(signedWith('the rotated key', clock), BODY, REQUEST)).resolves.toMatchObject({ kind: 'hmac', keyName: 'fabrikam-siem' });
    expect(vault.reads).toBe(3);
  });

  it("a tenant's forged signatures never hold up another tenant's rotated key: each key has its own re-read slot", async () => {
    const NORTHWIND = '0b7a1c55-3e2d-4f6a-8b9c-1d2e3f4a5b6c';
    const NORTHWIND_REQUEST: SignedRequest = { ...REQUEST, tenantId: NORTHWIND };
    const vaults: Record<string, Vault> = { [SECRET_NAME]: new Vault('fabrikam key'), 'northwind-push-hmac-key': new Vault('northwind key') };
    const keys: HmacKeySource = { get: (name) => vaults[name]!.get(), refresh: (name) => vaults[name]!.refresh() };
    const clock = { now: START };
    const auth = authenticator(keys, clock, [
      { name: 'fabrikam-siem', secretName: SECRET_NAME, mayPushFor: [FABRIKAM] },
      { name: 'northwind-siem', secretName: 'northwind-push-hmac-key', mayPushFor: [NORTHWIND] },
    ]);
    await expect(auth.authenticateSignature(signedWith('northwind key', clock, NORTHWIND_REQUEST), BODY, NORTHWIND_REQUEST)).resolves.toMatchObject({ keyName: 'northwind-siem' });

    // Anyone sends a forged request for Fabrikam once a minute, each one just before Northwind's sender pushes.
    for (let minute = 1; minute <= 10; minute++) {
      clock.now = START + minute * 60_000;
      expect((await refusal(auth.authenticateSignature(signedWith('a guessed key', clock), BODY, REQUEST))).status).toBe(401);
      if (minute === 3) vaults['northwind-push-hmac-key']!.current = 'northwind key, rotated';
      clock.now += 1_000;
      const northwindKey = minute >= 3 ? 'northwind key, rotated' : 'northwind key';
      await expect(auth.authenticateSignature(signedWith(northwindKey, clock, NORTHWIND_REQUEST), BODY, NORTHWIND_REQUEST), `minute ${minute}`).resolves.toMatchObject({ keyName: 'northwind-siem' });
    }
    // Northwind's key was read when first needed and once after its rotation; Fabrikam's when first needed, then once a minute for the forgeries.
    expect(vaults['northwind-push-hmac-key']!.reads).toBe(2);
    expect(vaults[SECRET_NAME]!.reads).toBe(11);
  });
});
