import { createHmac, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpRequest } from '@azure/functions';
import { ClientSecretCredential } from '@azure/identity';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { generateIncidents } from '../../../local/defender/generator.js';
import { RELAY_SUBMIT_ROLE } from '../../../local/demo.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { loadConfig } from '../../../shared/config/config.js';
import { envelopeSchema, type IncidentEnvelope } from '../../../shared/messages/events.js';
import { QUEUE_NAMES } from '../../../shared/storage/queues.js';
import { ReplayGuard, WEBHOOK_REPLAY_TABLE } from '../../../shared/api/replay-guard.js';
import { createServices, type Services } from '../../../shared/services.js';
import { normalizeTimestamp } from '../../../shared/timestamps.js';
import {
  pushIncidents,
  webhookPushDeps,
  type PushResponse,
  type WebhookPushDeps,
} from '../../../shared/api/webhook-push.js';
import { EntraTokenValidator, UNVERIFIED_TOKEN_MESSAGE } from '../../../shared/api/entra-token.js';
import { UNVERIFIED_SIGNATURE_MESSAGE, type WebhookAuthenticator } from '../../../shared/api/webhook-auth.js';
import { pushSignatureHeader } from '../../../shared/api/webhook-signature.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { DEFENDER_DOCS_LIST_EXAMPLE } from '../../support/webhook-payloads.js';
import { deliveredRequest } from '../../support/host-request.js';

/**
 * POST /api/incidents end to end: real Entra tokens from the stand-in (ClientSecretCredential), the
 * HMAC key from the Key Vault stand-in, the tenant registry, replay guard and `incidents` queue in an
 * Azurite of this file's own (the app's real queue names). Every refusal is checked for its answer
 * and for leaving the queue empty; every log line for carrying no token, signature or key.
 */
