import { hostname } from 'node:os';
import { RestError, type BlobServiceClient } from '@azure/storage-blob';
import type { ScheduleMonitor, ScheduleStatus } from './timer-trigger.js';

/** The container the host keeps its own state in (timer status, locks) in AzureWebJobsStorage. */
export const HOSTS_CONTAINER = 'azure-webjobs-hosts';

/** .NET's unchecked 32-bit `hash = hash * 31 + c` from 23 (azure-functions-host src/WebJobs.Script/Utility.cs `GetStableHash`). */
function stableHash(value: string): number {
  let hash = 23;
  for (let i = 0; i < value.length; i++) hash = (Math.imul(hash, 31) + value.charCodeAt(i)) | 0;
  return hash;
}

/**
 * The host id, which names the host's state in storage. An explicit `AzureFunctionsWebHost__hostid`
 * wins; run locally (no site name), the real host derives a stable id from the machine name and the
 * app's folder (azure-functions-host src/WebJobs.Script/Host/ScriptHostIdProvider.cs
 * `GetDefaultHostId`): letters and digits of the machine name, '-', |hash of the path|, at most 32
 * characters, lower case, no trailing '-'.
 */
export function localHostId(appDir: string, env: NodeJS.ProcessEnv = process.env, machineName = hostname()): string {
  const explicit = env.AzureFunctionsWebHost__hostid ?? env.AzureFunctionsWebHost__hostId;
  if (explicit) return explicit;
  const machine = [...machineName].filter((c) => /[\p{L}\p{N}]/u.test(c)).join('');
  return `${machine}-${Math.abs(stableHash(appDir))}`.slice(0, 32).toLowerCase().replace(/-+$/, '');
}

/**
 * Timer status in Blob storage where the real host keeps it: `azure-webjobs-hosts/timers/{hostId}/
 * {timerName}/status`, one JSON document (azure-webjobs-sdk-extensions
 * src/WebJobs.Extensions.Timers.Storage/StorageScheduleMonitor.cs). A missing blob is "never ran";
 * a failed write is logged and the timer goes on (best effort, as there).
 */
export class BlobScheduleMonitor implements ScheduleMonitor {
  readonly #service: BlobServiceClient;
  readonly #hostId: string;
  #containerReady: Promise<unknown> | undefined;

  constructor(service: BlobServiceClient, hostId: string) {
    this.#service = service;
    this.#hostId = hostId;
  }

  #blob(timerName: string) {
    return this.#service
      .getContainerClient(HOSTS_CONTAINER)
      .getBlockBlobClient(`timers/${this.#hostId}/${timerName}/status`);
  }

  async getStatus(timerName: string): Promise<ScheduleStatus | undefined> {
    try {
      const text = (await this.#blob(timerName).downloadToBuffer()).toString('utf8');
      const status = JSON.parse(text) as Partial<ScheduleStatus>;
      if (typeof status.Last !== 'string' || typeof status.Next !== 'string' || typeof status.LastUpdated !== 'string')
        return undefined;
      return { Last: status.Last, Next: status.Next, LastUpdated: status.LastUpdated };
    } catch (error) {
      if (error instanceof RestError && error.statusCode === 404) return undefined;
      throw error;
    }
  }

  async updateStatus(timerName: string, status: ScheduleStatus): Promise<void> {
    this.#containerReady ??= this.#service
      .getContainerClient(HOSTS_CONTAINER)
      .createIfNotExists()
      .catch((error: unknown) => {
        this.#containerReady = undefined;
        throw error;
      });
    await this.#containerReady;
    const body = JSON.stringify(status);
    await this.#blob(timerName).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
    });
  }
}
