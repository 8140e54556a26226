import { X509Certificate, createHash, createPrivateKey, randomUUID } from 'node:crypto';
import { decodeJwt, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FaultBoard } from '../../../local/common/faults.js';
import { createSelfSignedCert } from '../../../local/common/tls.js';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';

/** The stand-in's HTTP contract as seen on the wire: discovery, keys, error shapes, client assertions, control surface. */

const DEFENDER = 'https://api.security.microsoft.com';
const DEFENDER_SCOPE = `${DEFENDER}/.default`;
const GUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

const home = { tenantId: randomUUID(), displayName: 'Protocol Home' };
const lee = { userPrincipalName: 'lee@protocol.test', password: `pw-${randomUUID()}`, displayName: 'Lee' };
const app = { clientId: randomUUID(), secret: `s-${randomUUID()}`, cert: createSelfSignedCert('protocol-app') };

let entra: EntraStandIn;
const faults = new FaultBoard();

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls'), faults });
  entra.registry.addTenant(home);
  entra.registry.addApp({
    clientId: app.clientId,
    displayName: 'protocol app',
    homeTenantId: home.tenantId,
    multiTenant: true,
    secrets: [app.secret],
    certificates: [app.cert.cert],
  });
  entra.registry.grantAppPermissions(home.tenantId, app.clientId, DEFENDER, ['Incident.Read.All']);
  entra.registry.addUser({ tenantId: home.tenantId, ...lee });
});
afterAll(() => entra.close());

const tokenUrl = (tenant: string = home.tenantId) => `${entra.url}/${tenant}/oauth2/v2.0/token`;

