import { randomUUID } from 'node:crypto';
import {
  AuthenticationRequiredError,
  ClientCertificateCredential,
  ClientSecretCredential,
  CredentialUnavailableError,
} from '@azure/identity';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { FaultBoard } from '../../../local/common/faults.js';
import { createSelfSignedCert } from '../../../local/common/tls.js';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';

/** App-only tokens (application and partner contexts) from the real `@azure/identity` credentials. */

const DEFENDER = 'https://api.security.microsoft.com';
const DEFENDER_SCOPE = `${DEFENDER}/.default`;

const home = { tenantId: randomUUID(), displayName: 'Relay Home' };
const customerA = { tenantId: randomUUID(), displayName: 'Customer A' };
const customerB = { tenantId: randomUUID(), displayName: 'Customer B' };
const stranger = { tenantId: randomUUID(), displayName: 'Never Consented' };

const poller = { clientId: randomUUID(), secret: `poller-${randomUUID()}` };
const partner = { clientId: randomUUID(), secret: `partner-${randomUUID()}` };
const certApp = { clientId: randomUUID(), cert: createSelfSignedCert('relay-cert-app') };

let entra: EntraStandIn;
const faults = new FaultBoard();

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls'), faults });
  const r = entra.registry;
  for (const t of [home, customerA, customerB, stranger]) r.addTenant(t);
  r.addApp({
    clientId: poller.clientId,
    displayName: 'relay poller',
    homeTenantId: home.tenantId,
    multiTenant: false,
    secrets: [poller.secret],
  });
  r.grantAppPermissions(home.tenantId, poller.clientId, DEFENDER, ['Incident.Read.All', 'Incident.ReadWrite.All']);
  r.addApp({
    clientId: partner.clientId,
    displayName: 'relay partner',
    homeTenantId: home.tenantId,
    multiTenant: true,
    secrets: [partner.secret],
  });
  r.grantAppPermissions(customerA.tenantId, partner.clientId, DEFENDER, ['Incident.Read.All']);
  r.grantAppPermissions(customerB.tenantId, partner.clientId, DEFENDER, ['Incident.ReadWrite.All']);
  r.addApp({
    clientId: certApp.clientId,
    displayName: 'relay cert',
    homeTenantId: home.tenantId,
    multiTenant: false,
    certificates: [certApp.cert.cert],
  });
  r.grantAppPermissions(home.tenantId, certApp.clientId, DEFENDER, ['Incident.Read.All']);
});
afterAll(() => entra.close());
afterEach(() => faults.clear());

const options = () => ({ authorityHost: entra.url, disableInstanceDiscovery: true });
/** No SDK retries where a test wants to see the first failure. */
const noRetry = () => ({ ...options(), retryOptions: { maxRetries: 0 } });

async function servedKeys(tenantId: string): Promise<JSONWebKeySet> {
  const res = await fetch(`${entra.url}/${tenantId}/discovery/v2.0/keys`);
  expect(res.status).toBe(200);
  return (await res.json()) as JSONWebKeySet;
}

/** Verifies the signature against the JWKS the stand-in serves over HTTPS, and returns the claims. */
async function verified(token: string, tenantId: string) {
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(await servedKeys(tenantId)), {
    algorithms: ['RS256'],
  });
  expect(protectedHeader.alg).toBe('RS256');
  return payload as Record<string, unknown> & { exp: number; iat: number };
}

function expectFreshLifetime(claims: { exp: number; iat: number }) {
  const now = Math.floor(Date.now() / 1000);
  expect(Math.abs(claims.iat - now)).toBeLessThan(30);
  expect(claims.exp - claims.iat).toBe(3599);
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => expect.unreachable('the credential should have failed'),
    (err: unknown) => err as Error,
  );
}

