import type { BlobServiceClient } from '@azure/storage-blob';
import type { QueueServiceClient } from '@azure/storage-queue';
import { describe, expect, it } from 'vitest';
import { envelopeFor } from '../../../shared/messages/events.js';
import { MessageSender, readClaimCheck } from '../../../shared/storage/queues.js';

/**
 * The message sender against an in-memory stand-in for one storage account's queues and blobs: which
 * Storage requests it makes (creating a queue or container once, not per message, and never in an
 * account where it may only send), and that each claim-checked incident reads back as itself.
 * test/integration/ingest/checkpoints-and-queues.test.ts runs the same sender against Azurite.
 */
const ACCOUNT_URL = 'https://relaystore.blob.core.windows.net';

const refused = (statusCode: number, code: string) => Object.assign(new Error(code), { statusCode, code });

class Account {
  /** Each request, as `operation name`. */
  readonly requests: string[] = [];
  readonly queues = new Map<string, string[]>();
  readonly containers = new Map<string, Map<string, string>>();
  /** Creations refused, by `queue:name` or `container:name`: each entry refuses one. */
  readonly refuseCreate: Map<string, unknown[]> = new Map();

  constructor(existing: { queues?: string[]; containers?: string[] } = {}) {
    for (const q of existing.queues ?? []) this.queues.set(q, []);
    for (const c of existing.containers ?? []) this.containers.set(c, new Map());
  }

  #create(kind: 'queue' | 'container', name: string, create: () => void): Promise<unknown> {
    this.requests.push(`create ${kind} ${name}`);
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        const refusal = this.refuseCreate.get(`${kind}:${name}`)?.shift();
        if (refusal) return reject(refusal);
        create();
        resolve({ succeeded: true });
      }),
    );
  }

  readonly queueService = {
    getQueueClient: (name: string) => ({
      createIfNotExists: () =>
        this.#create('queue', name, () => void (this.queues.has(name) || this.queues.set(name, []))),
      sendMessage: async (text: string) => {
        this.requests.push(`send ${name}`);
        await new Promise((resolve) => setImmediate(resolve));
        const queue = this.queues.get(name);
        if (!queue) throw refused(404, 'QueueNotFound');
        queue.push(text);
        return {};
      },
    }),
  } as unknown as QueueServiceClient;

  readonly blobService = {
    url: ACCOUNT_URL,
    getContainerClient: (container: string) => ({
      createIfNotExists: () =>
        this.#create(
          'container',
          container,
          () => void (this.containers.has(container) || this.containers.set(container, new Map())),
        ),
      getBlockBlobClient: (blobName: string) => ({
        url: `${ACCOUNT_URL}/${container}/${blobName.split('/').map(encodeURIComponent).join('/')}`,
        upload: async (body: string) => {
          this.requests.push(`upload ${container}`);
          const blobs = this.containers.get(container);
          if (!blobs) throw refused(404, 'ContainerNotFound');
          blobs.set(blobName, body);
          return {};
        },
      }),
      getBlobClient: (blobName: string) => ({
        downloadToBuffer: async () => Buffer.from(this.containers.get(container)!.get(blobName)!, 'utf8'),
      }),
    }),
  } as unknown as BlobServiceClient;

  /** The messages on a queue, decoded. */
  messages(queue: string): Record<string, unknown>[] {
    return (this.queues.get(queue) ?? []).map(
      (text) => JSON.parse(Buffer.from(text, 'base64').toString('utf8')) as Record<string, unknown>,
    );
  }
}

const TENANTS = ['0b7d3c1e-4f5a-4e2b-9c8d-1a2b3c4d5e6f', '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f'];
/** An incident too large for a queue message. */
const bigIncident = (incidentId: number, lastUpdateTime: string, text: string) => ({
  incidentId,
  lastUpdateTime,
  alerts: Array.from({ length: 400 }, (_, i) => ({ alertId: `da${i}`, description: text.repeat(200) })),
});

