import { BudgetSpentError, type BudgetClass } from '../sources/call-budget.js';
import { countIfPoisoned, deadLetter, isLastAttempt, type DeadLetterCategory } from '../messages/dead-letter.js';
import type { DefenderClient } from '../sources/defender/client.js';
import type { GraphIncidentApi } from '../sources/graph/incident-api.js';
import { graphPortalUrl } from '../sources/graph/incident-view.js';
import { incidentViewOf, type IncidentApiClient } from '../sources/incident-api.js';
import type { DeliveryLog, EventClaim } from '../route/delivery-log.js';
import {
  createDeliveryDeps,
  deliver,
  describeDestination,
  routedMessageFor,
  type DeliveryDeps,
} from '../route/destinations/index.js';
import { deriveEnrichment, enrichWithApi, type Enrichment } from './enrichment.js';
import { failureCategory, isRetryable, PermanentError, RetryableError } from '../errors.js';
import { apiOf, envelopeSchema, type IncidentEnvelope } from '../messages/events.js';
import { isRecord } from '../sources/defender/incident-types.js';
import { describeViolation, findStructureViolation, INCIDENT_LIMITS, MESSAGE_LIMITS } from '../messages/json-limits.js';
import { redactingLogger, type Logger } from '../telemetry/logging.js';
import { recordEventRouted, recordEventSkipped } from '../telemetry/metrics.js';
import { QUEUE_NAMES, readClaimCheck, type MessageSender } from '../storage/queues.js';
import { describeError } from '../telemetry/redact.js';
import { ConfigFileError } from '../config/config-file.js';
import {
  plannedDeliveries,
  routingTableFor,
  selectRoutes,
  type MatchedRoute,
  type RoutingTable,
} from '../route/routing.js';
import type { Services } from '../services.js';
import type { BlobServiceProvider } from '../storage/storage.js';
import { CachedTenantLookup, TenantNotFoundError, type Tenant, type TenantRegistry } from '../tenants/tenants.js';
import { describeEnrichSpan, describeOutcome, traceEnrich } from '../telemetry/tracing.js';
import { carriesWriteBack, contentFingerprint, writeBack } from './write-back.js';

/**
 * The enricher: one incident event from `incidents` → validated, deduplicated, enriched, routed.
 * Exactly-once in effect: the event is claimed first, each destination's delivery is recorded before
 * the next is tried and the event once all are done, so a redelivered or replayed event skips what it
 * already did. Besides its delivery, a new event with one destination costs a claim and a commit
 * (shared with concurrent invocations, see delivery-log.ts); the tenant comes from a short cache.
 * A retryable failure is rethrown (the host retries, then moves the message to `incidents-poison`);
 * a permanent one goes to `incidents-deadletter` at once with its reason.
 */
export interface EnrichDependencies {
  registry: Pick<TenantRegistry, 'get'>;
  defender: DefenderClient;
  /** The API calls for tenants whose source is `graph`. */
  graph?: GraphIncidentApi;
  deliveryLog: DeliveryLog;
  sender: MessageSender;
  blobs: BlobServiceProvider;
  routing: () => RoutingTable;
  deliveryDeps: DeliveryDeps;
}

export type EnrichOutcome =
  | {
      status: 'routed';
      eventId: string;
      routes: string[];
      destinations: string[];
      apiCalls: number;
      enrichment: Enrichment;
    }
  | { status: 'duplicate' | 'echo'; eventId: string }
  | { status: 'dead-lettered'; eventId?: string; reason: string };

/**
 * The routing table from ROUTES_FILE: the one the start-up check loaded (read once per process). A
 * file that does not load stops the app at start (functions/startupCheck.ts), so the enricher never
 * takes an event off the queue with it; should one reach it anyway, the event is dead-lettered with
 * the file, line and field, unclaimed, for replay once the file is fixed.
 */
export function routingFromConfig(services: Pick<Services, 'config'>): () => RoutingTable {
  // Kept once loaded: the hot path pays no path resolution or cache key per event.
  let table: RoutingTable | undefined;
  return () => (table ??= routingTableFor(services.config.routing));
}

