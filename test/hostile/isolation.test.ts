import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvocationContext, type HttpResponseInit } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateIncidents } from '../../local/defender/generator.js';
import { RELAY_SUBMIT_ROLE } from '../../local/demo.js';
import { demoWebhookAccess } from '../../local/stack.js';
import { loadConfig } from '../../shared/config/config.js';
import { handleIncidentEvent, enrichDependencies } from '../../shared/enrich/enrich-handler.js';
import { envelopeFor, type IncidentEnvelope } from '../../shared/messages/events.js';
import { QUEUE_NAMES } from '../../shared/storage/queues.js';
import { createServices, type Services } from '../../shared/services.js';
import { pushIncidents, webhookPushDeps } from '../../shared/api/webhook-push.js';
import { pushSignatureHeader } from '../../shared/api/webhook-signature.js';
import { drainQueue } from '../support/queues.js';
import { Rng } from './fuzz.js';
import { generatedRequests, HostileStage, type Handler, type HostileCase } from './harness.js';
import { deliveredRequest } from '../support/host-request.js';

/**
 * Tenant isolation (issue 10): every caller pushes for the tenants granted to it and no other; a
 * signature is good for one request to one tenant; a caller without a valid credential learns nothing
 * about which tenants are allowed; a structure too deep or wide is refused at the door, never a 5xx,
 * never a crash downstream. Generated requests, counted and printed.
 */
const REQUESTS = generatedRequests(600);
const SEED = 0x150_1a7e;

