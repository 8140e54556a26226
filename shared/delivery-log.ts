import { RestError, type TableClient } from '@azure/data-tables';
import { LazyTable } from './table.js';

/**
 * What the enricher has delivered, so an event is routed once however often the queue delivers it.
 * Each destination's delivery is recorded as it succeeds (a retry after a partial fan-out skips the
 * destinations already served), and the event as a whole once every destination has it.
 */
export const DELIVERY_LOG_TABLE = 'deliveries';

interface DeliveryEntity {
  partitionKey: string;
  rowKey: string;
  deliveredAt: string;
  routes?: string;
}

interface ClaimEntity {
  partitionKey: string;
  rowKey: string;
  claimedAt: string;
}

/** Held by the one invocation routing an event; a claim older than its lease is taken over (a crashed invocation). */
export interface EventClaim {
  eventId: string;
  etag: string;
}

const CLAIM_SUFFIX = '|~claim';

interface FingerprintEntity {
  partitionKey: string;
  rowKey: string;
  fingerprint: string;
}

/** Table keys may not contain / \ # ? or control characters; event ids are tenant:incident:timestamp. */
function rowKeyOf(eventId: string, destination?: string): string {
  const safe = (s: string) => encodeURIComponent(s).replace(/%/g, '~');
  return destination ? `${safe(eventId)}|${safe(destination)}` : safe(eventId);
}

function partitionOf(eventId: string): string {
  return eventId.split(':')[0] || 'unknown';
}

export class DeliveryLog {
  readonly #table: LazyTable;

  constructor(table: TableClient) {
    this.#table = new LazyTable(table);
  }

  async #exists(partitionKey: string, rowKey: string): Promise<boolean> {
    return (await this.#table.find(partitionKey, rowKey)) !== undefined;
  }

  /**
   * Claims the event for this invocation, so that two deliveries of the same message running at once
   * (the queue delivers at least once) never both route it. Undefined when another invocation holds it.
   */
  async claim(eventId: string, leaseMs = 2 * 60_000, now = new Date()): Promise<EventClaim | undefined> {
    const table = await this.#table.ready();
    const entity: ClaimEntity = { partitionKey: partitionOf(eventId), rowKey: rowKeyOf(eventId) + CLAIM_SUFFIX, claimedAt: now.toISOString() };
    try {
      const created = await table.createEntity(entity);
      return { eventId, etag: created.etag! };
    } catch (err) {
      if (!(err instanceof RestError && err.statusCode === 409)) throw err;
    }
    const held = await this.#table.find<ClaimEntity>(entity.partitionKey, entity.rowKey);
    if (held && now.getTime() - Date.parse(held.claimedAt) < leaseMs) return undefined;
    try {
      const taken = held ? await table.updateEntity(entity, 'Replace', { etag: held.etag }) : await table.createEntity(entity);
      return { eventId, etag: taken.etag! };
    } catch (err) {
      if (err instanceof RestError && (err.statusCode === 409 || err.statusCode === 412)) return undefined;
      throw err;
    }
  }

  /** Gives the claim up (done, or failed and to be retried). */
  async release(claim: EventClaim): Promise<void> {
    try {
      await (await this.#table.ready()).deleteEntity(partitionOf(claim.eventId), rowKeyOf(claim.eventId) + CLAIM_SUFFIX, { etag: claim.etag });
    } catch (err) {
      if (!(err instanceof RestError && (err.statusCode === 404 || err.statusCode === 412))) throw err;
    }
  }

  /** Whether the whole event was routed already. */
  isRouted(eventId: string): Promise<boolean> {
    return this.#exists(partitionOf(eventId), rowKeyOf(eventId));
  }

  isDelivered(eventId: string, destination: string): Promise<boolean> {
    return this.#exists(partitionOf(eventId), rowKeyOf(eventId, destination));
  }

  async recordDelivery(eventId: string, destination: string, at = new Date()): Promise<void> {
    await (await this.#table.ready()).upsertEntity<DeliveryEntity>({ partitionKey: partitionOf(eventId), rowKey: rowKeyOf(eventId, destination), deliveredAt: at.toISOString() }, 'Replace');
  }

  async recordRouted(eventId: string, routes: string[], at = new Date()): Promise<void> {
    await (await this.#table.ready()).upsertEntity<DeliveryEntity>(
      { partitionKey: partitionOf(eventId), rowKey: rowKeyOf(eventId), deliveredAt: at.toISOString(), routes: routes.join(',') },
      'Replace',
    );
  }

  /** The content fingerprint of the incident version last routed (see write-back.ts). */
  async lastRoutedFingerprint(tenantId: string, incidentId: number): Promise<string | undefined> {
    return (await this.#table.find<FingerprintEntity>(tenantId, `incident-${incidentId}`))?.fingerprint;
  }

  async recordRoutedFingerprint(tenantId: string, incidentId: number, fingerprint: string): Promise<void> {
    await (await this.#table.ready()).upsertEntity<FingerprintEntity>({ partitionKey: tenantId, rowKey: `incident-${incidentId}`, fingerprint }, 'Replace');
  }
}
