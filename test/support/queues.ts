import type { QueueServiceClient } from '@azure/storage-queue';

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
