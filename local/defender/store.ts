import { parseTimestamp, UpdateClock } from './timestamps.js';
import type { Incident } from './types.js';

/**
 * Incidents per tenant. A tenant must be provisioned before it has Defender data: the API answers
 * 403 for a tenant that never was, as the real service does for a tenant without Defender.
 * Incidents are stored as given (unknown fields kept) and handed out as copies, so callers can
 * never change the stored data by accident.
 */
export interface TenantInfo {
  tenantId: string;
  displayName: string;
  incidentCount: number;
}

interface TenantData {
  displayName: string;
  incidents: Map<number, Incident>;
}

const compareTicks = (a: bigint | undefined, b: bigint | undefined): number =>
  a === b ? 0 : (a ?? -1n) < (b ?? -1n) ? -1 : 1;

export class IncidentStore {
  readonly #tenants = new Map<string, TenantData>();
  /** Stamps changes with strictly increasing times. */
  readonly #clock: UpdateClock;
  /** Per tenant: incidents to change after each list page (see `setPagingChurn`). */
  readonly #churn = new Map<string, { perPage: number; pages: number; changed: number[] }>();

  constructor(now: () => number = Date.now) {
    this.#clock = new UpdateClock(now);
  }

  provisionTenant(tenantId: string, displayName?: string): TenantInfo {
    const existing = this.#tenants.get(tenantId);
    if (existing) {
      if (displayName !== undefined) existing.displayName = displayName;
    } else {
      this.#tenants.set(tenantId, { displayName: displayName ?? tenantId, incidents: new Map() });
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

  /** Adds or replaces incidents by incidentId; returns their ids. The tenant must be provisioned. */
  upsert(tenantId: string, incidents: readonly Incident[]): number[] {
    const data = this.#require(tenantId);
    for (const incident of incidents) data.incidents.set(incident.incidentId, structuredClone(incident));
    return incidents.map((incident) => incident.incidentId);
  }

  /** One past the highest incident id, so newly generated incidents never collide with stored ones. */
  nextIncidentId(tenantId: string): number {
    const ids = [...this.#require(tenantId).incidents.keys()];
    return ids.length === 0 ? 1 : Math.max(...ids) + 1;
  }

  /** All of the tenant's incidents sorted by incidentId (the stable order paging cuts on). */
  list(tenantId: string): Incident[] {
    return [...this.#require(tenantId).incidents.values()]
      .sort((a, b) => a.incidentId - b.incidentId)
      .map((incident) => structuredClone(incident));
  }

  /** The matching incidents in incidentId order, from `skip`, at most `top`: cheap for large tenants. */
  find(tenantId: string, matches: (incident: Incident) => boolean, skip = 0, top = Infinity): Incident[] {
    return [...this.#require(tenantId).incidents.values()]
      .filter(matches)
      .sort((a, b) => a.incidentId - b.incidentId)
      .slice(skip, skip + top)
      .map((incident) => structuredClone(incident));
  }

  /**
   * One page of `GET /api/incidents`: the matching incidents newest first ("the most recent incidents
   * are displayed at the top", MicrosoftDocs/defender-docs defender-xdr/api-list-incidents.md), by
   * lastUpdateTime, so an incident changed while a client pages moves to the top and the rest shift
   * down a place. With paging churn set for the tenant, that happens after the page is cut: the
   * configured number of incidents not yet listed change at once, as a busy SOC's do.
   *
   * Copies, unless `serializeAt` is given: then the page is handed, as the store holds it, to that
   * function (which must only serialize it, at once) before any churn changes the store.
   */
  listPage(tenantId: string, matches: (incident: Incident) => boolean, skip: number, top: number): Incident[];
  listPage<T>(
    tenantId: string,
    matches: (incident: Incident) => boolean,
    skip: number,
    top: number,
    serializeAt: (page: readonly Incident[]) => T,
  ): T;
  listPage<T>(
    tenantId: string,
    matches: (incident: Incident) => boolean,
    skip: number,
    top: number,
    serializeAt?: (page: readonly Incident[]) => T,
  ): Incident[] | T {
    // Each time parsed once, not at every comparison: a large tenant's page stays cheap.
    const ordered = [...this.#require(tenantId).incidents.values()]
      .filter(matches)
      .map((incident) => ({ incident, ticks: parseTimestamp(incident.lastUpdateTime) }))
      .sort((a, b) => compareTicks(b.ticks, a.ticks) || b.incident.incidentId - a.incident.incidentId)
      .map(({ incident }) => incident);
    const cut = ordered.slice(skip, skip + top);
    // A page is 100 incidents of several KB: copying it only to serialize it cost as much as serializing.
    const page = serializeAt ? serializeAt(cut) : cut.map((incident) => structuredClone(incident));
    const churn = this.#churn.get(tenantId);
    if (churn && churn.pages > 0) {
      churn.pages -= 1;
      const notYetListed = ordered.slice(skip + top);
      for (let i = 0; i < churn.perPage && i < notYetListed.length; i++) {
        // Spread over what is left, so changes land on every later page.
        const target = notYetListed[Math.floor((i * notYetListed.length) / churn.perPage)]!;
        this.update(
          tenantId,
          target.incidentId,
          (incident) => void (incident.tags = [...new Set([...(incident.tags ?? []), 'changed-while-paging'])]),
        );
        churn.changed.push(target.incidentId);
      }
    }
    return page;
  }

  /**
   * From now on, each of the next `pages` list pages served for the tenant changes `perPage`
   * incidents that the listing has not reached yet (see `listPage`). Returns the ids changed so far.
   */
  setPagingChurn(tenantId: string, churn: { perPage: number; pages: number } | undefined): { changed: number[] } {
    this.#require(tenantId);
    if (!churn) {
      this.#churn.delete(tenantId);
      return { changed: [] };
    }
    const state = { ...churn, changed: [] as number[] };
    this.#churn.set(tenantId, state);
    return state;
  }

  get(tenantId: string, incidentId: number): Incident | undefined {
    const incident = this.#require(tenantId).incidents.get(incidentId);
    return incident && structuredClone(incident);
  }

  /**
   * Applies changes to one incident and bumps lastUpdateTime (unless the changes set it), as any
   * change in the portal or through the API does. Returns the updated incident, or undefined.
   */
  update(tenantId: string, incidentId: number, apply: (incident: Incident) => void): Incident | undefined {
    const incident = this.#require(tenantId).incidents.get(incidentId);
    if (!incident) return undefined;
    const before = incident.lastUpdateTime;
    apply(incident);
    if (incident.lastUpdateTime === before) incident.lastUpdateTime = this.#clock.next(before);
    return structuredClone(incident);
  }

  delete(tenantId: string, incidentId: number): boolean {
    return this.#require(tenantId).incidents.delete(incidentId);
  }

  #require(tenantId: string): TenantData {
    const data = this.#tenants.get(tenantId);
    if (!data) throw new UnknownTenantError(tenantId);
    return data;
  }
}

export class UnknownTenantError extends Error {
  constructor(readonly tenantId: string) {
    super(`Tenant ${tenantId} has no Defender data: provision it first (POST /_control/tenants/${tenantId}).`);
    this.name = 'UnknownTenantError';
  }
}
