import { handlePollRequest } from '../shared/ingest/ingest-handlers.js';
import { pollRequest, type PollOutcome } from '../shared/ingest/ingest.js';
import type { Logger } from '../shared/telemetry/logging.js';
import { QUEUE_NAMES } from '../shared/storage/queues.js';
import type { Services } from '../shared/services.js';

/**
 * One tenant's poll and every continuation it hands over on `poll-requests`, each run through the
 * app's queue handler, to the end of the listing. Kept free of the stand-ins: the memory figure's
 * worker process imports it.
 */
export async function pollToTheEnd(
  services: Services,
  tenantId: string,
  logger: Logger & { lastError?: string },
  run: (message: unknown) => Promise<PollOutcome | undefined> = (message) =>
    handlePollRequest(message, services, logger),
): Promise<{ enqueued: number; pages: number; runs: number }> {
  const requests = services.storage.queues.getQueueClient(QUEUE_NAMES.pollRequests);
  const total = { enqueued: 0, pages: 0, runs: 0 };
  let outcome = await run(pollRequest(tenantId, 'manual'));
  for (;;) {
    if (!outcome)
      throw new Error(`The poll of benchmark tenant ${tenantId} failed: ${logger.lastError ?? 'no outcome'}`);
    total.enqueued += outcome.enqueued;
    total.pages += outcome.pages;
    total.runs += 1;
    if (outcome.status !== 'continued') return total;
    const { receivedMessageItems } = await requests.receiveMessages({ numberOfMessages: 1 });
    const next = receivedMessageItems[0];
    if (!next)
      throw new Error(
        `The poll of tenant ${tenantId} handed over a continuation that is not on ${QUEUE_NAMES.pollRequests}`,
      );
    outcome = await run(JSON.parse(Buffer.from(next.messageText, 'base64').toString('utf8')));
    await requests.deleteMessage(next.messageId, next.popReceipt);
  }
}
