import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { QueueServiceClient } from '@azure/storage-queue';
import { decodeProtectedHeader, SignJWT, importPKCS8 } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listIncidents } from '../../functions/listIncidents.js';
import { pushIncidents } from '../../functions/pushIncidents.js';
import { updateIncident } from '../../functions/updateIncident.js';
import { generateIncidents } from '../../local/defender/generator.js';
import { RELAY_SUBMIT_ROLE, RELAY_USER_SCOPE } from '../../local/demo.js';
import { QUEUE_NAMES } from '../../shared/storage/queues.js';
import { readIncidentBatch } from '../../shared/api/webhook-incidents.js';
import { pushSignatureHeader } from '../../shared/api/webhook-signature.js';
import {
  bentGuid,
  brokenBody,
  CONTENT_TYPES,
  fuzzValue,
  hostileString,
  hugeBody,
  POLLUTING_KEYS,
  queryPart,
  Rng,
} from './fuzz.js';
import { expectHostileAnswers, generatedRequests, HostileStage, type HostileCase } from './harness.js';
import { refusedByHost } from '../support/host-request.js';

/**
 * The endpoints callers reach without a function key — webhook push and the analyst endpoints —
 * under 1,000 generated requests each: no credential, forged, tampered, expired, `alg: none`,
 * HS256-with-the-public-key and foreign-key tokens, replayed, stale and mis-keyed HMAC signatures,
 * and, with valid credentials, fuzzed bodies, wrong content types, huge bodies and path tricks.
 * Every answer must be a 4xx; nothing may be enqueued, stored or changed in Defender; no secret or
 * token minted here may appear in an answer or a log line.
 */
const REQUESTS = generatedRequests(1_000);
const SEED = 0xca11e5;

