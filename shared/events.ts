import * as z from 'zod';
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
  )
  // The delivery log keys an event by the tenant its eventId names: an envelope whose eventId, or
  // whose incident, is another tenant's or another incident's must never be routed as this one.
  .refine((e) => e.eventId === safeEventIdOf(e.tenantId, e.incidentId, e.lastUpdateTime), {
    message: 'eventId must be tenantId:incidentId:lastUpdateTime of this envelope',
    path: ['eventId'],
  })
  .refine((e) => e.incident === undefined || e.incident.incidentId === e.incidentId, {
    message: "the incident's incidentId must be the envelope's",
    path: ['incident', 'incidentId'],
  });

export type IncidentEnvelope = z.infer<typeof envelopeSchema>;

export function eventIdOf(tenantId: string, incidentId: number, lastUpdateTime: string): string {
  return `${tenantId}:${incidentId}:${normalizeTimestamp(lastUpdateTime)}`;
}

/** `eventIdOf`, or undefined for a timestamp that is not one. */
function safeEventIdOf(tenantId: string, incidentId: number, lastUpdateTime: string): string | undefined {
  try {
    return eventIdOf(tenantId, incidentId, lastUpdateTime);
  } catch {
    return undefined;
  }
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
