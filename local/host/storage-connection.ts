import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';

/**
 * A Storage connection named by a trigger's `connection` (default `Storage`, read as `AzureWebJobsStorage`), resolved from
 * app settings as the host does (azure-webjobs-sdk src/Microsoft.Azure.WebJobs.Host.Storage/
 * StorageClientProvider.cs, through Microsoft.Extensions.Azure's AzureComponentFactory):
 * - the setting itself holds a connection string (shared key), or
 * - its section holds an identity-based connection: `<name>__queueServiceUri` / `__blobServiceUri`
 *   (or `__serviceUri`, or `__accountName` for the public cloud's endpoints), with `__credential` =
 *   `managedidentity` and `__clientId` choosing a user-assigned identity; without `__credential` the
 *   host uses DefaultAzureCredential (Microsoft Learn, azure-functions/functions-reference,
 *   "Connecting to host storage with an identity" and "Common properties for identity-based connections").
 * Neither: the host's message, naming the prefixed setting; the function is then in error (indexing
 * fails for it alone: azure-webjobs-sdk `Indexers/FunctionIndexer.cs` with `AllowPartialHostStartup`).
 */
export interface StorageConnection {
  queues(): QueueServiceClient;
  blobs(): BlobServiceClient;
}

/** The message names the prefixed setting, as the host does (so `connection: 'AzureWebJobsStorage'` reads 'AzureWebJobsAzureWebJobsStorage'). */
export class MissingConnectionError extends Error {
  constructor(connection: string) {
    super(
      `Storage account connection string '${PREFIX}${connection}' does not exist. Make sure that it is a defined App Setting.`,
    );
    this.name = 'MissingConnectionError';
  }
}

/** azure-webjobs-sdk IConfigurationExtensions.cs: `GetPrefixedConnectionStringName` and `GetWebJobsConnectionSection`. */
const PREFIX = 'AzureWebJobs';
/** The connection a trigger without one uses (`ConnectionStringNames.Storage`), i.e. `AzureWebJobsStorage`. */
export const DEFAULT_CONNECTION = 'Storage';

/** The setting, or any key of its section (`<name>__…`); empty values count as unset. */
function section(
  settingName: string,
  env: NodeJS.ProcessEnv,
): { value?: string; get(key: string): string | undefined; exists: boolean } {
  const prefix = `${settingName}__`.toLowerCase();
  const entries = Object.entries(env).filter(([key, v]) => v && key.toLowerCase().startsWith(prefix));
  const get = (key: string) => entries.find(([k]) => k.toLowerCase() === `${prefix}${key.toLowerCase()}`)?.[1];
  const value = env[settingName] || undefined;
  return { value, get, exists: value !== undefined || entries.length > 0 };
}

function credentialOf(get: (key: string) => string | undefined): TokenCredential {
  const clientId = get('clientId');
  if (get('credential')?.toLowerCase() === 'managedidentity')
    return clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
  return new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {});
}

function serviceUri(get: (key: string) => string | undefined, service: 'queue' | 'blob', settingName: string): string {
  const uri = get(`${service}ServiceUri`) ?? get('serviceUri');
  if (uri) return uri;
  const account = get('accountName');
  if (account) return `https://${account}.${service}.core.windows.net`;
  throw new Error(
    `Storage connection '${settingName}' has no ${service} endpoint: set ${settingName}__${service}ServiceUri (or ${settingName}__accountName).`,
  );
}

/** The `AzureWebJobs<connection>` section first, else `<connection>` itself. */
export function resolveStorageConnection(connection: string, env: NodeJS.ProcessEnv = process.env): StorageConnection {
  const name = connection.trim() || DEFAULT_CONNECTION;
  const prefixed = section(`${PREFIX}${name}`, env);
  const settingName = prefixed.exists ? `${PREFIX}${name}` : name;
  const { value, get, exists } = prefixed.exists ? prefixed : section(name, env);
  if (!exists) throw new MissingConnectionError(name);
  if (value)
    return {
      queues: () => QueueServiceClient.fromConnectionString(value),
      blobs: () => BlobServiceClient.fromConnectionString(value),
    };
  const credential = credentialOf(get);
  return {
    queues: () => new QueueServiceClient(serviceUri(get, 'queue', settingName), credential),
    blobs: () => new BlobServiceClient(serviceUri(get, 'blob', settingName), credential),
  };
}
