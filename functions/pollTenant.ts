import { app, type InvocationContext } from '@azure/functions';
import { handlePollRequest } from '../shared/ingest/ingest-handlers.js';
import { QUEUE_NAMES } from '../shared/storage/queues.js';
import { getServices } from '../shared/services.js';

/** Queue `poll-requests`: lists what changed in one tenant and enqueues an event per incident version. */
export async function pollTenant(message: unknown, context: InvocationContext): Promise<void> {
  await handlePollRequest(message, getServices(), context, {
    dequeueCount: Number(context.triggerMetadata?.dequeueCount ?? 1),
  });
}

app.storageQueue('pollTenant', {
  queueName: QUEUE_NAMES.pollRequests,
  connection: 'AzureWebJobsStorage',
  handler: pollTenant,
});