export function enrichDependencies(services: Services): EnrichDependencies {
  return {
    registry: new CachedTenantLookup(services.registry),
    defender: services.defender,
    graph: services.graphIncidents,
    deliveryLog: services.deliveryLog,
    sender: services.sender,
    blobs: services.storage.blobs,
    routing: routingFromConfig(services),
    deliveryDeps: createDeliveryDeps(services),
  };
}

class DeadLetterReason extends Error {
  constructor(
    message: string,
    readonly category: DeadLetterCategory,
  ) {
    super(message);
  }
}

/** Another invocation is routing the same event right now; this delivery looks again later (and finds it routed). */
class EventBusy extends RetryableError {}

export { MAX_DEQUEUE_COUNT } from '../messages/dead-letter.js';

/**
 * One event from the queue, in its incident's trace (tracing.ts). A failure of the message's last
 * allowed attempt counts as poisoned: the host moves it to `incidents-poison` without telling the app.
 */
export function handleIncidentEvent(
  message: unknown,
  deps: EnrichDependencies,
  logger: Logger,
  attempt: { dequeueCount?: number } = {},
): Promise<EnrichOutcome> {
  return traceEnrich(message, attempt.dequeueCount ?? 1, async (span) => {
    try {
      const outcome = await routeIncidentEvent(message, deps, logger, attempt);
      describeOutcome(span, outcome.status);
      return outcome;
    } catch (err) {
      countIfPoisoned(QUEUE_NAMES.incidents, attempt.dequeueCount, failureCategory(err));
      throw err;
    }
  });
}

