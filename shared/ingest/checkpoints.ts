import { RestError, type TableClient } from '@azure/data-tables';
import { LazyTable } from '../storage/table.js';

/**
 * Per-tenant poll checkpoints in Table storage. A checkpoint advances only with the ETag it was read
 * with, so of two pollers racing on one tenant exactly one advances it; the other learns of the
 * conflict (its events are already enqueued and the enricher drops duplicates by event id).
 */
export const CHECKPOINTS_TABLE = 'checkpoints';
const PARTITION = 'checkpoint';

export interface Checkpoint {
  tenantId: string;
  /** The newest `lastUpdateTime` delivered (normalised), or undefined before the first poll. */
  lastUpdateTime?: string;
  /** Event ids delivered inside the overlap window before `lastUpdateTime`, dropped if seen again. */
  boundaryEventIds: string[];
  /** The ETag read with it; undefined when no checkpoint exists yet. */
  etag?: string;
}

interface CheckpointEntity {
  partitionKey: string;
  rowKey: string;
  lastUpdateTime: string;
  boundaryEventIds: string;
}

export class CheckpointConflictError extends Error {
  constructor(readonly tenantId: string) {
    super(`The checkpoint of tenant ${tenantId} was advanced by another poller`);
    // Stryker disable next-line StringLiteral: its one caller (ingest) tells it by instanceof and reports status 'conflict'; the name reaches no one
    this.name = 'CheckpointConflictError';
  }
}

// A table property holds at most 64 KiB (32K UTF-16 characters): keep the boundary list well below.
export const MAX_BOUNDARY_IDS = 300;

export class CheckpointStore {
  readonly #table: LazyTable;

  constructor(table: TableClient) {
    this.#table = new LazyTable(table);
  }

  async get(tenantId: string): Promise<Checkpoint> {
    const e = await this.#table.find<CheckpointEntity>(PARTITION, tenantId);
    if (!e) return { tenantId, boundaryEventIds: [] };
    return {
      tenantId,
      lastUpdateTime: e.lastUpdateTime,
      boundaryEventIds: JSON.parse(e.boundaryEventIds) as string[],
      etag: e.etag,
    };
  }

  /** Advances the checkpoint read as `previous`; throws CheckpointConflictError if someone else moved it first. */
  async advance(previous: Checkpoint, next: { lastUpdateTime: string; boundaryEventIds: string[] }): Promise<void> {
    const table = await this.#table.ready();
    const entity: CheckpointEntity = {
      partitionKey: PARTITION,
      rowKey: previous.tenantId,
      lastUpdateTime: next.lastUpdateTime,
      boundaryEventIds: JSON.stringify(next.boundaryEventIds.slice(-MAX_BOUNDARY_IDS)),
    };
    try {
      if (previous.etag) await table.updateEntity(entity, 'Replace', { etag: previous.etag });
      else await table.createEntity(entity);
    } catch (err) {
      if (err instanceof RestError && (err.statusCode === 412 || err.statusCode === 409))
        throw new CheckpointConflictError(previous.tenantId);
      throw err;
    }
  }
}