describe('hostile input: tenant isolation of pushes, and structures built to overflow the stack', () => {
  let stage: HostileStage;
  /** The app's services with every demo customer (and the MSSP) allowed to push for itself: the setup of finding 1. */
  let services: Services;
  let handler: Handler;
  const tenants = () => {
    const fabrikam = stage.world.tenants.find((t) => t.context === 'application')!.tenantId;
    const northwind = stage.world.tenants.find((t) => t.context === 'partner')!.tenantId;
    return { fabrikam, northwind, provider: stage.world.provider.tenantId };
  };

  interface Caller {
    name: string;
    tenantId: string;
    token: string;
    /** The tenants this caller may push for. */
    granted: string[];
  }
  const callers: Caller[] = [];

  beforeAll(async () => {
    stage = await HostileStage.start();
    const { fabrikam, northwind, provider } = tenants();
    const accessFile = join(mkdtempSync(join(tmpdir(), 'relay-isolation-')), 'webhook-access.json');
    writeFileSync(accessFile, JSON.stringify(demoWebhookAccess(stage.world)));
    services = createServices(
      loadConfig({
        ...stage.settings,
        WEBHOOK_ALLOWED_TENANT_IDS: [provider, fabrikam, northwind].join(','),
        WEBHOOK_ACCESS_FILE: accessFile,
      }),
    );
    handler = (request, context) =>
      pushIncidents(request, webhookPushDeps(services, context)) as Promise<HttpResponseInit>;

    const mint = async (name: string, tenantId: string, clientId: string, granted: string[]) => {
      const { token } = await stage.standIns.entra.issuer.issueAccessToken({
        tenantId,
        audience: stage.world.relayApi.clientId,
        clientId,
        objectId: randomUUID(),
        roles: [RELAY_SUBMIT_ROLE],
        version: 2,
      });
      callers.push({ name, tenantId, token: stage.remember(`token: ${name}`, token), granted });
    };
    await mint("Fabrikam's own app", fabrikam, randomUUID(), [fabrikam]);
    await mint("Northwind's own app", northwind, randomUUID(), [northwind]);
    // The MSSP's automation identity: the access file grants it every customer.
    await mint('MSSP automation (granted both)', provider, stage.world.webhookClient.clientId, [
      fabrikam,
      northwind,
      provider,
    ]);
    await mint('another MSSP app (no grant)', provider, randomUUID(), [provider]);
  }, 60_000);
  afterAll(async () => {
    await stage?.stop();
  });

  const incidentBody = (tenantId: string, seed: string) =>
    JSON.stringify(generateIncidents({ tenantId, count: 1, seed, since: new Date(Date.now() - 86_400_000) }));

  function pushCase(
    note: string,
    target: string | undefined,
    headers: Record<string, string>,
    body: string,
  ): HostileCase {
    return {
      note,
      method: 'POST',
      path: `/api/incidents${target === undefined ? '' : `?tenantId=${target}`}`,
      headers: { 'content-type': 'application/json', ...headers },
      body: { string: body },
    };
  }

  it('no caller pushes for a tenant it is not granted: generated pushes, 0 cross-tenant acceptances, 0 5xx (findings 1 and 3)', async () => {
    const rng = new Rng(SEED);
    const { fabrikam, northwind, provider } = tenants();
    const targets = [fabrikam, northwind, provider, randomUUID(), undefined];
    const hmacKey = stage.world.webhookHmacKey;
    type Planned = { c: HostileCase; grantedTo: string | null };
    const planned: Planned[] = Array.from({ length: REQUESTS }, (_, i): Planned => {
      const target = rng.pick(targets);
      const body = incidentBody(target ?? provider, `iso-${i}`);
      if (rng.chance(0.7)) {
        const caller = rng.pick(callers);
        const effective = target ?? caller.tenantId;
        return {
          c: pushCase(
            `${caller.name} → ${target ?? '(own tenant)'}`,
            target,
            { authorization: `Bearer ${caller.token}` },
            body,
          ),
          grantedTo: caller.granted.includes(effective) ? effective : null,
        };
      }
      // HMAC: the demo key belongs to Fabrikam alone. A signature is for one tenant: moved to another tenant's query, it is refused.
      const signedFor = rng.pick([fabrikam, northwind, provider]);
      const sentTo = rng.chance(0.5) ? signedFor : rng.pick([fabrikam, northwind, provider]);
      const header = stage.remember(
        `signature ${i}`,
        pushSignatureHeader(hmacKey, { tenantId: signedFor, method: 'POST', path: '/api/incidents' }, body),
      );
      return {
        c: pushCase(`HMAC signed for ${signedFor}, sent for ${sentTo}`, sentTo, { 'x-relay-signature': header }, body),
        grantedTo: signedFor === sentTo && signedFor === fabrikam ? fabrikam : null,
      };
    });

    let crossTenantAcceptances = 0;
    let serverErrors = 0;
    let accepted = 0;
    const refusedStatuses: Record<number, number> = {};
    const expectedTenants: string[] = [];
    for (const { c, grantedTo } of planned) {
      const answer = await stage.call(handler, c);
      if (answer.status >= 500) serverErrors += 1;
      if (answer.status === 202) {
        accepted += 1;
        if (grantedTo === null) crossTenantAcceptances += 1;
        else expectedTenants.push(grantedTo);
      } else {
        refusedStatuses[answer.status] = (refusedStatuses[answer.status] ?? 0) + 1;
        // A granted push is refused only for a tenant the relay does not read (404: the MSSP's own, or unknown).
        if (grantedTo !== null) expect([404], `${c.note}: ${answer.text.slice(0, 300)}`).toContain(answer.status);
      }
    }
    const events = (await drainQueue(stage.queues, QUEUE_NAMES.incidents)) as IncidentEnvelope[];
    process.stdout.write(
      `isolation: ${planned.length} generated pushes, ${accepted} accepted (each for a granted tenant), refused ${JSON.stringify(refusedStatuses)}, cross-tenant acceptances ${crossTenantAcceptances}, 5xx ${serverErrors}\n`,
    );
    expect(crossTenantAcceptances).toBe(0);
    expect(serverErrors).toBe(0);
    expect(accepted).toBeGreaterThan(REQUESTS / 12);
    // What reached the queue is exactly what was accepted, each event under the tenant its caller was granted.
    expect(events.map((e) => e.tenantId).sort()).toEqual(expectedTenants.filter((t) => t !== provider).sort());
    expect(refusedStatuses[403]).toBeGreaterThan(0);
    expect(refusedStatuses[401]).toBeGreaterThan(0);
  }, 120_000);

  it('a signature refused for one tenant is not accepted for another (finding 3)', async () => {
    const { fabrikam, northwind } = tenants();
    const disabled = randomUUID();
    await services.registry.put({
      tenantId: disabled,
      displayName: 'Paused Ltd',
      context: 'partner',
      clientId: randomUUID(),
      credential: { kind: 'secret', secretName: 'unused' },
      enabled: false,
    });
    const body = incidentBody(fabrikam, 'captured');
    // Captured on its way to a tenant it was not granted for: refused, and so never remembered as used.
    const captured = pushSignatureHeader(
      stage.world.webhookHmacKey,
      { tenantId: disabled, method: 'POST', path: '/api/incidents' },
      body,
    );
    stage.remember('captured signature', captured);
    for (const target of [disabled, fabrikam, northwind]) {
      const answer = await stage.call(
        handler,
        pushCase('captured signature, another tenant', target, { 'x-relay-signature': captured }, body),
      );
      expect(answer.status, `sent for ${target}`).toBe(401);
    }
    // Nor for another path: the request line is signed too.
    const forIncidents = pushSignatureHeader(
      stage.world.webhookHmacKey,
      { tenantId: fabrikam, method: 'POST', path: '/api/tenants' },
      body,
    );
    expect(
      (
        await stage.call(
          handler,
          pushCase('signed for another path', fabrikam, { 'x-relay-signature': forIncidents }, body),
        )
      ).status,
    ).toBe(401);
    expect(await drainQueue(stage.queues, QUEUE_NAMES.incidents)).toEqual([]);
  });

  it('a caller without a valid credential gets one answer whichever tenant it names (finding 5)', async () => {
    const { fabrikam, northwind, provider } = tenants();
    const named = [provider, fabrikam, northwind, ...Array.from({ length: 20 }, () => randomUUID())];
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const answers = new Set<string>();
    const hmacAnswers = new Set<string>();
    for (const tenantId of named) {
      const claims = {
        tid: tenantId,
        aud: stage.world.relayApi.clientId,
        iss: `${stage.standIns.entra.url}/${tenantId}/v2.0`,
        roles: [RELAY_SUBMIT_ROLE],
        exp: Math.floor(Date.now() / 1000) + 3600,
      };
      for (const token of [
        `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`,
        `${b64({ alg: 'RS256', kid: 'x' })}.${b64(claims)}.${b64('forged')}`,
      ]) {
        const answer = await stage.call(
          handler,
          pushCase('unverified token', tenantId, { authorization: `Bearer ${token}` }, incidentBody(tenantId, 'probe')),
        );
        answers.add(`${answer.status} ${answer.text}`);
      }
      const body = incidentBody(tenantId, 'probe');
      const wrongKey = pushSignatureHeader('not the key', { tenantId, method: 'POST', path: '/api/incidents' }, body);
      const answer = await stage.call(
        handler,
        pushCase('signature with a wrong key', tenantId, { 'x-relay-signature': wrongKey }, body),
      );
      hmacAnswers.add(`${answer.status} ${answer.text}`);
    }
    expect([...answers]).toHaveLength(1);
    expect([...answers][0]).toMatch(/^401 .*not valid for this API/);
    expect([...hmacAnswers]).toHaveLength(1);
    expect([...hmacAnswers][0]).toMatch(/^401 .*not valid for this request/);
  });

  /** An incident for Fabrikam with `nested` inside an alert's entity. */
  function incidentWith(nested: string): string {
    const [incident] = JSON.parse(incidentBody(tenants().fabrikam, 'deep')) as Record<string, unknown>[];
    const text = JSON.stringify({
      ...incident,
      alerts: [{ alertId: 'deep-1', entities: [{ entityType: 'File', nested: '__NESTED__' }] }],
    });
    return text.replace('"__NESTED__"', nested);
  }

  it('refuses structures built to overflow the stack with 400 and the path, never a 5xx (finding 2)', async () => {
    const automation = callers.find((c) => c.name.startsWith('MSSP automation'))!;
    const { fabrikam } = tenants();
    const bodies: [string, string][] = [
      ...[40, 3_000, 4_000, 5_000, 100_000].map((depth): [string, string] => [
        `${depth}-deep array`,
        incidentWith(`${'['.repeat(depth)}${']'.repeat(depth)}`),
      ]),
      ['5,000-deep object', incidentWith(`${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`)],
      ['an array of 20,000 items', incidentWith(`[${Array(20_000).fill('0').join(',')}]`)],
      ['an object of 2,000 keys', incidentWith(`{${Array.from({ length: 2_000 }, (_, i) => `"k${i}":0`).join(',')}}`)],
      [
        'a batch whose second incident is deep',
        `[${incidentWith('1')},${incidentWith(`${'['.repeat(5_000)}${']'.repeat(5_000)}`)}]`,
      ],
    ];
    const statuses: Record<number, number> = {};
    for (const [what, body] of bodies) {
      const credentials: Record<string, string>[] = [
        { authorization: `Bearer ${automation.token}` },
        {
          'x-relay-signature': stage.remember(
            `sig ${what}`,
            pushSignatureHeader(
              stage.world.webhookHmacKey,
              { tenantId: fabrikam, method: 'POST', path: '/api/incidents' },
              body,
            ),
          ),
        },
      ];
      for (const headers of credentials) {
        const answer = await stage.call(handler, pushCase(what, fabrikam, headers, body));
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        expect(answer.status, `${what}: ${answer.text.slice(0, 300)}`).toBe(400);
        const { errors } = JSON.parse(answer.text.split('\n')[0]!) as {
          errors: { index: number; path: string; message: string }[];
        };
        expect(errors[0]!.path, what).toMatch(/^alerts\.0\.entities\.0\.nested/);
        expect(errors[0]!.message, what).toMatch(
          /nested deeper than 32 levels|at most 10000 per array|at most 1000 per object/,
        );
      }
    }
    process.stdout.write(
      `isolation: ${bodies.length * 2} pushes of deep or wide structures, answers ${JSON.stringify(statuses)}\n`,
    );
    expect(await drainQueue(stage.queues, QUEUE_NAMES.incidents)).toEqual([]);
  });

  it('the enricher dead-letters a message too deep with its event id and reason, instead of failing it into poison (finding 2)', async () => {
    const { fabrikam } = tenants();
    const [incident] = generateIncidents({ tenantId: fabrikam, count: 1, seed: 'deep-queue' });
    const envelope = envelopeFor(fabrikam, incident!, 'webhook');
    let deep: unknown = 1;
    for (let i = 0; i < 1_000; i++) deep = [deep];
    const message = {
      ...envelope,
      incident: { ...envelope.incident, alerts: [{ alertId: 'a', entities: [{ entityType: 'File', nested: deep }] }] },
    };
    const lines: string[] = [];
    const context = new InvocationContext({
      functionName: 'enrichIncident',
      logHandler: (_level, ...args) => void lines.push(args.join(' ')),
    });
    const outcome = await handleIncidentEvent(message, enrichDependencies(services), context, { dequeueCount: 1 });
    expect(outcome).toMatchObject({
      status: 'dead-lettered',
      eventId: envelope.eventId,
      reason: expect.stringContaining('nested deeper than 36 levels'),
    });
    expect(
      lines.some(
        (l) =>
          l.includes(envelope.eventId) &&
          l.includes('dead-lettered') &&
          l.includes('structure: incident.alerts.0.entities.0.nested'),
      ),
    ).toBe(true);
    const [dead] = (await drainQueue(stage.queues, 'incidents-deadletter')) as { message: Record<string, unknown> }[];
    expect(dead!.message).toMatchObject({ eventId: envelope.eventId, tenantId: fabrikam });
    expect(dead!.message.incident).toBeUndefined();
  });

  it('answers the push of an ordinary incident by the MSSP automation (the grant works)', async () => {
    const automation = callers.find((c) => c.name.startsWith('MSSP automation'))!;
    const request = deliveredRequest({
      method: 'POST',
      url: `http://localhost:7071/api/incidents?tenantId=${tenants().northwind}`,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${automation.token}` },
      body: { string: incidentBody(tenants().northwind, 'ok') },
    });
    const response = await handler(request, new InvocationContext({ functionName: 'push' }));
    expect(response.status).toBe(202);
    const events = (await drainQueue(stage.queues, QUEUE_NAMES.incidents)) as IncidentEnvelope[];
    expect(events.map((e) => e.tenantId)).toEqual([tenants().northwind]);
  });
});