describe('sending to Storage queues', () => {
  it('claim-checks each large incident to a blob of its own: every message reads back its own incident', async () => {
    const account = new Account();
    const sender = new MessageSender(account.queueService, async () => account.blobService);
    const incidents = [
      { tenantId: TENANTS[0]!, incident: bigIncident(8, '2026-11-23T10:00:00Z', 'a') },
      { tenantId: TENANTS[0]!, incident: bigIncident(8, '2026-11-23T10:05:00Z', 'b') },
      { tenantId: TENANTS[0]!, incident: bigIncident(9, '2026-11-23T10:00:00Z', 'c') },
      { tenantId: TENANTS[1]!, incident: bigIncident(8, '2026-11-23T10:00:00Z', 'd') },
    ];
    for (const { tenantId, incident } of incidents)
      expect(await sender.sendEvent('incidents', envelopeFor(tenantId, incident, 'poll'))).toEqual({
        claimChecked: true,
      });
    const messages = account.messages('incidents');
    expect(messages).toHaveLength(4);
    for (const [i, message] of messages.entries()) {
      expect(message.incident).toBeUndefined();
      expect(message).toMatchObject({
        tenantId: incidents[i]!.tenantId,
        incidentId: incidents[i]!.incident.incidentId,
      });
      expect(
        await readClaimCheck(async () => account.blobService, (message.incidentRef as { blobUrl: string }).blobUrl),
      ).toEqual(incidents[i]!.incident);
    }
  });

  it('creates each queue and the claim-check container once, however many messages go out', async () => {
    const account = new Account();
    const sender = new MessageSender(account.queueService, async () => account.blobService);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) => sender.send('poll-requests', { tenantId: TENANTS[0], n: i })),
    );
    for (let i = 0; i < 3; i++) await sender.send('poll-requests', { tenantId: TENANTS[1], n: i });
    await Promise.all(
      [1, 2, 3].map((id) =>
        sender.sendEvent('incidents', envelopeFor(TENANTS[0]!, bigIncident(id, '2026-11-23T10:00:00Z', 'x'), 'poll')),
      ),
    );
    expect(account.requests.filter((r) => r.startsWith('create'))).toEqual([
      'create queue poll-requests',
      'create container incident-payloads',
      'create queue incidents',
    ]);
    expect(account.messages('poll-requests')).toHaveLength(8);
    expect(account.messages('incidents')).toHaveLength(3);
  });

  it('sends, without creating anything, in an account where it may only send', async () => {
    // Another team's account: the owner made the queue and container, and refuses the app's creations.
    const account = new Account({ queues: ['routed'], containers: ['payloads'] });
    account.refuseCreate.set(
      'queue:routed',
      Array.from({ length: 5 }, () => refused(403, 'AuthorizationPermissionMismatch')),
    );
    account.refuseCreate.set(
      'container:payloads',
      Array.from({ length: 5 }, () => refused(403, 'AuthorizationPermissionMismatch')),
    );
    const sender = new MessageSender(account.queueService, async () => account.blobService, { createMissing: false });
    const incident = bigIncident(8, '2026-11-23T10:00:00Z', 'y');
    const message = { tenantId: TENANTS[0], incident };
    expect(await sender.sendWithClaimCheck('routed', message, { container: 'payloads', blobName: 'a/8.json' })).toEqual(
      { claimChecked: true },
    );
    await sender.send('routed', { tenantId: TENANTS[0], note: 'small' });
    expect(account.requests.filter((r) => r.startsWith('create'))).toEqual([]);
    expect(account.messages('routed')).toHaveLength(2);
  });

  it('fails the send whose queue creation Storage refused, and creates it with the next send', async () => {
    const account = new Account();
    account.refuseCreate.set('queue:poll-requests', [refused(503, 'ServerBusy')]);
    const sender = new MessageSender(account.queueService, async () => account.blobService);
    await expect(sender.send('poll-requests', { n: 1 })).rejects.toMatchObject({ statusCode: 503 });
    await sender.send('poll-requests', { n: 2 });
    expect(account.messages('poll-requests')).toEqual([{ n: 2 }]);
    expect(account.requests).toEqual([
      'create queue poll-requests',
      'create queue poll-requests',
      'send poll-requests',
    ]);
  });
});
