import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { health } from '../../functions/health.js';
import { replayIncidents } from '../../functions/replayIncidents.js';
import { requestTenantPoll } from '../../functions/requestTenantPoll.js';
import { tenantCheck } from '../../functions/tenantCheck.js';
import { tenantConsentLink } from '../../functions/tenantConsentLink.js';
import { tenantGet } from '../../functions/tenantGet.js';
import { tenantRemove } from '../../functions/tenantRemove.js';
import { tenantsAdd } from '../../functions/tenantsAdd.js';
import { tenantsList } from '../../functions/tenantsList.js';
import { tenantUpdate } from '../../functions/tenantUpdate.js';
import { replayRequestSchema } from '../../shared/route/replay.js';
import { tenantSchema } from '../../shared/tenants/tenants.js';
import { RELAY_API_SECRET_NAME, WEBHOOK_HMAC_SECRET_NAME } from '../../local/demo.js';
import { SIEM_HMAC_SECRET_NAME } from '../../local/stack.js';
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
import { expectHostileAnswers, generatedRequests, HostileStage, type Handler, type HostileCase } from './harness.js';

/**
 * The admin and operations endpoints under hostile input, 1,000 generated requests each, called as
 * the host calls them. The Functions host checks their function key before they run; what is
 * checked here is the handler behind it: malformed ids, bodies and headers get a 4xx naming the
 * problem, never a 5xx; nothing is enqueued; no table changes; no secret in any answer or log line.
 */
const REQUESTS = generatedRequests(1_000);
const SEED = 0x51ee1;

