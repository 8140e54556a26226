import { randomUUID } from 'node:crypto';
import { AuthenticationRequiredError, ClientSecretCredential, OnBehalfOfCredential, UsernamePasswordCredential } from '@azure/identity';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startEntra, type EntraStandIn } from '../../local/entra/server.js';

/**
 * The user context: the analyst's first token for the relay API (ROPC, locally), then the relay API
 * acting on-behalf-of that analyst towards Defender (jwt-bearer OBO).
 */

const DEFENDER = 'https://api.security.microsoft.com';
const RELAY_API = 'api://defender-relay';

const home = { tenantId: randomUUID(), displayName: 'Relay Home' };
const relayApi = { clientId: randomUUID(), secret: `api-${randomUUID()}` };
const analystCli = { clientId: randomUUID() };
const unconsentedCli = { clientId: randomUUID() };
const ana = { userPrincipalName: 'ana@relay-home.test', password: `pw-${randomUUID()}`, displayName: 'Ana Analyst', objectId: randomUUID() };

let entra: EntraStandIn;

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls') });
  const r = entra.registry;
  r.addTenant(home);
  r.addApp({
    clientId: relayApi.clientId,
    displayName: 'defender-relay API',
    homeTenantId: home.tenantId,
    multiTenant: false,
    secrets: [relayApi.secret],
    identifierUri: RELAY_API,
    delegatedScopes: ['access_as_user'],
    appRoles: ['Webhook.Push'],
  });
  r.grantDelegatedPermissions(home.tenantId, relayApi.clientId, DEFENDER, ['Incident.Read', 'Incident.ReadWrite']);
  r.addApp({ clientId: analystCli.clientId, displayName: 'relay analyst CLI', homeTenantId: home.tenantId, multiTenant: false });
  r.grantDelegatedPermissions(home.tenantId, analystCli.clientId, RELAY_API, ['access_as_user']);
  r.addApp({ clientId: unconsentedCli.clientId, displayName: 'unconsented CLI', homeTenantId: home.tenantId, multiTenant: false });
  r.addUser({ tenantId: home.tenantId, ...ana });
});
afterAll(() => entra.close());

const options = () => ({ authorityHost: entra.url, disableInstanceDiscovery: true, retryOptions: { maxRetries: 0 } });

async function verified(token: string) {
  const keys = (await (await fetch(`${entra.url}/${home.tenantId}/discovery/v2.0/keys`)).json()) as JSONWebKeySet;
  const { payload } = await jwtVerify(token, createLocalJWKSet(keys), { algorithms: ['RS256'] });
  return payload as Record<string, unknown> & { exp: number; iat: number };
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => expect.unreachable('the credential should have failed'),
    (err: unknown) => err as Error,
  );
}

const analystToken = async () =>
  (await new UsernamePasswordCredential(home.tenantId, analystCli.clientId, ana.userPrincipalName, ana.password, options()).getToken(
    `${RELAY_API}/access_as_user`,
  )).token;

