import { randomUUID } from 'node:crypto';
import {
  AuthenticationRequiredError,
  ClientSecretCredential,
  OnBehalfOfCredential,
  UsernamePasswordCredential,
} from '@azure/identity';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';

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
const ana = {
  userPrincipalName: 'ana@relay-home.test',
  password: `pw-${randomUUID()}`,
  displayName: 'Ana Analyst',
  objectId: randomUUID(),
};

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
  r.addApp({
    clientId: analystCli.clientId,
    displayName: 'relay analyst CLI',
    homeTenantId: home.tenantId,
    multiTenant: false,
  });
  r.grantDelegatedPermissions(home.tenantId, analystCli.clientId, RELAY_API, ['access_as_user']);
  r.addApp({
    clientId: unconsentedCli.clientId,
    displayName: 'unconsented CLI',
    homeTenantId: home.tenantId,
    multiTenant: false,
  });
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

/** A password grant on the wire (organizations), its JSON answer. */
async function ropc(scope: string): Promise<Record<string, string>> {
  const res = await fetch(`${entra.url}/organizations/oauth2/v2.0/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: analystCli.clientId,
      username: ana.userPrincipalName,
      password: ana.password,
      scope,
    }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, string>;
}

const analystToken = async () =>
  (
    await new UsernamePasswordCredential(
      home.tenantId,
      analystCli.clientId,
      ana.userPrincipalName,
      ana.password,
      options(),
    ).getToken(`${RELAY_API}/access_as_user`)
  ).token;

describe('ROPC: the analyst signs in (UsernamePasswordCredential)', () => {
  it('issues a v1 token for an API whose manifest leaves accessTokenAcceptedVersion null, from the v2 endpoint: iss sts.windows.net, appid, aud = the App ID URI requested, upn', async () => {
    expect(entra.registry.app(relayApi.clientId)!.accessTokenVersion).toBe(1);
    const claims = await verified(await analystToken());
    expect(claims).toMatchObject({
      aud: RELAY_API,
      iss: `https://sts.windows.net/${home.tenantId}/`,
      tid: home.tenantId,
      appid: analystCli.clientId,
      appidacr: '0',
      scp: 'access_as_user',
      oid: ana.objectId,
      upn: ana.userPrincipalName,
      unique_name: ana.userPrincipalName,
      name: ana.displayName,
      idtyp: 'user',
      ver: '1.0',
    });
    // Claims "only present in v2.0 tokens" are not there.
    for (const v2Only of ['azp', 'azpacr', 'preferred_username']) expect(claims[v2Only]).toBeUndefined();
    expect(claims.roles).toBeUndefined();
    expect(claims.exp - claims.iat).toBe(3599);
  });

  it('writes a v1 aud in the form the scope named the API: its client id when requested by it', async () => {
    const { token } = await new UsernamePasswordCredential(
      home.tenantId,
      analystCli.clientId,
      ana.userPrincipalName,
      ana.password,
      options(),
    ).getToken(`${relayApi.clientId}/access_as_user`);
    expect(await verified(token)).toMatchObject({
      aud: relayApi.clientId,
      ver: '1.0',
      iss: `https://sts.windows.net/${home.tenantId}/`,
      appid: analystCli.clientId,
    });
  });

  it('issues v2 tokens once the manifest sets accessTokenAcceptedVersion 2, whichever form was requested: aud = the client id, azp, preferred_username, no upn', async () => {
    entra.registry.setAccessTokenVersion(relayApi.clientId, 2);
    try {
      for (const scope of [`${RELAY_API}/access_as_user`, `${relayApi.clientId}/access_as_user`]) {
        const { token } = await new UsernamePasswordCredential(
          home.tenantId,
          analystCli.clientId,
          ana.userPrincipalName,
          ana.password,
          options(),
        ).getToken(scope);
        const claims = await verified(token);
        expect(claims).toMatchObject({
          aud: relayApi.clientId,
          iss: `${entra.url}/${home.tenantId}/v2.0`,
          azp: analystCli.clientId,
          azpacr: '0',
          preferred_username: ana.userPrincipalName,
          name: ana.displayName,
          scp: 'access_as_user',
          ver: '2.0',
        });
        // Claims "only present in v1.0 tokens" (upn is a v2 optional claim, not configured here) are not there.
        for (const v1Only of ['appid', 'appidacr', 'upn', 'unique_name']) expect(claims[v1Only]).toBeUndefined();
      }
    } finally {
      entra.registry.setAccessTokenVersion(relayApi.clientId, 1);
    }
  });

  it('sets the version through /_control/ too, and shows it in the registry; refuses a version Entra does not have', async () => {
    const set = (accessTokenVersion: unknown) =>
      fetch(`${entra.url}/_control/apps/access-token-version`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ clientId: relayApi.clientId, accessTokenVersion }),
      });
    try {
      expect((await set(2)).status).toBe(200);
      const snapshot = (await (await fetch(`${entra.url}/_control/registry`)).json()) as {
        apps: { clientId: string; accessTokenVersion: number }[];
      };
      expect(snapshot.apps.find((a) => a.clientId === relayApi.clientId)!.accessTokenVersion).toBe(2);
      expect(decodeJwt(await analystToken()).ver).toBe('2.0');
      expect((await set(3)).status).toBe(400);
    } finally {
      entra.registry.setAccessTokenVersion(relayApi.clientId, 1);
    }
  });

  it('leaves id tokens as they were: v2, aud = the client signed in to, whatever the API version', async () => {
    for (const version of [1, 2] as const) {
      entra.registry.setAccessTokenVersion(relayApi.clientId, version);
      try {
        const body = await ropc(`${RELAY_API}/access_as_user openid profile`);
        expect(decodeJwt(String(body.id_token))).toMatchObject({
          aud: analystCli.clientId,
          iss: `${entra.url}/${home.tenantId}/v2.0`,
          ver: '2.0',
        });
        expect(decodeJwt(String(body.access_token)).ver).toBe(`${version}.0`);
      } finally {
        entra.registry.setAccessTokenVersion(relayApi.clientId, 1);
      }
    }
  });

  it('serves the v1.0 metadata a v1 resource reads (issuer sts.windows.net, jwks_uri /common/discovery/keys), whose keys verify a v1 token', async () => {
    const config = (await (
      await fetch(`${entra.url}/${home.tenantId}/.well-known/openid-configuration`)
    ).json()) as Record<string, string>;
    expect(config).toMatchObject({
      issuer: `https://sts.windows.net/${home.tenantId}/`,
      jwks_uri: `${entra.url}/common/discovery/keys`,
      token_endpoint: `${entra.url}/${home.tenantId}/oauth2/token`,
    });
    const common = (await (await fetch(`${entra.url}/common/.well-known/openid-configuration`)).json()) as Record<
      string,
      string
    >;
    expect(common.issuer).toBe('https://sts.windows.net/{tenantid}/');
    for (const url of [config.jwks_uri!, `${entra.url}/${home.tenantId}/discovery/keys`]) {
      const keys = (await (await fetch(url)).json()) as JSONWebKeySet;
      const { payload } = await jwtVerify(await analystToken(), createLocalJWKSet(keys), {
        algorithms: ['RS256'],
        issuer: config.issuer,
      });
      expect(payload.ver).toBe('1.0');
    }
  });

  it('is accepted by the shared verifier for the API client id', async () => {
    const verifiedToken = await entra.verifier.verifyAuthorization(`Bearer ${await analystToken()}`, {
      audience: [relayApi.clientId, RELAY_API],
    });
    expect(verifiedToken.scopes).toEqual(['access_as_user']);
    expect(verifiedToken.clientId).toBe(analystCli.clientId);
  });

  it("is refused by the shared verifier (Key Vault, Defender stand-ins) when its issuer or client claim is not its version's", async () => {
    const claims = decodeJwt(await analystToken());
    expect(claims.ver).toBe('1.0');
    const audience = [relayApi.clientId, RELAY_API];
    const v1WithV2Issuer = await entra.issuer.signClaims({ ...claims, iss: `${entra.url}/${home.tenantId}/v2.0` });
    await expect(entra.verifier.verifyAuthorization(`Bearer ${v1WithV2Issuer}`, { audience })).rejects.toMatchObject({
      reason: 'wrong_issuer',
    });
    const v1WithAzp = await entra.issuer.signClaims({ ...claims, azp: claims.appid, appid: undefined });
    await expect(entra.verifier.verifyAuthorization(`Bearer ${v1WithAzp}`, { audience })).rejects.toMatchObject({
      reason: 'malformed',
      message: expect.stringContaining('appid'),
    });
  });

  it('answers like Entra on the wire: id_token and client_info for MSAL, no refresh token', async () => {
    const body = await ropc(`${RELAY_API}/.default openid profile offline_access`);
    expect(body).toMatchObject({
      token_type: 'Bearer',
      expires_in: 3599,
      ext_expires_in: 3599,
      scope: `${RELAY_API}/access_as_user openid profile`,
    });
    expect(body.refresh_token).toBeUndefined();
    expect(decodeJwt(body.id_token!)).toMatchObject({
      aud: analystCli.clientId,
      oid: ana.objectId,
      tid: home.tenantId,
      preferred_username: ana.userPrincipalName,
    });
    expect(JSON.parse(Buffer.from(body.client_info!, 'base64url').toString())).toEqual({
      uid: ana.objectId,
      utid: home.tenantId,
    });
  });

  it('fails with the wrong password: AADSTS50126 invalid_grant', async () => {
    const credential = new UsernamePasswordCredential(
      home.tenantId,
      analystCli.clientId,
      ana.userPrincipalName,
      'wrong-password',
      options(),
    );
    const err = await failure(credential.getToken(`${RELAY_API}/access_as_user`));
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('invalid_grant');
    expect(err.message).toContain('AADSTS50126');
    expect(err.message).not.toContain('wrong-password');
  });

  it('fails for a user the tenant does not have: AADSTS50034', async () => {
    const credential = new UsernamePasswordCredential(
      home.tenantId,
      analystCli.clientId,
      'nobody@relay-home.test',
      'x',
      options(),
    );
    expect((await failure(credential.getToken(`${RELAY_API}/access_as_user`))).message).toContain('AADSTS50034');
  });

  it('fails when the client was never consented for the API: AADSTS65001', async () => {
    const credential = new UsernamePasswordCredential(
      home.tenantId,
      unconsentedCli.clientId,
      ana.userPrincipalName,
      ana.password,
      options(),
    );
    const err = await failure(credential.getToken(`${RELAY_API}/access_as_user`));
    expect(err).toBeInstanceOf(AuthenticationRequiredError);
    expect(err.message).toContain('AADSTS65001');
  });

  it('refuses a confidential app that presents no credential: AADSTS7000218', async () => {
    const credential = new UsernamePasswordCredential(
      home.tenantId,
      relayApi.clientId,
      ana.userPrincipalName,
      ana.password,
      options(),
    );
    const err = await failure(credential.getToken(`${DEFENDER}/.default`));
    expect(err.message).toContain('AADSTS7000218');
  });
});