async function routeIncidentEvent(
  message: unknown,
  deps: EnrichDependencies,
  logger: Logger,
  attempt: { dequeueCount?: number },
): Promise<EnrichOutcome> {
  const log = redactingLogger(logger);
  // A message too deep or wide is refused before anything recursive reads it; the dead letter keeps its identity only.
  const tooDeep = findStructureViolation(message, MESSAGE_LIMITS);
  if (tooDeep) {
    const identity = identityOf(message);
    return deadLettered(
      deps,
      identity,
      typeof identity.eventId === 'string' ? identity.eventId : undefined,
      describeViolation(tooDeep),
      'structure-limits',
      log,
    );
  }
  const parsed = envelopeSchema.safeParse(message);
  if (!parsed.success) {
    const reason = `invalid event: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(event)'}: ${i.message}`).join('; ')}`;
    return deadLettered(deps, message, undefined, reason, 'invalid-message', log);
  }
  const envelope = parsed.data;
  const { eventId } = envelope;
  describeEnrichSpan(envelope);
  let table: RoutingTable;
  try {
    table = deps.routing();
  } catch (err) {
    // Before the claim and any Defender call: retrying cannot help until the file is fixed (and the app restarted).
    if (!(err instanceof ConfigFileError)) throw err;
    return deadLettered(
      deps,
      message,
      eventId,
      `the routing rules cannot load (fix ${err.setting ?? 'them'}, restart, then replay the dead letters): ${err.lines().join('; ')}`,
      'routing-rules',
      log,
    );
  }
  let claim: EventClaim | undefined;
  try {
    const claimed = await deps.deliveryLog.claim(eventId);
    if (claimed.status === 'routed') {
      log.info(`enrichIncident ${eventId}: already routed, dropped as a duplicate delivery`);
      recordEventSkipped(envelope.tenantId, 'duplicate');
      return { status: 'duplicate', eventId };
    }
    if (claimed.status === 'busy')
      throw new EventBusy('another invocation is routing this event now', {
        tenantId: envelope.tenantId,
        operation: 'claim event',
      });
    claim = claimed.claim;
    const tenant = await tenantOf(envelope, deps);
    const incident = await incidentOf(envelope, deps);
    // What enrichment, the rules and echo detection read: the incident in Defender's shape, whichever API gave it.
    const view = incidentViewOf(envelope, incident);
    // Only a version holding the relay's tag or comment can be the echo of its write-back.
    const mayBeEcho = carriesWriteBack(view);
    if (
      mayBeEcho &&
      (await deps.deliveryLog.lastRoutedFingerprint(tenant.tenantId, envelope.incidentId)) === contentFingerprint(view)
    ) {
      await deps.deliveryLog.complete(claim, []);
      claim = undefined;
      log.info(`enrichIncident ${eventId}: only the relay's write-back changed, not routed again`);
      recordEventSkipped(envelope.tenantId, 'echo');
      return { status: 'echo', eventId };
    }

    const defender = incidentApiOf(tenant, deps).withBudgetClass(budgetClassOf(envelope));
    let enrichment = withPortalUrl(
      deriveEnrichment(view, { tenantId: tenant.tenantId, tenantDisplayName: tenant.displayName }),
      envelope,
      incident,
    );
    let apiCalls = 0;
    let fullIncident: unknown = view;
    if (enrichment.needsFullIncident) {
      const full = await enrichWithApi({ incident: view, tenant }, { defender });
      enrichment = withPortalUrl(full.enrichment, envelope, incident);
      fullIncident = full.fetchedIncident ?? view;
      apiCalls += full.calls;
    }
    const routes = selectRoutes(table, { tenantId: tenant.tenantId, incident: view, enrichment });
    const hunting = routes.flatMap((r) => r.hunting ?? []);
    if (hunting.length > 0) {
      const hunted = await enrichWithApi({ incident: fullIncident, tenant, hunting }, { defender });
      enrichment = { ...enrichment, hunting: hunted.enrichment.hunting, notes: [...enrichment.notes, ...hunted.notes] };
      apiCalls += hunted.calls;
    }

    const writesBack = routes.some((r) => r.writeBack);
    const { destinations, unrecorded } = await deliverAll(
      claim,
      envelope,
      incident,
      enrichment,
      routes,
      table,
      deps,
      writesBack,
    );
    await writeBackAll(claim, envelope, tenant, view, routes, deps, log);
    // The fingerprint matters only where an echo can follow: after a write-back, or once the incident holds one.
    const fingerprint =
      writesBack || mayBeEcho ? { incidentId: envelope.incidentId, value: contentFingerprint(view) } : undefined;
    await deps.deliveryLog.complete(
      claim,
      routes.map((r) => r.name),
      { delivered: unrecorded, fingerprint },
    );
    claim = undefined;
    if (envelope.incidentRef) await deleteClaimCheck(deps.blobs, envelope.incidentRef.blobUrl, log);
    log.info(
      `enrichIncident ${eventId}: routed by ${routes.map((r) => r.name).join(', ')} to ${destinations.join(', ') || '(nothing)'}` +
        ` (priority ${enrichment.priority}, ${apiCalls} API call(s)${enrichment.notes.length ? `; notes: ${enrichment.notes.join(' | ')}` : ''})`,
    );
    return { status: 'routed', eventId, routes: routes.map((r) => r.name), destinations, apiCalls, enrichment };
  } catch (err) {
    if (err instanceof EventBusy) {
      log.info(
        `enrichIncident ${eventId}: another invocation is routing this event now; this delivery will look again`,
      );
      throw err;
    }
    if (err instanceof DeadLetterReason) return deadLettered(deps, message, eventId, err.message, err.category, log);
    if (err instanceof TenantNotFoundError)
      return deadLettered(deps, message, eventId, err.message, 'tenant-unknown', log);
    if (err instanceof PermanentError && !isRetryable(err))
      return deadLettered(deps, message, eventId, err.message, 'permanent-failure', log);
    const last = isLastAttempt(attempt.dequeueCount);
    // The poison queue keeps only the message: this line is where its reason is kept.
    log.error(
      `enrichIncident ${eventId} failed${last ? ` on attempt ${attempt.dequeueCount}, moving to ${QUEUE_NAMES.poison}` : ', will be retried'}: ${describeError(err)}`,
    );
    throw err;
  } finally {
    // Not done: give the claim up so that a retry or replay need not wait for its lease (what was delivered stays recorded).
    if (claim)
      await deps.deliveryLog
        .release(claim)
        .catch((err: unknown) =>
          log.warn(
            `enrichIncident ${eventId}: the claim could not be released (its lease will lapse): ${describeError(err)}`,
          ),
        );
  }
}

