import type { IncidentStore } from './defender/store.js';
import { generateIncidents } from './defender/generator.js';

/**
 * Keeps the demo alive: every few seconds each demo tenant sees what a SOC's portal sees — a new
 * incident, or an analyst assigning, tagging or resolving an existing one — so polls keep finding news.
 */
const ANALYSTS = ['tier1@contoso-soc.example', 'tier2@contoso-soc.example', 'hunter@contoso-soc.example'];

export function simulateSocActivity(store: IncidentStore, tenantIds: string[], everyMs = 20_000): () => void {
  let tick = 0;
  const timer = setInterval(() => {
    tick += 1;
    for (const tenantId of tenantIds) {
      if ((tick + tenantIds.indexOf(tenantId)) % 3 === 0) {
        store.upsert(
          tenantId,
          generateIncidents({
            tenantId,
            count: 1,
            seed: `activity-${tick}`,
            startId: store.nextIncidentId(tenantId),
            since: new Date(Date.now() - 60_000),
          }),
        );
        continue;
      }
      const open = store.find(tenantId, (i) => i.status === 'Active' || i.status === 'InProgress');
      const incident = open[tick % Math.max(open.length, 1)];
      if (!incident) continue;
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
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
