import { randomUUID } from 'node:crypto';
import { ManagedIdentityCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { startKeyVault, type KeyVaultStandIn } from '../../../local/keyvault/server.js';

/**
 * The managed-identity endpoint App Service gives a Function App (IDENTITY_ENDPOINT, IDENTITY_HEADER),
 * served by the Entra stand-in, with the real ManagedIdentityCredential (MSAL's App Service source) in
 * front and the Key Vault stand-in's real token check behind. The only local difference: the endpoint
 * is https on localhost where App Service's is http on localhost.
 *
 * MSAL keeps its managed-identity source (endpoint and header, read from the environment at the first
 * token request) and its token cache in static fields, for the life of the process: this file sets
 * IDENTITY_ENDPOINT and IDENTITY_HEADER before the first credential and its tests run in order (the
 * header rotation last).
 */

const VAULT = 'https://vault.azure.net';
const STORAGE = 'https://storage.azure.com';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DAY = 24 * 3600;

const tenantId = randomUUID();
let entra: EntraStandIn;
let vault: KeyVaultStandIn;
const entraLog: string[] = [];
const savedEnv: Record<string, string | undefined> = {};
const ENV_NAMES = [
  'IDENTITY_ENDPOINT',
  'IDENTITY_HEADER',
  'IDENTITY_SERVER_THUMBPRINT',
  'MSI_ENDPOINT',
  'MSI_SECRET',
  'AZURE_FEDERATED_TOKEN_FILE',
];

/** The Function App's user-assigned identity, as infra/core/identity.bicep creates it and api.bicep assigns it. */
let relay: { clientId: string; principalId: string; resourceId: string };
/** A second identity assigned to the app, with no role on the vault. */
let spare: { clientId: string; principalId: string; resourceId: string };
/** An identity that exists in the tenant but is not assigned to the app. */
let elsewhere: { clientId: string; principalId: string; resourceId: string };

const msiRequests = () => entraLog.filter((line) => line.startsWith('entra: msi '));

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls'), log: (line) => entraLog.push(line) });
  vault = await startKeyVault({ tls: inject('tls'), verifier: entra.verifier, tenantId, authorityHost: entra.url });
  entra.registry.addTenant({ tenantId, displayName: 'Relay provider' });
  relay = entra.registry.addManagedIdentity({ name: 'id-defender-relay', tenantId });
  spare = entra.registry.addManagedIdentity({ name: 'id-spare', tenantId });
  elsewhere = entra.registry.addManagedIdentity({ name: 'id-other-app', tenantId });
  entra.msi.assign(relay.clientId);
  entra.msi.assign(spare.clientId);
  vault.grant(relay.principalId, 'Key Vault Secrets User');
  vault.store.setSecret('relay-api-secret', 'value-read-with-the-managed-identity');

  for (const name of ENV_NAMES) {
    savedEnv[name] = process.env[name];
    delete process.env[name];
  }
  process.env.IDENTITY_ENDPOINT = entra.msi.endpoint;
  process.env.IDENTITY_HEADER = entra.msi.header;
});

afterAll(async () => {
  for (const name of ENV_NAMES) {
    if (savedEnv[name] === undefined) delete process.env[name];
    else process.env[name] = savedEnv[name];
  }
  await vault?.close();
  await entra?.close();
});

