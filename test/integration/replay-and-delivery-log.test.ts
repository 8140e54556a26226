import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { describe, expect, inject, it } from 'vitest';
import { deadLetter, deadLetterQueueOf, poisonQueueOf } from '../../shared/dead-letter.js';
import { DeliveryLog } from '../../shared/delivery-log.js';
import { encodeMessage, MessageSender } from '../../shared/queues.js';
import { replayIncidents, replayRequestSchema } from '../../shared/replay.js';
import { drainQueue } from '../support/queues.js';

const unique = (prefix: string) => `${prefix}${randomUUID().replace(/-/g, '').slice(0, 12)}`;

function storage() {
  const cs = inject('storage').connectionString;
  return { queues: QueueServiceClient.fromConnectionString(cs), blobs: BlobServiceClient.fromConnectionString(cs), cs };
}

const drain = drainQueue;

describe('replay of dead-lettered and poisoned events', () => {
  it('moves everything back, or only what the filter selects, and reports the counts', async () => {
    const { queues, blobs } = storage();
    const target = unique('incidents');
    const sender = new MessageSender(queues, blobs);
    const [a, b] = [randomUUID(), randomUUID()];
    await deadLetter(sender, target, { eventId: `${a}:1:t`, tenantId: a }, 'rule "x" names unknown destination "y"');
    await deadLetter(sender, target, { eventId: `${b}:2:t`, tenantId: b }, 'invalid envelope: schema');
    const poison = queues.getQueueClient(poisonQueueOf(target));
    await poison.createIfNotExists();
    await poison.sendMessage(encodeMessage({ eventId: `${a}:3:t`, tenantId: a }));

    const onlyA = await replayIncidents(replayRequestSchema.parse({ tenantId: a }), queues, target);
    expect(onlyA).toEqual({ moved: 2, skipped: 1, bySource: { deadletter: 1, poison: 1 } });
    expect(((await drain(queues, target)) as { eventId: string }[]).map((e) => e.eventId).sort()).toEqual([`${a}:1:t`, `${a}:3:t`]);

    // The skipped dead letter is still there, visible, and a reason filter finds it.
    const byReason = await replayIncidents(replayRequestSchema.parse({ source: 'deadletter', reasonContains: 'invalid envelope' }), queues, target);
    expect(byReason.moved).toBe(1);
    expect(await drain(queues, target)).toEqual([{ eventId: `${b}:2:t`, tenantId: b }]);
    expect(await drain(queues, deadLetterQueueOf(target))).toEqual([]);
  });

  it('validates the request', () => {
    expect(replayRequestSchema.safeParse({ source: 'everything' }).success).toBe(false);
    expect(replayRequestSchema.safeParse({ tenantId: 'x' }).success).toBe(false);
    expect(replayRequestSchema.safeParse({ surprise: 1 }).success).toBe(false);
    expect(replayRequestSchema.parse({})).toEqual({ source: 'all', max: 1000 });
  });
});

describe('delivery log', () => {
  it('records deliveries per destination and the routed event, idempotently', async () => {
    const log = new DeliveryLog(TableClient.fromConnectionString(storage().cs, unique('deliveries'), { allowInsecureConnection: true }));
    const eventId = `${randomUUID()}:924565:2020-09-06T14:46:57.2900000Z`;
    expect(await log.isRouted(eventId)).toBe(false);
    await log.recordDelivery(eventId, 'soc-queue');
    await log.recordDelivery(eventId, 'soc-queue');
    expect(await log.isDelivered(eventId, 'soc-queue')).toBe(true);
    expect(await log.isDelivered(eventId, 'teams')).toBe(false);
    expect(await log.isRouted(eventId)).toBe(false);
    await log.recordRouted(eventId, ['high-to-soc']);
    expect(await log.isRouted(eventId)).toBe(true);
  });

  it('lets one invocation at a time claim an event, and takes over a claim whose lease ran out', async () => {
    const log = new DeliveryLog(TableClient.fromConnectionString(storage().cs, unique('deliveries'), { allowInsecureConnection: true }));
    const eventId = `${randomUUID()}:1:2020-09-06T14:46:57.2900000Z`;
    const [a, b] = await Promise.all([log.claim(eventId), log.claim(eventId)]);
    expect([a, b].filter(Boolean)).toHaveLength(1);
    expect(await log.claim(eventId)).toBeUndefined();
    // An invocation that crashed never releases: after the lease, another one takes over.
    const later = new Date(Date.now() + 3 * 60_000);
    const takenOver = await log.claim(eventId, 2 * 60_000, later);
    expect(takenOver).toBeDefined();
    await log.release((a ?? b)!); // the stale holder's release no longer removes the new claim
    expect(await log.claim(eventId, 2 * 60_000, later)).toBeUndefined();
    await log.release(takenOver!);
    expect(await log.claim(eventId)).toBeDefined();
  });
});
