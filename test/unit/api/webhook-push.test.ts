import { describe, expect, it } from 'vitest';
import type { EntraPrincipal } from '../../../shared/api/entra-token.js';
import type { IncidentEnvelope } from '../../../shared/messages/events.js';
import { QUEUE_NAMES } from '../../../shared/storage/queues.js';
import { TenantNotFoundError, type Tenant } from '../../../shared/tenants/tenants.js';
import { WebhookAuthenticator } from '../../../shared/api/webhook-auth.js';
import { parseWebhookAccess, WebhookAccess } from '../../../shared/api/webhook-access.js';
import { pushIncidents, type PushResponse, type WebhookPushDeps } from '../../../shared/api/webhook-push.js';
import { pushSignatureHeader } from '../../../shared/api/webhook-signature.js';
import { deliveredRequest } from '../../support/host-request.js';

/**
 * POST /api/incidents with the relay's own authenticator and in-memory stand-ins for what lies
 * behind it (the token validator, Key Vault, the replay guard, the tenant registry and the
 * `incidents` queue): what a caller is answered, what the operator's log line says, and what reaches
 * the queue. test/integration/api/webhook.test.ts drives the same handler against Entra ID, Key Vault and
 * Storage stand-ins.
 */
const FABRIKAM = '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f';
const APP_ID = '3b5f0c2e-8d4a-4e6f-9b1c-7a2d5e8f0c3b';
const HMAC_KEY = 'fabrikam push key';
/** When the pushes arrive (the relay's clock). */
const RECEIVED = Date.parse('2025-03-01T12:00:00Z');

const incident = (incidentId: number) => ({
  incidentId,
  createdTime: '2025-03-01T11:58:12.0733333Z',
  lastUpdateTime: '2025-03-01T11:59:57.29Z',
  status: 'Active',
  severity: 'Medium',
});
const eventIdOf = (incidentId: number, tenantId = FABRIKAM) => `${tenantId}:${incidentId}:2025-03-01T11:59:57.2900000Z`;

/**
 * The `incidents` queue: keeps the JSON of what it is sent (refusing what is not JSON, as the app's
 * sender does), each send taking a turn of the event loop as Storage does; `failing` refuses the sends
 * of those incidents. Counts the sends in flight.
 */
class Queue {
  readonly messages: IncidentEnvelope[] = [];
  /** Each send asked for, in order, and whether one had failed by then. */
  readonly started: { afterAFailure: boolean }[] = [];
  inFlight = 0;
  mostInFlight = 0;
  #failed = false;
  constructor(readonly failing: ReadonlySet<number> = new Set()) {}

