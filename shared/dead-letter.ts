import type { MessageSender } from './queues.js';

/**
 * Messages that can never succeed (invalid, pointing nowhere) go to `<queue>-deadletter` at once, with
 * the reason, instead of failing five times on their way to `<queue>-poison`. Both can be replayed.
 */
export interface DeadLetter {
  reason: string;
  failedAt: string;
  /** The message as it was received (parsed JSON, or the raw text when it was not JSON). */
  message: unknown;
}

export const deadLetterQueueOf = (queueName: string) => `${queueName}-deadletter`;
export const poisonQueueOf = (queueName: string) => `${queueName}-poison`;

export async function deadLetter(
  sender: MessageSender,
  queueName: string,
  message: unknown,
  reason: string,
  at = new Date(),
): Promise<void> {
  const entry: DeadLetter = { reason, failedAt: at.toISOString(), message };
  await sender.send(deadLetterQueueOf(queueName), entry);
}