describe('ROPC: the analyst signs in (UsernamePasswordCredential)', () => {
  it('issues a v2 token for the relay API: aud = the API client id, azp = the CLI, scp, the user claims', async () => {
    const claims = await verified(await analystToken());
    expect(claims).toMatchObject({
      aud: relayApi.clientId,
      iss: `${entra.url}/${home.tenantId}/v2.0`,
      tid: home.tenantId,
      azp: analystCli.clientId,
      scp: 'access_as_user',
      oid: ana.objectId,
      upn: ana.userPrincipalName,
      name: ana.displayName,
      idtyp: 'user',
      ver: '2.0',
    });
    expect(claims.appid).toBeUndefined();
    expect(claims.roles).toBeUndefined();
    expect(claims.exp - claims.iat).toBe(3599);
  });

  it('is accepted by the shared verifier for the API client id', async () => {
    const verifiedToken = await entra.verifier.verifyAuthorization(`Bearer ${await analystToken()}`, { audience: [relayApi.clientId, RELAY_API] });
    expect(verifiedToken.scopes).toEqual(['access_as_user']);
    expect(verifiedToken.clientId).toBe(analystCli.clientId);
  });

  it('answers like Entra on the wire: id_token and client_info for MSAL, no refresh token', async () => {
    const res = await fetch(`${entra.url}/organizations/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'password',
        client_id: analystCli.clientId,
        username: ana.userPrincipalName,
        password: ana.password,
        scope: `${RELAY_API}/.default openid profile offline_access`,
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, string>;
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, scope: `${RELAY_API}/access_as_user openid profile` });
    expect(body.refresh_token).toBeUndefined();
    expect(decodeJwt(body.id_token!)).toMatchObject({ aud: analystCli.clientId, oid: ana.objectId, tid: home.tenantId, preferred_username: ana.userPrincipalName });
    expect(JSON.parse(Buffer.from(body.client_info!, 'base64url').toString())).toEqual({ uid: ana.objectId, utid: home.tenantId });
  });

  it('fails with the wrong password: AADSTS50126 invalid_grant', async () => {
    const credential = new UsernamePasswordCredential(home.tenantId, analystCli.clientId, ana.userPrincipalName, 'wrong-password', options());
    const err = await failure(credential.getToken(`${RELAY_API}/access_as_user`));
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('invalid_grant');
    expect(err.message).toContain('AADSTS50126');
    expect(err.message).not.toContain('wrong-password');
  });

  it('fails for a user the tenant does not have: AADSTS50034', async () => {
    const credential = new UsernamePasswordCredential(home.tenantId, analystCli.clientId, 'nobody@relay-home.test', 'x', options());
    expect((await failure(credential.getToken(`${RELAY_API}/access_as_user`))).message).toContain('AADSTS50034');
  });

  it('fails when the client was never consented for the API: AADSTS65001', async () => {
    const credential = new UsernamePasswordCredential(home.tenantId, unconsentedCli.clientId, ana.userPrincipalName, ana.password, options());
    const err = await failure(credential.getToken(`${RELAY_API}/access_as_user`));
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('AADSTS65001');
  });

  it('refuses a confidential app that presents no credential: AADSTS7000218', async () => {
    const credential = new UsernamePasswordCredential(home.tenantId, relayApi.clientId, ana.userPrincipalName, ana.password, options());
    const err = await failure(credential.getToken(`${DEFENDER}/.default`));
    expect(err.message).toContain('AADSTS7000218');
  });
});

describe('OBO: the relay API acts for the analyst towards Defender (OnBehalfOfCredential)', () => {
  const obo = (userAssertionToken: string) =>
    new OnBehalfOfCredential({ tenantId: home.tenantId, clientId: relayApi.clientId, clientSecret: relayApi.secret, userAssertionToken, ...options() });

  it('exchanges the analyst token for a v1 Defender token with the consented delegated scopes and the user', async () => {
    const { token } = await obo(await analystToken()).getToken(`${DEFENDER}/.default`);
    const claims = await verified(token);
    expect(claims).toMatchObject({
      aud: DEFENDER,
      iss: `https://sts.windows.net/${home.tenantId}/`,
      tid: home.tenantId,
      appid: relayApi.clientId,
      scp: 'Incident.Read Incident.ReadWrite',
      oid: ana.objectId,
      upn: ana.userPrincipalName,
      name: ana.displayName,
      idtyp: 'user',
    });
    expect(claims.roles).toBeUndefined();
    expect(claims.exp - claims.iat).toBe(3599);
  });

  it('narrows scp to the requested permission when one is named', async () => {
    const { token } = await obo(await analystToken()).getToken(`${DEFENDER}/Incident.Read`);
    expect(decodeJwt(token).scp).toBe('Incident.Read');
  });

  it('fails without delegated consent for the resource: AADSTS65001 invalid_grant', async () => {
    const err = await failure(obo(await analystToken()).getToken('https://vault.azure.net/.default'));
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('AADSTS65001');
    expect(err.message).toContain(relayApi.clientId);
  });

  it('fails when the assertion was issued for another audience (a Defender token is not a relay API token)', async () => {
    const { token: defenderToken } = await obo(await analystToken()).getToken(`${DEFENDER}/.default`);
    const err = await failure(obo(defenderToken).getToken(`${DEFENDER}/.default`));
    expect(err.message).toContain('AADSTS50013');
    expect(err.message).toContain('audience');
  });

  it('fails for an app-only assertion: OBO needs a user', async () => {
    const app = { clientId: randomUUID(), secret: randomUUID() };
    entra.registry.addApp({ clientId: app.clientId, displayName: 'webhook pusher', homeTenantId: home.tenantId, multiTenant: false, secrets: [app.secret] });
    entra.registry.grantAppPermissions(home.tenantId, app.clientId, RELAY_API, ['Webhook.Push']);
    const { token: appToken } = await new ClientSecretCredential(home.tenantId, app.clientId, app.secret, options()).getToken(`${RELAY_API}/.default`);
    expect(decodeJwt(appToken)).toMatchObject({ aud: relayApi.clientId, roles: ['Webhook.Push'], azp: app.clientId, idtyp: 'app' });
    const err = await failure(obo(appToken).getToken(`${DEFENDER}/.default`));
    expect(err.message).toContain('AADSTS50013');
    expect(err.message).toContain('not a user token');
  });

  it('fails for an expired assertion (AADSTS500133) and a forged one (AADSTS50013)', async () => {
    const expired = await entra.issuer.issueAccessToken({
      tenantId: home.tenantId,
      audience: relayApi.clientId,
      clientId: analystCli.clientId,
      objectId: ana.objectId,
      scopes: ['access_as_user'],
      user: { upn: ana.userPrincipalName, name: ana.displayName },
      version: 2,
      lifetimeSeconds: -120,
    });
    expect((await failure(obo(expired.token).getToken(`${DEFENDER}/.default`))).message).toContain('AADSTS500133');

    const genuine = await analystToken();
    const [header, , signature] = genuine.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...decodeJwt(genuine), oid: randomUUID() })).toString('base64url');
    const err = await failure(obo(`${header}.${forgedPayload}.${signature}`).getToken(`${DEFENDER}/.default`));
    expect(err.message).toContain('AADSTS50013');
  });

  it('fails with the wrong client secret before looking at the assertion: AADSTS7000215', async () => {
    const credential = new OnBehalfOfCredential({
      tenantId: home.tenantId,
      clientId: relayApi.clientId,
      clientSecret: 'wrong',
      userAssertionToken: await analystToken(),
      ...options(),
    });
    expect((await failure(credential.getToken(`${DEFENDER}/.default`))).message).toContain('AADSTS7000215');
  });
});