  sendEvent = async (queue: string, envelope: IncidentEnvelope): Promise<{ claimChecked: boolean }> => {
    this.started.push({ afterAFailure: this.#failed });
    expect(queue).toBe(QUEUE_NAMES.incidents);
    const message = JSON.parse(JSON.stringify(envelope)) as IncidentEnvelope;
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      if (this.failing.has(message.incidentId)) {
        this.#failed = true;
        throw Object.assign(new Error('Server busy'), { statusCode: 503 });
      }
      this.messages.push(message);
      return { claimChecked: false };
    } finally {
      this.inFlight -= 1;
    }
  };
}

function relay(sender: Queue = new Queue()) {
  const logs: string[] = [];
  const principal: EntraPrincipal = {
    tenantId: FABRIKAM,
    clientId: APP_ID,
    version: 2,
    roles: ['Incidents.Submit'],
    scopes: [],
    token: 'eyJ.app.token',
    claims: { tid: FABRIKAM, azp: APP_ID },
  };
  const parsed = parseWebhookAccess({
    hmacKeys: [{ name: 'fabrikam-siem', secretName: 'fabrikam-push-hmac-key', mayPushFor: [FABRIKAM] }],
  });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  // Fabrikam's own tokens push for Fabrikam (WEBHOOK_ALLOWED_TENANT_IDS).
  const access = new WebhookAccess(parsed.access, [FABRIKAM]);
  const remembered = new Set<string>();
  const hex = (signature: Uint8Array) => Buffer.from(signature).toString('hex');
  const deps: WebhookPushDeps = {
    webhook: {
      allowedTenantIds: [FABRIKAM],
      requiredRole: 'Incidents.Submit',
      hmacToleranceSeconds: 300,
      maxBodyBytes: 1_048_576,
    },
    auth: new WebhookAuthenticator({
      tokens: { validate: async () => principal },
      requiredRole: 'Incidents.Submit',
      access: () => access,
      hmac: { keys: { get: async () => HMAC_KEY, refresh: async () => HMAC_KEY }, toleranceSeconds: 300 },
      now: () => RECEIVED,
    }),
    replayGuard: {
      remember: async (signature) => {
        if (remembered.has(hex(signature))) return false;
        remembered.add(hex(signature));
        return true;
      },
      forget: async (signature) => void remembered.delete(hex(signature)),
      pruneExpired: async () => 0,
    },
    // As the Table storage registry: tenant ids are looked up in lower case.
    registry: {
      get: async (tenantId) => {
        if (tenantId.toLowerCase() !== FABRIKAM) throw new TenantNotFoundError(tenantId);
        return { tenantId: FABRIKAM, displayName: 'Fabrikam', enabled: true } as Tenant;
      },
    },
    sender,
    logger: { info: (line) => logs.push(line), warn: (line) => logs.push(line), error: (line) => logs.push(line) },
    now: () => new Date(RECEIVED),
  };
  return { deps, logs, sender };
}

interface Push {
  body: unknown;
  /** The raw `tenantId` query value (encoded here); none when undefined. */
  tenantId?: string;
  /** Sign with the Fabrikam key over this tenant id (the lower-case GUID, as the README says); else send the app's token. */
  signFor?: string;
  contentType?: string;
}

function push(
  { body, tenantId, signFor, contentType = 'application/json' }: Push,
  deps: WebhookPushDeps,
): Promise<PushResponse> {
  const bytes = Buffer.from(JSON.stringify(body));
  const credential: Record<string, string> = signFor
    ? {
        'x-relay-signature': pushSignatureHeader(
          HMAC_KEY,
          { tenantId: signFor, method: 'POST', path: '/api/incidents' },
          bytes,
          Math.floor(RECEIVED / 1000),
        ),
      }
    : { authorization: 'Bearer eyJ.app.token' };
  const url = `https://relay.example/api/incidents${tenantId === undefined ? '' : `?tenantId=${encodeURIComponent(tenantId)}`}`;
  return pushIncidents(
    deliveredRequest({ method: 'POST', url, headers: { 'content-type': contentType, ...credential }, body: { bytes } }),
    deps,
  );
}

describe('webhook push: answers, log lines and queue (in-memory stand-ins)', () => {
  it('answers an accepted push 202 with Cache-Control: no-store, as it answers a refused one', async () => {
    const { deps } = relay();
    const accepted = await push({ body: incident(1) }, deps);
    expect(accepted).toEqual({
      status: 202,
      jsonBody: { tenantId: FABRIKAM, accepted: 1, eventIds: [eventIdOf(1)] },
      headers: { 'Cache-Control': 'no-store' },
    });
    const refused = await push({ body: incident(1), contentType: 'text/plain' }, deps);
    expect(refused.status).toBe(415);
    expect(refused.headers).toEqual({ 'Cache-Control': 'no-store' });
  });

  it('stamps every event of a push with the time the relay received it', async () => {
    const { deps, sender } = relay();
    expect((await push({ body: [incident(1), incident(2), incident(3)] }, deps)).status).toBe(202);
    expect(sender.messages.map((m) => m.receivedAt)).toEqual(Array(3).fill('2025-03-01T12:00:00.000Z'));
  });

  it.each([
    ['in upper case', FABRIKAM.toUpperCase()],
    ['with spaces around it', ` ${FABRIKAM} `],
    ['in upper case with a tab after it', `${FABRIKAM.toUpperCase()}\t`],
  ])(
    'takes a tenantId query parameter %s as the tenant: events carry the lower-case GUID (the ids the poller gives the same incidents)',
    async (_how, tenantId) => {
      for (const signFor of [undefined, FABRIKAM]) {
        const { deps, sender } = relay();
        const response = await push({ body: incident(7), tenantId, signFor }, deps);
        expect(response.jsonBody, signFor ? 'signed' : 'token').toEqual({
          tenantId: FABRIKAM,
          accepted: 1,
          eventIds: [eventIdOf(7)],
        });
        expect(sender.messages).toEqual([expect.objectContaining({ tenantId: FABRIKAM, eventId: eventIdOf(7) })]);
      }
    },
  );

  it('logs a signed request refused before its signature is checked as an HMAC caller’s', async () => {
    const { deps, logs } = relay();
    const response = await push(
      { body: incident(1), tenantId: FABRIKAM, signFor: FABRIKAM, contentType: 'text/plain' },
      deps,
    );
    expect(response.status).toBe(415);
    expect(logs).toEqual([
      `webhook push: tenant=- caller=hmac incidents=- outcome=415 Content-Type must be application/json (UTF-8); got 'text/plain'`,
    ]);
  });

  it('enqueues each incident version once, and nothing else', async () => {
    const { deps, sender } = relay();
    const batch = [incident(1), incident(2), incident(3), incident(2)];
    expect(await push({ body: batch, tenantId: FABRIKAM, signFor: FABRIKAM }, deps)).toMatchObject({
      status: 202,
      jsonBody: { accepted: 3 },
    });
    expect(sender.messages).toEqual(
      [1, 2, 3].map((id) => expect.objectContaining({ eventId: eventIdOf(id), incident: incident(id) })),
    );
    // One send asked of Storage per event.
    expect(sender.started).toHaveLength(3);
  });

  it('sends a full batch (100 incidents) a few at a time: several in flight, never the whole batch', async () => {
    const { deps, sender } = relay();
    const batch = Array.from({ length: 100 }, (_, i) => incident(i + 1));
    expect(await push({ body: batch }, deps)).toMatchObject({ status: 202, jsonBody: { accepted: 100 } });
    expect(sender.messages).toHaveLength(100);
    expect(sender.mostInFlight).toBeGreaterThan(1);
    // SEND_CONCURRENCY
    expect(sender.mostInFlight).toBeLessThanOrEqual(8);
  });

  it('starts no send once Storage has refused one: answers 503 with Retry-After, listing what went and what did not', async () => {
    const sender = new Queue(new Set([1]));
    const { deps, logs } = relay(sender);
    const batch = Array.from({ length: 30 }, (_, i) => incident(i + 1));
    const response = await push({ body: batch }, deps);
    expect(response.status).toBe(503);
    expect(response.headers).toEqual({ 'Cache-Control': 'no-store', 'Retry-After': '10' });
    expect(sender.started.filter((s) => s.afterAFailure)).toEqual([]);
    // Only the sends already in flight when the first failed went; the rest were never tried.
    const went = sender.messages.map((m) => m.eventId);
    expect(went.length).toBeLessThan(29);
    const body = response.jsonBody as { accepted: number; eventIds: string[]; notEnqueued: string[] };
    expect(body).toMatchObject({ accepted: went.length, eventIds: went });
    expect(body.notEnqueued).toEqual(batch.map((i) => eventIdOf(i.incidentId)).filter((id) => !went.includes(id)));
    expect(logs.at(-1)).toBe(
      `webhook push: tenant=${FABRIKAM} caller=${APP_ID} incidents=30 outcome=503 Storage did not take every incident (${went.length} of 30 enqueued): ` +
        'retry the whole request; incidents already enqueued are not delivered twice (Error HTTP 503: Server busy)',
    );
  });
});
