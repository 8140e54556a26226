import type { TableClient } from '@azure/data-tables';
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
