import type { IncidentEnvelope } from '../events.js';
import type { DestinationPolicy, AddressLookup } from '../ssrf.js';
import type { QueueDestinations } from './queue.js';
import type { Agent } from 'node:https';

/**
 * What the enrichment step adds to an event (see `shared/enrichment.ts`); destinations read only
 * these fields and pass the rest through untouched.
 */
export interface RoutedEnrichment {
  priority: number;
  portalUrl: string | null;
  tenantDisplayName?: string | null;
  serviceSources: string[];
  mitre?: { techniques?: string[]; tactics?: { id: string; name: string }[] };
  [field: string]: unknown;
}

/**
 * A message as destinations receive it: the event envelope (with the incident itself, never a
 * claim-check reference), the enrichment, and the route that sent it there.
 */
export type RoutedMessage = Omit<IncidentEnvelope, 'incident' | 'incidentRef'> & {
  incident: Record<string, unknown>;
  enrichment: RoutedEnrichment;
  route: { name: string; destination: string };
};

export interface DeliveryDeps {
  policy: DestinationPolicy & { timeoutMs: number };
  /** Key Vault secrets (HMAC keys, webhook URLs kept out of the routes file): the app's `SecretCache`. */
  secrets: { get(name: string): Promise<string> };
  queues: QueueDestinations;
  /** DNS resolution for the SSRF check (tests substitute one). */
  lookup?: AddressLookup;
  /** Connection pool for webhook posts (defaults to a shared keep-alive agent). */
  agent?: Agent;
  now?: () => Date;
}

export interface DeliveryResult {
  destination: string;
  type: 'queue' | 'webhook' | 'teams' | 'slack' | 'drop';
  outcome: 'delivered' | 'dropped';
  /** The HTTP status a webhook answered with. */
  status?: number;
  /** Whether a queue message carries the incident by reference (too large for a message). */
  claimChecked?: boolean;
  durationMs: number;
}
