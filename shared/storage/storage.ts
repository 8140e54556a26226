import type { TokenCredential } from '@azure/identity';
import { TableClient } from '@azure/data-tables';
import type { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import type { StorageConfig } from '../config/config.js';

/**
 * Blob storage holds only claim-checks (incidents too large for a queue message), so its SDK, the
 * largest the app uses, loads when the first claim-check is written or read rather than at a cold
 * start, which imports every function file before the first invocation (`npm run bench`, figure 6).
 * The bundle keeps it in a chunk of its own (scripts/bundle.ts splits at dynamic imports).
 */
export type BlobServiceProvider = () => Promise<BlobServiceClient>;

/** A provider that builds its client once, on first use. */
export function lazyBlobService(
  create: (sdk: typeof import('@azure/storage-blob')) => BlobServiceClient,
): BlobServiceProvider {
  let client: Promise<BlobServiceClient> | undefined;
  return () => (client ??= import('@azure/storage-blob').then(create));
}

/** Storage clients from the same setting the Functions host uses (`AzureWebJobsStorage`). */
export interface StorageClients {
  queues: QueueServiceClient;
  blobs: BlobServiceProvider;
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
      blobs: lazyBlobService(({ BlobServiceClient }) => BlobServiceClient.fromConnectionString(cs)),
      table: (name) => TableClient.fromConnectionString(cs, name, { allowInsecureConnection: isLocalEmulator(cs) }),
    };
  }
  return {
    queues: new QueueServiceClient(storage.queueServiceUri!, credential),
    blobs: lazyBlobService(({ BlobServiceClient }) => new BlobServiceClient(storage.blobServiceUri!, credential)),
    table: (name) => new TableClient(storage.tableServiceUri!, name, credential),
  };
}
