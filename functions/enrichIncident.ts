import type { InvocationContext } from '@azure/functions';
import { app } from '@azure/functions';
import { enrichDependencies, handleIncidentEvent, type EnrichDependencies } from '../shared/enrich/enrich-handler.js';
import { QUEUE_NAMES } from '../shared/storage/queues.js';
import { getServices } from '../shared/services.js';

let deps: EnrichDependencies | undefined;

/** Queue `incidents`: validates, deduplicates, enriches and routes one incident event. */
export async function enrichIncident(message: unknown, context: InvocationContext): Promise<void> {
  deps ??= enrichDependencies(getServices());
  await handleIncidentEvent(message, deps, context, {
    dequeueCount: Number(context.triggerMetadata?.dequeueCount ?? 1),
  });
}

app.storageQueue('enrichIncident', {
  queueName: QUEUE_NAMES.incidents,
  connection: 'AzureWebJobsStorage',
  handler: enrichIncident,
});
