import * as z from 'zod';
import { normalizeTimestamp } from '../timestamps.js';

/**
 * The envelope of every message on the `incidents` queue (DESIGN.md). v1: the incident as the Defender
 * XDR API gives it. v2: the incident as Microsoft Graph gives it (`api: 'graph'`). A tenant's source
 * decides which; consumers written for v1 keep working for every Defender tenant.
 */
export const EVENT_SCHEMA = 'defender-relay.incident.v1';
export const GRAPH_EVENT_SCHEMA = 'defender-relay.incident.v2';

/** The API an incident was read from, and so its shape (`IncidentSource` of the tenant). */
export type IncidentApi = 'defender' | 'graph';

const incidentSchema = z
  .object({
    incidentId: z.number().int().nonnegative(),
    lastUpdateTime: z.string().min(1),
  })
  .passthrough();

/** Graph's incident id is Defender's incident id as a string (`incidentWebUrl` is …/incidents/{id}); the relay takes only decimal ones. */
export const GRAPH_INCIDENT_ID = /^\d{1,15}$/;

const graphIncidentSchema = z
  .object({
    id: z.string().regex(GRAPH_INCIDENT_ID),
    lastUpdateDateTime: z.string().min(1),
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

const envelopeFields = {
  eventId: z.string().min(1),
  tenantId: z.string().min(1),
  incidentId: z.number().int().nonnegative(),
  lastUpdateTime: z.string().min(1),
  source: z.enum(['poll', 'webhook']),
  receivedAt: z.string().min(1),
  incidentRef: z.object({ blobUrl: z.string().url() }).optional(),
  ...traceContextSchema.shape,
};

export const envelopeSchema = z
  .discriminatedUnion('schema', [
    z.object({
      schema: z.literal(EVENT_SCHEMA),
      // Absent in messages written before Graph was a source.
      api: z.literal('defender').optional(),
      incident: incidentSchema.optional(),
      ...envelopeFields,
    }),
    z.object({
      schema: z.literal(GRAPH_EVENT_SCHEMA),
      api: z.literal('graph'),
      incident: graphIncidentSchema.optional(),
      ...envelopeFields,
    }),
  ])
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
  .refine((e) => e.incident === undefined || incidentIdOf(e) === e.incidentId, {
    message: "the incident's id must be the envelope's incidentId",
    path: ['incident'],
  });

export type IncidentEnvelope = z.infer<typeof envelopeSchema>;

/** The incident id the envelope's own incident carries (Defender's `incidentId`, Graph's `id`). */
function incidentIdOf(envelope: { schema: string; incident?: { id?: unknown; incidentId?: unknown } }): unknown {
  if (envelope.schema === GRAPH_EVENT_SCHEMA) return envelope.incident && Number(envelope.incident.id);
  return envelope.incident?.incidentId;
}

/** Which API an envelope's incident came from. */
export function apiOf(envelope: Pick<IncidentEnvelope, 'schema'>): IncidentApi {
  return envelope.schema === GRAPH_EVENT_SCHEMA ? 'graph' : 'defender';
}

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
    api: 'defender',
    eventId: eventIdOf(tenantId, incident.incidentId, incident.lastUpdateTime),
    tenantId,
    incidentId: incident.incidentId,
    lastUpdateTime: incident.lastUpdateTime,
    source,
    receivedAt: now.toISOString(),
    incident: incident as { incidentId: number; lastUpdateTime: string },
  };
}

/**
 * A Graph incident's envelope: keyed by the same tenantId:incidentId:lastUpdateTime as the same version
 * read through the Defender API (`version`, from the Graph incident's id and lastUpdateDateTime).
 */
export function graphEnvelopeFor(
  tenantId: string,
  incident: { id: string; lastUpdateDateTime: string },
  version: { incidentId: number; lastUpdateTime: string },
  source: 'poll' | 'webhook',
  now = new Date(),
): IncidentEnvelope {
  return {
    schema: GRAPH_EVENT_SCHEMA,
    api: 'graph',
    eventId: eventIdOf(tenantId, version.incidentId, version.lastUpdateTime),
    tenantId,
    incidentId: version.incidentId,
    lastUpdateTime: version.lastUpdateTime,
    source,
    receivedAt: now.toISOString(),
    incident,
  };
}
