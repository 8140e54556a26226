import * as z from 'zod';
import { CheckpointConflictError, MAX_BOUNDARY_IDS, type CheckpointStore } from './checkpoints.js';
import { PAGE_SIZE, type DefenderClient } from '../sources/defender/client.js';
import type { GraphClient } from '../sources/graph/client.js';
import { graphIncidentVersion } from '../sources/graph/incident-view.js';
import { isRetryable, RetryableError } from '../errors.js';
import { deadLetter } from '../messages/dead-letter.js';
import { envelopeFor, eventIdOf, graphEnvelopeFor, type IncidentEnvelope } from '../messages/events.js';
import { describeViolation, findStructureViolation, INCIDENT_LIMITS } from '../messages/json-limits.js';
import { recordIncidentsListed } from '../telemetry/metrics.js';
import { QUEUE_NAMES, type MessageSender } from '../storage/queues.js';
import type { Tenant, TenantRegistry } from '../tenants/tenants.js';
import { laterOf, minusMilliseconds, normalizeTimestamp } from '../timestamps.js';

/**
 * Polling: the timer asks for one poll per enabled tenant; each poll lists what changed since the
 * tenant's checkpoint, enqueues one event per incident version, then advances the checkpoint. A run is
 * bounded in pages and hands the rest to a follow-up poll request, so it never runs past the function
 * timeout.
 */
export const pollRequestSchema = z.object({
  tenantId: z.string().min(1),
  reason: z.enum(['schedule', 'manual', 'continuation']),
  requestedAt: z.string(),
  continuation: z
    .object({
      since: z.string(),
      skip: z.number().int().nonnegative(),
      /** A Graph tenant's listing goes on from Graph's @odata.nextLink (the client follows only its own API's links). */
      nextLink: z.string().max(8192).optional(),
      maxSeen: z.string().optional(),
      /**
       * The versions on the last page enqueued. Defender lists newest first, so incidents changed
       * while a tenant is paged jump to the top and push these onto the next page: they are not
       * enqueued again (a shift of up to a page; beyond, the enricher's delivery log de-duplicates).
       */
      lastPage: z.array(z.string()).max(PAGE_SIZE).optional(),
      /** The versions enqueued so far whose time falls in the next checkpoint's overlap window: the last run records them as its boundary. */
      fresh: z.array(z.string()).max(MAX_BOUNDARY_IDS).optional(),
    })
    .optional(),
});
export type PollRequest = z.infer<typeof pollRequestSchema>;

export interface IngestDependencies {
  registry: TenantRegistry;
  checkpoints: CheckpointStore;
  defender: DefenderClient;
  /** Lists the incidents of tenants whose source is `graph`. */
  graph?: Pick<GraphClient, 'incidentPagesSince'>;
  sender: MessageSender;
  now?: () => Date;
  /** Pages (of 100) per run before handing over to a follow-up request. */
  maxPagesPerRun?: number;
  /** How far before the checkpoint each poll looks again, for late-indexed updates. */
  overlapMs?: number;
  /** Events sent to the queue in parallel. */
  sendConcurrency?: number;
}

export interface PollOutcome {
  tenantId: string;
  /** `retrying`: a retryable failure cut the listing short after whole pages were enqueued; a continuation from the failed page is queued. */
  status: 'polled' | 'continued' | 'retrying' | 'disabled' | 'conflict';
  fetched: number;
  enqueued: number;
  duplicates: number;
  pages: number;
  claimChecked: number;
  /** Incidents too deep or wide to enqueue: dead-lettered with the reason and their event id, not sent on. */
  refused: { eventId: string; reason: string }[];
  checkpoint?: string;
  /** What interrupted a `retrying` run. */
  failure?: unknown;
}

export function pollRequest(tenantId: string, reason: PollRequest['reason'], now = new Date()): PollRequest {
  return { tenantId, reason, requestedAt: now.toISOString() };
}