/**
 * Whose share of the tenant's Defender budget an event's API calls spend: a pushed incident's the push
 * share (capped, and never waited for), so whoever can push cannot spend the analysts' or the poller's.
 */
function budgetClassOf(envelope: IncidentEnvelope): BudgetClass {
  return envelope.source === 'webhook' ? 'push' : 'poll';
}

/** The tenant's own API, whatever shape the event's incident has (a push brings Defender's shape for any tenant). */
function incidentApiOf(tenant: Tenant, deps: EnrichDependencies): IncidentApiClient {
  if (tenant.source !== 'graph') return deps.defender;
  if (!deps.graph)
    throw new Error(`Tenant ${tenant.tenantId} is read through Microsoft Graph, and the enricher has no Graph client`);
  return deps.graph;
}

/** A Graph incident names its own portal link (incidentWebUrl), taken when it is one of the Defender portal's. */
function withPortalUrl(
  enrichment: Enrichment,
  envelope: IncidentEnvelope,
  incident: Record<string, unknown>,
): Enrichment {
  const portalUrl = apiOf(envelope) === 'graph' ? graphPortalUrl(incident) : undefined;
  return portalUrl === undefined ? enrichment : { ...enrichment, portalUrl };
}

async function tenantOf(envelope: IncidentEnvelope, deps: EnrichDependencies): Promise<Tenant> {
  const tenant = await deps.registry.get(envelope.tenantId);
  if (!tenant.enabled) throw new DeadLetterReason(`tenant ${envelope.tenantId} is disabled`, 'tenant-disabled');
  return tenant;
}

async function incidentOf(envelope: IncidentEnvelope, deps: EnrichDependencies): Promise<Record<string, unknown>> {
  if (envelope.incident) return envelope.incident;
  let incident: unknown;
  try {
    incident = await readClaimCheck(deps.blobs, envelope.incidentRef!.blobUrl);
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404)
      throw new DeadLetterReason(
        `the claim-checked incident ${envelope.incidentRef!.blobUrl} no longer exists`,
        'claim-check',
      );
    if (err instanceof Error && !isRetryable(err) && !(err as { statusCode?: number }).statusCode)
      throw new DeadLetterReason(`the claim-check reference is unusable: ${err.message}`, 'claim-check');
    throw new RetryableError(
      `the claim-checked incident could not be read: ${describeError(err)}`,
      { tenantId: envelope.tenantId, operation: 'read claim-check' },
      { cause: err },
    );
  }
  if (!isRecord(incident)) throw new DeadLetterReason('the claim-checked incident is not a JSON object', 'claim-check');
  const tooDeep = findStructureViolation(incident, INCIDENT_LIMITS);
  if (tooDeep)
    throw new DeadLetterReason(
      `the claim-checked incident is refused: ${describeViolation(tooDeep)}`,
      'structure-limits',
    );
  return incident;
}

/**
 * Every planned delivery not yet made. Each success is recorded before the next is tried; the last one
 * is left to the commit (`unrecorded`), unless more work that can fail follows it (`recordLast`).
 */
async function deliverAll(
  claim: EventClaim,
  envelope: IncidentEnvelope,
  incident: Record<string, unknown>,
  enrichment: Enrichment,
  routes: MatchedRoute[],
  table: RoutingTable,
  deps: EnrichDependencies,
  recordLast: boolean,
): Promise<{ destinations: string[]; unrecorded: string[] }> {
  const planned = plannedDeliveries(routes);
  const destinations: string[] = [];
  const unrecorded: string[] = [];
  for (const [index, { route, destination }] of planned.entries()) {
    destinations.push(destination);
    if (claim.delivered.has(destination)) continue;
    try {
      const { outcome } = await deliver(
        table,
        destination,
        routedMessageFor(envelope, incident, enrichment, route, destination),
        deps.deliveryDeps,
      );
      const latencyMs = outcome === 'delivered' ? Date.now() - Date.parse(envelope.lastUpdateTime) : undefined;
      recordEventRouted(envelope.tenantId, route.name, destination, latencyMs);
    } catch (err) {
      const where = `route ${route.name} → ${describeDestination(table, destination)}`;
      if (isRetryable(err))
        throw new RetryableError(
          `${where}: ${describeError(err)}`,
          { tenantId: envelope.tenantId, operation: 'deliver', retryAfterMs: (err as RetryableError).retryAfterMs },
          { cause: err },
        );
      throw new DeadLetterReason(`${where}: ${describeError(err)}`, 'destination-refused');
    }
    if (index < planned.length - 1 || recordLast) await deps.deliveryLog.recordDelivery(claim, destination);
    else unrecorded.push(destination);
  }
  return { destinations, unrecorded };
}