async function postToken(
  params: Record<string, string>,
  tenant: string = home.tenantId,
  headers: Record<string, string> = {},
) {
  const res = await fetch(tokenUrl(tenant), { method: 'POST', body: new URLSearchParams(params), headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

const secretGrant = (overrides: Record<string, string> = {}) => ({
  grant_type: 'client_credentials',
  client_id: app.clientId,
  client_secret: app.secret,
  scope: DEFENDER_SCOPE,
  ...overrides,
});

/** The Entra error body: exactly these fields, the AADSTS code first in the description. */
function expectEntraError(body: Record<string, unknown>, error: string, code: number) {
  expect(Object.keys(body).sort()).toEqual(
    [
      'correlation_id',
      'error',
      'error_codes',
      'error_description',
      'error_uri',
      'timestamp',
      'trace_id',
      ...(body.suberror ? ['suberror'] : []),
    ].sort(),
  );
  expect(body.error).toBe(error);
  expect(body.error_codes).toEqual([code]);
  expect(body.error_description).toMatch(
    new RegExp(
      `^AADSTS${code}: .+\\r\\nTrace ID: ${GUID}\\r\\nCorrelation ID: ${GUID}\\r\\nTimestamp: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ$`,
      's',
    ),
  );
  expect(body.timestamp).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  expect(String(body.error_description)).toContain(`Trace ID: ${String(body.trace_id)}`);
  expect(body.error_uri).toBe(`${entra.url}/error?code=${code}`);
}

describe('discovery', () => {
  it('serves the tenant OpenID configuration MSAL reads', async () => {
    const res = await fetch(`${entra.url}/${home.tenantId}/v2.0/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    const config = (await res.json()) as Record<string, unknown>;
    const at = `${entra.url}/${home.tenantId}`;
    expect(config).toMatchObject({
      issuer: `${at}/v2.0`,
      token_endpoint: `${at}/oauth2/v2.0/token`,
      jwks_uri: `${at}/discovery/v2.0/keys`,
      authorization_endpoint: `${at}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${at}/oauth2/v2.0/devicecode`,
      end_session_endpoint: `${at}/oauth2/v2.0/logout`,
      id_token_signing_alg_values_supported: ['RS256'],
      cloud_instance_name: 'microsoftonline.com',
    });
    expect(config.token_endpoint_auth_methods_supported).toEqual(
      expect.arrayContaining(['client_secret_post', 'private_key_jwt']),
    );
    expect(config.response_types_supported).toEqual(expect.arrayContaining(['code', 'id_token']));
    expect(typeof config.tenant_region_scope).toBe('string');
  });

  it('serves common/organizations with the {tenantid} issuer placeholder', async () => {
    for (const alias of ['common', 'organizations']) {
      const config = (await (
        await fetch(`${entra.url}/${alias}/v2.0/.well-known/openid-configuration`)
      ).json()) as Record<string, string>;
      expect(config.issuer).toBe(`${entra.url}/{tenantid}/v2.0`);
      expect(config.token_endpoint).toBe(`${entra.url}/${alias}/oauth2/v2.0/token`);
    }
  });

  it('serves only public RSA keys, each with a kid', async () => {
    const res = await fetch(`${entra.url}/common/discovery/v2.0/keys`);
    const { keys } = (await res.json()) as { keys: Array<Record<string, unknown>> };
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(key).toMatchObject({ kty: 'RSA' });
      expect(typeof key.kid).toBe('string');
      for (const privatePart of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(key[privatePart]).toBeUndefined();
    }
  });

  it('answers an unknown tenant with AADSTS90002 on metadata, keys and token endpoint', async () => {
    const missing = randomUUID();
    for (const path of [`/${missing}/v2.0/.well-known/openid-configuration`, `/${missing}/discovery/v2.0/keys`]) {
      const res = await fetch(`${entra.url}${path}`);
      expect(res.status).toBe(400);
      expectEntraError((await res.json()) as Record<string, unknown>, 'invalid_tenant', 90002);
    }
    const { status, body } = await postToken(secretGrant(), missing);
    expect(status).toBe(400);
    expectEntraError(body, 'invalid_request', 90002);
    expect(body.error_description).toContain(`Tenant '${missing}' not found`);
  });
});

describe('token endpoint errors, exactly as Entra shapes them', () => {
  it('echoes the caller correlation id (client-request-id) in the error', async () => {
    const correlation = randomUUID();
    const { status, headers, body } = await postToken(secretGrant({ client_secret: 'wrong' }), home.tenantId, {
      'client-request-id': correlation,
    });
    expect(status).toBe(401);
    expectEntraError(body, 'invalid_client', 7000215);
    expect(body.correlation_id).toBe(correlation);
    expect(headers.get('client-request-id')).toBe(correlation);
  });

  it.each([
    ['no grant_type', { client_id: 'x' }, 'grant_type'],
    ['no client_id', { grant_type: 'client_credentials', scope: DEFENDER_SCOPE }, 'client_id'],
    ['no scope', { grant_type: 'client_credentials', client_id: 'x', client_secret: 'y' }, 'scope'],
  ])('missing parameter (%s) → 400 invalid_request AADSTS900144 naming it', async (_case, params, name) => {
    const { status, body } = await postToken(params);
    expect(status).toBe(400);
    expectEntraError(body, 'invalid_request', 900144);
    expect(body.error_description).toContain(`parameter: '${name}'`);
  });

  it('unsupported grant → 400 unsupported_grant_type AADSTS70003', async () => {
    const { status, body } = await postToken({ grant_type: 'authorization_code', client_id: app.clientId });
    expect(status).toBe(400);
    expectEntraError(body, 'unsupported_grant_type', 70003);
  });

  it('a resource that does not exist → 400 invalid_resource AADSTS500011', async () => {
    const { status, body } = await postToken(secretGrant({ scope: 'https://no-such-api.example/.default' }));
    expect(status).toBe(400);
    expectEntraError(body, 'invalid_resource', 500011);
    expect(body.error_description).toContain('https://no-such-api.example');
  });

  it('client credentials need <resource>/.default → invalid_scope AADSTS1002012; two resources → AADSTS28000', async () => {
    const named = await postToken(secretGrant({ scope: `${DEFENDER}/Incident.Read.All` }));
    expect(named.status).toBe(400);
    expectEntraError(named.body, 'invalid_scope', 1002012);
    const two = await postToken({
      grant_type: 'password',
      client_id: app.clientId,
      client_secret: app.secret,
      username: lee.userPrincipalName,
      password: lee.password,
      scope: `${DEFENDER}/Incident.Read https://vault.azure.net/user_impersonation`,
    });
    expect(two.status).toBe(400);
    expectEntraError(two.body, 'invalid_scope', 28000);
  });

  it('a confidential client with no credential → 401 invalid_client AADSTS7000218', async () => {
    const { status, body } = await postToken({
      grant_type: 'client_credentials',
      client_id: app.clientId,
      scope: DEFENDER_SCOPE,
    });
    expect(status).toBe(401);
    expectEntraError(body, 'invalid_client', 7000218);
  });

  it('client credentials at /common name no tenant → AADSTS50059', async () => {
    const { status, body } = await postToken(secretGrant(), 'common');
    expect(status).toBe(400);
    expectEntraError(body, 'invalid_request', 50059);
  });

  it('the success body has exactly the v2 client-credentials fields', async () => {
    const { status, headers, body } = await postToken(secretGrant());
    expect(status).toBe(200);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'ext_expires_in', 'token_type']);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 });
    expect(headers.get('cache-control')).toContain('no-store');
  });
});