describe('hostile input: webhook push and analyst endpoints', () => {
  let stage: HostileStage;
  let webhookToken: string;
  let analystToken: string;
  /** Tokens that must be refused (401 or 403), by what is wrong with them. */
  const badTokens: { why: string; token: string }[] = [];
  /** A signed push that was accepted once: sent again it is a replay. */
  let accepted: { body: string; signature: string };
  let validIncident: Record<string, unknown>;

  const fabrikam = () => stage.world.tenants.find((t) => t.context === 'application')!;
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  beforeAll(async () => {
    stage = await HostileStage.start();
    const { world } = stage;
    const issuer = stage.standIns.entra.issuer;
    const mint = async (why: string, request: Parameters<typeof issuer.issueAccessToken>[0]) =>
      stage.remember(`token: ${why}`, (await issuer.issueAccessToken(request)).token);
    const webhook = {
      tenantId: world.webhookClient.tenantId,
      audience: world.relayApi.clientId,
      clientId: world.webhookClient.clientId,
      objectId: randomUUID(),
      roles: [RELAY_SUBMIT_ROLE],
      version: 2 as const,
    };
    const analyst = {
      tenantId: fabrikam().tenantId,
      audience: world.relayApi.clientId,
      clientId: world.analystClient.clientId,
      objectId: randomUUID(),
      scopes: [RELAY_USER_SCOPE],
      user: { upn: world.analyst.userPrincipalName, name: world.analyst.displayName },
      version: 2 as const,
    };
    webhookToken = await mint('valid webhook token', webhook);
    analystToken = await mint('valid analyst token', analyst);

    const tamper = (token: string, change: (claims: Record<string, unknown>) => void) => {
      const [header, payload, signature] = token.split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
      change(claims);
      return `${header}.${b64(claims)}.${signature}`;
    };
    const claimsOf = (token: string) =>
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const { kid } = decodeProtectedHeader(webhookToken);
    const foreign = await importPKCS8(
      generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      'RS256',
    );
    const jwks = JSON.stringify(issuer.jwks());
    const forged: [string, string][] = [];
    for (const [who, token] of [
      ['webhook', webhookToken],
      ['analyst', analystToken],
    ] as const) {
      const claims = claimsOf(token);
      forged.push(
        [
          `${who}: expired`,
          await mint(`${who} expired`, { ...(who === 'webhook' ? webhook : analyst), lifetimeSeconds: -3600 }),
        ],
        [
          `${who}: for Defender, not the relay`,
          await mint(`${who} other audience`, {
            ...(who === 'webhook' ? webhook : analyst),
            audience: 'https://api.security.microsoft.com',
            version: 1,
          }),
        ],
        [`${who}: role added after signing`, tamper(token, (c) => void (c.roles = [RELAY_SUBMIT_ROLE, 'Admin']))],
        [`${who}: tenant changed after signing`, tamper(token, (c) => void (c.tid = fabrikam().tenantId))],
        [
          `${who}: expiry moved after signing`,
          tamper(token, (c) => void (c.exp = Math.floor(Date.now() / 1000) + 86_400 * 365)),
        ],
        [`${who}: alg none`, `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`],
        [
          `${who}: alg none, signature kept`,
          `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.${token.split('.')[2]}`,
        ],
        [
          `${who}: HS256 keyed with the public JWKS`,
          await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid }).sign(new TextEncoder().encode(jwks)),
        ],
        [
          `${who}: signed by a foreign key under the real kid`,
          await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).sign(foreign),
        ],
        [
          `${who}: foreign key announced in jku`,
          await new SignJWT(claims)
            .setProtectedHeader({ alg: 'RS256', kid: 'evil', jku: 'https://evil.example/keys' })
            .sign(foreign),
        ],
        [
          `${who}: from a tenant nobody allowed`,
          await mint(`${who} other tenant`, { ...(who === 'webhook' ? webhook : analyst), tenantId: randomUUID() }),
        ],
      );
    }
    forged.push(
      ['webhook app without the role', await mint('no role', { ...webhook, roles: [] })],
      [
        'analyst endpoints: an app token (no scp)',
        await mint('app token', { ...webhook, tenantId: fabrikam().tenantId }),
      ],
      ['analyst endpoints: another scope', await mint('other scope', { ...analyst, scopes: ['Something.Else'] })],
      [
        'analyst endpoints: tenant not registered with the relay',
        await mint('unregistered tenant', { ...analyst, tenantId: world.provider.tenantId }),
      ],
    );
    for (const [why, token] of forged) badTokens.push({ why, token: stage.remember(`token: ${why}`, token) });

    // One signed push accepted, so its exact copy is a replay; its event is taken off the queue again.
    const [incident] = generateIncidents({ tenantId: fabrikam().tenantId, count: 1, seed: 'hostile' });
    validIncident = JSON.parse(JSON.stringify(incident)) as Record<string, unknown>;
    const body = JSON.stringify(validIncident);
    accepted = { body, signature: stage.remember('accepted signature', sign(world.webhookHmacKey, body)) };
    const first = await stage.call(pushIncidents, signedCase('setup', body, accepted.signature, fabrikam().tenantId));
    expect(first.status).toBe(202);
    const queue = QueueServiceClient.fromConnectionString(stage.azurite.connectionString).getQueueClient(
      QUEUE_NAMES.incidents,
    );
    await queue.clearMessages();
  }, 60_000);
  afterAll(async () => {
    await stage?.stop();
  });

  const is4xx = (status: number) => status >= 400 && status < 500;
  /** A v2 signature of a push of `body` to `tenantId` (Fabrikam unless given). */
  const sign = (key: string, body: string, timestamp?: number, tenantId = fabrikam().tenantId) =>
    pushSignatureHeader(
      key,
      { tenantId: tenantId.trim().toLowerCase(), method: 'POST', path: '/api/incidents' },
      body,
      timestamp,
    );
  const defenderIncidents = () => stage.standIns.defender.store.list(fabrikam().tenantId);

  function signedCase(
    note: string,
    body: string,
    signature: string,
    tenantId?: string,
    headers: Record<string, string> = {},
  ): HostileCase {
    return {
      note,
      method: 'POST',
      path: `/api/incidents${tenantId === undefined ? '' : `?tenantId=${queryPart(tenantId)}`}`,
      headers: { 'content-type': 'application/json', 'x-relay-signature': signature, ...headers },
      body: { string: body },
    };
  }

  /** An Authorization header that must not get anyone in. */
  function badAuthorization(rng: Rng): string | undefined {
    return rng.pick([
      () => undefined,
      () => '',
      () => 'Bearer',
      () => 'Bearer ',
      () => `Bearer ${hostileString(rng).slice(0, 5_000)}`,
      () => `Basic ${Buffer.from('admin:admin').toString('base64')}`,
      () => `Bearer a.b.c`,
      () => `Bearer ${'eyJ'.repeat(30_000)}.eyJ.x`,
      () => `Bearer ${rng.pick(badTokens).token}`,
      () => `Bearer ${rng.pick(badTokens).token}`,
      () => `Bearer ${rng.pick(badTokens).token}`,
      () => `Bearer ${rng.pick(badTokens).token}`,
    ])();
  }

  /** A valid incident with one field made invalid (checked with the schema the endpoint uses). */
  function brokenIncident(rng: Rng): Record<string, unknown> {
    const incident: Record<string, unknown> = JSON.parse(JSON.stringify(validIncident)) as Record<string, unknown>;
    const field = rng.pick([
      'incidentId',
      'lastUpdateTime',
      'createdTime',
      'status',
      'severity',
      'alerts',
      'classification',
    ]);
    incident[field] = rng.chance(0.5) ? hostileString(rng).slice(0, 2_000) : fuzzValue(rng, 3);
    for (const key of POLLUTING_KEYS.slice(0, rng.int(3)))
      Object.defineProperty(incident, key, { value: { polluted: true }, enumerable: true });
    if (readIncidentBatch(incident).ok) incident.incidentId = 'not a number';
    return incident;
  }

  /** A body that is never an acceptable batch: broken bytes, a few MB, fuzz, or incidents with a flaw. */
  function hostileBatch(rng: Rng): string | Uint8Array {
    if (rng.chance(0.03)) return hugeBody(rng);
    const roll = rng.int(10);
    if (roll < 2) {
      const broken = brokenBody(rng);
      return broken.bytes ?? broken.text!;
    }
    if (roll < 6) {
      const items = Array.from({ length: 1 + rng.int(3) }, () =>
        rng.chance(0.7) ? brokenIncident(rng) : validIncident,
      );
      if (items.every((i) => i === validIncident)) items[0] = brokenIncident(rng);
      return JSON.stringify(rng.chance(0.5) ? { value: items } : items);
    }
    const fuzzed = fuzzValue(rng, 0, ['incidentId', 'lastUpdateTime', 'value', 'alerts', 'tenantId']);
    let text = JSON.stringify(fuzzed) ?? 'null';
    try {
      if (readIncidentBatch(JSON.parse(text)).ok) text = JSON.stringify({ value: 'not a list' });
    } catch {
      // Not JSON at all: hostile as it is.
    }
    return text;
  }

  const asBody = (body: string | Uint8Array): HostileCase['body'] =>
    typeof body === 'string' ? { string: body } : { bytes: body };

  it('POST /api/incidents (pushIncidents)', async () => {
    const rng = new Rng(SEED + 1);
    const { world } = stage;
    const all = Array.from({ length: REQUESTS }, (): HostileCase => {
      const tenantQuery = rng.pick([
        undefined,
        fabrikam().tenantId,
        randomUUID(),
        bentGuid(rng),
        hostileString(rng).slice(0, 500),
      ]);
      const path = `/api/incidents${tenantQuery === undefined ? '' : `?tenantId=${queryPart(tenantQuery)}`}`;
      const contentType = rng.chance(0.8) ? 'application/json' : rng.pick(CONTENT_TYPES);
      const headers = (extra: Record<string, string | undefined>): Record<string, string> =>
        Object.fromEntries(
          Object.entries({ 'content-type': contentType, ...extra })
            .filter((e): e is [string, string] => e[1] !== undefined)
            .map(([k, v]) => [k, v.replace(/[\r\n]/g, ' ')]),
        );
      const now = Math.floor(Date.now() / 1000);
      switch (rng.int(8)) {
        case 0:
        case 1: {
          const body = hostileBatch(rng);
          return {
            note: 'no or bad credential',
            method: 'POST',
            path,
            headers: headers({ authorization: badAuthorization(rng) }),
            body: asBody(rng.chance(0.5) ? JSON.stringify(validIncident) : body),
          };
        }
        case 2:
        case 3:
          return {
            note: 'valid token, hostile body or query',
            method: 'POST',
            path,
            headers: headers({ authorization: `Bearer ${webhookToken}` }),
            body: asBody(hostileBatch(rng)),
          };
        case 4: {
          const body = hostileBatch(rng);
          return {
            note: 'valid signature, hostile body or query',
            method: 'POST',
            path,
            headers: headers({
              'x-relay-signature':
                typeof body === 'string'
                  ? sign(world.webhookHmacKey, body, undefined, tenantQuery ?? fabrikam().tenantId)
                  : 't=1,v2=00',
            }),
            body: asBody(body),
          };
        }
        case 5: {
          const body = JSON.stringify(validIncident);
          const signature = rng.pick([
            () => accepted.signature,
            () => sign(world.webhookHmacKey, body, now - 3_600),
            () => sign(world.webhookHmacKey, body, now + 3_600),
            () => sign(world.webhookHmacKey, body, 0),
            () => sign(world.webhookHmacKey, `${body} `),
            () => sign(world.siemHmacKey, body),
            () => sign('', body),
            () =>
              sign(world.webhookHmacKey, body, now, stage.world.tenants.find((t) => t.context === 'partner')!.tenantId),
            () => `t=${now},v1=${'0'.repeat(64)}`,
            () => `t=${now},v2=${sign(world.webhookHmacKey, body).split('v2=')[1]!.toUpperCase().replace(/^./, 'g')}`,
            () => hostileString(rng).slice(0, 1_000),
            () => `${accepted.signature},v1=${'f'.repeat(64)}`,
            () => `t=${now};v1=abc`,
          ])();
          const replayed = signature === accepted.signature;
          return {
            ...signedCase(
              replayed ? 'replayed signature' : 'stale, foreign or malformed signature',
              replayed ? accepted.body : body,
              signature,
              fabrikam().tenantId,
            ),
            headers: headers({ 'x-relay-signature': signature }),
          };
        }
        case 6:
          return {
            note: 'token and signature together',
            method: 'POST',
            path,
            headers: headers({ authorization: `Bearer ${webhookToken}`, 'x-relay-signature': accepted.signature }),
            body: { string: accepted.body },
          };
        default:
          return {
            note: 'valid token, lying Content-Length or huge body',
            method: 'POST',
            path,
            headers: headers({
              authorization: `Bearer ${webhookToken}`,
              'content-length': rng.pick(['99999999999', '-5', '1e9', '0']),
            }),
            body: asBody(rng.chance(0.3) ? hugeBody(rng) : hostileBatch(rng)),
          };
      }
    });
    const logged = stage.logs.length;
    const statuses = await expectHostileAnswers(stage, 'pushIncidents', pushIncidents, all, is4xx, defenderIncidents);
    expect(Object.keys(statuses).sort()).toEqual(expect.arrayContaining(['400', '401', '413', '415']));
    // The scan read what the endpoint logs: one line per refused request that reached it (the host
    // itself refuses a Content-Length that is not a number).
    const reached = all.filter((c) => !refusedByHost(c.headers)).length;
    expect(reached).toBeGreaterThan(REQUESTS * 0.9);
    expect(stage.logs.slice(logged).filter((l) => l.includes('webhook push: ')).length).toBeGreaterThanOrEqual(reached);
  });

  it('GET /api/incidents (listIncidents)', async () => {
    const rng = new Rng(SEED + 2);
    const all = Array.from({ length: REQUESTS }, (_, i): HostileCase => {
      const params: [string, string][] = Array.from({ length: rng.int(4) }, () => [
        rng.pick(['status', 'assignedTo', 'updatedSince', 'top', 'skip']),
        hostileString(rng).slice(0, 3_000),
      ]);
      // One parameter the endpoint does not know, or one given twice: never a valid query.
      if (rng.chance(0.5))
        params.push([
          rng.pick(['$filter', '$expand', '$select', 'tenantId', 'constructor', 'toString', '__proto__', `x${i}`]),
          rng.pick(['lastUpdateTime ge 1900-01-01T00:00:00Z or 1 eq 1', '*', hostileString(rng).slice(0, 200)]),
        ]);
      else params.push(['top', '5'], ['top', hostileString(rng).slice(0, 50)]);
      const query = params.map(([k, v]) => `${queryPart(k)}=${queryPart(v)}`).join('&');
      const authorization = rng.chance(0.4) ? badAuthorization(rng) : `Bearer ${analystToken}`;
      return {
        note: authorization?.includes(analystToken) ? 'valid token, hostile query' : 'bad credential',
        method: 'GET',
        path: `/api/incidents?${query}`,
        headers: authorization === undefined ? {} : { authorization },
      };
    });
    const statuses = await expectHostileAnswers(stage, 'listIncidents', listIncidents, all, is4xx, defenderIncidents);
    expect(Object.keys(statuses).sort()).toEqual(expect.arrayContaining(['400', '401', '403']));
  });

  it('PATCH /api/incidents/{tenantId}/{incidentId} (updateIncident)', async () => {
    const rng = new Rng(SEED + 3);
    const incidentId = String(defenderIncidents()[0]!.incidentId);
    const all = Array.from({ length: REQUESTS }, (_, i): HostileCase => {
      const authorization = rng.chance(0.35) ? badAuthorization(rng) : `Bearer ${analystToken}`;
      const ownTenant = fabrikam().tenantId;
      const tenantId = rng.chance(0.6)
        ? rng.pick([ownTenant, ownTenant.toUpperCase()])
        : rng.pick([
            () => stage.world.tenants[1]!.tenantId,
            () => bentGuid(rng),
            () => hostileString(rng).slice(0, 2_000),
            () => `${ownTenant}/../${randomUUID()}`,
          ])();
      const id = rng.chance(0.5)
        ? incidentId
        : rng.pick([
            () => hostileString(rng).slice(0, 2_000),
            () => `${incidentId}/../1`,
            () => '0',
            () => '-1',
            () => '9'.repeat(16),
            () => `${incidentId}%2F`,
            () => `${incidentId} `,
          ])();
      let body: HostileCase['body'];
      const roll = rng.int(10);
      if (roll < 2) {
        const broken = brokenBody(rng);
        body = broken.bytes ? { bytes: broken.bytes } : { string: broken.text! };
      } else if (roll < 3) body = { string: JSON.stringify({ comment: 'x'.repeat(20_000 + rng.int(2_000_000)) }) };
      else {
        const value = fuzzValue(rng, 0, ['status', 'assignedTo', 'classification', 'determination', 'tags', 'comment']);
        // A field the endpoint does not know makes any object invalid: a hostile body never changes an incident.
        if (value !== null && typeof value === 'object' && !Array.isArray(value))
          Object.defineProperty(value, `unknown${i}`, { value: true, enumerable: true });
        body = { string: JSON.stringify(value) ?? 'null' };
      }
      const contentType = rng.chance(0.8)
        ? rng.pick(['application/json', 'application/merge-patch+json'])
        : rng.pick(CONTENT_TYPES);
      const headers: Record<string, string> = {};
      if (authorization !== undefined) headers.authorization = authorization;
      if (contentType !== undefined) headers['content-type'] = contentType.replace(/[\r\n]/g, ' ');
      if (rng.chance(0.05)) headers['content-length'] = rng.pick(['99999999', '-1', 'NaN']);
      return {
        note: authorization?.includes(analystToken) ? 'valid token, hostile path or body' : 'bad credential',
        method: 'PATCH',
        path: `/api/incidents/x/y`,
        params: { tenantId, incidentId: id },
        headers,
        body,
      };
    });
    const statuses = await expectHostileAnswers(stage, 'updateIncident', updateIncident, all, is4xx, defenderIncidents);
    expect(Object.keys(statuses).sort()).toEqual(expect.arrayContaining(['400', '401', '403', '413', '415']));
  });
});
