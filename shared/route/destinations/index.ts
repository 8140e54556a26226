import type { TokenCredential } from '@azure/identity';
import type { AppConfig } from '../../config/config.js';
import type { IncidentEnvelope } from '../../messages/events.js';
import { PermanentError } from '../../errors.js';
import type { MessageSender } from '../../storage/queues.js';
import type { MatchedRoute, RoutingTable } from '../routing.js';
import { traceDelivery } from '../../telemetry/tracing.js';
import { deliverToQueue, identityAccountClients, QueueDestinations } from './queue.js';
import { deliverToSentinel, SentinelClients } from './sentinel.js';
import type { DeliveryDeps, DeliveryResult, RoutedEnrichment, RoutedMessage } from './types.js';
import { deliverToHttp } from './webhook.js';

export type { DeliveryDeps, DeliveryResult, RoutedEnrichment, RoutedMessage } from './types.js';
export { QueueDestinations, ROUTED_PAYLOADS_CONTAINER } from './queue.js';
export { EVENT_ID_HEADER, SIGNATURE_HEADER } from './webhook.js';
export { SentinelClients, sentinelRow } from './sentinel.js';
export { slackPayload, teamsPayload, incidentFacts } from './formats.js';

/** The message a destination receives: the envelope (incident inline), the enrichment and the route. */
export function routedMessageFor(
  envelope: IncidentEnvelope,
  incident: Record<string, unknown>,
  enrichment: RoutedEnrichment,
  route: Pick<MatchedRoute, 'name'>,
  destination: string,
): RoutedMessage {
  const { incident: _inline, incidentRef: _ref, ...rest } = envelope;
  return { ...rest, incident, enrichment, route: { name: route.name, destination } };
}

/**
 * Delivers one routed message to the named destination. Throws `RetryableError` (5xx, 408, 429,
 * timeouts, network, Storage unavailable) or `PermanentError` (4xx, redirects, a host not allowed
 * or resolving to a blocked address, an unknown destination).
 */
export async function deliver(
  table: RoutingTable,
  destinationName: string,
  message: RoutedMessage,
  deps: DeliveryDeps,
): Promise<DeliveryResult> {
  const destination = table.destinations.get(destinationName);
  if (!destination) {
    throw new PermanentError(
      `The routing rules name destination "${destinationName}", which ${table.source} does not define`,
      {
        tenantId: message.tenantId,
        operation: `route ${message.route.name}`,
        code: 'UnknownDestination',
      },
    );
  }
  const started = Date.now();
  const done = (extra: Partial<DeliveryResult> = {}): DeliveryResult => ({
    destination: destination.name,
    type: destination.type,
    outcome: 'delivered',
    durationMs: Date.now() - started,
    ...extra,
  });
  // What the destination receives carries the delivery's trace context, so that its consumer can join the trace.
  return traceDelivery(
    { route: message.route.name, destination: destination.name, type: destination.type },
    async (traceFields) => {
      const traced = { ...message, ...traceFields };
      switch (destination.type) {
        case 'drop':
          return done({ outcome: 'dropped' });
        case 'queue':
          return done(await deliverToQueue(destination, traced, deps.queues));
        case 'webhook':
        case 'teams':
        case 'slack':
          return done(await deliverToHttp(destination, traced, deps));
        case 'sentinel':
          if (!deps.sentinel)
            throw new PermanentError(`Sentinel destination "${destination.name}" has no Logs Ingestion client`, {
              tenantId: message.tenantId,
              code: 'NoSentinelClient',
            });
          return done(await deliverToSentinel(destination, traced, { ...deps, clients: deps.sentinel }));
      }
    },
  );
}

/** A short description of a destination for log lines: its name, type and host (never a URL: Teams and Slack URLs hold secrets). */
export function describeDestination(table: RoutingTable, name: string): string {
  const d = table.destinations.get(name);
  if (!d) return `${name} (undefined)`;
  if (d.type === 'queue')
    return `${name} (queue ${d.queueName}${d.accountUrl ? ` in ${new URL(d.accountUrl).host}` : ''})`;
  if (d.type === 'drop') return `${name} (drop)`;
  if (d.type === 'sentinel')
    return `${name} (sentinel → ${new URL(d.endpoint).host}, rule ${d.ruleId}, ${d.streamName})`;
  return `${name} (${d.type} → ${d.url ? new URL(d.url).host : `URL from Key Vault secret ${d.urlSecretName}`})`;
}

/** Delivery dependencies from the app's services. */
export function createDeliveryDeps(services: {
  config: Pick<AppConfig, 'routing'>;
  secretCache: DeliveryDeps['secrets'];
  sender: MessageSender;
  appCredential: TokenCredential;
}): DeliveryDeps {
  const { allowedHosts, allowLoopback, timeoutMs } = services.config.routing;
  return {
    policy: { allowedHosts, allowLoopback, timeoutMs },
    secrets: services.secretCache,
    queues: new QueueDestinations(services.sender, identityAccountClients(services.appCredential)),
    sentinel: new SentinelClients(services.appCredential, { allowedHosts, allowLoopback }),
  };
}
