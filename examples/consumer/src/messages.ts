import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/**
 * The messages defender-relay publishes, checked against its JSON Schemas (copied from the relay's
 * `schema/` into `schema/` here: copy them again when you update the relay).
 */
export interface RoutedMessage {
  /** v1: `incident` is as the Defender XDR API gives it; v2: as Microsoft Graph gives it (`api: 'graph'`). */
  schema: 'defender-relay.incident.v1' | 'defender-relay.incident.v2';
  api?: 'defender' | 'graph';
  /** tenantId:incidentId:lastUpdateTime: the same version may arrive more than once. */
  eventId: string;
  tenantId: string;
  incidentId: number;
  lastUpdateTime: string;
  source: 'poll' | 'webhook';
  receivedAt: string;
  incident?: Record<string, unknown>;
  /** Instead of `incident` when the incident was too large for a queue message. */
  incidentRef?: { blobUrl: string };
  /** The same for both shapes: route and act on it rather than on the incident's own fields. */
  enrichment: {
    priority: number;
    highestSeverity: string | null;
    portalUrl: string | null;
    tenantDisplayName: string | null;
    [field: string]: unknown;
  };
  route: { name: string; destination: string };
}

const ajv = new Ajv2020({ allErrors: true });
addFormats.default(ajv);
const load = (name: string) =>
  ajv.compile(JSON.parse(readFileSync(new URL(`../schema/${name}.schema.json`, import.meta.url), 'utf8')) as object);
const routedMessage = load('routed-message');
const webhookHeaders = load('webhook-headers');

/** What the schema refuses in a message (empty: valid), as `path: message`. */
function problemsOf(validate: ReturnType<typeof load>, value: unknown): string[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '(message)'} ${e.message ?? e.keyword}`);
}

export const routedMessageProblems = (value: unknown) => problemsOf(routedMessage, value);
export const webhookHeaderProblems = (headers: Record<string, string>) => problemsOf(webhookHeaders, headers);