/** GET the endpoint as App Service's protocol has it, with the raw answer; header null: none sent. */
async function msiGet(query: Record<string, string>, header: string | null = entra.msi.header, method = 'GET') {
  const res = await fetch(`${entra.msi.endpoint}?${new URLSearchParams(query)}`, {
    method,
    headers: header === null ? {} : { 'X-IDENTITY-HEADER': header },
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> | undefined,
  };
}

/** The token service's error shape: `{statusCode, message, correlationId}`, the correlation id also as X-CORRELATION-ID. */
function expectServiceError(answer: Awaited<ReturnType<typeof msiGet>>, status: number, message: RegExp) {
  expect(answer.status).toBe(status);
  expect(Object.keys(answer.body ?? {}).sort()).toEqual(['correlationId', 'message', 'statusCode']);
  expect(answer.body?.statusCode).toBe(status);
  expect(answer.body?.message).toMatch(message);
  expect(answer.body?.correlationId).toMatch(GUID);
  expect(answer.headers.get('x-correlation-id')).toBe(answer.body?.correlationId);
}

describe('the real ManagedIdentityCredential against the App Service endpoint', () => {
  it('picks App Service as its source from IDENTITY_ENDPOINT and IDENTITY_HEADER', () => {
    const credential = new ManagedIdentityCredential({ clientId: relay.clientId });
    // @azure/identity asks MSAL which source the environment selects; anything else would mean IMDS (169.254.169.254).
    const source = (
      credential as unknown as { managedIdentityApp: { getManagedIdentitySource(): string } }
    ).managedIdentityApp.getManagedIdentitySource();
    expect(source).toBe('AppService');
  });

  it("gets a v1.0 app-only token for Key Vault shaped as a managed identity's, and the vault accepts it", async () => {
    const before = msiRequests().length;
    const credential = new ManagedIdentityCredential({ clientId: relay.clientId });
    const token = await credential.getToken(`${VAULT}/.default`);
    expect(msiRequests().length - before).toBe(1);

    const claims = decodeJwt(token.token);
    expect(claims).toMatchObject({
      iss: `https://sts.windows.net/${tenantId}/`,
      ver: '1.0',
      aud: VAULT,
      tid: tenantId,
      appid: relay.clientId,
      appidacr: '2',
      oid: relay.principalId,
      sub: relay.principalId,
      idtyp: 'app',
      xms_mirid: relay.resourceId,
    });
    expect(claims).not.toHaveProperty('azp');
    expect(claims).not.toHaveProperty('roles');
    expect(claims).not.toHaveProperty('scp');
    // Managed identity tokens live about a day; MSAL refreshes halfway through one that lives over 2 h.
    expect((claims.exp as number) - (claims.iat as number)).toBe(DAY);
    expect(token.expiresOnTimestamp).toBeGreaterThan(Date.now() + (DAY - 120) * 1000);
    expect(token.refreshAfterTimestamp).toBeGreaterThan(Date.now() + (DAY / 2 - 120) * 1000);
    expect(token.refreshAfterTimestamp).toBeLessThan(Date.now() + (DAY / 2 + 120) * 1000);

    const secrets = new SecretClient(vault.url, credential, { disableChallengeResourceVerification: true });
    expect((await secrets.getSecret('relay-api-secret')).value).toBe('value-read-with-the-managed-identity');
  });

  it('answers for the identity asked for: one without a role on the vault is refused by the vault, not by the endpoint', async () => {
    const secrets = new SecretClient(vault.url, new ManagedIdentityCredential({ clientId: spare.clientId }), {
      disableChallengeResourceVerification: true,
    });
    const refused = await secrets.getSecret('relay-api-secret').catch((err: unknown) => err);
    expect(refused).toMatchObject({ statusCode: 403, code: 'Forbidden' });
    expect(String((refused as Error).message)).toContain(`oid=${spare.principalId}`);
    expect(String((refused as Error).message)).toContain(`appid=${spare.clientId}`);
  });

  it("gets a Storage token (aud https://storage.azure.com) the stand-ins' verifier accepts for Storage only", async () => {
    const token = await new ManagedIdentityCredential({ clientId: relay.clientId }).getToken(`${STORAGE}/.default`);
    const verified = await entra.verifier.verifyAuthorization(`Bearer ${token.token}`, { audience: STORAGE });
    expect(verified.clientId).toBe(relay.clientId);
    expect(verified.claims).toMatchObject({
      oid: relay.principalId,
      tid: tenantId,
      xms_mirid: relay.resourceId,
      idtyp: 'app',
    });
    await expect(
      entra.verifier.verifyAuthorization(`Bearer ${token.token}`, { audience: VAULT }),
    ).rejects.toMatchObject({ reason: 'wrong_audience' });
  });

  it('is asked once per identity and resource: the client caches the token', async () => {
    const before = msiRequests().length;
    const first = await new ManagedIdentityCredential({ clientId: relay.clientId }).getToken(`${VAULT}/.default`);
    const again = await new ManagedIdentityCredential({ clientId: relay.clientId }).getToken(VAULT);
    expect(again.token).toBe(first.token);
    expect(msiRequests().length).toBe(before);
  });

  it('refuses a client id not assigned to the app with 400 "Unable to load the proper Managed Identity.", which the SDK reports without retrying', async () => {
    for (const clientId of [randomUUID(), elsewhere.clientId]) {
      const before = msiRequests().length;
      const failure = await new ManagedIdentityCredential({ clientId })
        .getToken(`${VAULT}/.default`)
        .catch((err: unknown) => err);
      expect(failure).toMatchObject({ name: 'CredentialUnavailableError' });
      expect(String((failure as Error).message)).toMatch(
        /ManagedIdentityCredential: Authentication failed\..*Unable to load the proper Managed Identity\..*Correlation ID: [0-9a-f-]{36}/s,
      );
      // 400 is not among the statuses MSAL or @azure/identity retry: one request only.
      expect(msiRequests().length - before).toBe(1);
      expect(msiRequests().at(-1)).toMatch(/ 400 /);
    }
  });

  it('refuses a request for the system-assigned identity: the app has none (the Bicep assigns only a user-assigned one)', async () => {
    const failure = await new ManagedIdentityCredential().getToken(`${VAULT}/.default`).catch((err: unknown) => err);
    expect(String((failure as Error).message)).toMatch(/Unable to load the proper Managed Identity\./);
  });
});

describe('the protocol on the wire', () => {
  it('answers 200 with access_token, expires_on (epoch seconds, as a string), resource as requested, token_type and client_id', async () => {
    const answer = await msiGet({
      resource: `${VAULT}/`,
      'api-version': '2019-08-01',
      client_id: relay.clientId.toUpperCase(),
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
    const body = answer.body!;
    expect(Object.keys(body).sort()).toEqual([
      'access_token',
      'client_id',
      'expires_on',
      'not_before',
      'resource',
      'token_type',
    ]);
    expect(body).toMatchObject({ resource: `${VAULT}/`, token_type: 'Bearer', client_id: relay.clientId });
    expect(body.expires_on).toMatch(/^\d{10}$/);
    const claims = decodeJwt(String(body.access_token));
    // A v1.0 token's aud is the resource as the request named it, trailing slash included.
    expect(claims.aud).toBe(`${VAULT}/`);
    expect(String(claims.exp)).toBe(body.expires_on);
    expect(String(claims.nbf)).toBe(body.not_before);
  });

  it('selects the identity by principal_id, its alias object_id, or mi_res_id (any case)', async () => {
    const selectors: Record<string, string>[] = [
      { principal_id: relay.principalId },
      { object_id: relay.principalId },
      { mi_res_id: relay.resourceId.toLowerCase() },
    ];
    for (const query of selectors) {
      const answer = await msiGet({ resource: VAULT, 'api-version': '2019-08-01', ...query });
      expect(answer.status, JSON.stringify(query)).toBe(200);
      expect(answer.body?.client_id).toBe(relay.clientId);
      expect(decodeJwt(String(answer.body?.access_token)).oid).toBe(relay.principalId);
    }
  });

  it('refuses a request without X-IDENTITY-HEADER, or with a wrong one, with 403 before looking at anything else', async () => {
    for (const header of [
      null,
      '',
      `${entra.msi.header}x`,
      entra.msi.header.toUpperCase() === entra.msi.header ? 'wrong' : entra.msi.header.toUpperCase(),
    ]) {
      expectServiceError(
        await msiGet({ resource: VAULT, 'api-version': '2019-08-01', client_id: relay.clientId }, header),
        403,
        /X-IDENTITY-HEADER/,
      );
      // Not even an unknown identity is revealed to a caller without the header.
      expectServiceError(
        await msiGet({ resource: VAULT, 'api-version': '2019-08-01', client_id: randomUUID() }, header),
        403,
        /X-IDENTITY-HEADER/,
      );
    }
  });

  it('refuses a request without a resource, or with one Entra does not know, with 400', async () => {
    expectServiceError(await msiGet({ 'api-version': '2019-08-01', client_id: relay.clientId }), 400, /resource/);
    expectServiceError(
      await msiGet({ resource: '', 'api-version': '2019-08-01', client_id: relay.clientId }),
      400,
      /resource/,
    );
    expectServiceError(
      await msiGet({ resource: 'https://nothing.example', 'api-version': '2019-08-01', client_id: relay.clientId }),
      400,
      /AADSTS500011/,
    );
  });

  it('refuses a missing or unsupported api-version with 400', async () => {
    expectServiceError(await msiGet({ resource: VAULT, client_id: relay.clientId }), 400, /api-version/);
    expectServiceError(
      await msiGet({ resource: VAULT, 'api-version': '2017-09-01', client_id: relay.clientId }),
      400,
      /api-version/,
    );
    expectServiceError(
      await msiGet({ resource: VAULT, 'api-version': 'yesterday', client_id: relay.clientId }),
      400,
      /api-version/,
    );
  });

  it('refuses more than one identity parameter, or a repeated one, with 400', async () => {
    expectServiceError(
      await msiGet({
        resource: VAULT,
        'api-version': '2019-08-01',
        client_id: relay.clientId,
        principal_id: relay.principalId,
      }),
      400,
      /only one/i,
    );
    expectServiceError(
      await msiGet({
        resource: VAULT,
        'api-version': '2019-08-01',
        principal_id: relay.principalId,
        object_id: relay.principalId,
      }),
      400,
      /only one/i,
    );
    const repeated = await fetch(
      `${entra.msi.endpoint}?resource=${VAULT}&api-version=2019-08-01&client_id=${relay.clientId}&client_id=${spare.clientId}`,
      {
        headers: { 'X-IDENTITY-HEADER': entra.msi.header },
      },
    );
    expect(repeated.status).toBe(400);
  });

  it('answers only GET', async () => {
    const answer = await msiGet(
      { resource: VAULT, 'api-version': '2019-08-01', client_id: relay.clientId },
      entra.msi.header,
      'POST',
    );
    expect(answer.status).toBe(405);
  });
});

describe('the control surface', () => {
  it('creates an identity assigned to the app, lists it in the registry without the header, and the endpoint serves it', async () => {
    const created = await fetch(`${entra.url}/_control/managed-identities`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'id-from-control', tenantId }),
    });
    expect(created.status).toBe(201);
    const identity = (await created.json()) as {
      clientId: string;
      principalId: string;
      resourceId: string;
      assignedToApp: boolean;
    };
    expect(identity).toMatchObject({
      clientId: expect.stringMatching(GUID),
      principalId: expect.stringMatching(GUID),
      assignedToApp: true,
    });
    expect(identity.resourceId).toMatch(
      /\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/id-from-control$/,
    );

    const snapshot = await (await fetch(`${entra.url}/_control/registry`)).text();
    expect(snapshot).not.toContain(entra.msi.header);
    expect(JSON.parse(snapshot).managedIdentities).toContainEqual({
      ...identity,
      name: 'id-from-control',
      tenantId,
      assignedToApp: true,
    });
    expect(JSON.parse(snapshot).managedIdentities).toContainEqual(
      expect.objectContaining({ clientId: elsewhere.clientId, assignedToApp: false }),
    );

    const answer = await msiGet({ resource: VAULT, 'api-version': '2019-08-01', client_id: identity.clientId });
    expect(answer.status).toBe(200);
    expect(decodeJwt(String(answer.body?.access_token)).oid).toBe(identity.principalId);
  });

  it('gives a managed identity no way in through the token endpoint: it has no app registration or credential', async () => {
    const res = await fetch(`${entra.url}/${tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: relay.clientId,
        client_secret: 'anything',
        scope: `${VAULT}/.default`,
      }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error_codes: number[] }).error_codes).toEqual([700016]);
  });
});

describe('a rotated IDENTITY_HEADER', () => {
  // Last in the file: MSAL keeps the header it read at its first request for the life of the process.
  it('refuses the old header with 403, which the SDK reports as a failure naming the header', async () => {
    const old = entra.msi.header;
    const rotated = entra.msi.rotateHeader();
    expect(rotated).not.toBe(old);
    expectServiceError(
      await msiGet({ resource: VAULT, 'api-version': '2019-08-01', client_id: relay.clientId }, old),
      403,
      /X-IDENTITY-HEADER/,
    );
    expect(
      (await msiGet({ resource: VAULT, 'api-version': '2019-08-01', client_id: relay.clientId }, rotated)).status,
    ).toBe(200);

    // A resource not in the client's cache yet: the client asks with the header it was started with.
    const failure = await new ManagedIdentityCredential({ clientId: spare.clientId })
      .getToken(`${STORAGE}/.default`)
      .catch((err: unknown) => err);
    expect(failure).toMatchObject({ name: 'CredentialUnavailableError' });
    expect(String((failure as Error).message)).toMatch(
      /ManagedIdentityCredential: Authentication failed\..*X-IDENTITY-HEADER/s,
    );
  });
});
