import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../../shared/config/config.js';
import {
  createDeliveryDeps,
  deliver,
  describeDestination,
  routedMessageFor,
  QueueDestinations,
  ROUTED_PAYLOADS_CONTAINER,
  type DeliveryDeps,
  type RoutedMessage,
} from '../../../shared/route/destinations/index.js';
import { PermanentError, RetryableError } from '../../../shared/errors.js';
import { envelopeFor, EVENT_SCHEMA } from '../../../shared/messages/events.js';
import { MessageSender, readClaimCheck } from '../../../shared/storage/queues.js';
import { loadRoutingRules, type RoutingTable } from '../../../shared/route/routing.js';
import { createServices, type Services } from '../../../shared/services.js';
import type { AddressLookup } from '../../../shared/route/ssrf.js';
import { startReceiver, withReceiverUrls, type RunningReceiver } from '../../../local/receiver.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

const unique = (prefix: string) => `${prefix}-${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const HMAC_SECRET_NAME = 'siem-hmac-key';
const TEAMS_URL_SECRET_NAME = 'teams-webhook-url';

let stand: TestStandIns;
let services: Services;
let siem: RunningReceiver;
let chat: RunningReceiver;
let hmacKey: string;
let table: RoutingTable;
let ownQueue: string;
let otherQueue: string;
let deps: DeliveryDeps;
const lookups: string[] = [];

/** The system resolver, recording which hosts were looked up. */
const recordingLookup: AddressLookup = async (host) => {
  lookups.push(host);
  const { lookup } = await import('node:dns/promises');
  return (await lookup(host, { all: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

function message(
  route = 'high-to-soc',
  destination = 'siem',
  incidentOverrides: Record<string, unknown> = {},
): RoutedMessage {
  const tenantId = stand.world.tenants[0]!.tenantId;
  const incident = {
    incidentId: 924565,
    incidentName: 'Multi-stage incident involving Credential access on one endpoint',
    lastUpdateTime: '2026-11-23T10:00:00.12Z',
    severity: 'High',
    status: 'Active',
    tags: ['VIP'],
    alerts: [
      {
        alertId: 'da637',
        serviceSource: 'MicrosoftDefenderForEndpoint',
        mitreTechniques: ['T1003.001'],
        devices: [{ deviceDnsName: 'ws-017.fabrikam.local', riskScore: 'High' }],
        entities: [
          { entityType: 'User', accountName: 'alice', domainName: 'FABRIKAM', userPrincipalName: 'alice@fabrikam.com' },
          { entityType: 'Ip', ipAddress: '203.0.113.7' },
        ],
      },
    ],
    ...incidentOverrides,
  };
  const envelope = envelopeFor(tenantId, incident, 'poll');
  const enrichment = {
    priority: 82,
    portalUrl: `https://security.microsoft.com/incidents/924565?tid=${tenantId}`,
    tenantDisplayName: 'Fabrikam',
    serviceSources: ['MicrosoftDefenderForEndpoint'],
    mitre: { techniques: ['T1003.001'], tactics: [{ id: 'TA0006', name: 'Credential Access' }] },
    categories: [],
    alertCount: 1,
  };
  return routedMessageFor(envelope, incident, enrichment, { name: route }, destination);
}

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the delivery to fail');
}

function decode(text: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(text, 'base64').toString('utf8')) as Record<string, unknown>;
}

