import { createHash } from 'node:crypto';
import { RestError, type TableClient } from '@azure/data-tables';

/**
 * Remembers accepted request signatures in Table storage so a signed request is accepted once,
 * whichever instance receives it: the first insert wins, any later one finds the row (409).
 * Rows are partitioned by the signed timestamp's window; windows past the tolerance are pruned lazily.
 */
export const WEBHOOK_REPLAY_TABLE = 'webhookreplay';

/** Most rows one pruning pass deletes, so a pass never holds a request up for long. */
const MAX_PRUNED_PER_PASS = 200;

export interface ReplayGuardOptions {
  /** The accepted timestamp skew: a signature is remembered until its timestamp is this far in the past. */
  windowSeconds: number;
  now?: () => number;
}

export class ReplayGuard {
  readonly #windowSeconds: number;
  readonly #now: () => number;
  #tableReady: Promise<void> | undefined;
  #lastPruneAt = 0;

  constructor(
    private readonly table: TableClient,
    options: ReplayGuardOptions,
  ) {
    this.#windowSeconds = options.windowSeconds;
    this.#now = options.now ?? Date.now;
  }

  /** Records a signature; false when it was recorded before (a replay). */
  async remember(signature: Uint8Array, timestamp: number): Promise<boolean> {
    await this.#ensureTable();
    try {
      await this.table.createEntity({ ...this.#key(signature, timestamp), signedAt: timestamp });
      return true;
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 409) return false;
      throw err;
    }
  }

  /** Forgets a signature whose request could not be completed, so the sender's identical retry is accepted. */
  async forget(signature: Uint8Array, timestamp: number): Promise<void> {
    const { partitionKey, rowKey } = this.#key(signature, timestamp);
    try {
      await this.table.deleteEntity(partitionKey, rowKey);
    } catch (err) {
      if (!(err instanceof RestError && err.statusCode === 404)) throw err;
    }
  }

  /**
   * Deletes rows whose whole window is older than the tolerance (their timestamps are refused anyway).
   * Runs at most once per window per instance; returns how many rows it deleted.
   */
  async pruneExpired(): Promise<number> {
    const nowMs = this.#now();
    if (nowMs - this.#lastPruneAt < this.#windowSeconds * 1000) return 0;
    this.#lastPruneAt = nowMs;
    await this.#ensureTable();
    // A row in window w holds timestamps below (w + 1) * window: the rows of every window before the one
    // the oldest acceptable timestamp falls in hold only timestamps that are refused anyway.
    const oldestAcceptable = this.#window(Math.floor(nowMs / 1000) - this.#windowSeconds);
    let deleted = 0;
    const rows = this.table.listEntities<{ partitionKey: string; rowKey: string }>({
      // Stryker disable next-line ArrayDeclaration: equivalent: the projection only trims what the listing carries; the pass reads nothing but the keys
      queryOptions: { filter: `PartitionKey lt '${windowKey(oldestAcceptable)}'`, select: ['PartitionKey', 'RowKey'] },
    });
    for await (const row of rows) {
      await this.table.deleteEntity(row.partitionKey, row.rowKey).catch((err: unknown) => {
        if (!(err instanceof RestError && err.statusCode === 404)) throw err;
      });
      if (++deleted >= MAX_PRUNED_PER_PASS) break;
    }
    return deleted;
  }

  #key(signature: Uint8Array, timestamp: number) {
    // The row key is a hash of the signature: the table never holds a usable signature.
    return {
      partitionKey: windowKey(this.#window(timestamp)),
      rowKey: createHash('sha256').update(signature).digest('hex'),
    };
  }

  #window(timestampSeconds: number): number {
    return Math.max(0, Math.floor(timestampSeconds / this.#windowSeconds));
  }

  #ensureTable(): Promise<void> {
    this.#tableReady ??= this.table.createTable().catch((err: unknown) => {
      this.#tableReady = undefined;
      throw err;
    });
    return this.#tableReady;
  }
}

/** Zero-padded so that partition keys sort as the windows do. */
function windowKey(window: number): string {
  return String(window).padStart(12, '0');
}