describe('hostile input: admin and operations endpoints', () => {
  let stage: HostileStage;

  beforeAll(async () => {
    stage = await HostileStage.start();
  }, 60_000);
  afterAll(async () => {
    await stage?.stop();
  });

  const is4xx = (status: number) => status >= 400 && status < 500;

  /** A route value that is not a registered tenant's id: hostile strings, bent GUIDs, unknown GUIDs, registered ids with tricks around them. */
  function routeId(rng: Rng): string {
    for (;;) {
      const registered = rng.pick(stage.registeredTenantIds());
      const value = rng.pick([
        () => hostileString(rng),
        () => hostileString(rng),
        () => bentGuid(rng),
        () => randomUUID(),
        () => `${registered}/../${randomUUID()}`,
        () => `../${registered}`,
        () => `${registered}%2F..`,
        () => `${registered}?tenantId=${randomUUID()}`,
        () => encodeURIComponent(`${registered}/`),
        () => `${registered}' or RowKey ne '`,
      ])();
      if (!stage.namesRegisteredTenant(value)) return value;
    }
  }

  /** Headers an attacker adds: odd content types, a spoofed App Service principal, forwarded-for, junk auth. */
  function junkHeaders(rng: Rng): Record<string, string> {
    const headers: Record<string, string> = {};
    const type = rng.pick(CONTENT_TYPES);
    if (type !== undefined) headers['content-type'] = type.replace(/[\r\n]/g, ' ');
    if (rng.chance(0.2))
      headers['x-ms-client-principal'] = Buffer.from(
        JSON.stringify({ userRoles: ['admin'], claims: [{ typ: 'roles', val: 'Admin' }] }),
      ).toString('base64');
    if (rng.chance(0.2)) headers['x-forwarded-for'] = '127.0.0.1';
    if (rng.chance(0.2))
      headers.authorization = rng.pick(['Bearer x', 'Basic YWRtaW46YWRtaW4=', `Bearer ${'a'.repeat(8000)}`]);
    if (rng.chance(0.1)) headers['content-length'] = rng.pick(['-1', '99999999999', 'abc']);
    return headers;
  }

  /** A body: fuzzed JSON, broken bytes, a few MB, or `nearValid` with a field broken. */
  function body(rng: Rng, fields: readonly string[], nearValid?: () => Record<string, unknown>): HostileCase['body'] {
    if (rng.chance(0.01)) return { string: hugeBody(rng) };
    const roll = rng.int(10);
    if (roll < 2) {
      const broken = brokenBody(rng);
      return broken.bytes ? { bytes: broken.bytes } : { string: broken.text! };
    }
    if (roll < 5 && nearValid) return { string: JSON.stringify(nearValid()) };
    return { string: JSON.stringify(fuzzValue(rng, 0, fields)) ?? 'null' };
  }

  /** A valid tenant with one field made invalid and polluting keys added. */
  function brokenTenant(rng: Rng): Record<string, unknown> {
    const partner = stage.world.tenants.find((t) => t.context === 'partner')!;
    const tenant: Record<string, unknown> = {
      tenantId: randomUUID(),
      displayName: 'Contoso Pharma',
      context: 'partner',
      clientId: partner.clientId,
      credential: { kind: 'secret', secretName: partner.clientSecretName },
    };
    const field = rng.pick([
      'tenantId',
      'displayName',
      'context',
      'clientId',
      'credential',
      'enabled',
      'firstRunLookbackHours',
    ]);
    tenant[field] = rng.pick([
      () => hostileString(rng).slice(0, 200) || 'x'.repeat(129),
      () => fuzzValue(rng, 3),
      () => ({
        kind: rng.pick(['secret', 'certificate', 'managedIdentity2']),
        secretName: rng.pick(['../kv', 'a'.repeat(200), 'x y', '']),
      }),
      () => rng.pick([-1, 0, 1e9, 1.5, 'true']),
      () => [tenant[field]],
    ])();
    if (
      field === 'displayName' &&
      typeof tenant.displayName === 'string' &&
      tenant.displayName.trim().length >= 1 &&
      tenant.displayName.trim().length <= 128
    )
      tenant.displayName = 'x'.repeat(129);
    if (field === 'enabled' && typeof tenant.enabled === 'boolean') tenant.enabled = 'yes';
    for (const key of POLLUTING_KEYS.slice(0, rng.int(4)))
      Object.defineProperty(tenant, key, { value: { polluted: true }, enumerable: true });
    // A value the schema takes after trimming (a GUID with a trailing newline) makes a valid tenant: break it for sure.
    if (tenantSchema.safeParse(tenant).success) tenant.context = 'both';
    return tenant;
  }

  function cases(seed: number, build: (rng: Rng, i: number) => HostileCase): HostileCase[] {
    const rng = new Rng(seed);
    return Array.from({ length: REQUESTS }, (_, i) => build(rng, i));
  }

  const expectHostileRun = (
    name: string,
    handler: Handler,
    all: HostileCase[],
    acceptable: (status: number, c: HostileCase) => boolean = is4xx,
  ) => expectHostileAnswers(stage, name, handler, all, acceptable);

  it('POST /api/tenants (tenantsAdd)', async () => {
    const all = cases(SEED + 1, (rng) => ({
      note: 'tenant body',
      method: 'POST',
      path: '/api/tenants',
      headers: junkHeaders(rng),
      body: body(
        rng,
        ['tenantId', 'displayName', 'context', 'clientId', 'credential', 'enabled', 'firstRunLookbackHours'],
        () => brokenTenant(rng),
      ),
    }));
    await expectHostileRun('tenantsAdd', tenantsAdd, all);
  });

  it("POST /api/tenants refuses a credential naming one of the relay's own secrets (issue 10, finding 6)", async () => {
    const partner = stage.world.tenants.find((t) => t.context === 'partner')!;
    // The webhook HMAC key and the relay API secret (named in its settings), a tenant's push key (named
    // in the webhook access file), a destination's HMAC key (named in the routes), in Key Vault's
    // case-insensitive spelling too; as a new tenant and as a replacement of a registered one.
    const pushKeys = stage.world.tenants
      .map((t) => t.pushKey.secretName)
      .filter((name) => name !== WEBHOOK_HMAC_SECRET_NAME);
    expect(pushKeys.length).toBeGreaterThan(0);
    const own = [
      WEBHOOK_HMAC_SECRET_NAME,
      RELAY_API_SECRET_NAME,
      ...pushKeys,
      SIEM_HMAC_SECRET_NAME,
      WEBHOOK_HMAC_SECRET_NAME.toUpperCase(),
    ];
    const all: HostileCase[] = own.flatMap((secretName) =>
      (['secret', 'certificate'] as const).flatMap((kind) =>
        [randomUUID(), partner.tenantId].map((tenantId) => ({
          note: `credential naming the relay's own secret ${secretName}`,
          method: 'POST',
          path: '/api/tenants',
          headers: { 'content-type': 'application/json' },
          body: {
            string: JSON.stringify({
              tenantId,
              displayName: 'Contoso Pharma',
              context: 'partner',
              clientId: partner.clientId,
              credential: { kind, secretName },
            }),
          },
        })),
      ),
    );
    await expectHostileRun('tenantsAdd naming relay secrets', tenantsAdd, all, (status) => status === 400);
    for (const c of all.filter((_, i) => i % 4 === 0)) {
      const answer = await stage.call(tenantsAdd, c);
      const secretName = (JSON.parse((c.body as { string: string }).string) as { credential: { secretName: string } })
        .credential.secretName;
      expect(answer.status).toBe(400);
      expect(answer.text).toContain(secretName);
      expect(answer.text).toContain(`'${secretName}' is the relay's own secret (named by `);
    }
  });

  it('PATCH /api/tenants/{tenantId} (tenantUpdate)', async () => {
    const all = cases(SEED + 2, (rng) => {
      const known = rng.chance(0.3);
      return {
        note: known ? 'unknown GUID, fuzzed patch' : 'hostile id, fuzzed patch',
        method: 'PATCH',
        path: '/api/tenants/x',
        params: { tenantId: known ? randomUUID() : routeId(rng) },
        headers: junkHeaders(rng),
        body: body(rng, ['enabled', 'displayName', 'firstRunLookbackHours', 'tenantId', 'credential'], () => ({
          enabled: rng.pick([true, 'false', 0, null]),
          [rng.pick(POLLUTING_KEYS)]: { enabled: false },
        })),
      };
    });
    await expectHostileRun('tenantUpdate', tenantUpdate, all);
  });

  for (const [name, handler, method, suffix] of [
    ['tenantGet', tenantGet, 'GET', ''],
    ['tenantCheck', tenantCheck, 'GET', '/check'],
    ['tenantConsentLink', tenantConsentLink, 'GET', '/consent-link'],
    ['tenantRemove', tenantRemove, 'DELETE', ''],
    ['requestTenantPoll', requestTenantPoll, 'POST', '/poll'],
  ] as const) {
    it(`${method} /api/tenants/{tenantId}${suffix} (${name})`, async () => {
      const all = cases(SEED + name.length * 31, (rng) => ({
        note: 'hostile route id',
        method,
        path: `/api/tenants/x${suffix}`,
        params: { tenantId: routeId(rng) },
        headers: junkHeaders(rng),
        body: rng.chance(0.3) ? body(rng, ['tenantId']) : undefined,
      }));
      await expectHostileRun(name, handler, all);
    });
  }

  it('POST /api/replay (replayIncidents)', async () => {
    const fields = ['source', 'tenantId', 'reasonContains', 'max'];
    const all = cases(SEED + 3, (rng) => ({
      note: 'replay filter',
      method: 'POST',
      path: '/api/replay',
      headers: junkHeaders(rng),
      body: body(rng, fields, () => ({
        source: rng.pick(['deadletter', 'poison', 'all']),
        max: rng.pick([0, -1, 10_001, 1.5, '5']),
        tenantId: bentGuid(rng),
      })),
    }));
    // A body that happens to be a valid filter is a legitimate replay (of nothing: the dead-letter queues are empty).
    const validFilter = (c: HostileCase) => {
      if (!c.body || !('string' in c.body)) return false;
      try {
        return replayRequestSchema.safeParse(c.body.string.trim() ? JSON.parse(c.body.string) : {}).success;
      } catch {
        return false;
      }
    };
    const statuses = await expectHostileRun('replayIncidents', replayIncidents, all, (status, c) =>
      validFilter(c) ? status === 200 : is4xx(status),
    );
    expect(statuses[400]).toBeGreaterThan(REQUESTS * 0.8);
  });

  // These two read no input: hostile headers, queries and bodies change nothing in their answer.
  for (const [name, handler, path] of [
    ['tenantsList', tenantsList, '/api/tenants'],
    ['health', health, '/api/health'],
  ] as const) {
    it(`GET ${path} (${name}) ignores whatever it is sent`, async () => {
      const all = cases(SEED + 4 + name.length, (rng) => ({
        note: 'junk headers, query and body',
        method: 'GET',
        path: `${path}?${queryPart(hostileString(rng).slice(0, 300))}=${queryPart(hostileString(rng).slice(0, 300))}`,
        headers: junkHeaders(rng),
        body: rng.chance(0.5) ? body(rng, ['x']) : undefined,
      }));
      await expectHostileRun(name, handler, all, (status) => status === 200);
    });
  }
});