describe('OBO: the relay API acts for the analyst towards Defender (OnBehalfOfCredential)', () => {
  const obo = (userAssertionToken: string) =>
    new OnBehalfOfCredential({
      tenantId: home.tenantId,
      clientId: relayApi.clientId,
      clientSecret: relayApi.secret,
      userAssertionToken,
      ...options(),
    });

  it('exchanges the analyst token for a v1 Defender token with the consented delegated scopes and the user', async () => {
    const { token } = await obo(await analystToken()).getToken(`${DEFENDER}/.default`);
    const claims = await verified(token);
    expect(claims).toMatchObject({
      aud: DEFENDER,
      iss: `https://sts.windows.net/${home.tenantId}/`,
      tid: home.tenantId,
      appid: relayApi.clientId,
      appidacr: '1',
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
    entra.registry.addApp({
      clientId: app.clientId,
      displayName: 'webhook pusher',
      homeTenantId: home.tenantId,
      multiTenant: false,
      secrets: [app.secret],
    });
    entra.registry.grantAppPermissions(home.tenantId, app.clientId, RELAY_API, ['Webhook.Push']);
    const { token: appToken } = await new ClientSecretCredential(
      home.tenantId,
      app.clientId,
      app.secret,
      options(),
    ).getToken(`${RELAY_API}/.default`);
    expect(decodeJwt(appToken)).toMatchObject({
      aud: RELAY_API,
      roles: ['Webhook.Push'],
      appid: app.clientId,
      appidacr: '1',
      idtyp: 'app',
      ver: '1.0',
    });
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
    const forgedPayload = Buffer.from(JSON.stringify({ ...decodeJwt(genuine), oid: randomUUID() })).toString(
      'base64url',
    );
    const err = await failure(obo(`${header}.${forgedPayload}.${signature}`).getToken(`${DEFENDER}/.default`));
    expect(err.message).toContain('AADSTS50013');
  });

  it('exchanges a v2 assertion (the API set to accessTokenAcceptedVersion 2) for a v1 Defender token naming the user from preferred_username', async () => {
    entra.registry.setAccessTokenVersion(relayApi.clientId, 2);
    try {
      const assertion = await analystToken();
      expect(decodeJwt(assertion)).toMatchObject({
        ver: '2.0',
        aud: relayApi.clientId,
        preferred_username: ana.userPrincipalName,
      });
      expect(decodeJwt(assertion).upn).toBeUndefined();
      const claims = await verified((await obo(assertion).getToken(`${DEFENDER}/.default`)).token);
      expect(claims).toMatchObject({
        ver: '1.0',
        aud: DEFENDER,
        appid: relayApi.clientId,
        upn: ana.userPrincipalName,
        oid: ana.objectId,
      });
    } finally {
      entra.registry.setAccessTokenVersion(relayApi.clientId, 1);
    }
  });

  it("refuses an assertion whose issuer is not its version's (a v1 token with the v2 issuer, and the converse): AADSTS50013", async () => {
    const claims = decodeJwt(await analystToken());
    expect(claims.ver).toBe('1.0');
    const v1WithV2Issuer = await entra.issuer.signClaims({ ...claims, iss: `${entra.url}/${home.tenantId}/v2.0` });
    const v2WithV1Issuer = await entra.issuer.signClaims({
      ...claims,
      ver: '2.0',
      azp: claims.appid,
      appid: undefined,
    });
    for (const assertion of [v1WithV2Issuer, v2WithV1Issuer]) {
      const err = await failure(obo(assertion).getToken(`${DEFENDER}/.default`));
      expect(err.message).toContain('AADSTS50013');
      expect(err.message).toContain('issuer');
    }
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
