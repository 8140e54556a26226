import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { describe, expect, inject, it } from 'vitest';
import { CheckpointConflictError, CheckpointStore } from '../../../shared/ingest/checkpoints.js';
import { envelopeFor, envelopeSchema } from '../../../shared/messages/events.js';
import { MessageSender, readClaimCheck } from '../../../shared/storage/queues.js';
import { TenantStatusStore } from '../../../shared/tenants/tenant-status.js';
import { startThrottlingStorage } from '../../support/throttling-storage.js';

const unique = (prefix: string) => `${prefix}${randomUUID().replace(/-/g, '').slice(0, 12)}`;

describe('checkpoints (Table storage, ETag concurrency)', () => {
  const store = () =>
    new CheckpointStore(
      TableClient.fromConnectionString(inject('storage').connectionString, unique('cp'), {
        allowInsecureConnection: true,
      }),
    );

  it('starts empty and advances', async () => {
    const checkpoints = store();
    const tenantId = randomUUID();
    const first = await checkpoints.get(tenantId);
    expect(first).toEqual({ tenantId, boundaryEventIds: [] });
    await checkpoints.advance(first, { lastUpdateTime: '2026-11-23T10:00:00.0000000Z', boundaryEventIds: ['a'] });
    const second = await checkpoints.get(tenantId);
    expect(second).toMatchObject({ lastUpdateTime: '2026-11-23T10:00:00.0000000Z', boundaryEventIds: ['a'] });
    await checkpoints.advance(second, { lastUpdateTime: '2026-11-23T11:00:00.0000000Z', boundaryEventIds: [] });
    expect((await checkpoints.get(tenantId)).lastUpdateTime).toBe('2026-11-23T11:00:00.0000000Z');
  });

  it('lets exactly one of two racing pollers advance, for a new and for an existing checkpoint', async () => {
    const checkpoints = store();
    const tenantId = randomUUID();
    for (let round = 0; round < 2; round++) {
      const [a, b] = await Promise.all([checkpoints.get(tenantId), checkpoints.get(tenantId)]);
      const results = await Promise.allSettled([
        checkpoints.advance(a, { lastUpdateTime: `2026-11-23T1${round}:00:00.0000000Z`, boundaryEventIds: ['a'] }),
        checkpoints.advance(b, { lastUpdateTime: `2026-11-23T1${round}:30:00.0000000Z`, boundaryEventIds: ['b'] }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(rejected.reason).toBeInstanceOf(CheckpointConflictError);
      expect((rejected.reason as Error).message).toContain(tenantId);
    }
  });

  it('keeps the newest 300 boundary event ids of a burst, and still advances', async () => {
    const checkpoints = store();
    const tenantId = randomUUID();
    // Oldest first, as the poller passes them; 1,000 ids of this size would not fit a table property.
    const ids = Array.from(
      { length: 1000 },
      (_, i) =>
        `${tenantId}:${100_000 + i}:2026-11-23T10:${String(Math.floor(i / 60)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.0000000Z`,
    );
    await checkpoints.advance(await checkpoints.get(tenantId), {
      lastUpdateTime: '2026-11-23T10:16:39.0000000Z',
      boundaryEventIds: ids,
    });
    const advanced = await checkpoints.get(tenantId);
    expect(advanced.lastUpdateTime).toBe('2026-11-23T10:16:39.0000000Z');
    expect(advanced.boundaryEventIds).toEqual(ids.slice(-300));
  });

  it('reports a write Storage refuses as the storage error, not as another poller, and leaves the checkpoint as it was', async () => {
    const storage = await startThrottlingStorage(inject('storage').connectionString);
    try {
      const table = unique('cp');
      const checkpoints = new CheckpointStore(
        TableClient.fromConnectionString(storage.connectionString, table, { allowInsecureConnection: true }),
      );
      const tenantId = randomUUID();
      const next = (hour: number) => ({
        lastUpdateTime: `2026-11-23T1${hour}:00:00.0000000Z`,
        boundaryEventIds: [`${tenantId}:1:2026-11-23T1${hour}:00:00.0000000Z`],
      });
      for (const hour of [0, 1]) {
        const read = await checkpoints.get(tenantId); // first none yet (an insert), then one to update with its ETag
        // 429 to this table's inserts and updates (the SDK's RestError): the poll is retried, not taken as raced.
        storage.throttle(
          (r) => r.service === 'table' && r.method !== 'GET' && r.path.startsWith(`/devstoreaccount1/${table}`),
        );
        const refused = await checkpoints.advance(read, next(hour)).then(
          () => undefined,
          (err: unknown) => err,
        );
        storage.throttle(() => false);
        expect(refused).not.toBeInstanceOf(CheckpointConflictError);
        expect(refused).toMatchObject({ statusCode: 429 });
        expect(await checkpoints.get(tenantId)).toEqual(read);
        // Once Storage takes writes again, the same checkpoint advances: no one else moved it.
        await checkpoints.advance(read, next(hour));
        expect(await checkpoints.get(tenantId)).toMatchObject(next(hour));
      }
    } finally {
      await storage.close();
    }
  });
});

describe('incident events on the queue', () => {
  const storage = () => {
    const cs = inject('storage').connectionString;
    return { queues: QueueServiceClient.fromConnectionString(cs), blobs: BlobServiceClient.fromConnectionString(cs) };
  };

  it('sends small events inline, base64-encoded JSON as the Functions trigger expects', async () => {
    const { queues, blobs } = storage();
    const queue = unique('q');
    const envelope = envelopeFor(
      randomUUID(),
      { incidentId: 7, lastUpdateTime: '2026-11-23T10:00:00.12Z', alerts: [] } as never,
      'poll',
    );
    expect(await new MessageSender(queues, async () => blobs).sendEvent(queue, envelope)).toEqual({
      claimChecked: false,
    });
    const [message] = (await queues.getQueueClient(queue).receiveMessages()).receivedMessageItems;
    const decoded = JSON.parse(Buffer.from(message!.messageText, 'base64').toString('utf8'));
    expect(decoded).toEqual(envelope);
    expect(envelopeSchema.safeParse(decoded).success).toBe(true);
    expect(decoded.eventId).toBe(`${envelope.tenantId}:7:2026-11-23T10:00:00.1200000Z`);
  });

  it('claim-checks an event too large for a queue message and reads it back intact', async () => {
    const { queues, blobs } = storage();
    const queue = unique('q');
    const bigIncident = {
      incidentId: 8,
      lastUpdateTime: '2026-11-23T10:00:00Z',
      alerts: Array.from({ length: 400 }, (_, i) => ({ alertId: `da${i}`, description: 'x'.repeat(200) })),
    };
    const envelope = envelopeFor(randomUUID(), bigIncident, 'poll');
    const sender = new MessageSender(queues, async () => blobs);
    expect(await sender.sendEvent(queue, envelope)).toEqual({ claimChecked: true });
    const [message] = (await queues.getQueueClient(queue).receiveMessages()).receivedMessageItems;
    expect(message!.messageText.length).toBeLessThan(64 * 1024);
    const decoded = JSON.parse(Buffer.from(message!.messageText, 'base64').toString('utf8'));
    expect(decoded.incident).toBeUndefined();
    expect(envelopeSchema.safeParse(decoded).success).toBe(true);
    expect(await readClaimCheck(async () => blobs, decoded.incidentRef.blobUrl)).toEqual(bigIncident);
    // A consumer of a routed queue fetches incidentRef itself: the blob says it is JSON.
    const url = new URL(decoded.incidentRef.blobUrl);
    const [, , container, ...name] = url.pathname.split('/');
    expect(
      (
        await blobs
          .getContainerClient(container!)
          .getBlobClient(decodeURIComponent(name.join('/')))
          .getProperties()
      ).contentType,
    ).toBe('application/json');
    // Also with the service URL as Azure gives it, ending in a slash.
    expect(
      await readClaimCheck(
        async () => new BlobServiceClient(`${blobs.url}/`, blobs.credential),
        decoded.incidentRef.blobUrl,
      ),
    ).toEqual(bigIncident);
    // A claim-check in another account (here one whose name is as long as ours) is refused, not read from ours.
    const account = url.pathname.split('/')[1]!;
    const foreign = decoded.incidentRef.blobUrl.replace(`/${account}/`, `/${'x'.repeat(account.length)}/`);
    await expect(readClaimCheck(async () => blobs, foreign)).rejects.toThrow(/not in this app's storage account/);
  });

  describe('at the edge of what a message holds', () => {
    /** A queue message holds 64 KiB of text; the relay sends an event inline up to 60 KiB of base64, leaving room to spare. */
    const QUEUE_MESSAGE_LIMIT = 64 * 1024;
    const INLINE_LIMIT = 60 * 1024;

    /** An event whose message (base64 of its JSON) is exactly `base64Length` characters, or whose JSON is `jsonBytes` bytes. */
    function eventOfSize(size: { jsonBytes: number } | { base64Length: number }) {
      const jsonBytes = 'jsonBytes' in size ? size.jsonBytes : (size.base64Length / 4) * 3;
      const incident = {
        incidentId: 9,
        lastUpdateTime: '2026-11-23T10:00:00Z',
        alerts: [],
        comments: [{ comment: '' }],
      };
      const bare = Buffer.byteLength(JSON.stringify(envelopeFor(randomUUID(), incident, 'poll')));
      incident.comments[0]!.comment = 'x'.repeat(jsonBytes - bare);
      const envelope = envelopeFor(randomUUID(), incident, 'poll');
      expect(Buffer.byteLength(JSON.stringify(envelope))).toBe(jsonBytes);
      return { incident, envelope };
    }

    async function received(queue: string) {
      const { queues } = storage();
      const [message, ...more] = (await queues.getQueueClient(queue).receiveMessages({ numberOfMessages: 32 }))
        .receivedMessageItems;
      expect(more).toEqual([]);
      expect(message!.messageText.length).toBeLessThanOrEqual(QUEUE_MESSAGE_LIMIT);
      return {
        text: message!.messageText,
        decoded: JSON.parse(Buffer.from(message!.messageText, 'base64').toString('utf8')),
      };
    }

    it('claim-checks an event whose JSON would fit in a message but whose base64 would not', async () => {
      const { queues, blobs } = storage();
      const queue = unique('q');
      const { incident, envelope } = eventOfSize({ jsonBytes: 60_000 });
      expect(Buffer.from(JSON.stringify(envelope)).toString('base64').length).toBeGreaterThan(QUEUE_MESSAGE_LIMIT);
      expect(await new MessageSender(queues, async () => blobs).sendEvent(queue, envelope)).toEqual({
        claimChecked: true,
      });
      const { decoded } = await received(queue);
      expect(decoded.eventId).toBe(envelope.eventId);
      expect(decoded.incident).toBeUndefined();
      expect(await readClaimCheck(async () => blobs, decoded.incidentRef.blobUrl)).toEqual(incident);
    });

    it('sends an event whose base64 just fits inline, and claim-checks one a byte larger', async () => {
      const { queues, blobs } = storage();
      const queue = unique('q');
      const sender = new MessageSender(queues, async () => blobs);

      const fits = eventOfSize({ base64Length: INLINE_LIMIT });
      expect(await sender.sendEvent(queue, fits.envelope)).toEqual({ claimChecked: false });
      const inline = await received(queue);
      expect(inline.text.length).toBe(INLINE_LIMIT);
      expect(inline.decoded).toEqual(fits.envelope);
      await queues.getQueueClient(queue).clearMessages();

      const over = eventOfSize({ jsonBytes: (INLINE_LIMIT / 4) * 3 + 1 });
      expect(await sender.sendEvent(queue, over.envelope)).toEqual({ claimChecked: true });
      const checked = await received(queue);
      expect(checked.decoded.incident).toBeUndefined();
      expect(await readClaimCheck(async () => blobs, checked.decoded.incidentRef.blobUrl)).toEqual(over.incident);
    });
  });
});

describe('tenant status (Table storage, ETag concurrency)', () => {
  it('loses no count when instances record polls of one tenant at once', async () => {
    const status = new TenantStatusStore(
      TableClient.fromConnectionString(inject('storage').connectionString, unique('ts'), {
        allowInsecureConnection: true,
      }),
    );
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => status.recordPoll('tenant-a', { outcome: 'polled', eventsEnqueued: i + 1 })),
    );
    expect((await status.get('tenant-a')).eventsEnqueued).toBe(36);
    expect((await status.get('tenant-a')).lastOutcome).toBe('polled');
  });

  it('records a poll over a row read before it (prefetch), and loses no count when that read went stale; never another tenant', async () => {
    const status = new TenantStatusStore(
      TableClient.fromConnectionString(inject('storage').connectionString, unique('ts'), {
        allowInsecureConnection: true,
      }),
    );
    await status.recordPoll('tenant-a', { outcome: 'polled', eventsEnqueued: 1 });
    const readEarly = status.prefetch('tenant-a');
    await readEarly.read;
    // Another instance records meanwhile: the early read's ETag is stale.
    await status.recordPoll('tenant-a', { outcome: 'polled', eventsEnqueued: 10 });
    await status.recordPoll('tenant-a', { outcome: 'failed', error: 'x', eventsEnqueued: 100 }, { read: readEarly });
    expect(await status.get('tenant-a')).toMatchObject({ eventsEnqueued: 111, lastOutcome: 'failed' });
    // A read of one tenant's row is not used for another's.
    await status.recordPoll(
      'tenant-b',
      { outcome: 'polled', eventsEnqueued: 5 },
      { read: status.prefetch('tenant-a') },
    );
    expect(await status.get('tenant-b')).toMatchObject({ eventsEnqueued: 5 });
    expect((await status.get('tenant-a')).eventsEnqueued).toBe(111);
  });

  it('keeps the last failure and its cause after later polls succeed', async () => {
    const status = new TenantStatusStore(
      TableClient.fromConnectionString(inject('storage').connectionString, unique('ts'), {
        allowInsecureConnection: true,
      }),
    );
    await status.recordPoll(
      'tenant-a',
      { outcome: 'failed', error: 'AADSTS7000215', eventsEnqueued: 0 },
      { at: new Date('2026-12-01T08:00:00Z') },
    );
    await status.recordPoll(
      'tenant-a',
      { outcome: 'polled', eventsEnqueued: 4 },
      { at: new Date('2026-12-01T08:05:00Z') },
    );
    expect(await status.get('tenant-a')).toMatchObject({
      lastOutcome: 'polled',
      lastError: undefined,
      lastFailureAt: '2026-12-01T08:00:00.000Z',
      lastFailure: 'AADSTS7000215',
    });
  });

  it('counts the events of the last 24 hours apart from the total, forgetting older hours', async () => {
    const status = new TenantStatusStore(
      TableClient.fromConnectionString(inject('storage').connectionString, unique('ts'), {
        allowInsecureConnection: true,
      }),
    );
    const at = (iso: string) => ({ at: new Date(iso) });
    await status.recordPoll('tenant-a', { outcome: 'polled', eventsEnqueued: 7 }, at('2026-12-01T08:10:00Z'));
    await status.recordPoll('tenant-a', { outcome: 'polled', eventsEnqueued: 3 }, at('2026-12-01T09:50:00Z'));
    await status.recordPoll('tenant-a', { outcome: 'polled', eventsEnqueued: 2 }, at('2026-12-02T08:30:00Z'));
    // 08:00 on the 1st is 24 hours before 08:00 on the 2nd: its 7 have left the window.
    expect(await status.get('tenant-a', new Date('2026-12-02T08:40:00Z'))).toMatchObject({
      eventsEnqueued: 12,
      eventsLast24h: 5,
    });
    expect((await status.list(new Date('2026-12-03T10:00:00Z')))[0]).toMatchObject({
      eventsEnqueued: 12,
      eventsLast24h: 0,
    });
  });
});
