import { RestError, type BlobLeaseClient, type BlockBlobClient, type ContainerClient } from '@azure/storage-blob';

/** A held lock: the lease on its blob. */
export interface DistributedLock {
  readonly lockId: string;
}

/** What the singleton listener needs of a lock store (azure-webjobs-sdk …/Singleton/IDistributedLockManager.cs). */
export interface DistributedLockManager {
  /** One attempt: the lock, or undefined when another holder has it. */
  tryLock(lockId: string, periodMs: number): Promise<DistributedLock | undefined>;
  /** True when renewed; false after a server error (5xx: try again sooner); throws when the lease is lost. */
  renew(lock: DistributedLock): Promise<boolean>;
  release(lock: DistributedLock): Promise<void>;
}

/** The directory of the lock blobs in the hosts container (BlobLeaseDistributedLockManager.SingletonLocks). */
export const LOCKS_DIRECTORY = 'locks';
/** .NET's DateTimeOffset.MinValue: the "last renewal" of a lease never renewed. */
const DOTNET_MIN_DATE_MS = Date.parse('0001-01-01T00:00:00Z');

class LeaseLock implements DistributedLock {
  lastRenewalMs = DOTNET_MIN_DATE_MS;
  lastRenewalLatencyMs = 0;

  constructor(
    readonly lockId: string,
    readonly lease: BlobLeaseClient,
    readonly periodMs: number,
  ) {}
}

const statusOf = (error: unknown): number | undefined => (error instanceof RestError ? error.statusCode : undefined);

/** "yyyy-MM-ddTHH:mm:ss.FFFZ": .NET drops trailing zeros of the fraction, and the point with them. */
function formatRenewal(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.replace(/\.(\d{3})Z$/, (_, fraction: string) =>
    fraction.replace(/0+$/, '') ? `.${fraction.replace(/0+$/, '')}Z` : 'Z',
  );
}

/** C#'s `(int)` of a double: .NET 8 on x64 gives int.MinValue for a value out of range. */
const toInt32 = (value: number): number => (value >= -(2 ** 31) && value < 2 ** 31 ? Math.trunc(value) : -(2 ** 31));

/**
 * Singleton locks as blob leases, a port of azure-webjobs-sdk
 * src/Microsoft.Azure.WebJobs.Host.Storage/Singleton/BlobLeaseDistributedLockManager.cs: the lock
 * `{lockId}` is the blob `locks/{lockId}` in the `azure-webjobs-hosts` container of AzureWebJobsStorage,
 * held by a lease of the lock period. Same blob, same lease: a local host and an Azure host of the same
 * host id respect each other's locks.
 */
export class BlobLeaseLockManager implements DistributedLockManager {
  readonly #container: ContainerClient;
  readonly #log: (line: string) => void;

  constructor(container: ContainerClient, log: (line: string) => void) {
    this.#container = container;
    this.#log = log;
  }

  #blob(lockId: string): BlockBlobClient {
    return this.#container.getBlockBlobClient(`${LOCKS_DIRECTORY}/${lockId}`);
  }

  async tryLock(lockId: string, periodMs: number): Promise<DistributedLock | undefined> {
    const blob = this.#blob(lockId);
    const leaseId = await this.#tryAcquireLease(blob, periodMs);
    // A listener lock names no owner (SingletonListener passes no function instance id), so no metadata is written.
    return leaseId === undefined ? undefined : new LeaseLock(lockId, blob.getBlobLeaseClient(leaseId), periodMs);
  }

  /**
   * `TryAcquireLeaseAsync`: read the lease state first (to spare the 409s a taken lease answers), acquire
   * only when it is available, expired or broken; a missing blob is created (and its container) and
   * acquired once; a 409 at any point means someone else holds it.
   */
  async #tryAcquireLease(blob: BlockBlobClient, periodMs: number): Promise<string | undefined> {
    const acquire = async () => (await blob.getBlobLeaseClient().acquireLease(Math.round(periodMs / 1000))).leaseId;
    try {
      const state = await this.#leaseState(blob);
      if (state === undefined || state === 'available' || state === 'expired' || state === 'broken')
        return await acquire();
      return undefined;
    } catch (error) {
      if (statusOf(error) === 409) return undefined;
      if (statusOf(error) !== 404) throw error;
    }
    await this.#tryCreate(blob);
    try {
      return await acquire();
    } catch (error) {
      if (statusOf(error) === 409) return undefined;
      throw error;
    }
  }

  /** `ReadLeaseBlobMetadata`: undefined when the blob does not exist. */
  async #leaseState(blob: BlockBlobClient): Promise<string | undefined> {
    try {
      return (await blob.getProperties()).leaseState ?? 'available';
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  /** `TryCreateAsync`: an empty blob, not over an existing one; the container first if it is missing. */
  async #tryCreate(blob: BlockBlobClient): Promise<void> {
    try {
      await this.#uploadEmpty(blob);
      return;
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
    try {
      await this.#container.createIfNotExists();
    } catch (error) {
      if (statusOf(error) === 409 && (error as RestError).code === 'ContainerBeingDeleted')
        throw new Error('The host container is pending deletion and currently inaccessible.');
      throw error;
    }
    await this.#uploadEmpty(blob);
  }

  async #uploadEmpty(blob: BlockBlobClient): Promise<void> {
    try {
      await blob.upload('', 0, { conditions: { ifNoneMatch: '*' } });
    } catch (error) {
      // It exists already, or someone else holds a lease on it: nothing to create.
      if (statusOf(error) !== 409 && statusOf(error) !== 412) throw error;
    }
  }

  /**
   * `SingletonLockHandle.RenewAsync`: a server error (5xx) is a warning and the renewal is tried again
   * sooner; any other failure (the lease expired and another host took it, the blob is gone) is logged
   * as an error and thrown: the lock is lost.
   */
  async renew(lock: DistributedLock): Promise<boolean> {
    const held = lock as LeaseLock;
    const requestStart = Date.now();
    try {
      await held.lease.renewLease();
      held.lastRenewalMs = Date.now();
      held.lastRenewalLatencyMs = held.lastRenewalMs - requestStart;
      return true;
    } catch (error) {
      if (!(error instanceof RestError)) throw error;
      const status = error.statusCode ?? 0;
      const code = `${status}${error.code ? `: ${error.code}` : ''}`;
      if (status >= 500 && status < 600) {
        this.#log(`[warning] Singleton lock renewal failed for blob '${held.lockId}' with error code ${code}.`);
        return false;
      }
      this.#log(
        `[error] Singleton lock renewal failed for blob '${held.lockId}' with error code ${code}. ` +
          `The last successful renewal completed at ${formatRenewal(held.lastRenewalMs)} (${toInt32(Date.now() - held.lastRenewalMs)} milliseconds ago) ` +
          `with a duration of ${toInt32(held.lastRenewalLatencyMs)} milliseconds. The lease period was ${toInt32(held.periodMs)} milliseconds.`,
      );
      throw error;
    }
  }

  /** `ReleaseLeaseAsync`: a blob gone, or a lease someone else holds now, leaves nothing to release. */
  async release(lock: DistributedLock): Promise<void> {
    try {
      await (lock as LeaseLock).lease.releaseLease();
    } catch (error) {
      if (statusOf(error) !== 404 && statusOf(error) !== 409) throw error;
    }
  }
}
