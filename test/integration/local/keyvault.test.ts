import { randomUUID } from 'node:crypto';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createTokenVerifier } from '../../../local/common/bearer.js';
import { FaultBoard } from '../../../local/common/faults.js';
import { createTokenIssuer, type TokenIssuer } from '../../../local/entra/token-issuer.js';
import { startKeyVault, type KeyVaultStandIn } from '../../../local/keyvault/server.js';
import { createLocalCa } from '../../../local/common/tls.js';
import { PermanentError } from '../../../shared/errors.js';
import { SecretCache } from '../../../shared/auth/secrets.js';

// Only a name here: the challenge points to it, and tokens for v2 issuers would carry it. Nothing connects to it.
const AUTHORITY_HOST = 'https://localhost:9443';
const VAULT_TENANT = randomUUID();
const OTHER_TENANT = randomUUID();
const VAULT_SCOPE = 'https://vault.azure.net/.default';

/**
 * A real TokenCredential backed by the local token issuer, standing in for Entra: it records what the SDK
 * asked for (scopes, tenant from the challenge) and mints an RS256 token for that audience and tenant.
 */
class IssuerCredential implements TokenCredential {
  readonly requests: { scopes: string[]; tenantId?: string }[] = [];
  readonly issued: string[] = [];

  constructor(
    private readonly issuer: TokenIssuer,
    private readonly principal: { clientId: string; objectId: string; homeTenantId: string },
  ) {}

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> {
    const list = Array.isArray(scopes) ? scopes : [scopes];
    this.requests.push({ scopes: list, tenantId: options?.tenantId });
    const { token, expiresIn } = await this.issuer.issueAccessToken({
      tenantId: options?.tenantId ?? this.principal.homeTenantId,
      audience: (list[0] ?? '').replace(/\/\.default$/, ''),
      clientId: this.principal.clientId,
      objectId: this.principal.objectId,
    });
    this.issued.push(token);
    return { token, expiresOnTimestamp: Date.now() + expiresIn * 1000 };
  }
}

/** The only client option the local stack adds: the vault is on localhost, not under vault.azure.net. */
const LOCAL_CLIENT_OPTIONS = { disableChallengeResourceVerification: true } as const;