/** One poll request per enabled tenant onto `poll-requests`. */
export async function schedulePolls(deps: Pick<IngestDependencies, 'registry' | 'sender' | 'now'>): Promise<string[]> {
  const tenants = await deps.registry.list({ enabledOnly: true });
  const now = deps.now?.() ?? new Date();
  await Promise.all(
    tenants.map((t) => deps.sender.send(QUEUE_NAMES.pollRequests, pollRequest(t.tenantId, 'schedule', now))),
  );
  return tenants.map((t) => t.tenantId);
}

export async function pollTenant(request: PollRequest, deps: IngestDependencies): Promise<PollOutcome> {
  const now = deps.now?.() ?? new Date();
  const overlapMs = deps.overlapMs ?? 5 * 60_000;
  // The tenant and its checkpoint in one round trip: the registry keys tenants by their lower-case id.
  const [tenant, checkpoint] = await Promise.all([
    deps.registry.get(request.tenantId),
    deps.checkpoints.get(request.tenantId.toLowerCase()),
  ]);
  if (checkpoint.tenantId !== tenant.tenantId)
    throw new Error(`The checkpoint read for ${request.tenantId} is not tenant ${tenant.tenantId}'s`);
  const outcome: PollOutcome = {
    tenantId: tenant.tenantId,
    status: 'polled',
    fetched: 0,
    enqueued: 0,
    duplicates: 0,
    pages: 0,
    claimChecked: 0,
    refused: [],
  };
  if (!tenant.enabled) return { ...outcome, status: 'disabled' };

  const since =
    request.continuation?.since ??
    (checkpoint.lastUpdateTime
      ? minusMilliseconds(checkpoint.lastUpdateTime, overlapMs)
      : normalizeTimestamp(new Date(now.getTime() - tenant.firstRunLookbackHours * 3_600_000).toISOString()));
  // Stryker disable next-line ArrayDeclaration: a placeholder in the set is never an event id (tenant:number:timestamp), so nothing listed matches it
  const alreadyDelivered = new Set([...checkpoint.boundaryEventIds, ...(request.continuation?.lastPage ?? [])]);
  // The new checkpoint's overlap window starts no earlier than this, whatever the listing holds.
  const earliestWindowStart = minusMilliseconds(
    laterOf(checkpoint.lastUpdateTime ?? since, minusMilliseconds(now.toISOString(), overlapMs)),
    overlapMs,
  );
  const freshInWindow: string[] = [...(request.continuation?.fresh ?? [])];
  let maxSeen = request.continuation?.maxSeen;
  let listedTo = request.continuation?.skip ?? 0;
  let nextLink = request.continuation?.nextLink;
  // Stryker disable next-line ArrayDeclaration: equivalent: the first page listed replaces it, and it is used only once a page was listed
  let lastPage = request.continuation?.lastPage ?? [];
  // Stryker disable next-line BooleanLiteral: equivalent: every listing yields a page (maxPagesPerRun is at least 1), whose last flag replaces it
  let complete = false;

  // One send window across all pages, and the next page downloading while this one is sent.
  const sends = new SendWindow(deps.sendConcurrency ?? 16);
  const source = sourceOf(tenant, deps);
  const pages = prefetched(source.pages(since, { maxPages: deps.maxPagesPerRun ?? 20, skip: listedTo, nextLink }));
  try {
    for await (const page of pages) {
      outcome.pages += 1;
      outcome.fetched += page.incidents.length;
      recordIncidentsListed(tenant.tenantId, page.incidents.length, source.api);
      const listedIds: string[] = [];
      for (const incident of page.incidents) {
        const version = source.versionOf(incident);
        if ('problem' in version) {
          // No version to key it by: what is kept is the tenant and what the API called it, never the incident.
          const reason = `the incident as ${source.name} listed it is refused: ${version.problem}`;
          outcome.refused.push({ eventId: `${tenant.tenantId}:?`, reason });
          await sends.add(() =>
            deadLetter(
              deps.sender,
              QUEUE_NAMES.incidents,
              { tenantId: tenant.tenantId, api: source.api, id: String(incident.id).slice(0, 64) },
              reason,
              'invalid-message',
            ),
          );
          continue;
        }
        maxSeen = laterOf(maxSeen, version.lastUpdateTime);
        const eventId = eventIdOf(tenant.tenantId, version.incidentId, version.lastUpdateTime);
        listedIds.push(eventId);
        if (alreadyDelivered.has(eventId)) {
          outcome.duplicates += 1;
          continue;
        }
        if (timestampOf(eventId) >= earliestWindowStart) freshInWindow.push(eventId);
        // Before anything recursive (the queue message's JSON.stringify, the trigger's conversion) meets it.
        const violation = findStructureViolation(incident, INCIDENT_LIMITS);
        if (violation) {
          const reason = `the incident as ${source.name} listed it is refused: ${describeViolation(violation)}`;
          outcome.refused.push({ eventId, reason });
          await sends.add(() =>
            deadLetter(
              deps.sender,
              QUEUE_NAMES.incidents,
              withoutIncident(source.envelope(incident, version, now)),
              reason,
              'structure-limits',
            ),
          );
          continue;
        }
        await sends.add(async () => {
          const { claimChecked } = await deps.sender.sendEvent(
            QUEUE_NAMES.incidents,
            source.envelope(incident, version, now),
          );
          outcome.enqueued += 1;
          if (claimChecked) outcome.claimChecked += 1;
        });
      }
      listedTo = page.nextSkip;
      nextLink = page.nextLink;
      lastPage = listedIds;
      complete = page.last;
    }
    await sends.settle();
  } catch (err) {
    await sends.settle(); // a failed send is rethrown as it is: the host retries the run from its start
    // A retryable listing failure once whole pages are enqueued: a follow-up goes on from the failed page (if that page fails first, it is rethrown) rather than the host redoing every page.
    if (!isRetryable(err) || outcome.pages === 0) throw err;
    const resumeInMs = (err instanceof RetryableError && err.retryAfterMs) || RESUME_AFTER_FAILURE_MS;
    await deps.sender.send(
      QUEUE_NAMES.pollRequests,
      continuationOf(tenant.tenantId, since, { skip: listedTo, nextLink }, maxSeen, lastPage, freshInWindow, now),
      { visibilityTimeoutSeconds: Math.ceil(resumeInMs / 1000) },
    );
    return { ...outcome, status: 'retrying', failure: err };
  }

  if (!complete) {
    await deps.sender.send(
      QUEUE_NAMES.pollRequests,
      continuationOf(tenant.tenantId, since, { skip: listedTo, nextLink }, maxSeen, lastPage, freshInWindow, now),
    );
    return { ...outcome, status: 'continued' };
  }

  // Nothing newer than the query's start minus the overlap can have been missed: the cursor advances even on an empty poll.
  const advancedTo = laterOf(
    laterOf(maxSeen, checkpoint.lastUpdateTime ?? since),
    minusMilliseconds(now.toISOString(), overlapMs),
  );
  const windowStart = minusMilliseconds(advancedTo, overlapMs);
  const remembered = [...checkpoint.boundaryEventIds, ...freshInWindow];
  // Stryker disable next-line ConditionalExpression,MethodExpression: equivalent for keeping all: versions that left the window sort first, so the checkpoint's trim to the newest MAX_BOUNDARY_IDS drops them before any in it, and no listing reaches them again
  const inWindow = remembered.filter((id) => timestampOf(id) >= windowStart);
  const boundaryEventIds = inWindow.sort(byVersionTime); // oldest first: a trimmed list keeps the newest
  try {
    await deps.checkpoints.advance(checkpoint, { lastUpdateTime: advancedTo, boundaryEventIds });
  } catch (err) {
    if (err instanceof CheckpointConflictError)
      return { ...outcome, status: 'conflict', checkpoint: checkpoint.lastUpdateTime };
    throw err;
  }
  return { ...outcome, checkpoint: advancedTo };
}

