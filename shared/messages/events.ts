import * as z from 'zod';
import { normalizeTimestamp } from '../timestamps.js';

/** The envelope of every message on the `incidents` queue (DESIGN.md, schema v1). */
export const EVENT_SCHEMA = 'defender-relay.incident.v1';

const incidentSchema = z
  .object({
    incidentId: z.number().int().nonnegative(),
    lastUpdateTime: z.string().min(1),
  })
  .passthrough();

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/#traceparent-header): version 00, a trace id
 * and a parent id in lower-case hex, neither all zeros, and the flags. Nothing else is accepted.
 */
export const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
/** One tracestate list member (https://www.w3.org/TR/trace-context/#tracestate-header): a simple or multi-tenant key, `=`, a value of printable ASCII but `,` and `=`. */
const TRACESTATE_MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
/** What the relay keeps of a tracestate: the 512 characters W3C asks vendors to propagate, at most 32 members. */
const MAX_TRACESTATE = 512;
const MAX_TRACESTATE_MEMBERS = 32;

/**
 * The trace an incident version travels in (tracing.ts), as a message carries it. Optional (messages
 * written before it existed stay valid), and a value that is not exactly W3C's is dropped, never
 * refused: tracing never costs an event, and nothing hostile reaches the tracer.
 */
export const traceContextSchema = z.object({
  traceparent: z.string().regex(TRACEPARENT).optional().catch(undefined),
  tracestate: z
    .string()
    .max(MAX_TRACESTATE)
    .refine((value) => {
      const members = value.split(',').map((member) => member.trim());
      return members.length <= MAX_TRACESTATE_MEMBERS && members.every((member) => TRACESTATE_MEMBER.test(member));
    })
    .optional()
    .catch(undefined),
});
export type TraceContextFields = z.infer<typeof traceContextSchema>;

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
    ...traceContextSchema.shape,
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