describe('Key Vault stand-in with the real SecretClient', () => {
  let issuer: TokenIssuer;
  let vault: KeyVaultStandIn;
  const faults = new FaultBoard();
  const logs: string[] = [];

  const principal = (role?: 'Key Vault Secrets User' | 'Key Vault Secrets Officer') => {
    const identity = { clientId: randomUUID(), objectId: randomUUID(), homeTenantId: VAULT_TENANT };
    if (role) vault.grant(identity.objectId, role);
    const credential = new IssuerCredential(issuer, identity);
    return { identity, credential, client: new SecretClient(vault.url, credential, LOCAL_CLIENT_OPTIONS) };
  };

  const tokenFor = (overrides: Partial<Parameters<TokenIssuer['issueAccessToken']>[0]> = {}, withIssuer = issuer) =>
    withIssuer
      .issueAccessToken({
        tenantId: VAULT_TENANT,
        audience: 'https://vault.azure.net',
        clientId: randomUUID(),
        objectId: randomUUID(),
        ...overrides,
      })
      .then((t) => t.token);

  const raw = (path: string, init: RequestInit = {}) => fetch(`${vault.url}${path}`, init);

  beforeAll(async () => {
    issuer = await createTokenIssuer(AUTHORITY_HOST);
    vault = await startKeyVault({
      tls: inject('tls'),
      verifier: createTokenVerifier({ jwks: () => issuer.jwks(), issuerFor: (tid, v) => issuer.issuerFor(tid, v) }),
      tenantId: VAULT_TENANT,
      authorityHost: AUTHORITY_HOST,
      faults,
      log: (line) => logs.push(line),
    });
  });
  afterAll(() => vault?.close());
  beforeEach(() => faults.clear());

  it('names a vault whose TLS certificate the process does not trust as such, not as a refusal', async () => {
    // The same stand-in, but signed by a CA this process was not told to trust (as when NODE_EXTRA_CA_CERTS is missing).
    const untrusted = await startKeyVault({
      tls: createLocalCa('a CA nobody trusts').issueServerCert(),
      verifier: createTokenVerifier({ jwks: () => issuer.jwks(), issuerFor: (tid, v) => issuer.issuerFor(tid, v) }),
      tenantId: VAULT_TENANT,
      authorityHost: AUTHORITY_HOST,
      faults,
      log: () => undefined,
    });
    try {
      const identity = { clientId: randomUUID(), objectId: randomUUID(), homeTenantId: VAULT_TENANT };
      const cache = new SecretCache(
        new SecretClient(untrusted.url, new IssuerCredential(issuer, identity), {
          ...LOCAL_CLIENT_OPTIONS,
          retryOptions: { maxRetries: 0 },
        }),
      );
      const failure = await cache.get('anything').then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(failure).toBeInstanceOf(PermanentError);
      expect(failure!.message).toMatch(
        /^Key Vault's TLS certificate is not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\): for the local stack, NODE_EXTRA_CA_CERTS must name its CA/,
      );
      expect(failure!.message).not.toMatch(/refused/);
    } finally {
      await untrusted.close();
    }
  });

  it('answers the challenge, then sets, gets (latest and by version) and lists secrets', async () => {
    const { client, credential } = principal('Key Vault Secrets Officer');
    const first = await client.setSecret('relay-client-secret', 'first-value', { tags: { owner: 'relay' } });
    // The SDK's first request went without a token; the 401 challenge sent it to the vault's tenant and resource.
    expect(credential.requests[0]).toEqual({ scopes: [VAULT_SCOPE], tenantId: VAULT_TENANT });
    expect(first.properties.version).toMatch(/^[0-9a-f]{32}$/);
    expect(first.properties.id).toBe(`${vault.url}/secrets/relay-client-secret/${first.properties.version}`);
    expect(first.properties).toMatchObject({
      enabled: true,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: 90,
    });
    expect(first.properties.tags).toEqual({ owner: 'relay' });
    expect(first.properties.createdOn).toBeInstanceOf(Date);

    // SecretClient 4.11.0 does not send setSecret's contentType option, so this version is seeded directly.
    const second = vault.store.setSecret('relay-client-secret', 'second-value', { contentType: 'text/plain' });
    const latest = await client.getSecret('relay-client-secret');
    expect(latest.value).toBe('second-value');
    expect(latest.properties).toMatchObject({ version: second.version, id: second.id, contentType: 'text/plain' });
    const old = await client.getSecret('relay-client-secret', { version: first.properties.version });
    expect(old.value).toBe('first-value');
    expect(old.properties.version).toBe(first.properties.version);

    const versions: string[] = [];
    for await (const page of client.listPropertiesOfSecretVersions('relay-client-secret').byPage({ maxPageSize: 1 })) {
      expect(page.length).toBeLessThanOrEqual(1);
      versions.push(...page.map((p) => p.version ?? ''));
    }
    expect(versions.sort()).toEqual([first.properties.version, second.version].sort());

    // More secrets than one page (25) holds: the SDK follows nextLink; lists never carry values.
    for (let i = 0; i < 27; i++) vault.store.setSecret(`bulk-${i}`, `bulk-value-${i}`);
    const names: string[] = [];
    for await (const properties of client.listPropertiesOfSecrets()) {
      expect(properties).not.toHaveProperty('value');
      names.push(properties.name);
    }
    expect(names).toEqual(expect.arrayContaining(['relay-client-secret', 'bulk-0', 'bulk-26']));
    expect(names.filter((n) => n.startsWith('bulk-'))).toHaveLength(27);
    // One token for the whole conversation: the challenge is answered once, then the cached token is reused.
    expect(credential.requests).toHaveLength(1);
  });

  it('pages lists with maxresults and nextLink, and refuses a page size above 25', async () => {
    const token = await tokenFor({ objectId: principal('Key Vault Secrets User').identity.objectId });
    for (let i = 0; i < 3; i++) vault.store.setSecret('paged', `v${i}`);
    const auth = { headers: { authorization: `Bearer ${token}` } };
    const firstPage = (await (await raw('/secrets/paged/versions?api-version=7.4&maxresults=2', auth)).json()) as {
      value: { id: string }[];
      nextLink: string | null;
    };
    expect(firstPage.value).toHaveLength(2);
    expect(firstPage.nextLink).toMatch(
      new RegExp(`^${vault.url}/secrets/paged/versions\\?api-version=7\\.4&\\$skiptoken=`),
    );
    const secondPage = (await (await fetch(firstPage.nextLink as string, auth)).json()) as {
      value: unknown[];
      nextLink: string | null;
    };
    expect(secondPage.value).toHaveLength(1);
    expect(secondPage.nextLink).toBeNull();

    const tooBig = await raw('/secrets?api-version=7.4&maxresults=26', auth);
    expect(tooBig.status).toBe(400);
    expect(await tooBig.json()).toMatchObject({ error: { code: 'BadParameter' } });
  });

  it('answers SecretNotFound (404) for an unknown secret or version, surfaced by the SDK as a RestError', async () => {
    const { client } = principal('Key Vault Secrets User');
    await expect(client.getSecret('does-not-exist')).rejects.toMatchObject({
      name: 'RestError',
      statusCode: 404,
      code: 'SecretNotFound',
      message: expect.stringContaining('A secret with (name/id) does-not-exist was not found in this key vault.'),
    });
    vault.store.setSecret('has-one-version', 'v');
    await expect(
      client.getSecret('has-one-version', { version: '0123456789abcdef0123456789abcdef' }),
    ).rejects.toMatchObject({
      statusCode: 404,
      code: 'SecretNotFound',
    });
  });

  it('answers 403 ForbiddenByRbac to a principal without a role, and to the User role trying to set', async () => {
    vault.store.setSecret('rbac-secret', 'rbac-value');
    const nobody = principal();
    const error = await nobody.client.getSecret('rbac-secret').catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'RestError', statusCode: 403, code: 'Forbidden' });
    const message = (error as Error).message;
    expect(message).toContain('Caller is not authorized to perform action on resource.\r\n');
    expect(message).toContain(`oid=${nobody.identity.objectId}`);
    expect(message).toContain("Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'");

    const reader = principal('Key Vault Secrets User');
    expect((await reader.client.getSecret('rbac-secret')).value).toBe('rbac-value');
    await expect(reader.client.setSecret('rbac-secret', 'overwrite')).rejects.toMatchObject({
      statusCode: 403,
      message: expect.stringContaining("Action: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'"),
    });
    expect((await reader.client.getSecret('rbac-secret')).value).toBe('rbac-value');

    vault.revoke(reader.identity.objectId);
    await expect(reader.client.getSecret('rbac-secret')).rejects.toMatchObject({ statusCode: 403 });

    const res = await raw('/secrets/rbac-secret?api-version=7.4', {
      headers: { authorization: `Bearer ${await tokenFor()}` },
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: 'Forbidden', innererror: { code: 'ForbiddenByRbac' } } });
  });

  describe("401 answers, each with the challenge and Key Vault's error body", () => {
    const expectUnauthorized = async (res: Response, akv: RegExp) => {
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe(
        `Bearer authorization="${AUTHORITY_HOST}/${VAULT_TENANT}", resource="https://vault.azure.net"`,
      );
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('Unauthorized');
      expect(body.error.message).toMatch(akv);
    };
    let owner: string;
    beforeAll(() => {
      owner = principal('Key Vault Secrets Officer').identity.objectId;
      vault.store.setSecret('guarded', 'guarded-value');
    });
    const get = (token?: string) =>
      raw('/secrets/guarded?api-version=7.4', token ? { headers: { authorization: `Bearer ${token}` } } : {});

    it('no Authorization header (the challenge itself)', async () => {
      const res = await raw('/secrets/guarded?api-version=7.4');
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain(`authorization="${AUTHORITY_HOST}/${VAULT_TENANT}"`);
      expect(await res.json()).toEqual({
        error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' },
      });
    });

    it('a token issued by another tenant', async () => {
      await expectUnauthorized(
        await get(await tokenFor({ tenantId: OTHER_TENANT, objectId: owner })),
        new RegExp(
          `^AKV10032: Invalid issuer\\. Expected one of https://sts\\.windows\\.net/${VAULT_TENANT}/.*found https://sts\\.windows\\.net/${OTHER_TENANT}/`,
        ),
      );
    });

    it('a token for another audience', async () => {
      await expectUnauthorized(
        await get(await tokenFor({ audience: 'https://management.azure.com', objectId: owner })),
        /^AKV10022: Invalid audience\. Expected https:\/\/vault\.azure\.net, found: https:\/\/management\.azure\.com/,
      );
    });

    it('an expired token', async () => {
      await expectUnauthorized(
        await get(await tokenFor({ lifetimeSeconds: -60, objectId: owner })),
        /^AKV100\d\d: .*expired/,
      );
    });

    it('a token signed by keys the vault does not trust, or with a tampered signature', async () => {
      const stranger = await createTokenIssuer(AUTHORITY_HOST);
      await expectUnauthorized(await get(await tokenFor({ objectId: owner }, stranger)), /^AKV100\d\d: /);
      const good = await tokenFor({ objectId: owner });
      const [header, payload] = good.split('.');
      const forged = `${header}.${payload}.${Buffer.from('not the signature').toString('base64url')}`;
      await expectUnauthorized(await get(forged), /^AKV100\d\d: /);
      // The same owner with a proper token gets through: the refusals above were about the token alone.
      expect((await get(good)).status).toBe(200);
    });

    it('not a bearer token at all', async () => {
      const res = await raw('/secrets/guarded?api-version=7.4', { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
      await expectUnauthorized(res, /^AKV10000: /);
    });
  });

  describe("bad requests get 400 BadParameter in Key Vault's shape", () => {
    let auth: { authorization: string };
    let client: SecretClient;
    beforeAll(async () => {
      const officer = principal('Key Vault Secrets Officer');
      client = officer.client;
      auth = { authorization: `Bearer ${await tokenFor({ objectId: officer.identity.objectId })}` };
    });
    const expectBadParameter = async (res: Response, message: RegExp) => {
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('BadParameter');
      expect(body.error.message).toMatch(message);
    };

    it('missing api-version', async () => {
      await expectBadParameter(await raw('/secrets/anything', { headers: auth }), /api-version/);
    });

    it('a value over 25 KB (exactly 25 KB is fine)', async () => {
      await expect(client.setSecret('big', 'x'.repeat(25 * 1024 + 1))).rejects.toMatchObject({
        statusCode: 400,
        code: 'BadParameter',
      });
      await expect(client.getSecret('big')).rejects.toMatchObject({ code: 'SecretNotFound' });
      expect((await client.setSecret('big', 'x'.repeat(25 * 1024))).value).toHaveLength(25 * 1024);
    });

    it('a name outside [0-9a-zA-Z-]{1,127}', async () => {
      await expect(client.setSecret('bad_name', 'v')).rejects.toMatchObject({ statusCode: 400, code: 'BadParameter' });
      await expect(client.setSecret('a'.repeat(128), 'v')).rejects.toMatchObject({
        statusCode: 400,
        code: 'BadParameter',
      });
      await expectBadParameter(await raw('/secrets/bad%ZZname?api-version=7.4', { headers: auth }), /malformed/);
    });

    it('malformed JSON, or a body without a value', async () => {
      const put = (body: string) =>
        raw('/secrets/json-test?api-version=7.4', {
          method: 'PUT',
          headers: { ...auth, 'content-type': 'application/json' },
          body,
        });
      await expectBadParameter(await put('{"value": "unterminated'), /not valid JSON/);
      await expectBadParameter(await put('{"contentType": "text/plain"}'), /value/);
      await expectBadParameter(await put('{"value": 42}'), /value/);
      await expectBadParameter(await put('[]'), /body/);
    });

    it('an unknown path or method answers in the same error shape', async () => {
      const unknown = await raw('/keys/whatever?api-version=7.4', { headers: auth });
      expect(unknown.status).toBe(404);
      expect(await unknown.json()).toMatchObject({ error: { code: 'NotFound' } });
      const wrongMethod = await raw('/secrets?api-version=7.4', { method: 'POST', headers: auth });
      expect(wrongMethod.status).toBe(405);
      expect(await wrongMethod.json()).toMatchObject({ error: { code: 'MethodNotAllowed' } });
    });
  });

  it('keeps tags per version, as Key Vault does: a new version has only the tags it was set with; an update tags that version', async () => {
    // Set Secret creates a new version with the request's tags; Update Secret changes one version's
    // properties (https://learn.microsoft.com/rest/api/keyvault/secrets/set-secret/set-secret,
    // …/update-secret/update-secret); a SecretBundle carries `tags`. The relay's tenant-credential fence relies on it.
    const { client } = principal('Key Vault Secrets Officer');
    const tagged = await client.setSecret('tagged-per-version', 'v1', {
      tags: { 'defender-relay': 'tenant-credential' },
    });
    expect((await client.getSecret('tagged-per-version')).properties.tags).toEqual({
      'defender-relay': 'tenant-credential',
    });
    const rotated = await client.setSecret('tagged-per-version', 'v2');
    expect((await client.getSecret('tagged-per-version')).properties.tags ?? {}).toEqual({});
    expect(
      (await client.getSecret('tagged-per-version', { version: tagged.properties.version })).properties.tags,
    ).toEqual({ 'defender-relay': 'tenant-credential' });
    await client.updateSecretProperties('tagged-per-version', rotated.properties.version!, {
      tags: { 'defender-relay': 'tenant-credential' },
    });
    const latest = await client.getSecret('tagged-per-version');
    expect(latest).toMatchObject({ value: 'v2', properties: { tags: { 'defender-relay': 'tenant-credential' } } });
    // A Secrets User (the relay's identity) reads the tags with the value.
    const reader = principal('Key Vault Secrets User');
    expect((await reader.client.getSecret('tagged-per-version')).properties.tags).toEqual({
      'defender-relay': 'tenant-credential',
    });
  });

  it("answers odd input with a 4xx in Key Vault's error shape, never a 500", async () => {
    const officer = principal('Key Vault Secrets Officer');
    const auth = { authorization: `Bearer ${await tokenFor({ objectId: officer.identity.objectId })}` };
    vault.store.setSecret('odd', 'odd-value');
    const requests: [string, RequestInit?][] = [
      ['/secrets/odd/versions?api-version=7.4&maxresults=abc'],
      ['/secrets?api-version=7.4&$skiptoken=not-a-token'],
      ['/secrets/odd/extra/segments?api-version=7.4'],
      ['/secrets/%00?api-version=7.4'],
      ['/deletedsecrets/never-deleted?api-version=7.4'],
      ['/deletedsecrets/never-deleted/recover?api-version=7.4', { method: 'POST' }],
      ['/deletedsecrets/never-deleted?api-version=7.4', { method: 'DELETE' }],
      ['/secrets/never-existed?api-version=7.4', { method: 'DELETE' }],
      ['/secrets/odd/0123456789abcdef0123456789abcdef?api-version=7.4', { method: 'PATCH', body: '{}' }],
      ['/secrets/odd/?api-version=7.4', { method: 'PATCH', body: '{"attributes": {"enabled": "yes"}}' }],
      ['/secrets/odd?api-version=7.4', { method: 'PUT', body: '{"value": "v", "tags": {"a": 1}}' }],
      [
        '/secrets/odd?api-version=7.4',
        {
          method: 'PUT',
          body: JSON.stringify({
            value: 'v',
            tags: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, 'x'])),
          }),
        },
      ],
      ['/secrets/odd?api-version=7.4', { method: 'PUT', body: 'x'.repeat(300 * 1024) }],
      ['/secrets/odd?api-version=7.4', { method: 'PUT' }],
    ];
    for (const [path, init] of requests) {
      const res = await raw(path, { ...init, headers: { ...auth, 'content-type': 'application/json' } });
      const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
      expect({ path, status: res.status }).toEqual({
        path,
        status: expect.toSatisfy((s: number) => s >= 400 && s < 500),
      });
      expect(typeof body.error?.code).toBe('string');
      expect(typeof body.error?.message).toBe('string');
    }
    expect((await officer.client.getSecret('odd')).value).toBe('odd-value');
    // A doubled slash, as in Microsoft's own REST examples, still names the secret.
    const doubled = await raw('//secrets/odd?api-version=7.4', { headers: auth });
    expect(doubled.status).toBe(200);
    expect(await doubled.json()).toMatchObject({ value: 'odd-value' });
  });

  it('refuses to get a disabled secret (403), and serves it again once enabled', async () => {
    const { client } = principal('Key Vault Secrets Officer');
    const set = await client.setSecret('switched-off', 'dormant-value', { enabled: false });
    expect(set.properties.enabled).toBe(false);
    await expect(client.getSecret('switched-off')).rejects.toMatchObject({
      statusCode: 403,
      code: 'Forbidden',
      message: 'Operation get is not allowed on a disabled secret.',
    });
    await client.updateSecretProperties('switched-off', set.properties.version ?? '', { enabled: true });
    expect((await client.getSecret('switched-off')).value).toBe('dormant-value');
  });

  it('soft-deletes: the SDK poller completes, the name is reserved until purged', async () => {
    const { client } = principal('Key Vault Secrets Officer');
    await client.setSecret('to-delete', 'doomed-value');
    const poller = await client.beginDeleteSecret('to-delete', { intervalInMs: 10 });
    const deleted = await poller.pollUntilDone();
    expect(deleted.recoveryId).toBe(`${vault.url}/deletedsecrets/to-delete`);
    expect(deleted.value).toBeUndefined();
    await expect(client.getSecret('to-delete')).rejects.toMatchObject({ statusCode: 404, code: 'SecretNotFound' });
    await expect(client.setSecret('to-delete', 'again')).rejects.toMatchObject({ statusCode: 409, code: 'Conflict' });
    await client.purgeDeletedSecret('to-delete');
    expect((await client.setSecret('to-delete', 'again')).value).toBe('again');
  });

  describe('faults', () => {
    let client: SecretClient;
    beforeAll(async () => {
      client = principal('Key Vault Secrets User').client;
      vault.store.setSecret('resilient', 'resilient-value');
      await client.getSecret('resilient'); // challenge done, so each test counts only real attempts
    });
    // getSecret without a version asks for `/secrets/resilient/` (an empty version segment).
    const attempts = () => logs.filter((l) => l.includes('/secrets/resilient')).length;

    it('outage resets the connection; the SDK retries past a single reset', async () => {
      const resets = () => logs.filter((l) => l.includes('connection reset (injected outage)')).length;
      faults.add('keyvault', { kind: 'outage' }, 1, '/secrets/resilient');
      await expect(raw('/secrets/resilient?api-version=7.4')).rejects.toThrow();
      expect(resets()).toBe(1);
      faults.add('keyvault', { kind: 'outage' }, 1, '/secrets/resilient');
      const before = attempts();
      expect((await client.getSecret('resilient')).value).toBe('resilient-value');
      expect(attempts() - before).toBe(2);
      expect(resets()).toBe(2);
    });

    it('503 ServiceUnavailable once: the SDK retry recovers', async () => {
      faults.add('keyvault', { kind: 'status', status: 503 }, 1, '/secrets/resilient');
      const before = attempts();
      expect((await client.getSecret('resilient')).value).toBe('resilient-value');
      expect(attempts() - before).toBe(2);
      expect(logs.at(-2)).toContain('503 ServiceUnavailable');
    });

    it("429 Throttled carries Retry-After in Key Vault's error shape", async () => {
      faults.add('keyvault', { kind: 'status', status: 429, retryAfterSeconds: 7 }, 1);
      const res = await raw('/secrets/resilient?api-version=7.4');
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('7');
      expect(await res.json()).toMatchObject({ error: { code: 'Throttled' } });
    });

    it('a malformed body fails the SDK call instead of passing as a secret', async () => {
      faults.add('keyvault', { kind: 'malformed' }, 1, '/secrets/resilient');
      await expect(client.getSecret('resilient')).rejects.toThrow();
    });

    it('a delay holds the answer, then answers normally', async () => {
      faults.add('keyvault', { kind: 'delay', ms: 300 }, 1, '/secrets/resilient');
      const started = Date.now();
      expect((await client.getSecret('resilient')).value).toBe('resilient-value');
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    });
  });

  it('logs method, path, status and caller, never a secret value or a token', async () => {
    const { client, credential } = principal('Key Vault Secrets Officer');
    await client.setSecret('log-check', 'log-check-value-3f9a');
    await client.getSecret('log-check');
    expect(logs.some((l) => l.includes('PUT /secrets/log-check 200') && l.includes('oid='))).toBe(true);
    expect(logs.some((l) => l.includes('PUT /secrets/log-check 401 Unauthorized'))).toBe(true);
    const everything = logs.join('\n');
    for (const value of [
      'log-check-value-3f9a',
      'first-value',
      'second-value',
      'rbac-value',
      'dormant-value',
      'resilient-value',
      'bulk-value-1',
    ]) {
      expect(everything).not.toContain(value);
    }
    for (const token of credential.issued) expect(everything).not.toContain(token.split('.')[2]);
    expect(everything).not.toMatch(/eyJ[\w-]+\.eyJ/);
  });
});