describe('malformed requests get 400 in the Entra shape, never a 500', () => {
  it('a JSON body (wrong content type) reads as no parameters: AADSTS900144 grant_type', async () => {
    const res = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(secretGrant()),
    });
    expect(res.status).toBe(400);
    expectEntraError((await res.json()) as Record<string, unknown>, 'invalid_request', 900144);
  });

  it('a repeated parameter is ambiguous: AADSTS9002313', async () => {
    const res = await fetch(tokenUrl(), {
      method: 'POST',
      body: `${new URLSearchParams(secretGrant())}&client_id=${randomUUID()}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(400);
    expectEntraError((await res.json()) as Record<string, unknown>, 'invalid_request', 9002313);
  });

  it('GET on the token endpoint: AADSTS900561', async () => {
    const res = await fetch(tokenUrl());
    expect(res.status).toBe(400);
    expectEntraError((await res.json()) as Record<string, unknown>, 'invalid_request', 900561);
  });

  it.each([
    ['an empty body', ''],
    ['broken percent-encoding', 'grant_type=%E0%A4%A&scope=%'],
    ['an oversized body', `grant_type=client_credentials&pad=${'x'.repeat(300_000)}`],
    ['binary noise', '\u0000\u0001\u00ff=\u0002'],
  ])('%s → 400 with an AADSTS error', async (_case, body) => {
    const res = await fetch(tokenUrl(), {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(400);
    const answer = (await res.json()) as Record<string, unknown>;
    expectEntraError(answer, String(answer.error), (answer.error_codes as number[])[0]!);
  });

  it('an unsupported charset → 400 in the Entra shape', async () => {
    const res = await fetch(tokenUrl(), {
      method: 'POST',
      body: 'grant_type=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=klingon' },
    });
    expect(res.status).toBe(400);
    expectEntraError((await res.json()) as Record<string, unknown>, 'invalid_request', 9002313);
  });
});

describe('client assertions (private_key_jwt), built by hand', () => {
  const der = new X509Certificate(app.cert.cert).raw;
  const x5t = createHash('sha1').update(der).digest('base64url');
  const x5tS256 = createHash('sha256').update(der).digest('base64url');

  async function assertion(
    options: {
      alg?: 'RS256' | 'PS256';
      header?: Record<string, string>;
      aud?: string;
      iss?: string;
      exp?: number;
      key?: string;
    } = {},
  ) {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: options.alg ?? 'RS256', typ: 'JWT', ...(options.header ?? { x5t }) })
      .setIssuer(options.iss ?? app.clientId)
      .setSubject(options.iss ?? app.clientId)
      .setAudience(options.aud ?? tokenUrl())
      .setIssuedAt(now - 10)
      .setNotBefore(now - 10)
      .setExpirationTime(options.exp ?? now + 600)
      .sign(createPrivateKey(options.key ?? app.cert.key));
  }

  const assertionGrant = (clientAssertion: string) => ({
    grant_type: 'client_credentials',
    client_id: app.clientId,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: clientAssertion,
    scope: DEFENDER_SCOPE,
  });

  it('accepts RS256 with x5t (SHA-1) and PS256 with x5t#S256', async () => {
    const sha1 = await postToken(assertionGrant(await assertion()));
    expect(sha1.status).toBe(200);
    expect(decodeJwt(String(sha1.body.access_token)).appid).toBe(app.clientId);
    const sha256 = await postToken(assertionGrant(await assertion({ alg: 'PS256', header: { 'x5t#S256': x5tS256 } })));
    expect(sha256.status).toBe(200);
  });

  it('refuses an expired assertion: AADSTS700024', async () => {
    const { status, body } = await postToken(
      assertionGrant(await assertion({ exp: Math.floor(Date.now() / 1000) - 3600 })),
    );
    expect(status).toBe(401);
    expectEntraError(body, 'invalid_client', 700024);
  });

  it('refuses an assertion for another audience: AADSTS700023', async () => {
    const { status, body } = await postToken(
      assertionGrant(await assertion({ aud: 'https://login.example/other/oauth2/v2.0/token' })),
    );
    expect(status).toBe(401);
    expectEntraError(body, 'invalid_client', 700023);
  });

  it('refuses an assertion issued by another client: AADSTS700021', async () => {
    const { body } = await postToken(assertionGrant(await assertion({ iss: randomUUID() })));
    expectEntraError(body, 'invalid_client', 700021);
  });

  it('refuses a registered thumbprint signed with another key, and garbage: AADSTS700027', async () => {
    const other = createSelfSignedCert('impostor');
    const forged = await postToken(assertionGrant(await assertion({ key: other.key })));
    expect(forged.status).toBe(401);
    expectEntraError(forged.body, 'invalid_client', 700027);
    const garbage = await postToken(assertionGrant('not.a.jwt'));
    expectEntraError(garbage.body, 'invalid_client', 700027);
  });
});

describe('the /_control/ surface', () => {
  const control = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${entra.url}/_control/${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return {
      status: res.status,
      body: res.status === 204 ? undefined : ((await res.json()) as Record<string, unknown>),
    };
  };

  it('onboards a customer tenant: consent, grant, token with roles; revoke → AADSTS700016', async () => {
    const customer = { tenantId: randomUUID(), displayName: 'Onboarded Customer' };
    expect((await control('POST', 'tenants', customer)).status).toBe(201);
    expect((await postToken(secretGrant(), customer.tenantId)).body.error_codes).toEqual([700016]);

    const consent = await control('POST', 'consent', { tenantId: customer.tenantId, clientId: app.clientId });
    expect(consent.status).toBe(200);
    expect(consent.body?.servicePrincipalId).toBe(entra.registry.servicePrincipalId(customer.tenantId, app.clientId));
    expect(
      decodeJwt(String((await postToken(secretGrant(), customer.tenantId)).body.access_token)).roles,
    ).toBeUndefined();

    const grant = await control('POST', 'grants', {
      tenantId: customer.tenantId,
      clientId: app.clientId,
      resource: DEFENDER,
      roles: ['Incident.Read.All'],
    });
    expect(grant.status).toBe(200);
    const token = decodeJwt(String((await postToken(secretGrant(), customer.tenantId)).body.access_token));
    expect(token).toMatchObject({
      tid: customer.tenantId,
      roles: ['Incident.Read.All'],
      oid: consent.body?.servicePrincipalId,
    });

    expect((await control('DELETE', 'consent', { tenantId: customer.tenantId, clientId: app.clientId })).status).toBe(
      204,
    );
    expect((await postToken(secretGrant(), customer.tenantId)).body.error_codes).toEqual([700016]);
  });

  it('rotates secrets over HTTP', async () => {
    const next = `rotated-${randomUUID()}`;
    expect((await postToken(secretGrant({ client_secret: next }))).status).toBe(401);
    expect((await control('POST', 'secrets', { clientId: app.clientId, secret: next })).status).toBe(201);
    expect((await postToken(secretGrant({ client_secret: next }))).status).toBe(200);
    expect((await control('DELETE', 'secrets', { clientId: app.clientId, secret: next })).status).toBe(204);
    expect((await postToken(secretGrant({ client_secret: next }))).status).toBe(401);
  });

  it('shows the registry without secrets or passwords', async () => {
    entra.registry.addUser({
      tenantId: home.tenantId,
      userPrincipalName: 'pat@protocol.test',
      password: 'pat-password-123',
      displayName: 'Pat',
    });
    const { status, body } = await control('GET', 'registry');
    expect(status).toBe(200);
    const text = JSON.stringify(body);
    expect(text).not.toContain(app.secret);
    expect(text).not.toContain('pat-password-123');
    expect(text).toContain('pat@protocol.test');
    expect(body?.tenants).toEqual(expect.arrayContaining([{ tenantId: home.tenantId, displayName: home.displayName }]));
    expect(body?.apps).toEqual(
      expect.arrayContaining([expect.objectContaining({ clientId: app.clientId, multiTenant: true, secretCount: 1 })]),
    );
    expect(body?.consents).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          tenantId: home.tenantId,
          clientId: app.clientId,
          appPermissions: { [DEFENDER]: ['Incident.Read.All'] },
        }),
      ]),
    );
  });

  it.each([
    ['a missing field', 'consent', { tenantId: home.tenantId }, 'InvalidRequest'],
    [
      'no roles nor scopes',
      'grants',
      { tenantId: home.tenantId, clientId: app.clientId, resource: DEFENDER },
      'InvalidRequest',
    ],
    [
      'a role Defender does not expose',
      'grants',
      { tenantId: home.tenantId, clientId: app.clientId, resource: DEFENDER, roles: ['Incidents.Read.All'] },
      'OperationRefused',
    ],
    ['an unknown tenant', 'consent', { tenantId: randomUUID(), clientId: app.clientId }, 'OperationRefused'],
    ['malformed JSON', 'consent', '{"tenantId": ', 'InvalidRequest'],
  ])('answers %s with 400 {error: {code, message}}', async (_case, path, body, code) => {
    const res = await control('POST', path, body);
    expect(res.status).toBe(400);
    expect(res.body?.error).toMatchObject({ code, message: expect.any(String) });
  });

  it('is not subject to injected faults (tests must be able to clear an outage)', async () => {
    faults.add('entra', { kind: 'outage' });
    try {
      expect((await control('GET', 'registry')).status).toBe(200);
    } finally {
      faults.clear();
    }
  });
});

describe('the partner admin-consent link', () => {
  it('names the app on /common/oauth2/authorize?prompt=consent, and refuses an unknown client', async () => {
    const ok = await fetch(
      `${entra.url}/common/oauth2/authorize?prompt=consent&client_id=${app.clientId}&response_type=code`,
    );
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toContain('text/html');
    expect(await ok.text()).toContain('protocol app');
    const unknown = await fetch(`${entra.url}/common/oauth2/authorize?prompt=consent&client_id=${randomUUID()}`);
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toContain('AADSTS700016');
  });
});