/** Tags or comments the incident (its Defender-shaped view) as routes ask; a missing permission is logged, not fatal. */
async function writeBackAll(
  claim: EventClaim,
  envelope: IncidentEnvelope,
  tenant: Tenant,
  incident: Record<string, unknown>,
  routes: MatchedRoute[],
  deps: EnrichDependencies,
  log: Logger,
) {
  for (const route of routes) {
    if (!route.writeBack) continue;
    const marker = `write-back:${route.name}`;
    if (claim.delivered.has(marker)) continue;
    // Write-back is a courtesy to the analysts: it never waits for, or spends the last of, the tenant's budget (the event's share of it).
    const defender = incidentApiOf(tenant, deps).withBudgetClass(budgetClassOf(envelope));
    if (defender.budgetWait(tenant.tenantId, 'updateIncident') > 0) {
      const share = defender.budgetClass === 'push' ? 'budget for pushed incidents' : 'API budget';
      log.warn(
        `enrichIncident ${envelope.eventId}: write-back for route ${route.name} skipped: the tenant's ${share} is spent`,
      );
      continue;
    }
    try {
      await writeBack(defender, tenant, { incidentId: envelope.incidentId, tags: incident.tags }, route.writeBack);
      await deps.deliveryLog.recordDelivery(claim, marker);
    } catch (err) {
      // Spent between the check above and the call (other instances took the calls meanwhile): skipped like
      // above. Retrying would only fail again while the budget is spent, and five failures poison the event.
      if (isRetryable(err) && !(err instanceof BudgetSpentError)) throw err;
      log.warn(`enrichIncident ${envelope.eventId}: write-back for route ${route.name} skipped: ${describeError(err)}`);
    }
  }
}

async function deleteClaimCheck(blobService: BlobServiceProvider, blobUrl: string, log: Logger) {
  try {
    const blobs = await blobService();
    const serviceUrl = blobs.url.endsWith('/') ? blobs.url : `${blobs.url}/`;
    const [container, ...name] = blobUrl.slice(serviceUrl.length).split('/');
    await blobs
      .getContainerClient(container!)
      .getBlobClient(decodeURIComponent(name.join('/')))
      .deleteIfExists();
  } catch (err) {
    log.warn(
      `enrichIncident: the claim-check blob could not be deleted (it will linger, harmlessly): ${describeError(err)}`,
    );
  }
}

/** The envelope's top-level scalar fields (eventId, tenantId, …): what can be kept of a message refused for its structure. */
function identityOf(message: unknown): Record<string, unknown> {
  if (!isRecord(message)) return {};
  return Object.fromEntries(
    Object.entries(message)
      .filter(([, v]) => v === null || typeof v !== 'object')
      .map(([k, v]) => [k, typeof v === 'string' ? v.slice(0, 200) : v]),
  );
}

async function deadLettered(
  deps: EnrichDependencies,
  message: unknown,
  eventId: string | undefined,
  reason: string,
  category: DeadLetterCategory,
  log: Logger,
): Promise<EnrichOutcome> {
  await deadLetter(deps.sender, QUEUE_NAMES.incidents, message, reason, category);
  log.error(`enrichIncident ${eventId ?? '(unreadable event)'} dead-lettered: ${reason}`);
  return { status: 'dead-lettered', eventId, reason };
}