describe('webhook push: POST /api/incidents', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let settings: Record<string, string>;
  let services: Services;
  let queues: QueueServiceClient;
  let validToken: string;
  const logs: { level: string; line: string }[] = [];
  /** Everything that must never reach a log line. */
  const secrets: string[] = [];

  const world = () => stack.world;
  const fabrikam = () => world().tenants.find((t) => t.context === 'application')!;
  const northwind = () => world().tenants.find((t) => t.context === 'partner')!;
  const authority = () => ({ authorityHost: stack.entra.url, disableInstanceDiscovery: true });
  const logger = {
    info: (line: string) => logs.push({ level: 'info', line }),
    warn: (line: string) => logs.push({ level: 'warn', line }),
    error: (line: string) => logs.push({ level: 'error', line }),
  };

  async function tokenFor(
    clientId: string,
    clientSecret: string,
    scope = world().webhookClient.scope,
    tenantId = world().webhookClient.tenantId,
  ): Promise<string> {
    const { token } = await new ClientSecretCredential(tenantId, clientId, clientSecret, authority()).getToken(scope);
    secrets.push(token);
    return token;
  }

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 128 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    settings = appSettingsFor(stack.world, azurite.connectionString, stack);
    services = createServices(loadConfig(settings));
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
    secrets.push(stack.world.webhookHmacKey);
    validToken = await tokenFor(world().webhookClient.clientId, world().webhookClient.clientSecret);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
  });
  beforeEach(async () => {
    await drainEvents();
  });

  /** Takes every message off `incidents`, decoding base64 JSON as the Functions trigger does. */
  async function drainEvents(): Promise<IncidentEnvelope[]> {
    const queue = queues.getQueueClient(QUEUE_NAMES.incidents);
    await queue.createIfNotExists();
    const out: IncidentEnvelope[] = [];
    for (;;) {
      const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: 32 });
      if (receivedMessageItems.length === 0) return out;
      for (const m of receivedMessageItems) {
        out.push(JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')) as IncidentEnvelope);
        await queue.deleteMessage(m.messageId, m.popReceipt);
      }
    }
  }

  interface Push {
    body?: string;
    /** The body as these bytes (instead of `body` as UTF-8). */
    bytes?: Buffer;
    token?: string;
    /** Sign the body with this key (the demo key unless given). */
    sign?: boolean | { key?: string; timestamp?: number };
    signature?: string;
    tenantId?: string | null;
    contentType?: string | null;
    headers?: Record<string, string>;
    /** Send the body chunked, without Content-Length. */
    chunked?: boolean;
  }

  function request(p: Push): HttpRequest {
    const body = p.body ?? '{}';
    const headers: Record<string, string> = {};
    if (p.contentType !== null) headers['content-type'] = p.contentType ?? 'application/json';
    if (p.token) headers.authorization = `Bearer ${p.token}`;
    const tenantId = p.tenantId === undefined ? fabrikam().tenantId : p.tenantId;
    if (p.sign) {
      const { key = world().webhookHmacKey, timestamp = Math.floor(Date.now() / 1000) } = p.sign === true ? {} : p.sign;
      headers['x-relay-signature'] = signed(key, body, tenantId ?? '', timestamp);
    }
    if (p.signature) headers['x-relay-signature'] = p.signature;
    Object.assign(headers, p.headers);
    const url = `http://localhost/api/incidents${tenantId === null ? '' : `?tenantId=${tenantId}`}`;
    // Bytes, not a string: a string body would make the request default to text/plain.
    return deliveredRequest(
      { method: 'POST', url, headers, body: { bytes: p.bytes ?? Buffer.from(body) } },
      { chunked: p.chunked },
    );
  }

  /** A v2 signature of a push to `tenantId`, remembered as a secret. */
  function signed(key: string, body: string, tenantId: string, timestamp = Math.floor(Date.now() / 1000)): string {
    const header = pushSignatureHeader(key, { tenantId, method: 'POST', path: '/api/incidents' }, body, timestamp);
    secrets.push(header.split('v2=')[1]!);
    return header;
  }

  /** Services whose webhook access file is `access` (written to a file of its own). */
  function servicesWithAccess(access: object): Services {
    const file = join(mkdtempSync(join(tmpdir(), 'relay-access-')), 'webhook-access.json');
    writeFileSync(file, JSON.stringify(access));
    return createServices(loadConfig({ ...settings, WEBHOOK_ACCESS_FILE: file }));
  }

  const push = (p: Push, deps: Partial<WebhookPushDeps> = {}, svc: Services = services): Promise<PushResponse> =>
    pushIncidents(request(p), { ...webhookPushDeps(svc, logger), ...deps });

  const bodyOf = (r: PushResponse) => r.jsonBody as Record<string, unknown>;
  const incidents = (count: number, seed = randomUUID()) =>
    generateIncidents({
      tenantId: fabrikam().tenantId,
      count,
      seed,
      since: new Date(Date.now() - 86_400_000),
    }) as unknown as Record<string, unknown>[];

  async function expectRefused(response: PushResponse, status: number, message: RegExp) {
    expect(response.status).toBe(status);
    expect(String(bodyOf(response).error)).toMatch(message);
    expect(await drainEvents()).toEqual([]);
  }

  /** The events on the queue are exactly these incidents, unmodified, for this tenant. */
  async function expectEnqueued(
    response: PushResponse,
    sent: Record<string, unknown>[],
    tenantId = fabrikam().tenantId,
  ) {
    expect(response.status).toBe(202);
    const events = await drainEvents();
    const ids = sent.map(
      (i) => `${tenantId}:${i.incidentId as number}:${normalizeTimestamp(i.lastUpdateTime as string)}`,
    );
    expect(bodyOf(response)).toEqual({ tenantId, accepted: sent.length, eventIds: ids });
    expect(events.map((e) => e.eventId).sort()).toEqual([...ids].sort());
    for (const event of events) {
      expect(envelopeSchema.safeParse(event).success).toBe(true);
      expect(event).toMatchObject({ tenantId, source: 'webhook' });
      expect(event.incident).toEqual(sent.find((i) => i.incidentId === event.incidentId));
    }
    return events;
  }

  describe('with an Entra token carrying the app role', () => {
    it('accepts one incident and enqueues it unmodified', async () => {
      const [incident] = incidents(1);
      const response = await push({ token: validToken, body: JSON.stringify(incident) });
      await expectEnqueued(response, [incident!]);
      expect(logs.at(-1)).toEqual({
        level: 'info',
        line: `webhook push: tenant=${fabrikam().tenantId} caller=${world().webhookClient.clientId} incidents=1 outcome=202 1 enqueued`,
      });
    });

    it('accepts a batch (an array), for the tenant named in the query', async () => {
      const batch = incidents(12);
      const response = await push({ token: validToken, body: JSON.stringify(batch), tenantId: northwind().tenantId });
      await expectEnqueued(response, batch, northwind().tenantId);
    });

    it("accepts Microsoft's documented list example ({ value: [ … ] }) as is, claim-checking nothing it need not", async () => {
      const sent = (JSON.parse(DEFENDER_DOCS_LIST_EXAMPLE) as { value: Record<string, unknown>[] }).value;
      const response = await push({ token: validToken, body: DEFENDER_DOCS_LIST_EXAMPLE });
      const events = await expectEnqueued(response, sent);
      expect(events.find((e) => e.incidentId === 924565)!.eventId).toBe(
        `${fabrikam().tenantId}:924565:2020-09-06T14:46:57.2900000Z`,
      );
    });

    it('keeps fields it does not know, and claim-checks an incident too big for a queue message', async () => {
      const [incident] = incidents(1);
      const big = { ...incident!, vendorExtension: { notes: 'x'.repeat(80_000) } };
      const response = await push({ token: validToken, body: JSON.stringify(big) });
      expect(response.status).toBe(202);
      const [event] = await drainEvents();
      expect(event!.incident).toBeUndefined();
      expect(event!.incidentRef?.blobUrl).toContain('incident-payloads');
    });

    it('enqueues an incident version sent twice in one request once', async () => {
      const [incident] = incidents(1);
      const response = await push({ token: validToken, body: JSON.stringify([incident, incident]) });
      await expectEnqueued(response, [incident!]);
    });

    it('uses the token’s tenant when no tenantId is given (404 here: the provider tenant is not a registered Defender tenant)', async () => {
      const response = await push({ token: validToken, body: JSON.stringify(incidents(1)), tenantId: null });
      await expectRefused(response, 404, new RegExp(`Tenant ${world().provider.tenantId} is not registered`));
    });
  });

  describe('refuses callers it cannot trust, enqueuing nothing', () => {
    const body = () => JSON.stringify(incidents(2));
    const forge = (header: object, payload: object, signature = '') =>
      [header, payload].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.') +
      `.${signature}`;
    const claimsOf = (token: string) =>
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

    it('no credentials: 401 asking for a bearer token', async () => {
      const response = await push({ body: body() });
      await expectRefused(response, 401, /Authentication required/);
      expect(response.headers?.['WWW-Authenticate']).toBe('Bearer');
    });

    it('an expired token: 401', async () => {
      const { token } = await stack.entra.issuer.issueAccessToken({
        tenantId: world().provider.tenantId,
        audience: world().relayApi.clientId,
        clientId: world().webhookClient.clientId,
        objectId: randomUUID(),
        roles: [RELAY_SUBMIT_ROLE],
        version: 2,
        lifetimeSeconds: -120,
      });
      secrets.push(token);
      await expectRefused(await push({ token, body: body() }), 401, /expired/);
    });

    it('a token for another audience (Defender’s): 401', async () => {
      const token = await tokenFor(
        world().webhookClient.clientId,
        world().webhookClient.clientSecret,
        'https://api.security.microsoft.com/.default',
      );
      await expectRefused(await push({ token, body: body() }), 401, /another audience/);
    });

    it('a token issued in a tenant not allowed to push: 401, the answer any unverified token gets (the log says why)', async () => {
      const { token } = await stack.entra.issuer.issueAccessToken({
        tenantId: fabrikam().tenantId,
        audience: world().relayApi.clientId,
        clientId: randomUUID(),
        objectId: randomUUID(),
        roles: [RELAY_SUBMIT_ROLE],
        version: 2,
      });
      secrets.push(token);
      const response = await push({ token, body: body() });
      expect(bodyOf(response).error).toBe(UNVERIFIED_TOKEN_MESSAGE);
      await expectRefused(response, 401, /not valid for this API/);
      expect(logs.at(-1)!.line).toContain(`tokens from tenant ${fabrikam().tenantId} are not accepted`);
    });

    it('a token whose issuer is not its tenant’s: 401', async () => {
      // Signed by the real keys for the allowed tenant, but minted as if another tenant issued it.
      const { token } = await stack.entra.issuer.issueAccessToken({
        tenantId: northwind().tenantId,
        audience: world().relayApi.clientId,
        clientId: randomUUID(),
        objectId: randomUUID(),
        roles: [RELAY_SUBMIT_ROLE],
        version: 2,
      });
      const [header, , signature] = token.split('.');
      const forged = `${header}.${Buffer.from(JSON.stringify({ ...claimsOf(token), tid: world().provider.tenantId })).toString('base64url')}.${signature}`;
      secrets.push(token, forged);
      await expectRefused(await push({ token: forged, body: body() }), 401, /not valid for this API/);
    });

    it('an unsigned token (alg: none): 401', async () => {
      const token = forge({ alg: 'none', typ: 'JWT' }, { ...claimsOf(validToken) });
      await expectRefused(await push({ token, body: body() }), 401, /not valid for this API/);
      expect(logs.at(-1)!.line).toContain('not signed with RS256');
    });

    it('a token signed by someone else’s key: 401', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const { SignJWT, importPKCS8 } = await import('jose');
      const key = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256');
      const token = await new SignJWT(claimsOf(validToken))
        .setProtectedHeader({ alg: 'RS256', kid: 'attacker' })
        .sign(key);
      secrets.push(token);
      await expectRefused(await push({ token, body: body() }), 401, /not valid for this API/);
    });

    it('a tampered token (role added after signing): 401', async () => {
      const [header, , signature] = validToken.split('.');
      const tampered = `${header}.${Buffer.from(JSON.stringify({ ...claimsOf(validToken), roles: ['Incidents.Submit', 'Admin'] })).toString('base64url')}.${signature}`;
      secrets.push(tampered);
      await expectRefused(await push({ token: tampered, body: body() }), 401, /not valid for this API/);
      expect(logs.at(-1)!.line).toContain('signature is not valid');
    });

    it('a valid token without the app role: 403 naming the role', async () => {
      const clientId = randomUUID();
      const clientSecret = randomBytes(24).toString('base64url');
      stack.entra.registry.addApp({
        clientId,
        displayName: 'app without the role',
        homeTenantId: world().provider.tenantId,
        multiTenant: false,
        secrets: [clientSecret],
      });
      secrets.push(clientSecret);
      const token = await tokenFor(clientId, clientSecret);
      expect(claimsOf(token).roles).toBeUndefined();
      const response = await push({ token, body: body() });
      await expectRefused(
        response,
        403,
        new RegExp(`application ${clientId} does not carry the app role '${RELAY_SUBMIT_ROLE}'`),
      );
      expect(logs.at(-1)!.line).toContain(`caller=${clientId}`);
    });

    it('both a token and a signature: 401', async () => {
      await expectRefused(await push({ token: validToken, sign: true, body: body() }), 401, /not both/);
    });
  });

  /**
   * Entra issues the relay API's tokens in the version its registration accepts (accessTokenAcceptedVersion,
   * null = 1), whichever endpoint the caller used; the relay checks each version on its own terms: the
   * issuer form, the keys, and the caller from `appid` (v1) or `azp` (v2), never the other version's claim.
   * https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference#payload-claims
   */
  describe('token versions: v1.0 and v2.0, each on its own terms', () => {
    const body = () => JSON.stringify(incidents(1));
    const claimsOfToken = (token: string) =>
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const v2Issuer = (tenantId: string) => `${stack.entra.url}/${tenantId}/v2.0`;
    const v1Issuer = (tenantId: string) => `https://sts.windows.net/${tenantId}/`;
    /** The demo caller's token as the stand-in issues it for the relay API: v1.0, the registration leaving the version at its default. */
    function genuineV1(): Record<string, unknown> {
      const claims = claimsOfToken(validToken);
      expect(claims).toMatchObject({
        ver: '1.0',
        iss: v1Issuer(world().webhookClient.tenantId),
        appid: world().webhookClient.clientId,
        aud: world().relayApi.identifierUri,
      });
      expect(claims.azp).toBeUndefined();
      return claims;
    }
    /** These claims, validly signed with the stand-in's key: shapes Entra never issues. */
    async function signed(claims: Record<string, unknown>): Promise<string> {
      const token = await stack.entra.issuer.signClaims(claims);
      secrets.push(token);
      return token;
    }
    /** The relay API registration set to accessTokenAcceptedVersion 2 while `action` runs. */
    async function withV2Registration(action: () => Promise<void>) {
      stack.entra.registry.setAccessTokenVersion(world().relayApi.clientId, 2);
      try {
        await action();
      } finally {
        stack.entra.registry.setAccessTokenVersion(world().relayApi.clientId, 1);
      }
    }

    it("refuses a v1.0 token carrying its tenant's v2.0 issuer, validly signed: 401", async () => {
      const token = await signed({ ...genuineV1(), iss: v2Issuer(world().webhookClient.tenantId) });
      await expectRefused(await push({ token, body: body() }), 401, /issuer form of its version/);
    });

    it("refuses a v2.0 token carrying its tenant's v1.0 issuer, validly signed: 401", async () => {
      const { appid, ...claims } = genuineV1();
      const token = await signed({ ...claims, ver: '2.0', azp: appid, aud: world().relayApi.clientId });
      await expectRefused(await push({ token, body: body() }), 401, /issuer form of its version/);
    });

    it("refuses ver 1.0 naming its caller in azp without appid: 401, the caller is never read from the other version's claim", async () => {
      const { appid, ...claims } = genuineV1();
      const token = await signed({ ...claims, azp: appid });
      await expectRefused(
        await push({ token, body: body() }),
        401,
        /v1\.0 token names no calling application \(appid\)/,
      );
    });

    it('refuses ver 2.0 naming its caller in appid without azp: 401', async () => {
      const claims = genuineV1();
      const token = await signed({
        ...claims,
        ver: '2.0',
        iss: v2Issuer(world().webhookClient.tenantId),
        aud: world().relayApi.clientId,
      });
      await expectRefused(await push({ token, body: body() }), 401, /v2\.0 token names no calling application \(azp\)/);
    });

    it("refuses the issuer of another tenant, in either version's form: 401", async () => {
      const claims = genuineV1();
      const other = fabrikam().tenantId;
      for (const token of [
        await signed({ ...claims, iss: v1Issuer(other) }),
        await signed({
          ...claims,
          ver: '2.0',
          iss: v2Issuer(other),
          azp: claims.appid,
          appid: undefined,
          aud: world().relayApi.clientId,
        }),
      ]) {
        await expectRefused(await push({ token, body: body() }), 401, /not issued by the tenant it names/);
      }
    });

    it('refuses a token without ver, or with a ver Entra does not issue: 401, the answer any unverified token gets', async () => {
      const claims = genuineV1();
      for (const ver of [undefined, '3.0', 1]) {
        const response = await push({ token: await signed({ ...claims, ver }), body: body() });
        await expectRefused(response, 401, /not valid for this API/);
        expect(logs.at(-1)!.line).toContain('no ver claim of 1.0 or 2.0');
      }
    });

    it('refuses a v1.0 token whose aud is the client id when only the App ID URI is configured (RELAY_API_CLIENT_ID unset): 401', async () => {
      const byClientId = await tokenFor(
        world().webhookClient.clientId,
        world().webhookClient.clientSecret,
        `${world().relayApi.clientId}/.default`,
      );
      expect(claimsOfToken(byClientId)).toMatchObject({
        ver: '1.0',
        aud: world().relayApi.clientId,
        appid: world().webhookClient.clientId,
      });
      const { RELAY_API_CLIENT_ID: _unset, ...uriOnly } = settings;
      const uriOnlyServices = createServices(loadConfig(uriOnly));
      await expectRefused(
        await push({ token: byClientId, body: body() }, {}, uriOnlyServices),
        401,
        /another audience/,
      );
      // The token the caller asked for by the URI passes there.
      genuineV1();
      const [incident] = incidents(1);
      await expectEnqueued(await push({ token: validToken, body: JSON.stringify(incident) }, {}, uriOnlyServices), [
        incident!,
      ]);
    });

    it('refuses a v1.0 token whose aud is the App ID URI when only the client id is an accepted audience', async () => {
      genuineV1();
      const clientIdOnly = new EntraTokenValidator({
        authorityHost: stack.entra.url,
        audiences: [world().relayApi.clientId],
      });
      await expect(clientIdOnly.validate(`Bearer ${validToken}`)).rejects.toMatchObject({
        status: 401,
        message: expect.stringMatching(/another audience/),
      });
      const uriOnly = new EntraTokenValidator({
        authorityHost: stack.entra.url,
        audiences: [world().relayApi.identifierUri],
      });
      await expect(uriOnly.validate(`Bearer ${validToken}`)).resolves.toMatchObject({
        version: 1,
        clientId: world().webhookClient.clientId,
      });
    });

    it('refuses a v1.0 token signed with alg none: 401', async () => {
      const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(genuineV1())}.`;
      await expectRefused(await push({ token, body: body() }), 401, /not valid for this API/);
      expect(logs.at(-1)!.line).toContain('not signed with RS256');
    });

    it("refuses a v1.0 token signed by someone else's key: 401", async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const { SignJWT, importPKCS8 } = await import('jose');
      const key = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256');
      const token = await new SignJWT(genuineV1())
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'attacker' })
        .sign(key);
      secrets.push(token);
      await expectRefused(await push({ token, body: body() }), 401, /not valid for this API/);
      expect(logs.at(-1)!.line).toContain('signature is not valid');
    });

    it('accepts the v1.0 token as issued (aud = the App ID URI), keys from the v1.0 key set, the caller from appid', async () => {
      genuineV1();
      const [incident] = incidents(1);
      await expectEnqueued(await push({ token: validToken, body: JSON.stringify(incident) }), [incident!]);
      expect(logs.at(-1)!.line).toContain(`caller=${world().webhookClient.clientId}`);
    });

    it('accepts a v1.0 token requested by the client id (aud = the GUID) when both forms are configured', async () => {
      const token = await tokenFor(
        world().webhookClient.clientId,
        world().webhookClient.clientSecret,
        `${world().relayApi.clientId}/.default`,
      );
      expect(claimsOfToken(token)).toMatchObject({
        ver: '1.0',
        aud: world().relayApi.clientId,
        iss: v1Issuer(world().webhookClient.tenantId),
      });
      const [incident] = incidents(1);
      await expectEnqueued(await push({ token, body: JSON.stringify(incident) }), [incident!]);
    });

    it('accepts v2.0 tokens once the registration sets accessTokenAcceptedVersion 2: aud = the client id, keys from the v2.0 key set, the caller from azp', async () => {
      await withV2Registration(async () => {
        for (const scope of [world().webhookClient.scope, `${world().relayApi.clientId}/.default`]) {
          const token = await tokenFor(world().webhookClient.clientId, world().webhookClient.clientSecret, scope);
          const claims = claimsOfToken(token);
          expect(claims).toMatchObject({
            ver: '2.0',
            aud: world().relayApi.clientId,
            iss: v2Issuer(world().webhookClient.tenantId),
            azp: world().webhookClient.clientId,
          });
          expect(claims.appid).toBeUndefined();
          const [incident] = incidents(1);
          await expectEnqueued(await push({ token, body: JSON.stringify(incident) }), [incident!]);
          expect(logs.at(-1)!.line).toContain(`caller=${world().webhookClient.clientId}`);
        }
      });
    });
  });

  describe('the tenant', () => {
    it('one the caller is not granted: 403 naming the grant, whether or not the tenant is registered', async () => {
      for (const tenantId of [randomUUID(), fabrikam().tenantId]) {
        const grantless = servicesWithAccess({ callers: [] });
        const response = await push({ token: validToken, body: JSON.stringify(incidents(1)), tenantId }, {}, grantless);
        await expectRefused(
          response,
          403,
          new RegExp(`may not push incidents for tenant ${tenantId}: .*WEBHOOK_ACCESS_FILE`),
        );
      }
    });

    it('granted but unknown: 404', async () => {
      const tenantId = randomUUID();
      const granted = servicesWithAccess({
        callers: [
          {
            name: 'automation',
            tenantId: world().webhookClient.tenantId,
            appId: world().webhookClient.clientId,
            mayPushFor: [tenantId],
          },
        ],
      });
      await expectRefused(
        await push({ token: validToken, body: JSON.stringify(incidents(1)), tenantId }, {}, granted),
        404,
        new RegExp(`Tenant ${tenantId} is not registered`),
      );
    });

    it('granted but disabled: 403', async () => {
      const tenantId = randomUUID();
      await services.registry.put({
        tenantId,
        displayName: 'Paused Ltd',
        context: 'partner',
        clientId: randomUUID(),
        credential: { kind: 'secret', secretName: 'unused' },
        enabled: false,
      });
      const granted = servicesWithAccess({
        callers: [
          {
            name: 'automation',
            tenantId: world().webhookClient.tenantId,
            appId: world().webhookClient.clientId,
            mayPushFor: [tenantId],
          },
        ],
      });
      await expectRefused(
        await push({ token: validToken, body: JSON.stringify(incidents(1)), tenantId }, {}, granted),
        403,
        /Paused Ltd\) is disabled/,
      );
    });

    it('not a GUID: 400', async () => {
      await expectRefused(
        await push({ token: validToken, body: JSON.stringify(incidents(1)), tenantId: 'fabrikam' }),
        400,
        /tenantId query parameter must be a tenant GUID/,
      );
    });
  });

  describe('with an HMAC signature', () => {
    it('accepts a signed batch', async () => {
      const batch = incidents(3);
      const response = await push({ sign: true, body: JSON.stringify({ value: batch }) });
      await expectEnqueued(response, batch);
      expect(logs.at(-1)!.line).toContain('caller=hmac:fabrikam-siem incidents=3 outcome=202');
    });

    it('refuses a replay, on this instance and on another one', async () => {
      const body = JSON.stringify(incidents(1));
      const timestamp = Math.floor(Date.now() / 1000);
      expect((await push({ sign: { timestamp }, body })).status).toBe(202);
      await drainEvents();
      await expectRefused(await push({ sign: { timestamp }, body }), 401, /already accepted \(replayed\)/);
      const otherInstance = createServices(loadConfig(settings));
      await expectRefused(await push({ sign: { timestamp }, body }, {}, otherInstance), 401, /replayed/);
      // The same incident signed anew is a new request.
      expect((await push({ sign: { timestamp: timestamp + 1 }, body })).status).toBe(202);
    });

    it('with several v2 values in the header, remembers the one that verified: a reordered or padded replay is refused', async () => {
      // A sender rotating keys may send several v2 values; whichever verified is what was used.
      const body = JSON.stringify(incidents(1));
      const timestamp = Math.floor(Date.now() / 1000);
      const t = `t=${timestamp}`;
      const valid = signed(world().webhookHmacKey, body, fabrikam().tenantId, timestamp).split(',')[1]!;
      const oldKey = signed('the key being rotated out', body, fabrikam().tenantId, timestamp).split(',')[1]!;
      const other = () => `v2=${randomBytes(32).toString('hex')}`;

      // Accepted once, with the valid value after another one.
      expect((await push({ signature: [t, oldKey, valid].join(','), body })).status).toBe(202);
      expect(await drainEvents()).toHaveLength(1);

      // The same request again, however its header is arranged, is a replay: here and on another instance.
      const otherInstance = createServices(loadConfig(settings));
      for (const header of [
        [t, valid],
        [t, valid, oldKey],
        [t, other(), valid],
        [valid, other(), t, other()],
        [t, oldKey, other(), valid],
      ]) {
        await expectRefused(await push({ signature: header.join(','), body }), 401, /already accepted \(replayed\)/);
        await expectRefused(await push({ signature: header.join(','), body }, {}, otherInstance), 401, /replayed/);
      }
    });

    it('refuses a signature made with another key', async () => {
      const response = await push({ sign: { key: 'not-the-key' }, body: JSON.stringify(incidents(1)) });
      expect(bodyOf(response).error).toBe(UNVERIFIED_SIGNATURE_MESSAGE);
      await expectRefused(response, 401, /not valid for this request/);
    });

    it('refuses a tampered body', async () => {
      const original = JSON.stringify(incidents(1));
      const signature = signed(world().webhookHmacKey, original, fabrikam().tenantId);
      await expectRefused(
        await push({ signature, body: original.replace('"incidentId":', '"incidentId":9') }),
        401,
        /not valid for this request/,
      );
    });

    it('refuses a stale timestamp and one too far in the future', async () => {
      const now = Math.floor(Date.now() / 1000);
      await expectRefused(
        await push({ sign: { timestamp: now - 301 }, body: JSON.stringify(incidents(1)) }),
        401,
        /s old; at most 300 s/,
      );
      await expectRefused(
        await push({ sign: { timestamp: now + 301 }, body: JSON.stringify(incidents(1)) }),
        401,
        /in the future/,
      );
    });

    it('refuses a malformed header', async () => {
      await expectRefused(
        await push({ signature: 'sha256=abc', body: JSON.stringify(incidents(1)) }),
        401,
        /must look like t=<unix seconds>,v2=/,
      );
    });

    it('requires the tenantId query parameter', async () => {
      await expectRefused(
        await push({ sign: true, body: JSON.stringify(incidents(1)), tenantId: null }),
        400,
        /add \?tenantId=/,
      );
    });

    it('refuses a key for a tenant it is not granted, with the answer a wrong key gets', async () => {
      // The demo key signs for Fabrikam only; correctly signed for Northwind, it is still refused.
      const response = await push({ sign: true, body: JSON.stringify(incidents(1)), tenantId: northwind().tenantId });
      expect(bodyOf(response).error).toBe(UNVERIFIED_SIGNATURE_MESSAGE);
      await expectRefused(response, 401, /not valid for this request/);
      const { WEBHOOK_ACCESS_FILE: _unset, ...withoutAccess } = settings;
      const unsignedOnly = createServices(loadConfig(withoutAccess));
      const noKeys = await push({ sign: true, body: JSON.stringify(incidents(1)) }, {}, unsignedOnly);
      expect(bodyOf(noKeys).error).toBe(UNVERIFIED_SIGNATURE_MESSAGE);
      await expectRefused(noKeys, 401, /not valid for this request/);
    });

    it('tells a sender still signing the old way (v1, without the tenant) what changed', async () => {
      const body = JSON.stringify(incidents(1));
      const t = Math.floor(Date.now() / 1000);
      const v1 = `t=${t},v1=${createHmac('sha256', world().webhookHmacKey).update(`${t}.${body}`).digest('hex')}`;
      secrets.push(v1.split('v1=')[1]!);
      await expectRefused(await push({ signature: v1, body }), 401, /signed with v2, which covers the tenant/);
    });
  });

  describe('the body', () => {
    it('wrong content type: 415 naming the type it got', async () => {
      await expectRefused(
        await push({ token: validToken, contentType: 'text/plain', body: JSON.stringify(incidents(1)) }),
        415,
        /must be application\/json \(UTF-8\); got 'text\/plain'$/,
      );
      await expectRefused(
        await push({ token: validToken, contentType: null, body: JSON.stringify(incidents(1)) }),
        415,
        /got none/,
      );
      const ok = await push({
        token: validToken,
        contentType: 'application/json; charset=utf-8',
        body: JSON.stringify(incidents(1)),
      });
      expect(ok.status).toBe(202);
      await drainEvents();
    });

    it('a charset other than UTF-8: 415', async () => {
      for (const contentType of [
        'application/json; charset=iso-8859-1',
        'application/json; charset=utf-16',
        'application/json;odata=nometadata;charset=windows-1252',
      ]) {
        await expectRefused(
          await push({ token: validToken, contentType, body: JSON.stringify(incidents(1)) }),
          415,
          /must be application\/json \(UTF-8\)/,
        );
      }
    });

    it('accepts UTF-8 however the charset is spelled, and media type parameters other than charset', async () => {
      for (const contentType of [
        'application/json; charset=utf8',
        'application/json; charset="UTF-8"',
        'application/json;odata=nometadata',
        'Application/JSON; odata.metadata=minimal; charset=utf-8',
      ]) {
        const [incident] = incidents(1);
        await expectEnqueued(await push({ token: validToken, contentType, body: JSON.stringify(incident) }), [
          incident!,
        ]);
      }
    });

    it('quotes at most 100 characters of a wrong content type back', async () => {
      const contentType = `text/plain; boundary=${'x'.repeat(4_000)}`;
      const response = await push({ token: validToken, contentType, body: JSON.stringify(incidents(1)) });
      await expectRefused(response, 415, new RegExp(`got '${contentType.slice(0, 100)}'$`));
      expect(logs.at(-1)!.line.length).toBeLessThan(400);
    });

    it('accepts a body of exactly WEBHOOK_MAX_BODY_BYTES', async () => {
      const max = services.config.webhook.maxBodyBytes;
      const [incident] = incidents(1);
      const json = JSON.stringify(incident);
      const body = json + ' '.repeat(max - Buffer.byteLength(json));
      expect(Buffer.byteLength(body)).toBe(max);
      await expectEnqueued(await push({ token: validToken, body }), [incident!]);
    });

    it('oversized: 413, whether Content-Length says so or only the bytes do', async () => {
      const max = services.config.webhook.maxBodyBytes;
      const big = JSON.stringify({ value: [], padding: 'x'.repeat(max) });
      await expectRefused(
        await push({ token: validToken, body: '{}', headers: { 'content-length': String(max + 1) } }),
        413,
        new RegExp(`larger than ${max} bytes`),
      );
      await expectRefused(await push({ token: validToken, body: big }), 413, /larger than/);
      await expectRefused(await push({ sign: true, body: big }), 413, /larger than/);
      // More bytes than Content-Length declares: the cap holds on what is read, not on what was declared.
      await expectRefused(
        await push({ token: validToken, body: big, headers: { 'content-length': String(max) } }),
        413,
        /larger than/,
      );
    });

    it('a chunked body (no Content-Length), which the Functions host passes on empty: 411 saying to send Content-Length', async () => {
      const body = JSON.stringify(incidents(1));
      await expectRefused(
        await push({ token: validToken, body, chunked: true }),
        411,
        /Content-Length header: the Functions host passes on no body sent without one/,
      );
      await expectRefused(await push({ sign: true, body, chunked: true }), 411, /Content-Length/);
      await expectRefused(await push({ token: validToken, body: '' }), 400, /body is empty/);
    });

    it('a body not in UTF-8 (here Latin-1): 400, nothing enqueued', async () => {
      const [incident] = incidents(1);
      const bytes = Buffer.from(
        JSON.stringify({ ...incident!, title: 'Accès suspect à la boîte de réception' }),
        'latin1',
      );
      await expectRefused(await push({ token: validToken, bytes }), 400, /^The body is not valid UTF-8$/);
    });

    it('malformed JSON: 400', async () => {
      await expectRefused(await push({ token: validToken, body: '{"incidentId": 1,' }), 400, /not valid JSON/);
      await expectRefused(await push({ token: validToken, body: '' }), 400, /body is empty/);
    });

    it('an invalid incident in a batch: 400 listing every problem, and nothing of the batch enqueued', async () => {
      const batch = incidents(3);
      batch[1] = { ...batch[1]!, severity: 'Critical', lastUpdateTime: '2020-09-06 14:46' };
      batch[2]!.alerts = [{ alertId: 'da637349914833441527_393341063', severity: 'Severe' }];
      delete batch[2]!.incidentId;
      const response = await push({ token: validToken, body: JSON.stringify(batch) });
      expect(response.status).toBe(400);
      const errors = bodyOf(response).errors as { index: number; path: string; message: string }[];
      expect(errors.map(({ index, path }) => ({ index, path }))).toEqual(
        expect.arrayContaining([
          { index: 1, path: 'severity' },
          { index: 1, path: 'lastUpdateTime' },
          { index: 2, path: 'incidentId' },
          { index: 2, path: 'alerts.0.severity' },
        ]),
      );
      expect(errors).toHaveLength(4);
      expect(errors.find((e) => e.path === 'incidentId')!.message).toBe('is required');
      expect(errors.find((e) => e.path === 'severity')!.message).toMatch(
        /must be one of UnSpecified, Informational, Low, Medium, High/,
      );
      expect(await drainEvents()).toEqual([]);
      expect(logs.at(-1)!.line).toMatch(/outcome=400 4 problem\(s\) in 2 incident\(s\), nothing enqueued/);
    });

    it('more than 100 incidents: 400', async () => {
      const response = await push({ token: validToken, body: JSON.stringify(incidents(101)) });
      expect(response.status).toBe(400);
      expect(bodyOf(response).errors).toEqual([
        { index: 100, path: '', message: expect.stringMatching(/at most 100 incidents per request \(got 101\)/) },
      ]);
      expect(await drainEvents()).toEqual([]);
    });
  });

  describe('when storage fails', () => {
    it('answers 503 saying what was enqueued, and the identical signed retry is then accepted', async () => {
      const batch = incidents(5);
      const body = JSON.stringify(batch);
      const timestamp = Math.floor(Date.now() / 1000);
      const failing = batch[2]!.incidentId as number;
      const flakySender = {
        sendEvent: (queue: string, envelope: IncidentEnvelope) =>
          envelope.incidentId === failing
            ? Promise.reject(Object.assign(new Error('Server busy'), { statusCode: 503 }))
            : services.sender.sendEvent(queue, envelope),
      };
      const failed = await push({ sign: { timestamp }, body }, { sender: flakySender });
      expect(failed.status).toBe(503);
      expect(failed.headers?.['Retry-After']).toBe('10');
      expect(bodyOf(failed)).toMatchObject({ accepted: 4, notEnqueued: [expect.stringContaining(`:${failing}:`)] });
      expect(await drainEvents()).toHaveLength(4);
      expect(logs.at(-1)).toMatchObject({
        level: 'error',
        line: expect.stringContaining('outcome=503 Storage did not take every incident (4 of 5 enqueued)'),
      });
      // The operator learns what storage said.
      expect(logs.at(-1)!.line).toMatch(/enqueued\): .*\(Error HTTP 503: Server busy\)$/);

      const retried = await push({ sign: { timestamp }, body });
      await expectEnqueued(retried, batch);
    });

    it("says in the log when a failed request's signature cannot be forgotten, so its retry would be refused as a replay", async () => {
      const batch = incidents(2);
      const body = JSON.stringify(batch);
      const failing = batch[1]!.incidentId as number;
      const flakySender = {
        sendEvent: (queue: string, envelope: IncidentEnvelope) =>
          envelope.incidentId === failing
            ? Promise.reject(Object.assign(new Error('Server busy'), { statusCode: 503 }))
            : services.sender.sendEvent(queue, envelope),
      };
      const guard = services.replayGuard;
      const stuckGuard = {
        remember: guard.remember.bind(guard),
        pruneExpired: guard.pruneExpired.bind(guard),
        forget: () => Promise.reject(Object.assign(new Error('Server busy'), { statusCode: 503 })),
      };
      const failed = await push({ sign: true, body }, { sender: flakySender, replayGuard: stuckGuard });
      expect(failed.status).toBe(503);
      expect(await drainEvents()).toHaveLength(1);
      expect(
        logs.some(
          (l) =>
            l.level === 'warn' &&
            /could not forget the signature .* its retry will be refused as a replay \(re-sign it with a new timestamp\)/.test(
              l.line,
            ),
        ),
      ).toBe(true);
    });

    it('answers 503 with Retry-After when the tenant registry cannot be read; the log names the cause', async () => {
      const registry = {
        get: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
      };
      const response = await push({ token: validToken, body: JSON.stringify(incidents(1)) }, { registry });
      await expectRefused(response, 503, /registry could not be read/);
      expect(response.headers?.['Retry-After']).toBe('10');
      expect(logs.at(-1)).toEqual({
        level: 'error',
        line: expect.stringMatching(
          /outcome=503 The tenant registry could not be read: retry the request \(Error ECONNREFUSED: connect ECONNREFUSED\)$/,
        ),
      });
    });

    it('answers 503 with Retry-After when the replay guard cannot be consulted, enqueuing nothing', async () => {
      const guard = services.replayGuard;
      const unreachableGuard = {
        remember: () => Promise.reject(Object.assign(new Error('Server busy'), { statusCode: 503 })),
        forget: guard.forget.bind(guard),
        pruneExpired: guard.pruneExpired.bind(guard),
      };
      const response = await push(
        { sign: true, body: JSON.stringify(incidents(1)) },
        { replayGuard: unreachableGuard },
      );
      await expectRefused(response, 503, /^The replay guard could not be consulted: retry the request$/);
      expect(response.headers?.['Retry-After']).toBe('10');
      expect(logs.at(-1)).toEqual({ level: 'error', line: expect.stringContaining('(Error HTTP 503: Server busy)') });
    });

    it('accepts a signed push when pruning old signatures fails, and warns', async () => {
      const guard = services.replayGuard;
      const unprunableGuard = {
        remember: guard.remember.bind(guard),
        forget: guard.forget.bind(guard),
        pruneExpired: () => Promise.reject(Object.assign(new Error('Server busy'), { statusCode: 503 })),
      };
      const [incident] = incidents(1);
      await expectEnqueued(
        await push({ sign: true, body: JSON.stringify(incident) }, { replayGuard: unprunableGuard }),
        [incident!],
      );
      expect(logs).toContainEqual({
        level: 'warn',
        line: 'webhook push: pruning old signatures failed: Error HTTP 503: Server busy',
      });
    });

    it('answers 500 to a failure it did not expect, asking to retry later; the log names the cause as an error', async () => {
      const brokenAuth = Object.assign(Object.create(services.webhookAuth) as WebhookAuthenticator, {
        authenticateBearer: () =>
          Promise.reject(new TypeError("Cannot read properties of undefined (reading 'roles')")),
      });
      const response = await push({ token: validToken, body: JSON.stringify(incidents(1)) }, { auth: brokenAuth });
      await expectRefused(response, 500, /^The relay failed to take the incidents: retry later$/);
      expect(logs.at(-1)).toEqual({
        level: 'error',
        line: "webhook push: tenant=- caller=- incidents=- outcome=500 The relay failed to take the incidents: retry later (TypeError: Cannot read properties of undefined (reading 'roles'))",
      });
    });
  });

  it('the replay guard forgets a signature only once its timestamp can no longer be accepted', async () => {
    const startMs = Date.now();
    let nowMs = startMs;
    const table = TableClient.fromConnectionString(azurite.connectionString, WEBHOOK_REPLAY_TABLE, {
      allowInsecureConnection: true,
    });
    const guard = new ReplayGuard(table, { windowSeconds: 300, now: () => nowMs });
    const signature = randomBytes(32);
    const signedAt = Math.floor(startMs / 1000);
    expect(await guard.remember(signature, signedAt)).toBe(true);

    nowMs = startMs + 300_000; // still acceptable at the edge of the tolerance
    await guard.pruneExpired();
    expect(await guard.remember(signature, signedAt)).toBe(false);

    nowMs = startMs + 601_000; // past the tolerance: the timestamp is refused anyway, the row may go
    expect(await guard.pruneExpired()).toBeGreaterThanOrEqual(1);
    expect(await guard.pruneExpired()).toBe(0); // at most one pass per window
    const rows = [];
    for await (const row of table.listEntities()) rows.push(row);
    expect(rows.filter((r) => r.partitionKey! <= String(Math.floor(signedAt / 300)).padStart(12, '0'))).toEqual([]);
    // The table holds a hash of each signature, never the signature itself.
    expect(JSON.stringify(rows)).not.toContain(signature.toString('hex'));
  });

  it('logs a refusal as a warning saying what was known of the request ("-" for the rest), and nothing after the reason', async () => {
    const response = await push({ body: JSON.stringify(incidents(1)) });
    expect(response.status).toBe(401);
    expect(logs.at(-1)).toEqual({
      level: 'warn',
      line: `webhook push: tenant=- caller=- incidents=- outcome=401 ${String(bodyOf(response).error)}`,
    });
  });

  it('never logs a token, a signature or the HMAC key', () => {
    expect(logs.length).toBeGreaterThan(30);
    for (const { line } of logs) {
      expect(line).not.toMatch(/eyJ[\w-]+\./);
      for (const secret of secrets) expect(line).not.toContain(secret.length > 40 ? secret.slice(-32) : secret);
    }
  });
});