beforeAll(async () => {
  stand = await startTestStandIns();
  services = createServices(loadConfig(stand.appSettings));
  hmacKey = randomUUID();
  await stand.keyVault.store.setSecret(HMAC_SECRET_NAME, hmacKey, { contentType: 'hmac-key' });
  const tls = inject('tls');
  siem = await startReceiver({ tls, hmacKey });
  chat = await startReceiver({ tls });
  await stand.keyVault.store.setSecret(TEAMS_URL_SECRET_NAME, `${chat.url}/webhookb2/SECRET-TEAMS-TOKEN`, {
    contentType: 'url',
  });
  ownQueue = unique('routed');
  otherQueue = unique('other');
  table = loadRoutingRules(
    {
      destinations: {
        'soc-queue': { type: 'queue', queueName: ownQueue },
        archive: { type: 'queue', queueName: otherQueue, accountUrl: 'https://archive.queue.core.windows.net' },
        siem: { type: 'webhook', url: `${siem.url}/ingest`, hmacSecretName: HMAC_SECRET_NAME },
        unsigned: { type: 'webhook', url: `${chat.url}/plain?code=SECRET-QUERY` },
        teams: { type: 'teams', url: `${chat.url}/webhookb2/SECRET-TEAMS-TOKEN` },
        'teams-kv': { type: 'teams', urlSecretName: TEAMS_URL_SECRET_NAME },
        slack: { type: 'slack', url: `${chat.url}/services/T000/B000/SECRET-SLACK-TOKEN` },
        nowhere: { type: 'drop' },
      },
      rules: [],
      defaultRoute: { destinations: ['nowhere'] },
    },
    { allowedHosts: ['localhost'] },
  );
  // The "other account" is the run's Azurite reached through a second client (Azurite has no identity auth).
  const cs = inject('storage').connectionString;
  const own = createDeliveryDeps(services);
  deps = {
    ...own,
    policy: { allowedHosts: ['localhost'], allowLoopback: true, timeoutMs: 2_000 },
    lookup: recordingLookup,
    queues: new QueueDestinations(services.sender, () => ({
      queues: QueueServiceClient.fromConnectionString(cs),
      blobs: async () => BlobServiceClient.fromConnectionString(cs),
    })),
  };
});

afterAll(async () => {
  await siem?.close();
  await chat?.close();
  await stand?.close();
});

beforeEach(() => {
  siem.setFailures(0);
  siem.setDelay(0);
  chat.setFailures(0);
  siem.requests.length = 0;
  chat.requests.length = 0;
  lookups.length = 0;
});

describe('queue destinations', () => {
  it('sends base64 JSON holding the envelope, the incident, the enrichment and the route', async () => {
    const routed = message('high-to-soc', 'soc-queue');
    expect(await deliver(table, 'soc-queue', routed, deps)).toMatchObject({
      destination: 'soc-queue',
      type: 'queue',
      outcome: 'delivered',
      claimChecked: false,
    });
    const [item] = (await services.storage.queues.getQueueClient(ownQueue).receiveMessages()).receivedMessageItems;
    const decoded = decode(item!.messageText);
    expect(decoded).toEqual(JSON.parse(JSON.stringify(routed)));
    expect(decoded).toMatchObject({
      schema: EVENT_SCHEMA,
      eventId: routed.eventId,
      incidentId: 924565,
      route: { name: 'high-to-soc', destination: 'soc-queue' },
    });
    expect((decoded.enrichment as { priority: number }).priority).toBe(82);
    expect((decoded.incident as { alerts: unknown[] }).alerts).toHaveLength(1);
  });

  it('claim-checks an incident too large for a message into routed-payloads', async () => {
    const alerts = Array.from({ length: 300 }, (_, i) => ({ alertId: `da${i}`, description: 'x'.repeat(300) }));
    const routed = message('high-to-soc', 'soc-queue', { alerts });
    expect(await deliver(table, 'soc-queue', routed, deps)).toMatchObject({ claimChecked: true });
    const items = (await services.storage.queues.getQueueClient(ownQueue).receiveMessages({ numberOfMessages: 32 }))
      .receivedMessageItems;
    const decoded = items.map((i) => decode(i.messageText)).find((m) => m.incidentRef !== undefined)!;
    expect(decoded.incident).toBeUndefined();
    expect(decoded.enrichment).toEqual(routed.enrichment);
    const { blobUrl } = decoded.incidentRef as { blobUrl: string };
    expect(blobUrl).toContain(`/${ROUTED_PAYLOADS_CONTAINER}/${ownQueue}/`);
    expect(await readClaimCheck(services.storage.blobs, blobUrl)).toEqual(routed.incident);
  });

  it("sends to another account's existing queue, and says so when the queue is missing", async () => {
    const missing = await failureOf(deliver(table, 'archive', message('r', 'archive'), deps));
    expect(missing).toBeInstanceOf(PermanentError);
    expect(missing.message).toContain(`The queue ${otherQueue} does not exist; create it in that account`);
    expect(missing.message).toContain('archive.queue.core.windows.net');
    const other = QueueServiceClient.fromConnectionString(inject('storage').connectionString).getQueueClient(
      otherQueue,
    );
    await other.create();
    await deliver(table, 'archive', message('r', 'archive'), deps);
    const [item] = (await other.receiveMessages()).receivedMessageItems;
    expect(decode(item!.messageText).route).toEqual({ name: 'r', destination: 'archive' });
  });

  it('a Storage outage is retryable', async () => {
    const down = new QueueServiceClient('http://127.0.0.1:9/devstoreaccount1', undefined, {
      retryOptions: { maxTries: 1 },
    });
    const outage = {
      ...deps,
      queues: new QueueDestinations(new MessageSender(down, services.storage.blobs), () => {
        throw new Error('unused');
      }),
    };
    const err = await failureOf(deliver(table, 'soc-queue', message('r', 'soc-queue'), outage));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toContain('Storage did not take the message');
  });
});

