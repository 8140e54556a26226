import { RestError, TableClient } from '@azure/data-tables';
import { ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { BlobClient } from '@azure/storage-blob';
import type { ProcessedEvents } from './consumer.js';

/** This app's managed identity (user-assigned when AZURE_CLIENT_ID names one). */
export function appCredential(): TokenCredential {
  const clientId = process.env.AZURE_CLIENT_ID;
  return clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
}

/**
 * Reads claim-checked incidents from the relay's blob service with this app's identity (Storage Blob
 * Data Reader on the relay's `routed-payloads` container). A URL elsewhere is refused before any token
 * is sent: a message must not make the consumer hand its token to another host.
 */
export function claimCheckReader(relayBlobServiceUri: string, credential: TokenCredential) {
  const allowed = new URL(relayBlobServiceUri);
  return async (blobUrl: string): Promise<unknown> => {
    const url = new URL(blobUrl);
    if (url.origin !== allowed.origin || !url.pathname.startsWith(allowed.pathname.replace(/\/?$/, '/')))
      throw new Error(
        `the claim-check ${url.origin}${url.pathname} is not in the relay's blob service ${allowed.origin}`,
      );
    const body = await new BlobClient(blobUrl, credential).downloadToBuffer();
    return JSON.parse(body.toString('utf8')) as unknown;
  };
}

/** One row per handled event, partitioned by tenant: a Table's insert is the idempotency check. */
export class TableProcessedEvents implements ProcessedEvents {
  constructor(private readonly table: TableClient) {}

  static create(tableServiceUri: string, credential: TokenCredential, tableName = 'relayconsumerevents') {
    return new TableProcessedEvents(new TableClient(tableServiceUri, tableName, credential));
  }

  async has(tenantId: string, eventId: string): Promise<boolean> {
    try {
      await this.table.getEntity(tenantId, eventId);
      return true;
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return false;
      throw err;
    }
  }

  async mark(tenantId: string, eventId: string): Promise<void> {
    try {
      await this.table.createEntity({ partitionKey: tenantId, rowKey: eventId, handledAt: new Date().toISOString() });
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) {
        await this.table.createTable();
        return this.mark(tenantId, eventId);
      }
      // 409: a copy of the same event was handled at the same moment; it is marked either way.
      if (!(err instanceof RestError && err.statusCode === 409)) throw err;
    }
  }
}
