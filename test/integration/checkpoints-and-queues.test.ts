import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { describe, expect, inject, it } from 'vitest';
import { CheckpointConflictError, CheckpointStore } from '../../shared/checkpoints.js';
import { envelopeFor, envelopeSchema } from '../../shared/events.js';
import { MessageSender, readClaimCheck } from '../../shared/queues.js';

const unique = (prefix: string) => `${prefix}${randomUUID().replace(/-/g, '').slice(0, 12)}`;

describe('checkpoints (Table storage, ETag concurrency)', () => {
  const store = () => new CheckpointStore(TableClient.fromConnectionString(inject('storage').connectionString, unique('cp'), { allowInsecureConnection: true }));

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
    const envelope = envelopeFor(randomUUID(), { incidentId: 7, lastUpdateTime: '2026-11-23T10:00:00.12Z', alerts: [] } as never, 'poll');
    expect(await new MessageSender(queues, blobs).sendEvent(queue, envelope)).toEqual({ claimChecked: false });
    const [message] = (await queues.getQueueClient(queue).receiveMessages()).receivedMessageItems;
    const decoded = JSON.parse(Buffer.from(message!.messageText, 'base64').toString('utf8'));
    expect(decoded).toEqual(envelope);
    expect(envelopeSchema.safeParse(decoded).success).toBe(true);
    expect(decoded.eventId).toBe(`${envelope.tenantId}:7:2026-11-23T10:00:00.1200000Z`);
  });

  it('claim-checks an event too large for a queue message and reads it back intact', async () => {
    const { queues, blobs } = storage();
    const queue = unique('q');
    const bigIncident = { incidentId: 8, lastUpdateTime: '2026-11-23T10:00:00Z', alerts: Array.from({ length: 400 }, (_, i) => ({ alertId: `da${i}`, description: 'x'.repeat(200) })) };
    const envelope = envelopeFor(randomUUID(), bigIncident, 'poll');
    const sender = new MessageSender(queues, blobs);
    expect(await sender.sendEvent(queue, envelope)).toEqual({ claimChecked: true });
    const [message] = (await queues.getQueueClient(queue).receiveMessages()).receivedMessageItems;
    expect(message!.messageText.length).toBeLessThan(64 * 1024);
    const decoded = JSON.parse(Buffer.from(message!.messageText, 'base64').toString('utf8'));
    expect(decoded.incident).toBeUndefined();
    expect(envelopeSchema.safeParse(decoded).success).toBe(true);
    expect(await readClaimCheck(blobs, decoded.incidentRef.blobUrl)).toEqual(bigIncident);
  });
});
