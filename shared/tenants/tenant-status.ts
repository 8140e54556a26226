import { RestError, type TableClient, type TableEntityResult } from '@azure/data-tables';
import { LazyTable } from '../storage/table.js';

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
  /** The last poll that failed (or is being retried) and why, kept after later polls succeed. */
  lastFailureAt?: string;
  lastFailure?: string;
  /** Incident events enqueued for this tenant since it was added. */
  eventsEnqueued: number;
  /** Of those, the ones enqueued in the last 24 hours (counted per hour, so up to an hour more). */
  eventsLast24h: number;
  checkpoint?: string;
}

/** A tenant's status row being read ahead of `recordPoll`. */
export interface StatusRead {
  readonly tenantId: string;
  readonly read: Promise<TableEntityResult<StatusEntity> | undefined>;
}

interface StatusEntity {
  partitionKey: string;
  rowKey: string;
  lastPollAt?: string;
  lastOutcome?: string;
  lastError?: string;
  lastFailureAt?: string;
  lastFailure?: string;
  eventsEnqueued?: number;
  /** JSON: hour (epoch ms of its start) → events enqueued in it, the last 24 hours only. */
  hourlyEnqueued?: string;
  checkpoint?: string;
}

export class TenantStatusStore {
  readonly #table: LazyTable;

  constructor(table: TableClient) {
    this.#table = new LazyTable(table);
  }

  async get(tenantId: string, now = new Date()): Promise<TenantStatus> {
    const e = await this.#table.find<StatusEntity>(PARTITION, tenantId);
    return e ? fromEntity(e, now) : { tenantId, eventsEnqueued: 0, eventsLast24h: 0 };
  }

  async list(now = new Date()): Promise<TenantStatus[]> {
    const table = await this.#table.ready();
    const all: TenantStatus[] = [];
    for await (const e of table.listEntities<StatusEntity>({
      queryOptions: { filter: `PartitionKey eq '${PARTITION}'` },
    }))
      all.push(fromEntity(e, now));
    return all;
  }

  /** Starts reading a tenant's row for `recordPoll`, so that the read overlaps the poll it records. */
  prefetch(tenantId: string): StatusRead {
    const read = this.#table.find<StatusEntity>(PARTITION, tenantId);
    read.catch(() => undefined); // a failed read is made again when the poll is recorded
    return { tenantId, read };
  }

  /**
   * Records a poll; the event count is added to the running total. Instances record concurrently, so
   * the row is replaced only if unchanged since read (ETag), else read again: no count is lost.
   * `read`: the row as `prefetch` read it for this tenant, used for the first attempt. Resolves to the
   * tenant's checkpoint as recorded: the poll's, else the one recorded before (the checkpoint lag metric).
   */
  async recordPoll(
    tenantId: string,
    poll: { outcome: string; error?: string; eventsEnqueued: number; checkpoint?: string },
    { at = new Date(), read }: { at?: Date; read?: StatusRead } = {},
  ): Promise<string | undefined> {
    const table = await this.#table.ready();
    for (let attempt = 1; ; attempt++) {
      const found =
        attempt === 1 && read?.tenantId === tenantId
          ? await read.read.catch(() => this.#table.find<StatusEntity>(PARTITION, tenantId))
          : await this.#table.find<StatusEntity>(PARTITION, tenantId);
      const current: Partial<TenantStatus> = found ? fromEntity(found, at) : {};
      const hourly = recentHours(found?.hourlyEnqueued, at);
      const hour = hourOf(at);
      if (poll.eventsEnqueued > 0) hourly.set(hour, (hourly.get(hour) ?? 0) + poll.eventsEnqueued);
      const entity: StatusEntity = {
        partitionKey: PARTITION,
        rowKey: tenantId,
        lastPollAt: at.toISOString(),
        lastOutcome: poll.outcome,
        lastError: poll.error ?? '',
        lastFailureAt: poll.error ? at.toISOString() : (current.lastFailureAt ?? ''),
        lastFailure: poll.error ?? current.lastFailure ?? '',
        eventsEnqueued: (current.eventsEnqueued ?? 0) + poll.eventsEnqueued,
        hourlyEnqueued: JSON.stringify(Object.fromEntries(hourly)),
        checkpoint: poll.checkpoint ?? current.checkpoint ?? '',
      };
      try {
        if (found) await table.updateEntity(entity, 'Replace', { etag: found.etag });
        else await table.createEntity(entity);
        return entity.checkpoint || undefined;
      } catch (err) {
        // 412: changed since read; 409: created meanwhile. Both mean another instance recorded first.
        const raced = err instanceof RestError && (err.statusCode === 412 || err.statusCode === 409);
        if (!raced || attempt >= MAX_RECORD_ATTEMPTS) throw err;
      }
    }
  }
}

/** Concurrent records of one tenant's polls are a handful at most (one per instance polling it). */
const MAX_RECORD_ATTEMPTS = 10;

const HOUR_MS = 3_600_000;
const hourOf = (at: Date) => Math.floor(at.getTime() / HOUR_MS) * HOUR_MS;

/** The hourly counts of the 24 hours up to `at` (this hour included); a row written before them, or unreadable, has none. */
function recentHours(json: string | undefined, at: Date): Map<number, number> {
  const oldest = hourOf(at) - 23 * HOUR_MS;
  const kept = new Map<number, number>();
  let parsed: unknown;
  try {
    parsed = json ? JSON.parse(json) : {};
  } catch {
    return kept;
  }
  if (typeof parsed !== 'object' || parsed === null) return kept;
  for (const [hour, count] of Object.entries(parsed)) {
    const start = Number(hour);
    // An hour ahead is kept: another instance's clock may run ahead of this one's.
    if (start >= oldest && start <= hourOf(at) + HOUR_MS && Number.isSafeInteger(count) && (count as number) > 0)
      kept.set(start, count as number);
  }
  return kept;
}

function fromEntity(e: StatusEntity, now: Date): TenantStatus {
  let last24h = 0;
  for (const count of recentHours(e.hourlyEnqueued, now).values()) last24h += count;
  return {
    tenantId: e.rowKey,
    lastPollAt: e.lastPollAt || undefined,
    lastOutcome: e.lastOutcome || undefined,
    lastError: e.lastError || undefined,
    lastFailureAt: e.lastFailureAt || undefined,
    lastFailure: e.lastFailure || undefined,
    eventsEnqueued: e.eventsEnqueued ?? 0,
    eventsLast24h: last24h,
    checkpoint: e.checkpoint || undefined,
  };
}