/** What a dead letter keeps of a refused incident: its identity, not the structure that was refused (the API still holds it). */
function withoutIncident(envelope: IncidentEnvelope) {
  const { incident: _refused, ...identity } = envelope;
  return identity;
}

type Version = { incidentId: number; lastUpdateTime: string };

/** How a tenant's incidents are listed and keyed, by its source. */
interface IncidentSourceView {
  api: 'defender' | 'graph';
  /** For messages: "Defender", "Microsoft Graph". */
  name: string;
  pages(
    since: string,
    options: { maxPages: number; skip: number; nextLink?: string },
  ): AsyncIterator<{ incidents: Record<string, unknown>[]; nextSkip: number; nextLink?: string; last: boolean }>;
  versionOf(incident: Record<string, unknown>): Version | { problem: string };
  envelope(incident: Record<string, unknown>, version: Version, now: Date): IncidentEnvelope;
}

function sourceOf(tenant: Tenant, deps: IngestDependencies): IncidentSourceView {
  if (tenant.source === 'graph') {
    const graph = deps.graph;
    if (!graph)
      throw new Error(`Tenant ${tenant.tenantId} is read through Microsoft Graph, and this poller has no Graph client`);
    return {
      api: 'graph',
      name: 'Microsoft Graph',
      pages: (since, options) => graph.incidentPagesSince(tenant, since, options),
      versionOf: graphIncidentVersion,
      envelope: (incident, version, now) =>
        graphEnvelopeFor(tenant.tenantId, incident as { id: string; lastUpdateDateTime: string }, version, 'poll', now),
    };
  }
  return {
    api: 'defender',
    name: 'Defender',
    // Defender's listing is resumed by $skip alone.
    pages: (since, { maxPages, skip }) => deps.defender.incidentPagesSince(tenant, since, { maxPages, skip }),
    versionOf: (incident) => incident as Version,
    envelope: (incident, _version, now) => envelopeFor(tenant.tenantId, incident as Version, 'poll', now),
  };
}

