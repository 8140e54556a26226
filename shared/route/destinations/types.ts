import type { IncidentEnvelope } from '../../messages/events.js';
import type { DestinationPolicy, AddressLookup } from '../ssrf.js';
import type { QueueDestinations } from './queue.js';
import type { SentinelClients } from './sentinel.js';
import type { Agent } from 'node:https';

/**
 * What the enrichment step adds to an event (see `shared/enrich/enrichment.ts`); destinations read only
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
  /** Logs Ingestion clients for Sentinel destinations, as the app's own identity (absent: no Sentinel destination can be delivered). */
  sentinel?: SentinelClients;
  /** DNS resolution for the SSRF check (tests substitute one). */
  lookup?: AddressLookup;
  /** Connection pool for webhook posts (defaults to a shared keep-alive agent). */
  agent?: Agent;
  now?: () => Date;
}

export interface DeliveryResult {
  destination: string;
  type: 'queue' | 'webhook' | 'teams' | 'slack' | 'sentinel' | 'drop';
  outcome: 'delivered' | 'dropped';
  /** The HTTP status a webhook (or the Logs Ingestion API) answered with. */
  status?: number;
  /** Whether the Sentinel row holds a reduced copy of an incident too large for its column. */
  incidentTruncated?: boolean;
  /** Whether a queue message carries the incident by reference (too large for a message). */
  claimChecked?: boolean;
  durationMs: number;
}