describe('webhook destinations', () => {
  it('posts the routed message signed with HMAC-SHA256 over "<t>.<body>", verifiable by the receiver', async () => {
    const routed = message();
    expect(await deliver(table, 'siem', routed, deps)).toMatchObject({
      destination: 'siem',
      type: 'webhook',
      outcome: 'delivered',
      status: 200,
    });
    expect(siem.requests).toHaveLength(1);
    const [request] = siem.requests;
    expect(request!.signatureValid).toBe(true);
    expect(request!.path).toBe('/ingest');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers['x-relay-event-id']).toBe(routed.eventId);
    expect(request!.headers['x-relay-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(request!.body).toEqual(JSON.parse(JSON.stringify(routed)));
  });

  it('a webhook without hmacSecretName is sent unsigned', async () => {
    await deliver(table, 'unsigned', message(), deps);
    expect(chat.requests[0]!.headers['x-relay-signature']).toBeUndefined();
  });

  it('fails twice with 500, then succeeds: retryable twice, then delivered', async () => {
    siem.setFailures(2, 500);
    const outcomes = [];
    for (let attempt = 0; attempt < 3; attempt++)
      outcomes.push(
        await deliver(table, 'siem', message(), deps).then(
          (r) => r.outcome,
          (err: Error) => err,
        ),
      );
    expect(outcomes[0]).toBeInstanceOf(RetryableError);
    expect(outcomes[1]).toBeInstanceOf(RetryableError);
    expect(outcomes[2]).toBe('delivered');
    expect((outcomes[0] as RetryableError).status).toBe(500);
    expect(siem.requests.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(siem.accepted()).toHaveLength(1);
  });

  it('fails forever: retryable every time, naming the destination and its host', async () => {
    siem.setFailures(Infinity, 503);
    for (let attempt = 0; attempt < 3; attempt++) {
      const err = await failureOf(deliver(table, 'siem', message(), deps));
      expect(err).toBeInstanceOf(RetryableError);
      expect(err.message).toMatch(
        /^The destination answered 503: .*\(tenant [0-9a-f-]+, deliver to destination "siem" \(host localhost:\d+\)\)$/,
      );
    }
    expect(siem.accepted()).toHaveLength(0);
  });

  it('429 is retryable and carries Retry-After', async () => {
    siem.setFailures(1, 429, { 'Retry-After': '30' });
    const err = await failureOf(deliver(table, 'siem', message(), deps));
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).retryAfterMs).toBe(30_000);
  });

  it('400 is permanent; so is a redirect, which is not followed', async () => {
    siem.setFailures(1, 400);
    const refused = await failureOf(deliver(table, 'siem', message(), deps));
    expect(refused).toBeInstanceOf(PermanentError);
    expect((refused as PermanentError).status).toBe(400);
    siem.setFailures(1, 302, { Location: 'https://169.254.169.254/latest/meta-data' });
    const redirected = await failureOf(deliver(table, 'siem', message(), deps));
    expect(redirected).toBeInstanceOf(PermanentError);
    expect(redirected.message).toContain(
      'answered a redirect (302 to host 169.254.169.254); redirects are not followed',
    );
    expect(siem.requests).toHaveLength(2);
  });

  it('a destination slower than the timeout is retryable', async () => {
    siem.setDelay(1_500);
    const started = Date.now();
    const err = await failureOf(
      deliver(table, 'siem', message(), { ...deps, policy: { ...deps.policy, timeoutMs: 300 } }),
    );
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toContain('did not answer within 300 ms');
    expect(Date.now() - started).toBeLessThan(1_400);
  });

  it('the timeout also covers an answer that starts but never finishes', async () => {
    siem.setDelay(1_500, { afterHeaders: true });
    const err = await failureOf(
      deliver(table, 'siem', message(), { ...deps, policy: { ...deps.policy, timeoutMs: 300 } }),
    );
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toContain('did not answer within 300 ms');
  });

  it('a host taken off the allow-list is refused at send time without DNS or any request', async () => {
    const err = await failureOf(
      deliver(table, 'siem', message(), { ...deps, policy: { ...deps.policy, allowedHosts: ['hooks.example.com'] } }),
    );
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as PermanentError).code).toBe('DestinationBlocked');
    expect(err.message).toContain('the host is not on DESTINATION_ALLOWED_HOSTS');
    expect(lookups).toEqual([]);
    expect(siem.requests).toHaveLength(0);
  });

  it('loopback is refused without DESTINATION_ALLOW_LOOPBACK, before any request', async () => {
    const err = await failureOf(
      deliver(table, 'siem', message(), { ...deps, policy: { ...deps.policy, allowLoopback: false } }),
    );
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toMatch(/refused: it resolves to (127\.0\.0\.1|::1), a loopback/);
    expect(lookups).toEqual(['localhost']);
    expect(siem.requests).toHaveLength(0);
  });

  it('a connection refused is retryable', async () => {
    const closed = await startReceiver({ tls: inject('tls') });
    await closed.close();
    const gone = loadRoutingRules(
      {
        destinations: { gone: { type: 'webhook', url: `${closed.url}/x` } },
        rules: [],
        defaultRoute: { destinations: ['gone'] },
      },
      { allowedHosts: ['localhost'] },
    );
    const err = await failureOf(deliver(gone, 'gone', message(), deps));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toContain('Could not reach the destination (ECONNREFUSED)');
  });

  it('an unknown destination is permanent', async () => {
    const err = await failureOf(deliver(table, 'pager', message(), deps));
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toContain('The routing rules name destination "pager", which (inline) does not define');
  });

  it('drop succeeds and sends nothing', async () => {
    expect(await deliver(table, 'nowhere', message(), deps)).toMatchObject({ outcome: 'dropped', type: 'drop' });
    expect(siem.requests.length + chat.requests.length).toBe(0);
  });

  it('describes destinations for log lines by name, type and host only', () => {
    expect(describeDestination(table, 'teams')).toMatch(/^teams \(teams → localhost:\d+\)$/);
    expect(describeDestination(table, 'teams-kv')).toBe(
      `teams-kv (teams → URL from Key Vault secret ${TEAMS_URL_SECRET_NAME})`,
    );
    expect(describeDestination(table, 'archive')).toBe(
      `archive (queue ${otherQueue} in archive.queue.core.windows.net)`,
    );
    expect(describeDestination(table, 'nowhere')).toBe('nowhere (drop)');
  });

  it('never puts a webhook URL path or query into an error', async () => {
    chat.setFailures(3, 500);
    for (const name of ['teams', 'slack', 'unsigned']) {
      const err = await failureOf(deliver(table, name, message(), deps));
      expect(err.message).not.toMatch(/SECRET/);
      expect(err.message).toMatch(new RegExp(`deliver to destination "${name}" \\(host localhost:\\d+\\)`));
    }
  });
});