describe('client secret (application context)', () => {
  it('issues a v1 Defender token with aud, iss, tid, appid, oid = the service principal and the granted roles', async () => {
    const credential = new ClientSecretCredential(home.tenantId, poller.clientId, poller.secret, options());
    const accessToken = await credential.getToken(DEFENDER_SCOPE);
    const claims = await verified(accessToken.token, home.tenantId);
    expect(claims).toMatchObject({
      aud: DEFENDER,
      iss: `https://sts.windows.net/${home.tenantId}/`,
      tid: home.tenantId,
      appid: poller.clientId,
      oid: entra.registry.servicePrincipalId(home.tenantId, poller.clientId),
      idtyp: 'app',
      ver: '1.0',
    });
    expect(claims.roles).toEqual(['Incident.Read.All', 'Incident.ReadWrite.All']);
    expect(claims.scp).toBeUndefined();
    expectFreshLifetime(claims);
    expect(Math.abs(accessToken.expiresOnTimestamp - claims.exp * 1000)).toBeLessThan(5_000);
  });

  it('issues tokens the stand-in verifier accepts for that audience only', async () => {
    const { token } = await new ClientSecretCredential(
      home.tenantId,
      poller.clientId,
      poller.secret,
      options(),
    ).getToken(DEFENDER_SCOPE);
    const ok = await entra.verifier.verifyAuthorization(`Bearer ${token}`, { audience: DEFENDER });
    expect(ok.clientId).toBe(poller.clientId);
    expect(ok.roles).toContain('Incident.Read.All');
    await expect(
      entra.verifier.verifyAuthorization(`Bearer ${token}`, { audience: 'https://vault.azure.net' }),
    ).rejects.toMatchObject({
      reason: 'wrong_audience',
    });
  });

  it('issues a Key Vault token (no grant needed: the vault does RBAC) with no roles', async () => {
    const { token } = await new ClientSecretCredential(
      home.tenantId,
      poller.clientId,
      poller.secret,
      options(),
    ).getToken('https://vault.azure.net/.default');
    const claims = await verified(token, home.tenantId);
    expect(claims.aud).toBe('https://vault.azure.net');
    expect(claims.oid).toBe(entra.registry.servicePrincipalId(home.tenantId, poller.clientId));
    expect(claims.roles).toBeUndefined();
  });

  it('fails with the wrong secret: AADSTS7000215 invalid_client', async () => {
    const err = await failure(
      new ClientSecretCredential(home.tenantId, poller.clientId, 'not-the-secret', noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('invalid_client');
    expect(err.message).toContain('AADSTS7000215');
    expect(err.message).not.toContain('not-the-secret');
  });

  it('fails for an unknown client id: AADSTS700016 unauthorized_client', async () => {
    const unknown = randomUUID();
    const err = await failure(
      new ClientSecretCredential(home.tenantId, unknown, 'whatever', noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('AADSTS700016');
    expect(err.message).toContain(
      `Application with identifier '${unknown}' was not found in the directory 'Relay Home'`,
    );
  });

  it('fails for an unknown tenant: the metadata answers AADSTS90002 and the credential reports it cannot resolve endpoints', async () => {
    const missing = randomUUID();
    const err = await failure(
      new ClientSecretCredential(missing, poller.clientId, poller.secret, noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err).toBeInstanceOf(CredentialUnavailableError);
    const res = await fetch(`${entra.url}/${missing}/v2.0/.well-known/openid-configuration`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error_codes: number[] }).error_codes).toEqual([90002]);
  });

  it('rotates a secret: the old one fails once removed, the new one works', async () => {
    const rotated = { clientId: randomUUID(), old: `old-${randomUUID()}`, next: `new-${randomUUID()}` };
    entra.registry.addApp({
      clientId: rotated.clientId,
      displayName: 'rotating',
      homeTenantId: home.tenantId,
      multiTenant: false,
      secrets: [rotated.old],
    });
    entra.registry.grantAppPermissions(home.tenantId, rotated.clientId, DEFENDER, ['Incident.Read.All']);
    await new ClientSecretCredential(home.tenantId, rotated.clientId, rotated.old, noRetry()).getToken(DEFENDER_SCOPE);

    entra.registry.addSecret(rotated.clientId, rotated.next);
    entra.registry.removeSecret(rotated.clientId, rotated.old);
    const err = await failure(
      new ClientSecretCredential(home.tenantId, rotated.clientId, rotated.old, noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err.message).toContain('AADSTS7000215');
    const { token } = await new ClientSecretCredential(
      home.tenantId,
      rotated.clientId,
      rotated.next,
      noRetry(),
    ).getToken(DEFENDER_SCOPE);
    expect(decodeJwt(token).roles).toEqual(['Incident.Read.All']);
  });

  it('issues a token without the role that was never granted (the resource, not Entra, refuses)', async () => {
    const bare = { clientId: randomUUID(), secret: randomUUID() };
    entra.registry.addApp({
      clientId: bare.clientId,
      displayName: 'no grants',
      homeTenantId: home.tenantId,
      multiTenant: false,
      secrets: [bare.secret],
    });
    entra.registry.grantAppPermissions(home.tenantId, bare.clientId, DEFENDER, ['AdvancedHunting.Read.All']);
    const { token } = await new ClientSecretCredential(home.tenantId, bare.clientId, bare.secret, options()).getToken(
      DEFENDER_SCOPE,
    );
    const claims = await verified(token, home.tenantId);
    expect(claims.roles).toEqual(['AdvancedHunting.Read.All']);
    expect(claims.roles).not.toContain('Incident.Read.All');
  });

  it('refuses to grant a permission the resource does not expose (the docs screenshot typo)', () => {
    expect(() =>
      entra.registry.grantAppPermissions(home.tenantId, poller.clientId, DEFENDER, ['Incidents.Read.All']),
    ).toThrow(/exposes no application permission 'Incidents.Read.All'/);
    expect(() =>
      entra.registry.grantDelegatedPermissions(home.tenantId, poller.clientId, DEFENDER, ['Incident.Read.All']),
    ).toThrow(/exposes no delegated permission/);
    expect(() =>
      entra.registry.grantAppPermissions(home.tenantId, poller.clientId, 'https://nope.example', ['X']),
    ).toThrow(/No resource API/);
  });
});

describe('client certificate (client assertion)', () => {
  it('issues a token to an app holding the registered certificate (PEM with key and cert)', async () => {
    const credential = new ClientCertificateCredential(
      home.tenantId,
      certApp.clientId,
      { certificate: certApp.cert.key + certApp.cert.cert },
      options(),
    );
    const claims = await verified((await credential.getToken(DEFENDER_SCOPE)).token, home.tenantId);
    expect(claims).toMatchObject({
      aud: DEFENDER,
      tid: home.tenantId,
      appid: certApp.clientId,
      roles: ['Incident.Read.All'],
    });
    expectFreshLifetime(claims);
  });

  it('also accepts an assertion that carries the certificate chain (x5c, sendCertificateChain)', async () => {
    const credential = new ClientCertificateCredential(
      home.tenantId,
      certApp.clientId,
      { certificate: certApp.cert.key + certApp.cert.cert },
      { ...options(), sendCertificateChain: true },
    );
    expect(decodeJwt((await credential.getToken(DEFENDER_SCOPE)).token).appid).toBe(certApp.clientId);
  });

  it('refuses a certificate that is not registered on the app: AADSTS700027', async () => {
    const other = createSelfSignedCert('someone-else');
    const credential = new ClientCertificateCredential(
      home.tenantId,
      certApp.clientId,
      { certificate: other.key + other.cert },
      noRetry(),
    );
    const err = await failure(credential.getToken(DEFENDER_SCOPE));
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('AADSTS700027');
    expect(err.message).toContain('invalid_client');
  });

  it('refuses a registered certificate that has expired', async () => {
    const expired = createSelfSignedCert('expired', -1);
    const app = { clientId: randomUUID() };
    entra.registry.addApp({
      clientId: app.clientId,
      displayName: 'expired cert',
      homeTenantId: home.tenantId,
      multiTenant: false,
      certificates: [expired.cert],
    });
    const credential = new ClientCertificateCredential(
      home.tenantId,
      app.clientId,
      { certificate: expired.key + expired.cert },
      noRetry(),
    );
    const err = await failure(credential.getToken(DEFENDER_SCOPE));
    expect(err.message).toContain('AADSTS700027');
    expect(err.message).toContain('expired');
  });
});

describe('partner context: one multi-tenant app, a token per consented customer tenant', () => {
  it('gives each customer tenant its own tid, service principal oid and roles', async () => {
    const tokenA = await new ClientSecretCredential(
      customerA.tenantId,
      partner.clientId,
      partner.secret,
      options(),
    ).getToken(DEFENDER_SCOPE);
    const tokenB = await new ClientSecretCredential(
      customerB.tenantId,
      partner.clientId,
      partner.secret,
      options(),
    ).getToken(DEFENDER_SCOPE);
    const a = await verified(tokenA.token, customerA.tenantId);
    const b = await verified(tokenB.token, customerB.tenantId);
    expect(a).toMatchObject({
      tid: customerA.tenantId,
      iss: `https://sts.windows.net/${customerA.tenantId}/`,
      appid: partner.clientId,
      roles: ['Incident.Read.All'],
    });
    expect(b).toMatchObject({
      tid: customerB.tenantId,
      iss: `https://sts.windows.net/${customerB.tenantId}/`,
      appid: partner.clientId,
      roles: ['Incident.ReadWrite.All'],
    });
    expect(a.oid).toBe(entra.registry.servicePrincipalId(customerA.tenantId, partner.clientId));
    expect(b.oid).toBe(entra.registry.servicePrincipalId(customerB.tenantId, partner.clientId));
    expect(a.oid).not.toBe(b.oid);
  });

  it('one credential can ask for another tenant per request (getToken tenantId option)', async () => {
    const credential = new ClientSecretCredential(customerA.tenantId, partner.clientId, partner.secret, {
      ...options(),
      additionallyAllowedTenants: ['*'],
    });
    const { token } = await credential.getToken(DEFENDER_SCOPE, { tenantId: customerB.tenantId });
    expect(decodeJwt(token).tid).toBe(customerB.tenantId);
  });

  it('fails in a tenant that never consented: AADSTS700016', async () => {
    const err = await failure(
      new ClientSecretCredential(stranger.tenantId, partner.clientId, partner.secret, noRetry()).getToken(
        DEFENDER_SCOPE,
      ),
    );
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('AADSTS700016');
    expect(err.message).toContain("directory 'Never Consented'");
  });

  it('issues a token without roles in a tenant that consented but granted nothing, and fails again after consent is revoked', async () => {
    const late = { tenantId: randomUUID(), displayName: 'Consented, nothing granted' };
    entra.registry.addTenant(late);
    entra.registry.consent(late.tenantId, partner.clientId);
    const { token } = await new ClientSecretCredential(
      late.tenantId,
      partner.clientId,
      partner.secret,
      options(),
    ).getToken(DEFENDER_SCOPE);
    expect(decodeJwt(token)).toMatchObject({ tid: late.tenantId });
    expect(decodeJwt(token).roles).toBeUndefined();

    entra.registry.revokeConsent(late.tenantId, partner.clientId);
    const err = await failure(
      new ClientSecretCredential(late.tenantId, partner.clientId, partner.secret, noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err.message).toContain('AADSTS700016');
  });

  it('refuses to consent a single-tenant app in a foreign tenant', () => {
    expect(() => entra.registry.consent(customerA.tenantId, poller.clientId)).toThrow(/single-tenant/);
    expect(entra.registry.servicePrincipalId(customerA.tenantId, poller.clientId)).toBeUndefined();
  });
});

describe('faults', () => {
  it('outage: the credential fails (connection reset), then works once the fault is cleared', async () => {
    faults.add('entra', { kind: 'outage' });
    const err = await failure(
      new ClientSecretCredential(home.tenantId, poller.clientId, poller.secret, noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err).toBeInstanceOf(CredentialUnavailableError);
    faults.clear();
    const { token } = await new ClientSecretCredential(
      home.tenantId,
      poller.clientId,
      poller.secret,
      noRetry(),
    ).getToken(DEFENDER_SCOPE);
    expect(decodeJwt(token).tid).toBe(home.tenantId);
  });

  it('outage of the token endpoint only (metadata reachable): the credential fails', async () => {
    faults.add('entra', { kind: 'outage' }, Infinity, '/oauth2/v2.0/token');
    const err = await failure(
      new ClientSecretCredential(home.tenantId, poller.clientId, poller.secret, noRetry()).getToken(DEFENDER_SCOPE),
    );
    expect(err.message).toMatch(/ECONNRESET|socket hang up|network/i);
  });

  it('a 503 answers temporarily_unavailable AADSTS90033 with Retry-After, in the Entra shape', async () => {
    faults.add('entra', { kind: 'status', status: 503, retryAfterSeconds: 7 }, 1, '/oauth2/v2.0/token');
    const res = await fetch(`${entra.url}/${home.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: poller.clientId,
        client_secret: poller.secret,
        scope: DEFENDER_SCOPE,
      }),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable', error_codes: [90033] });
  });

  it('a single transient 503 is retried by the SDK and the token still arrives', async () => {
    faults.add('entra', { kind: 'status', status: 503, retryAfterSeconds: 0 }, 1, '/oauth2/v2.0/token');
    const { token } = await new ClientSecretCredential(
      home.tenantId,
      poller.clientId,
      poller.secret,
      options(),
    ).getToken(DEFENDER_SCOPE);
    expect(decodeJwt(token).tid).toBe(home.tenantId);
    expect(faults.list()).toEqual([]);
  });

  it('malformed: a 200 whose body is not JSON makes the credential fail, not hang', async () => {
    faults.add('entra', { kind: 'malformed' }, Infinity, '/oauth2/v2.0/token');
    await failure(
      new ClientSecretCredential(home.tenantId, poller.clientId, poller.secret, noRetry()).getToken(DEFENDER_SCOPE),
    );
  });

  it('delay: the answer comes late but right', async () => {
    faults.add('entra', { kind: 'delay', ms: 300 }, 1, '/oauth2/v2.0/token');
    const started = Date.now();
    const { token } = await new ClientSecretCredential(
      home.tenantId,
      poller.clientId,
      poller.secret,
      options(),
    ).getToken(DEFENDER_SCOPE);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(decodeJwt(token).aud).toBe(DEFENDER);
  });
});
