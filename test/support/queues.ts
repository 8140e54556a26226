import type { QueueServiceClient } from '@azure/storage-queue';
import { envelopeFor, EVENT_SCHEMA, type IncidentEnvelope } from '../../shared/messages/events.js';
import type { RoutedMessage } from '../../shared/route/destinations/types.js';

/** Takes every message off a queue, decoding base64 JSON as the Functions trigger does. */
export async function drainQueue(queues: QueueServiceClient, queueName: string): Promise<unknown[]> {
  const queue = queues.getQueueClient(queueName);
  await queue.createIfNotExists();
  const out: unknown[] = [];
  for (;;) {
    const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: 32 });
    if (receivedMessageItems.length === 0) return out;
    for (const m of receivedMessageItems) {
      out.push(JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')));
      await queue.deleteMessage(m.messageId, m.popReceipt);
    }
  }
}

/**
 * The poll event a routed Defender incident came from, made again from the first such message (schema v1,
 * its incident inline, not claim-checked) among the queue's first 32, peeked: whichever tenant's message
 * comes first, a Graph tenant's (v2) among them. Undefined when there is none.
 */
export async function routedDefenderEvent(
  queues: QueueServiceClient,
  queueName: string,
): Promise<IncidentEnvelope | undefined> {
  const { peekedMessageItems } = await queues.getQueueClient(queueName).peekMessages({ numberOfMessages: 32 });
  const routed = peekedMessageItems
    .map((m) => JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')) as RoutedMessage)
    .find((m) => m.schema === EVENT_SCHEMA && m.incident !== undefined);
  return (
    routed && envelopeFor(routed.tenantId, routed.incident as { incidentId: number; lastUpdateTime: string }, 'poll')
  );
}
