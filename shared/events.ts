import { z } from 'zod';
import { normalizeTimestamp } from './timestamps.js';

/** The envelope of every message on the `incidents` queue (DESIGN.md, schema v1). */
export const EVENT_SCHEMA = 'defender-relay.incident.v1';

const incidentSchema = z
  .object({
    incidentId: z.number().int().nonnegative(),
    lastUpdateTime: z.string().min(1),
  })
  .passthrough();

export const envelopeSchema = z
  .object({
    schema: z.literal(EVENT_SCHEMA),
    eventId: z.string().min(1),
    tenantId: z.string().min(1),
    incidentId: z.number().int().nonnegative(),
    lastUpdateTime: z.string().min(1),
    source: z.enum(['poll', 'webhook']),
    receivedAt: z.string().min(1),
    incident: incidentSchema.optional(),
    incidentRef: z.object({ blobUrl: z.string().url() }).optional(),
  })
  .refine(
    (e) => (e.incident === undefined) !== (e.incidentRef === undefined),
    'exactly one of incident and incidentRef',
  );

export type IncidentEnvelope = z.infer<typeof envelopeSchema>;

export function eventIdOf(tenantId: string, incidentId: number, lastUpdateTime: string): string {
  return `${tenantId}:${incidentId}:${normalizeTimestamp(lastUpdateTime)}`;
}

export function envelopeFor(
  tenantId: string,
  incident: { incidentId: number; lastUpdateTime: string },
  source: 'poll' | 'webhook',
  now = new Date(),
): IncidentEnvelope {
  return {
    schema: EVENT_SCHEMA,
    eventId: eventIdOf(tenantId, incident.incidentId, incident.lastUpdateTime),
    tenantId,
    incidentId: incident.incidentId,
    lastUpdateTime: incident.lastUpdateTime,
    source,
    receivedAt: now.toISOString(),
    incident: incident as IncidentEnvelope['incident'],
  };
}
