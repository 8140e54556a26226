import type { InvocationContext } from '@azure/functions';
import { appCredential, claimCheckReader, TableProcessedEvents } from './azure.js';
import type { ConsumerDependencies } from './consumer.js';

let shared: Omit<ConsumerDependencies, 'log'> | undefined;

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`App setting ${name} is not set (see local.settings.example.json)`);
  return value;
}

/** The consumer's dependencies from app settings, built once per worker; `log` is the invocation's. */
export function dependencies(context: InvocationContext): ConsumerDependencies {
  if (!shared) {
    const credential = appCredential();
    shared = {
      readClaimCheck: claimCheckReader(setting('RELAY_BLOB_SERVICE_URI'), credential),
      events: TableProcessedEvents.create(setting('CONSUMER_TABLE_SERVICE_URI'), credential),
      // Your work goes here: open a ticket, page someone, write to your SIEM. It must be idempotent.
      handle: async (message) => {
        context.info(
          `ticket for ${message.enrichment.tenantDisplayName ?? message.tenantId} incident ${message.incidentId}: ${String((message.api === 'graph' ? message.incident.displayName : message.incident.incidentName) ?? '')} ${message.enrichment.portalUrl ?? ''}`,
        );
      },
    };
  }
  return { ...shared, log: (line) => context.info(line) };
}
