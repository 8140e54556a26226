import type { TokenCredential } from '@azure/identity';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import type { StorageConfig } from './config.js';

/** Storage clients from the same setting the Functions host uses (`AzureWebJobsStorage`). */
export interface StorageClients {
  queues: QueueServiceClient;
  blobs: BlobServiceClient;
  table(name: string): TableClient;
}

/** Azurite speaks plain HTTP; anything else must be HTTPS. */
function isLocalEmulator(connectionString: string): boolean {
  return connectionString.includes('UseDevelopmentStorage=true') || connectionString.includes('=http://');
}

/** Clients from a connection string, or from the service URIs with the given credential (identity-based). */
export function createStorageClients(storage: StorageConfig, credential: TokenCredential): StorageClients {
  if (storage.connectionString) {
    const cs = storage.connectionString;
    return {
      queues: QueueServiceClient.fromConnectionString(cs),
      blobs: BlobServiceClient.fromConnectionString(cs),
      table: (name) => TableClient.fromConnectionString(cs, name, { allowInsecureConnection: isLocalEmulator(cs) }),
    };
  }
  return {
    queues: new QueueServiceClient(storage.queueServiceUri!, credential),
    blobs: new BlobServiceClient(storage.blobServiceUri!, credential),
    table: (name) => new TableClient(storage.tableServiceUri!, name, credential),
  };
}
