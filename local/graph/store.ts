import { parseTimestamp, UpdateClock } from '../defender/timestamps.js';
import type { Incident as DefenderIncident } from '../defender/types.js';
import type { GraphIncident } from './types.js';

/**
 * Graph incidents per tenant, stored in Graph's shape with their alerts. A tenant must be provisioned before it
 * has data (the API answers 403 for one that never was, as the Defender stand-in does for a tenant without
 * Defender). Incidents are stored as given (unknown fields kept) and handed out as copies.
 */
export interface TenantInfo {
  tenantId: string;
  displayName: string;
  incidentCount: number;
}

interface TenantData {
  displayName: string;
  incidents: Map<string, GraphIncident>;
  /**
   * What advanced hunting's tables are built from, by Defender incident id. Hunting reads the tenant's
   * telemetry, not its incidents as the incidents API serves them: Defender-shaped incidents carry the devices,
   * accounts and evidence the tables hold (local/defender/hunting-tables.ts), and do not change when an analyst
   * updates the Graph incident.
   */
  huntingSource: Map<number, DefenderIncident>;
}

const byNumericId = (a: GraphIncident, b: GraphIncident): number =>
  Number(a.id) - Number(b.id) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class GraphIncidentStore {
  readonly #tenants = new Map<string, TenantData>();
  /** Stamps changes with strictly increasing times. */
  readonly #clock: UpdateClock;

  constructor(now: () => number = Date.now) {
    this.#clock = new UpdateClock(now);
  }

  provisionTenant(tenantId: string, displayName?: string): TenantInfo {
    const existing = this.#tenants.get(tenantId);
    if (existing) {
      if (displayName !== undefined) existing.displayName = displayName;
    } else {
      this.#tenants.set(tenantId, {
        displayName: displayName ?? tenantId,
        incidents: new Map(),
        huntingSource: new Map(),
      });
    }
    return this.tenant(tenantId) as TenantInfo;
  }

  hasTenant(tenantId: string): boolean {
    return this.#tenants.has(tenantId);
  }

  tenant(tenantId: string): TenantInfo | undefined {
    const data = this.#tenants.get(tenantId);
    return data && { tenantId, displayName: data.displayName, incidentCount: data.incidents.size };
  }

  tenants(): TenantInfo[] {
    return [...this.#tenants.keys()].map((tenantId) => this.tenant(tenantId) as TenantInfo);
  }

  /** Adds or replaces incidents by id; returns their ids. */
  upsert(tenantId: string, incidents: readonly GraphIncident[]): string[] {
    const data = this.#require(tenantId);
    for (const incident of incidents) data.incidents.set(incident.id, structuredClone(incident));
    return incidents.map((incident) => incident.id);
  }

  /** One past the highest numeric id, so new incidents never collide with stored ones. */
  nextIncidentId(tenantId: string): number {
    const ids = [...this.#require(tenantId).incidents.keys()].map(Number).filter(Number.isSafeInteger);
    return ids.length === 0 ? 1 : Math.max(...ids) + 1;
  }

  /** Every incident of the tenant, by id (copies). */
  list(tenantId: string): GraphIncident[] {
    return [...this.#require(tenantId).incidents.values()].sort(byNumericId).map((i) => structuredClone(i));
  }

  /**
   * One page of the listing: the matching incidents newest first ("The most recent incidents are displayed at
   * the top of the list", security-list-incidents.md), by lastUpdateDateTime then id, from `skip`, at most
   * `top`, handed to `serialize` as stored (it must only read them, at once), with the number that match.
   * Cut by offset, as the service's `$skip` paging is: an incident that changes while a client pages moves to
   * the top, and the ones after it shift down a place.
   */
  page<T>(
    tenantId: string,
    matches: (incident: GraphIncident) => boolean,
    skip: number,
    top: number,
    serialize: (page: readonly GraphIncident[], total: number) => T,
  ): T {
    const ordered = [...this.#require(tenantId).incidents.values()]
      .filter(matches)
      .map((incident) => ({ incident, ticks: parseTimestamp(incident.lastUpdateDateTime) ?? -1n }))
      .sort((a, b) => (a.ticks === b.ticks ? byNumericId(b.incident, a.incident) : a.ticks < b.ticks ? 1 : -1))
      .map(({ incident }) => incident);
    return serialize(ordered.slice(skip, skip + top), ordered.length);
  }

  get(tenantId: string, id: string): GraphIncident | undefined {
    const incident = this.#require(tenantId).incidents.get(id);
    return incident && structuredClone(incident);
  }

  /**
   * Applies changes to one incident and bumps lastUpdateDateTime (unless the changes set it), as every change
   * through the API or the portal does. Returns the updated incident, or undefined.
   */
  update(tenantId: string, id: string, apply: (incident: GraphIncident) => void): GraphIncident | undefined {
    const incident = this.#require(tenantId).incidents.get(id);
    if (!incident) return undefined;
    const before = incident.lastUpdateDateTime;
    apply(incident);
    if (incident.lastUpdateDateTime === before) incident.lastUpdateDateTime = this.#clock.next(before);
    return structuredClone(incident);
  }

  delete(tenantId: string, id: string): boolean {
    return this.#require(tenantId).incidents.delete(id);
  }

  /**
   * Adds (or replaces, by incidentId) Defender-shaped incidents to the tenant's advanced hunting data; give the
   * ones its Graph incidents were mapped from (generator.ts's generateGraphTenant) so the two agree.
   */
  addHuntingSource(tenantId: string, incidents: readonly DefenderIncident[]): void {
    const source = this.#require(tenantId).huntingSource;
    for (const incident of incidents) source.set(incident.incidentId, structuredClone(incident));
  }

  /**
   * Incidents and the advanced hunting data they came from, together (generator.ts's generateGraphTenant),
   * so that what hunting finds is what the incidents show; answers the incidents' ids.
   */
  seed(
    tenantId: string,
    data: { incidents: readonly GraphIncident[]; huntingSource: readonly DefenderIncident[] },
  ): string[] {
    const ids = this.upsert(tenantId, data.incidents);
    this.addHuntingSource(tenantId, data.huntingSource);
    return ids;
  }

  /** The tenant's advanced hunting data, as stored (read it, do not change it), by incident id. */
  huntingSource(tenantId: string): readonly DefenderIncident[] {
    return [...this.#require(tenantId).huntingSource.values()].sort((a, b) => a.incidentId - b.incidentId);
  }

  #require(tenantId: string): TenantData {
    const data = this.#tenants.get(tenantId);
    if (!data) throw new UnknownTenantError(tenantId);
    return data;
  }
}

export class UnknownTenantError extends Error {
  constructor(readonly tenantId: string) {
    super(
      `Tenant ${tenantId} has no Microsoft Graph security data: provision it first (POST /_control/tenants/${tenantId}).`,
    );
    this.name = 'UnknownTenantError';
  }
}
