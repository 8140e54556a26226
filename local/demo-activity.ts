import type { IncidentStore } from './defender/store.js';
import { generateIncidents } from './defender/generator.js';
import type { GraphIncidentStore } from './graph/store.js';
import { generateGraphTenant } from './graph/generator.js';

/**
 * Keeps the demo alive: every few seconds each demo tenant sees what a SOC's portal sees — a new
 * incident, or an analyst assigning, tagging or resolving an existing one — so polls keep finding news.
 * A tenant read through Microsoft Graph sees it in the Graph stand-in, in Graph's spellings.
 */
const ANALYSTS = ['tier1@contoso-soc.example', 'tier2@contoso-soc.example', 'hunter@contoso-soc.example'];

export interface ActivityTenant {
  tenantId: string;
  source: 'defender' | 'graph';
}

/** What an analyst does in one tenant's portal, whichever API the relay reads it through. */
interface Portal {
  addIncident(tick: number): void;
  /** Moves one open incident on: assigns it, tags it as triaged, or resolves it. */
  workOnOne(tick: number): void;
}

export function simulateSocActivity(
  stores: { defender: IncidentStore; graph: GraphIncidentStore },
  tenants: ActivityTenant[],
  everyMs = 20_000,
): () => void {
  let tick = 0;
  const portals = tenants.map((tenant) =>
    tenant.source === 'graph'
      ? graphPortal(stores.graph, tenant.tenantId)
      : defenderPortal(stores.defender, tenant.tenantId),
  );
  const timer = setInterval(() => {
    tick += 1;
    portals.forEach((portal, index) => {
      if ((tick + index) % 3 === 0) portal.addIncident(tick);
      else portal.workOnOne(tick);
    });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

function newIncidentOptions(tenantId: string, tick: number, startId: number) {
  return { tenantId, count: 1, seed: `activity-${tick}`, startId, since: new Date(Date.now() - 60_000) };
}

function defenderPortal(store: IncidentStore, tenantId: string): Portal {
  return {
    addIncident: (tick) =>
      store.upsert(tenantId, generateIncidents(newIncidentOptions(tenantId, tick, store.nextIncidentId(tenantId)))),
    workOnOne: (tick) => {
      const open = store.find(tenantId, (i) => i.status === 'Active' || i.status === 'InProgress');
      const incident = open[tick % Math.max(open.length, 1)];
      if (!incident) return;
      store.update(tenantId, incident.incidentId, (i) => {
        if (!i.assignedTo) {
          i.assignedTo = ANALYSTS[tick % ANALYSTS.length]!;
          i.status = 'InProgress';
        } else if (tick % 2 === 0) {
          i.tags = [...new Set([...i.tags, 'triaged'])];
        } else {
          i.status = 'Resolved';
        }
      });
    },
  };
}

function graphPortal(store: GraphIncidentStore, tenantId: string): Portal {
  return {
    // The new incident's devices and users are in the tenant's hunting data too, as a real one's telemetry is.
    addIncident: (tick) =>
      store.seed(tenantId, generateGraphTenant(newIncidentOptions(tenantId, tick, store.nextIncidentId(tenantId)))),
    workOnOne: (tick) => {
      const open = store.list(tenantId).filter((i) => i.status === 'active' || i.status === 'inProgress');
      const incident = open[tick % Math.max(open.length, 1)];
      if (!incident) return;
      store.update(tenantId, incident.id, (i) => {
        if (!i.assignedTo) {
          i.assignedTo = ANALYSTS[tick % ANALYSTS.length]!;
          i.status = 'inProgress';
        } else if (tick % 2 === 0) {
          i.customTags = [...new Set([...i.customTags, 'triaged'])];
        } else {
          i.status = 'resolved';
        }
      });
    },
  };
}
