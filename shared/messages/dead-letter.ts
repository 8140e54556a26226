import { recordDeadLettered, recordPoisoned } from '../telemetry/metrics.js';
import type { MessageSender } from '../storage/queues.js';

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

/**
 * Why a message was dead-lettered, as a short category: the metric's `reason` dimension, which must
 * never carry the reason's text (it may quote an incident or a service's answer).
 */
export type DeadLetterCategory =
  | 'invalid-message'
  | 'structure-limits'
  | 'routing-rules'
  | 'tenant-unknown'
  | 'tenant-disabled'
  | 'claim-check'
  | 'destination-refused'
  | 'permanent-failure'
  | 'other';

export const deadLetterQueueOf = (queueName: string) => `${queueName}-deadletter`;
export const poisonQueueOf = (queueName: string) => `${queueName}-poison`;

/** host.json `extensions.queues.maxDequeueCount`: after this many attempts the host moves a message to `<queue>-poison`. */
export const MAX_DEQUEUE_COUNT = 5;

export async function deadLetter(
  sender: MessageSender,
  queueName: string,
  message: unknown,
  reason: string,
  category: DeadLetterCategory = 'other',
  at = new Date(),
): Promise<void> {
  const entry: DeadLetter = { reason, failedAt: at.toISOString(), message };
  await sender.send(deadLetterQueueOf(queueName), entry);
  recordDeadLettered(deadLetterQueueOf(queueName), category);
}

/**
 * Whether a failed attempt was the message's last: the host then moves it to `<queue>-poison` (counted
 * here, since the host says nothing to the app when it does).
 */
export function isLastAttempt(dequeueCount: number | undefined): boolean {
  return (dequeueCount ?? 1) >= MAX_DEQUEUE_COUNT;
}

/** A failed attempt that was the message's last: counted as poisoned, with the failure's category. */
export function countIfPoisoned(queueName: string, dequeueCount: number | undefined, category: string): void {
  if (isLastAttempt(dequeueCount)) recordPoisoned(poisonQueueOf(queueName), category);
}
