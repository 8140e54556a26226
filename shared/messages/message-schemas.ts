import * as z from 'zod';
import { EVENT_SCHEMA, envelopeSchema, GRAPH_EVENT_SCHEMA, GRAPH_INCIDENT_ID, TRACEPARENT } from './events.js';
import { SEVERITIES } from '../sources/defender/incident-types.js';

/**
 * The messages the relay emits, as zod schemas from which `npm run schema` writes the JSON Schemas in
 * `schema/` (draft 2020-12) that consumers validate with. The incident event is the schema the
 * enricher parses with (`events.ts`); the enrichment is tested to be exactly the `Enrichment` type the
 * code builds (test/unit/messages/message-schemas.test.ts), so neither can change without the files.
 *
 * Compatibility: consumers must ignore fields they do not know. The relay adds fields only as optional
 * ones; a change that would break a consumer changes `schema`. `defender-relay.incident.v1` holds an
 * incident of the Defender XDR API, `defender-relay.incident.v2` one of Microsoft Graph (`api: graph`):
 * every other field, the enrichment above all, means the same in both.
 */

const incidentFields = {
  eventId: z
    .string()
    .min(1)
    .describe(
      'tenantId:incidentId:lastUpdateTime of this incident version: the key to be idempotent on (the same version may arrive more than once).',
    ),
  tenantId: z.string().min(1).describe("The customer tenant's Entra tenant ID (a GUID, lower case)."),
  incidentId: z
    .number()
    .int()
    .nonnegative()
    .describe("Defender's incident id (a Graph incident's id is the same number, as a string)."),
  lastUpdateTime: z
    .string()
    .min(1)
    .describe("The incident's lastUpdateTime (Graph: lastUpdateDateTime) as the API gave it (ISO 8601, UTC)."),
  source: z.enum(['poll', 'webhook']).describe('How the relay learnt of this version.'),
  receivedAt: z.string().min(1).describe('When the relay received it (ISO 8601, UTC).'),
};

/** Each version's `schema` and `api`, and the incident it carries. */
const versions = {
  defender: {
    schema: z
      .literal(EVENT_SCHEMA)
      .describe('The message format and its version: v1, an incident of the Defender XDR API.'),
    api: z
      .literal('defender')
      .optional()
      .describe(
        'The API the incident was read from: the Defender XDR API (absent in messages from relays before v2 existed).',
      ),
    incident: z
      .object({ incidentId: z.number().int().nonnegative(), lastUpdateTime: z.string().min(1) })
      .loose()
      .describe(
        'The incident as the Defender XDR API returned it (GET /api/incidents: alerts, devices and entities included), unchanged.',
      ),
  },
  graph: {
    schema: z
      .literal(GRAPH_EVENT_SCHEMA)
      .describe('The message format and its version: v2, an incident of the Microsoft Graph security API.'),
    api: z.literal('graph').describe('The API the incident was read from: Microsoft Graph (/v1.0/security/incidents).'),
    incident: z
      .object({ id: z.string().regex(GRAPH_INCIDENT_ID), lastUpdateDateTime: z.string().min(1) })
      .loose()
      .describe(
        'The incident as Microsoft Graph returned it (microsoft.graph.security.incident with $expand=alerts: alerts with their typed evidence), unchanged.',
      ),
  },
};

const incidentRef = z
  .object({ blobUrl: z.url().describe("A blob in the relay's storage account holding the incident JSON.") })
  .describe(
    'Instead of `incident` when the message would exceed a queue message: read the blob with an identity holding Storage Blob Data Reader.',
  );

/** In `allOf`, beside the `oneOf` of the two versions (each branch says its type, as Ajv's strict mode asks of a `required`). */
const exactlyOneOf = {
  allOf: [
    {
      oneOf: [
        { type: 'object', required: ['incident'] },
        { type: 'object', required: ['incidentRef'] },
      ],
    },
  ],
};

export const incidentEventSchema = envelopeSchema.meta({
  $id: 'urn:defender-relay:schema:incident-event',
  title: 'Incident event',
  description:
    'One incident version on the `incidents` queue, from a poll or a push (base64 JSON in the queue message). eventId is always tenantId:incidentId:lastUpdateTime of the envelope.',
  ...exactlyOneOf,
});

const nullableText = z.string().nullable();
const entityCounts = z.object({
  users: z.number().int(),
  devices: z.number().int(),
  ips: z.number().int(),
  urls: z.number().int(),
  fileHashes: z.number().int(),
  mailboxes: z.number().int(),
});