describe('Teams and Slack messages', () => {
  it('Teams gets an Adaptive Card: title, facts and a button to the portal', async () => {
    const routed = message();
    await deliver(table, 'teams', routed, deps);
    const [request] = chat.requests;
    expect(request!.path).toBe('/webhookb2/SECRET-TEAMS-TOKEN');
    expect(request!.headers['x-relay-signature']).toBeUndefined();
    const body = request!.body as {
      type: string;
      attachments: { contentType: string; content: Record<string, unknown> }[];
    };
    expect(body.type).toBe('message');
    const card = body.attachments[0]!;
    expect(card.contentType).toBe('application/vnd.microsoft.card.adaptive');
    const content = card.content as {
      type: string;
      body: [{ text: string; color: string }, { facts: { title: string; value: string }[] }];
      actions: { type: string; url: string }[];
    };
    expect(content.type).toBe('AdaptiveCard');
    expect(content.body[0]).toMatchObject({
      text: '\\[High\\] Multi-stage incident involving Credential access on one endpoint \\(Fabrikam\\)',
      color: 'attention',
    });
    expect(Object.fromEntries(content.body[1].facts.map((f) => [f.title, f.value]))).toEqual({
      Priority: '82 / 100',
      Status: 'Active',
      Alerts: '1',
      'MITRE techniques': 'T1003.001',
      Devices: 'ws-017.fabrikam.local',
      Users: 'alice@fabrikam.com',
      Incident: '924565 \\(route high-to-soc\\)',
    });
    expect(content.actions).toEqual([
      { type: 'Action.OpenUrl', title: 'Open in Microsoft Defender', url: routed.enrichment.portalUrl },
    ]);
  });

  it('a Teams URL kept in Key Vault (urlSecretName) is read from there', async () => {
    await deliver(table, 'teams-kv', message(), deps);
    expect(chat.requests.map((r) => r.path)).toEqual(['/webhookb2/SECRET-TEAMS-TOKEN']);
  });

  it('Slack gets text plus Block Kit blocks with the same facts and a button', async () => {
    const routed = message();
    await deliver(table, 'slack', routed, deps);
    const body = chat.requests[0]!.body as {
      text: string;
      blocks: {
        type: string;
        text?: { text: string };
        fields?: { type: string; text: string }[];
        elements?: { type: string; url: string }[];
      }[];
    };
    expect(body.text).toBe('[High] Multi-stage incident involving Credential access on one endpoint (Fabrikam)');
    expect(body.blocks.map((b) => b.type)).toEqual(['header', 'section', 'actions']);
    expect(body.blocks[1]!.fields!.map((f) => f.text)).toEqual([
      'Priority: 82 / 100',
      'Status: Active',
      'Alerts: 1',
      'MITRE techniques: T1003.001',
      'Devices: ws-017.fabrikam.local',
      'Users: alice@fabrikam.com',
      'Incident: 924565 (route high-to-soc)',
    ]);
    expect(body.blocks[1]!.fields!.every((f) => f.type === 'plain_text')).toBe(true);
    expect(body.blocks[2]!.elements![0]).toMatchObject({ type: 'button', url: routed.enrichment.portalUrl });
  });

  it('lists a few devices and users, then how many more', async () => {
    const devices = Array.from({ length: 8 }, (_, i) => ({ deviceDnsName: `ws-${i}` }));
    await deliver(table, 'slack', message('r', 'slack', { alerts: [{ devices, entities: [] }] }), deps);
    const fields = (chat.requests[0]!.body as { blocks: { fields?: { text: string }[] }[] }).blocks[1]!.fields!.map(
      (f) => f.text,
    );
    expect(fields).toContain('Devices: ws-0, ws-1, ws-2, ws-3, ws-4 and 3 more');
    expect(fields).toContain('Users: none');
  });
});

describe('the demo routing file', () => {
  it('points its webhooks at local receivers and delivers there, signed', async () => {
    const template = JSON.parse(
      readFileSync(new URL('../../../local/demo-routes.json', import.meta.url), 'utf8'),
    ) as Parameters<typeof withReceiverUrls>[0];
    const demo = loadRoutingRules(withReceiverUrls(template, { siem: siem.url, teams: chat.url, slack: chat.url }), {
      allowedHosts: ['localhost'],
    });
    await deliver(demo, 'siem', message('high-to-soc', 'siem'), deps);
    await deliver(demo, 'teams', message('high-to-soc', 'teams'), deps);
    await deliver(demo, 'slack', message('northwind-credential-access', 'slack'), deps);
    expect(siem.requests.map((r) => [r.path, r.signatureValid, r.status])).toEqual([['/siem', true, 200]]);
    expect(chat.requests.map((r) => r.path)).toEqual(['/teams', '/slack']);
  });
});
