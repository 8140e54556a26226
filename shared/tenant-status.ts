import { RestError, type TableClient } from '@azure/data-tables';

/**
 * What the last poll of each tenant did: when, with what outcome, and the cause when it failed.
 * Read by `npm start`'s progress display, the admin endpoints and `doctor`.
 */
export const TENANT_STATUS_TABLE = 'tenantstatus';
const PARTITION = 'status';

export interface TenantStatus {
  tenantId: string;
  lastPollAt?: string;
  lastOutcome?: string;
  lastError?: string;
  /** Incident events enqueued for this tenant since it was added. */
  eventsEnqueued: number;
  checkpoint?: string;
}

interface StatusEntity {
  partitionKey: string;
  rowKey: string;
  lastPollAt?: string;
  lastOutcome?: string;
  lastError?: string;
  eventsEnqueued?: number;
  checkpoint?: string;
}

export class TenantStatusStore {
  #tableReady: Promise<void> | undefined;

  constructor(private readonly table: TableClient) {}

  #ensureTable(): Promise<void> {
    this.#tableReady ??= this.table.createTable().catch((err: unknown) => {
      this.#tableReady = undefined;
      throw err;
    });
    return this.#tableReady;
  }

  async get(tenantId: string): Promise<TenantStatus> {
    await this.#ensureTable();
    try {
      return fromEntity(await this.table.getEntity<StatusEntity>(PARTITION, tenantId));
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return { tenantId, eventsEnqueued: 0 };
      throw err;
    }
  }

  async list(): Promise<TenantStatus[]> {
    await this.#ensureTable();
    const all: TenantStatus[] = [];
    for await (const e of this.table.listEntities<StatusEntity>({ queryOptions: { filter: `PartitionKey eq '${PARTITION}'` } })) all.push(fromEntity(e));
    return all;
  }

  /** Records a poll; the event count is added to the running total (a lost race costs only a count). */
  async recordPoll(tenantId: string, poll: { outcome: string; error?: string; eventsEnqueued: number; checkpoint?: string }, at = new Date()): Promise<void> {
    const current = await this.get(tenantId);
    await this.table.upsertEntity<StatusEntity>(
      {
        partitionKey: PARTITION,
        rowKey: tenantId,
        lastPollAt: at.toISOString(),
        lastOutcome: poll.outcome,
        lastError: poll.error ?? '',
        eventsEnqueued: current.eventsEnqueued + poll.eventsEnqueued,
        checkpoint: poll.checkpoint ?? current.checkpoint ?? '',
      },
      'Replace',
    );
  }
}

function fromEntity(e: StatusEntity): TenantStatus {
  return {
    tenantId: e.rowKey,
    lastPollAt: e.lastPollAt || undefined,
    lastOutcome: e.lastOutcome || undefined,
    lastError: e.lastError || undefined,
    eventsEnqueued: e.eventsEnqueued ?? 0,
    checkpoint: e.checkpoint || undefined,
  };
}
