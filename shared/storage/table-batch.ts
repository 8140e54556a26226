import type { TableClient, TransactionAction } from '@azure/data-tables';

/**
 * Group commit for Table storage: writes that concurrent invocations issue within the same moment
 * for the same partition go to the service as one transaction (up to 100 entities). The host runs a
 * queue batch's invocations at once, so a batch of one tenant's events costs one request where it
 * would cost sixteen. Each caller's writes stay atomic together and get their own outcome: when a
 * combined transaction fails (one write's conflict fails them all, and applies none), every group
 * is retried on its own, so a 409 or 412 reaches only the caller it belongs to.
 */
const MAX_TRANSACTION_ACTIONS = 100;

interface Group {
  actions: TransactionAction[];
  resolve(etags: (string | undefined)[]): void;
  reject(err: unknown): void;
}

interface PendingBatch {
  groups: Group[];
  rowKeys: Set<string>;
  size: number;
}

const keysOf = (action: TransactionAction) => action[1] as { partitionKey: string; rowKey: string };

export class TableWriteBatcher {
  readonly #pending = new Map<string, PendingBatch>();

  /**
   * @param lingerMs how long a batch waits for more writes after its first: 0 for writes issued in
   *   the same turn of the event loop; a few milliseconds for writes that follow I/O finishing at
   *   slightly different moments.
   * @param writersLeft how many more writes the caller knows may still come for a partition: at 0
   *   the batch goes at once instead of lingering.
   */
  constructor(
    private readonly table: () => Promise<TableClient>,
    private readonly lingerMs = 0,
    private readonly writersLeft?: (partitionKey: string) => number,
  ) {}

  /** Applies the actions (one partition, atomically) and answers each entity's new ETag, in order. */
  submit(actions: TransactionAction[]): Promise<(string | undefined)[]> {
    const partitionKey = keysOf(actions[0]!).partitionKey;
    if (actions.some((a) => keysOf(a).partitionKey !== partitionKey))
      throw new Error('A group of table writes must stay in one partition');
    return new Promise((resolve, reject) => {
      const group: Group = { actions, resolve, reject };
      let batch = this.#pending.get(partitionKey);
      // A transaction may touch an entity once: a second write to the same row waits for the next one.
      if (
        batch &&
        (batch.size + actions.length > MAX_TRANSACTION_ACTIONS ||
          actions.some((a) => batch!.rowKeys.has(keysOf(a).rowKey)))
      ) {
        this.#flush(partitionKey);
        batch = undefined;
      }
      if (!batch) {
        batch = { groups: [], rowKeys: new Set(), size: 0 };
        this.#pending.set(partitionKey, batch);
        const flushIfCurrent = () => this.#pending.get(partitionKey) === batch && this.#flush(partitionKey);
        if (this.lingerMs > 0) setTimeout(flushIfCurrent, this.lingerMs);
        else setImmediate(flushIfCurrent);
      }
      batch.groups.push(group);
      batch.size += actions.length;
      for (const action of actions) batch.rowKeys.add(keysOf(action).rowKey);
      if (this.writersLeft?.(partitionKey) === 0) this.#flush(partitionKey);
    });
  }

  #flush(partitionKey: string): void {
    const batch = this.#pending.get(partitionKey);
    if (!batch) return;
    this.#pending.delete(partitionKey);
    void this.#run(batch.groups);
  }

  async #run(groups: Group[]): Promise<void> {
    if (groups.length === 1) return this.#runGroup(groups[0]!);
    let etags: (string | undefined)[];
    try {
      etags = await this.#apply(groups.flatMap((g) => g.actions));
    } catch {
      await Promise.all(groups.map((g) => this.#runGroup(g)));
      return;
    }
    let offset = 0;
    for (const group of groups) {
      group.resolve(etags.slice(offset, offset + group.actions.length));
      offset += group.actions.length;
    }
  }

  async #runGroup(group: Group): Promise<void> {
    try {
      group.resolve(await this.#apply(group.actions));
    } catch (err) {
      group.reject(err);
    }
  }

  async #apply(actions: TransactionAction[]): Promise<(string | undefined)[]> {
    const table = await this.table();
    if (actions.length > 1) return (await table.submitTransaction(actions)).subResponses.map((r) => r.etag?.trim());
    const action = actions[0]!;
    switch (action[0]) {
      case 'create':
        return [(await table.createEntity(action[1])).etag];
      case 'update':
        return [(await table.updateEntity(action[1], action[2], action[3])).etag];
      case 'upsert':
        return [(await table.upsertEntity(action[1], action[2], action[3])).etag];
      case 'delete':
        await table.deleteEntity(action[1].partitionKey, action[1].rowKey);
        return [undefined];
    }
  }
}