/** When a run interrupted by a listing failure goes on, if Defender did not say. */
const RESUME_AFTER_FAILURE_MS = 30_000;

function continuationOf(
  tenantId: string,
  since: string,
  position: { skip: number; nextLink?: string },
  maxSeen: string | undefined,
  lastPage: string[],
  fresh: string[],
  now: Date,
): PollRequest {
  // The newest boundary versions, as the checkpoint keeps them.
  const newest = [...fresh].sort(byVersionTime).slice(-MAX_BOUNDARY_IDS);
  return {
    ...pollRequest(tenantId, 'continuation', now),
    continuation: { since, ...position, maxSeen, lastPage, fresh: newest },
  };
}

/** Orders event ids oldest version first. */
function byVersionTime(a: string, b: string): number {
  return timestampOf(a).localeCompare(timestampOf(b));
}

function timestampOf(eventId: string): string {
  // eventId = <tenantId>:<incidentId>:<lastUpdateTime>; the timestamp itself contains colons.
  const parts = eventId.split(':');
  return parts.slice(2).join(':');
}

/** Yields what `source` yields, asking for the next item as soon as it hands one out. */
async function* prefetched<T>(source: AsyncIterator<T>): AsyncGenerator<T, void, undefined> {
  let next = source.next();
  for (;;) {
    const result = await next;
    if (result.done) return;
    next = source.next();
    next.catch(() => undefined); // its failure is thrown when it is awaited, once this item is handled
    yield result.value;
  }
}

/**
 * At most `limit` sends in flight. `add` waits for a free slot, and throws once a send has failed;
 * `settle` waits for every send and throws the first failure.
 */
class SendWindow {
  readonly #inFlight = new Set<Promise<void>>();
  #failure: { error: unknown } | undefined;

  constructor(private readonly limit: number) {}

  async add(send: () => Promise<void>): Promise<void> {
    while (this.#inFlight.size >= this.limit) await Promise.race(this.#inFlight);
    this.#throwIfFailed();
    const sending: Promise<void> = send()
      .catch((error: unknown) => void (this.#failure ??= { error }))
      .finally(() => this.#inFlight.delete(sending));
    this.#inFlight.add(sending);
  }

  async settle(): Promise<void> {
    await Promise.all(this.#inFlight);
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }
}
