import { generateIncidents, type GenerateOptions } from '../defender/generator.js';
import type { Incident as DefenderIncident } from '../defender/types.js';
import { toGraphIncident } from './mapping.js';
import type { GraphIncident } from './types.js';

export type { GenerateOptions } from '../defender/generator.js';

/** A generated Graph tenant: its incidents in Graph's shape, and the Defender incidents they were mapped from. */
export interface GraphTenantData {
  incidents: GraphIncident[];
  /** For `GraphIncidentStore.addHuntingSource`: advanced hunting's tables are built from these. */
  huntingSource: DefenderIncident[];
}

/**
 * Seeded, realistic incidents in Graph's shape: the Defender stand-in's generator (same tenant, seed and
 * window, same incidents) through the Defender → Graph mapping. So a tenant seeded alike in both stand-ins
 * holds the same incidents, alerts and entities, each as its API writes them.
 */
export function generateGraphIncidents(options: GenerateOptions): GraphIncident[] {
  return generateGraphTenant(options).incidents;
}

/**
 * The incidents and the advanced hunting data of one tenant from one generation, so that what runHuntingQuery
 * finds (alerts, devices, accounts) is what the tenant's incidents show.
 */
export function generateGraphTenant(options: GenerateOptions): GraphTenantData {
  const huntingSource = generateIncidents(options);
  return {
    incidents: huntingSource.map((incident) => toGraphIncident(incident, options.tenantId)),
    huntingSource,
  };
}
