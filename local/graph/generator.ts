import { generateIncidents, type GenerateOptions } from '../defender/generator.js';
import { toGraphIncident } from './mapping.js';
import type { GraphIncident } from './types.js';

export type { GenerateOptions } from '../defender/generator.js';

/**
 * Seeded, realistic incidents in Graph's shape: the Defender stand-in's generator (same tenant, seed and
 * window, same incidents) through the Defender → Graph mapping. So a tenant seeded alike in both stand-ins
 * holds the same incidents, alerts and entities, each as its API writes them.
 */
export function generateGraphIncidents(options: GenerateOptions): GraphIncident[] {
  return generateIncidents(options).map((incident) => toGraphIncident(incident, options.tenantId));
}
