import type { QueueServiceClient } from '@azure/storage-queue';
import * as z from 'zod';
import { deadLetterQueueOf, poisonQueueOf, type DeadLetter } from '../messages/dead-letter.js';
import { describeViolation, findStructureViolation, MESSAGE_LIMITS } from '../messages/json-limits.js';
import { recordEventEnqueued } from '../telemetry/metrics.js';
import { encodeMessage, QUEUE_NAMES } from '../storage/queues.js';

/**
 * Moves dead-lettered and poisoned incident events back onto `incidents`, all or by filter, once the
 * cause is fixed. The enricher's delivery log keeps a replayed event from being routed twice.
 */
export const replayRequestSchema = z
  .object({
    source: z.enum(['deadletter', 'poison', 'all']).default('all'),
    tenantId: z
      .string()
      .trim()
      .toLowerCase()
      .regex(/^[0-9a-f-]{36}$/, 'must be a GUID')
      .optional(),
    /** Dead letters whose reason contains this text (poisoned messages carry no reason). */
    reasonContains: z.string().min(1).optional(),
    max: z.number().int().min(1).max(10_000).default(1_000),
  })
  .strict();

export type ReplayRequest = z.infer<typeof replayRequestSchema>;

export interface ReplayResult {
  moved: number;
  /** Messages looked at that did not match the filter; they stay where they were. */
  skipped: number;
  bySource: { deadletter: number; poison: number };
  /** Messages too deep or wide to put back (they stay where they were): their event id and why. */
  refused: { eventId?: string; reason: string }[];
}

function decode(text: string): unknown {
  try {
    return JSON.parse(Buffer.from(text, 'base64').toString('utf8'));
  } catch {
    return undefined;
  }
}

export async function replayIncidents(
  request: ReplayRequest,
  queues: QueueServiceClient,
  targetQueue: string = QUEUE_NAMES.incidents,
): Promise<ReplayResult> {
  const result: ReplayResult = { moved: 0, skipped: 0, bySource: { deadletter: 0, poison: 0 }, refused: [] };
  const target = queues.getQueueClient(targetQueue);
  await target.createIfNotExists();
  const sources = request.source === 'all' ? (['deadletter', 'poison'] as const) : ([request.source] as const);

  for (const source of sources) {
    const queue = queues.getQueueClient(
      source === 'deadletter' ? deadLetterQueueOf(targetQueue) : poisonQueueOf(targetQueue),
    );
    if (!(await queue.exists())) continue;
    const skipped: { messageId: string; popReceipt: string }[] = [];
    while (result.moved < request.max) {
      // Hidden while this run looks at them; skipped ones are made visible again at the end.
      const { receivedMessageItems } = await queue.receiveMessages({
        numberOfMessages: Math.min(32, request.max - result.moved),
        visibilityTimeout: 120,
      });
      if (receivedMessageItems.length === 0) break;
      for (const m of receivedMessageItems) {
        const decoded = decode(m.messageText);
        const entry = source === 'deadletter' ? (decoded as DeadLetter | undefined) : undefined;
        const event = (source === 'deadletter' ? entry?.message : decoded) as { tenantId?: unknown } | undefined;
        const matches =
          (!request.tenantId ||
            (typeof event?.tenantId === 'string' && event.tenantId.toLowerCase() === request.tenantId)) &&
          (!request.reasonContains || (entry?.reason ?? '').includes(request.reasonContains)) &&
          (source === 'poison' || entry?.message !== undefined);
        if (!matches || result.moved >= request.max) {
          skipped.push({ messageId: m.messageId, popReceipt: m.popReceipt });
          continue;
        }
        // Put back only what the enricher can read: the trigger's own conversion of a deeper message overflows the stack.
        const violation = findStructureViolation(event, MESSAGE_LIMITS);
        if (violation) {
          const eventId = (event as { eventId?: unknown }).eventId;
          result.refused.push({
            ...(typeof eventId === 'string' ? { eventId: eventId.slice(0, 200) } : {}),
            reason: describeViolation(violation),
          });
          skipped.push({ messageId: m.messageId, popReceipt: m.popReceipt });
          continue;
        }
        // A poisoned message is the original text; a dead letter wraps the original message.
        await target.sendMessage(source === 'poison' ? m.messageText : encodeMessage(entry!.message));
        await queue.deleteMessage(m.messageId, m.popReceipt);
        recordEventEnqueued(typeof event?.tenantId === 'string' ? event.tenantId : '', 'replay');
        result.moved += 1;
        result.bySource[source] += 1;
      }
    }
    for (const s of skipped) await queue.updateMessage(s.messageId, s.popReceipt, undefined, 0);
    result.skipped += skipped.length;
  }
  return result;
}
