import { routedMessageProblems, type RoutedMessage } from './messages.js';

/**
 * One routed message, from a queue or a webhook: validated against the published schema, its incident
 * read from Blob storage when the relay claim-checked it, and handed to `handle` once per eventId.
 */
export interface ConsumerDependencies {
  /** Reads a claim-checked incident (only from the relay's blob service: see `claimCheckReader`). */
  readClaimCheck(blobUrl: string): Promise<unknown>;
  events: ProcessedEvents;
  /** Your work. It may run again for an eventId if the process dies before the event is marked: make it idempotent. */
  handle(message: RoutedMessage & { incident: Record<string, unknown> }): Promise<void>;
  log(line: string): void;
}

/** Which events this consumer has handled (a Table in production: `TableProcessedEvents`). */
export interface ProcessedEvents {
  has(tenantId: string, eventId: string): Promise<boolean>;
  mark(tenantId: string, eventId: string): Promise<void>;
}

export type ConsumeOutcome =
  | { status: 'handled'; eventId: string }
  | { status: 'duplicate'; eventId: string }
  | { status: 'invalid'; problems: string[] };

export async function consumeRoutedMessage(raw: unknown, deps: ConsumerDependencies): Promise<ConsumeOutcome> {
  const problems = routedMessageProblems(raw);
  // A message the schema refuses will never pass: say why and let it go rather than retry it five times.
  if (problems.length > 0) {
    deps.log(`refused a message the routed-message schema does not accept: ${problems.join('; ')}`);
    return { status: 'invalid', problems };
  }
  const message = raw as RoutedMessage;
  if (await deps.events.has(message.tenantId, message.eventId)) {
    deps.log(`${message.eventId}: already handled, skipped`);
    return { status: 'duplicate', eventId: message.eventId };
  }
  const incident = message.incident ?? (await deps.readClaimCheck(message.incidentRef!.blobUrl));
  if (typeof incident !== 'object' || incident === null || idOf(message, incident) !== message.incidentId)
    throw new Error(`${message.eventId}: the claim-checked blob does not hold incident ${message.incidentId}`);
  await deps.handle({ ...message, incident: incident as Record<string, unknown> });
  await deps.events.mark(message.tenantId, message.eventId);
  deps.log(
    `${message.eventId}: handled (${message.enrichment.highestSeverity ?? 'no'} severity, priority ${message.enrichment.priority}, route ${message.route.name})`,
  );
  return { status: 'handled', eventId: message.eventId };
}

/** The incident's own id: Defender's `incidentId` (v1), or Graph's `id`, the same number as a string (v2). */
function idOf(message: RoutedMessage, incident: object): unknown {
  if (message.api === 'graph') {
    const id = (incident as { id?: unknown }).id;
    return typeof id === 'string' ? Number(id) : undefined;
  }
  return (incident as { incidentId?: unknown }).incidentId;
}