export const enrichmentSchema = z
  .object({
    tenantId: z.string(),
    tenantDisplayName: nullableText,
    incidentId: z.number().int().nullable(),
    portalUrl: nullableText.describe('The incident in the Microsoft Defender portal.'),
    alertCount: z.number().int(),
    activeAlertCount: z.number().int().describe('Alerts with status New or InProgress.'),
    severities: z.array(z.enum(SEVERITIES)).describe("Distinct, lowest first; the incident's own included."),
    highestSeverity: z.enum(SEVERITIES).nullable(),
    serviceSources: z.array(z.string()),
    detectionSources: z.array(z.string()),
    mitre: z.object({
      techniques: z.array(z.string()).describe('ATT&CK technique ids, distinct, sorted.'),
      tactics: z.array(z.object({ id: z.string(), name: z.string() })).describe('In the matrix order.'),
    }),
    categories: z.array(z.string()).describe('Alert categories that are not ATT&CK tactics.'),
    entities: z.object({
      users: z.array(
        z.object({
          accountName: nullableText,
          domainName: nullableText,
          userPrincipalName: nullableText,
          aadUserId: nullableText,
        }),
      ),
      devices: z.array(
        z.object({
          mdatpDeviceId: nullableText,
          deviceDnsName: nullableText,
          osPlatform: nullableText,
          riskScore: nullableText,
          healthStatus: nullableText,
        }),
      ),
      ips: z.array(z.string()),
      urls: z.array(z.string()),
      fileHashes: z.array(z.object({ sha1: nullableText, sha256: nullableText, fileName: nullableText })),
      mailboxes: z.array(z.object({ mailboxAddress: nullableText, mailboxDisplayName: nullableText })),
      truncated: z.boolean().describe('Some kind held more than 50 distinct items; the first ones are kept.'),
      totals: entityCounts.describe('Distinct items per kind before the cap.'),
    }),
    firstActivity: nullableText,
    lastActivity: nullableText,
    priority: z.number().describe('0..100: severity, entities, techniques and status, as the README explains.'),
    priorityReasons: z.array(z.string()),
    needsFullIncident: z.boolean(),
    redirectedTo: z.object({ incidentId: z.number().int(), portalUrl: z.string() }).nullable(),
    hunting: z
      .record(
        z.string(),
        z.object({
          rows: z.array(z.record(z.string(), z.unknown())),
          rowCount: z.number().int(),
          truncated: z.boolean(),
        }),
      )
      .describe('Advanced-hunting results by query name, for routes that ask for them.'),
    notes: z.array(z.string()).describe('What could not be done, and why.'),
  })
  .describe('What the relay adds to the incident, which itself is never changed.');

/** W3C Trace Context of the delivery (shared/telemetry/tracing.ts): continue the trace from it. */
const traceFields = {
  traceparent: z
    .string()
    .regex(TRACEPARENT)
    .optional()
    .describe("W3C traceparent of the relay's delivery span: a consumer that traces continues from it."),
  tracestate: z.string().max(512).optional().describe('W3C tracestate, when the trace has one.'),
};

const route = z
  .object({ name: z.string(), destination: z.string() })
  .describe('The routing rule that sent the message, and the destination it was sent to.');

function routedMessageOf(version: (typeof versions)[keyof typeof versions]) {
  return z.object({
    schema: version.schema,
    api: version.api,
    ...incidentFields,
    incident: version.incident.optional(),
    incidentRef: incidentRef.optional(),
    enrichment: enrichmentSchema,
    route,
    ...traceFields,
  });
}

export const routedMessageSchema = z
  .discriminatedUnion('schema', [routedMessageOf(versions.defender), routedMessageOf(versions.graph)])
  .meta({
    $id: 'urn:defender-relay:schema:routed-message',
    title: 'Routed message',
    description:
      'What a queue or webhook destination receives for one incident version and route: the event fields, the incident (or, on a queue, a claim-check to it when too large), the enrichment and the route. `schema` (and `api`) say whose shape the incident has: v1 Defender XDR, v2 Microsoft Graph; the enrichment is the same for both. Webhook bodies always hold `incident`. The same eventId may arrive again (retries, replays): be idempotent on it.',
    ...exactlyOneOf,
  });

export const deadLetterSchema = z
  .object({
    reason: z.string().describe('Why the message can never succeed as it is: file, line and field where it applies.'),
    failedAt: z.string().describe('ISO 8601, UTC.'),
    message: z.unknown().describe('The message as it was received: parsed JSON, or the raw text when it was not JSON.'),
  })
  .meta({
    $id: 'urn:defender-relay:schema:dead-letter',
    title: 'Dead letter',
    description:
      'A message moved to `<queue>-deadletter` (e.g. `incidents-deadletter`) instead of being retried. POST /api/replay puts incident events back.',
  });

export const webhookHeadersSchema = z
  .object({
    'content-type': z.literal('application/json'),
    'x-relay-event-id': z.string().min(1).describe('The eventId of the body: be idempotent on it.'),
    'x-relay-signature': z
      .string()
      .regex(/^t=\d{1,12},v1=[0-9a-f]{64}$/)
      .optional()
      .describe(
        'With a destination that has hmacSecretName: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body bytes>"> keyed with the secret text as UTF-8. Reject a t more than 5 minutes from now.',
      ),
    traceparent: traceFields.traceparent.describe('W3C traceparent of the delivery span, as in the body.'),
  })
  .meta({
    $id: 'urn:defender-relay:schema:webhook-headers',
    title: 'Webhook delivery headers',
    description:
      'The headers of a POST to a webhook destination, names in lower case (HTTP names are case-insensitive). The body is a routed message.',
  });

/** The files `npm run schema` writes in `schema/`, and the zod schema each comes from. */
export const PUBLISHED_SCHEMAS = {
  'incident-event': incidentEventSchema,
  'routed-message': routedMessageSchema,
  'dead-letter': deadLetterSchema,
  'webhook-headers': webhookHeadersSchema,
} as const;

export type PublishedSchemaName = keyof typeof PUBLISHED_SCHEMAS;

/** The JSON Schema (draft 2020-12) of a published message, open to fields added later. */
export function jsonSchemaOf(name: PublishedSchemaName): Record<string, unknown> {
  return z.toJSONSchema(PUBLISHED_SCHEMAS[name], {
    target: 'draft-2020-12',
    // Consumers must accept fields added later: no object is closed to properties it does not list.
    override: (ctx) => {
      if (ctx.jsonSchema.additionalProperties === false) delete ctx.jsonSchema.additionalProperties;
    },
  }) as Record<string, unknown>;
}
