import { z } from 'zod';
import { CheckpointConflictError, type CheckpointStore } from './checkpoints.js';
import type { DefenderClient } from './defender-client.js';
import { envelopeFor, eventIdOf } from './events.js';
import { QUEUE_NAMES, type MessageSender } from './queues.js';
import type { TenantRegistry } from './tenants.js';
import { laterOf, minusMilliseconds, normalizeTimestamp } from './timestamps.js';

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
      maxSeen: z.string().optional(),
    })
    .optional(),
});
export type PollRequest = z.infer<typeof pollRequestSchema>;

export interface IngestDependencies {
  registry: TenantRegistry;
  checkpoints: CheckpointStore;
  defender: DefenderClient;
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
  status: 'polled' | 'continued' | 'disabled' | 'conflict';
  fetched: number;
  enqueued: number;
  duplicates: number;
  pages: number;
  claimChecked: number;
  checkpoint?: string;
}

export function pollRequest(tenantId: string, reason: PollRequest['reason'], now = new Date()): PollRequest {
  return { tenantId, reason, requestedAt: now.toISOString() };
}

/** One poll request per enabled tenant onto `poll-requests`. */
export async function schedulePolls(deps: Pick<IngestDependencies, 'registry' | 'sender' | 'now'>): Promise<string[]> {
  const tenants = await deps.registry.list({ enabledOnly: true });
  const now = deps.now?.() ?? new Date();
  await Promise.all(tenants.map((t) => deps.sender.send(QUEUE_NAMES.pollRequests, pollRequest(t.tenantId, 'schedule', now))));
  return tenants.map((t) => t.tenantId);
}

export async function pollTenant(request: PollRequest, deps: IngestDependencies): Promise<PollOutcome> {
  const now = deps.now?.() ?? new Date();
  const overlapMs = deps.overlapMs ?? 5 * 60_000;
  const tenant = await deps.registry.get(request.tenantId);
  const outcome: PollOutcome = { tenantId: tenant.tenantId, status: 'polled', fetched: 0, enqueued: 0, duplicates: 0, pages: 0, claimChecked: 0 };
  if (!tenant.enabled) return { ...outcome, status: 'disabled' };

  const checkpoint = await deps.checkpoints.get(tenant.tenantId);
  const since =
    request.continuation?.since ??
    (checkpoint.lastUpdateTime
      ? minusMilliseconds(checkpoint.lastUpdateTime, overlapMs)
      : normalizeTimestamp(new Date(now.getTime() - tenant.firstRunLookbackHours * 3_600_000).toISOString()));

  const listed = await deps.defender.listIncidentsSince(tenant, since, { maxPages: deps.maxPagesPerRun ?? 20, skip: request.continuation?.skip });
  const alreadyDelivered = new Set(checkpoint.boundaryEventIds);
  const fresh = listed.incidents.filter((i) => !alreadyDelivered.has(eventIdOf(tenant.tenantId, i.incidentId, i.lastUpdateTime)));
  outcome.pages = listed.pages;
  outcome.fetched = listed.incidents.length;
  outcome.duplicates = listed.incidents.length - fresh.length;

  await forEachLimited(fresh, deps.sendConcurrency ?? 16, async (incident) => {
    const { claimChecked } = await deps.sender.sendEvent(QUEUE_NAMES.incidents, envelopeFor(tenant.tenantId, incident, 'poll', now));
    outcome.enqueued += 1;
    if (claimChecked) outcome.claimChecked += 1;
  });

  let maxSeen = request.continuation?.maxSeen;
  for (const incident of listed.incidents) maxSeen = laterOf(maxSeen, incident.lastUpdateTime);

  if (!listed.complete) {
    const next: PollRequest = { ...pollRequest(tenant.tenantId, 'continuation', now), continuation: { since, skip: listed.nextSkip, maxSeen } };
    await deps.sender.send(QUEUE_NAMES.pollRequests, next);
    return { ...outcome, status: 'continued' };
  }

  // Nothing newer than the query's start minus the overlap can have been missed: the cursor advances even on an empty poll.
  const advancedTo = laterOf(laterOf(maxSeen, checkpoint.lastUpdateTime ?? since), minusMilliseconds(now.toISOString(), overlapMs));
  const windowStart = minusMilliseconds(advancedTo, overlapMs);
  const boundaryEventIds = [
    ...checkpoint.boundaryEventIds.filter((id) => timestampOf(id) >= windowStart),
    ...fresh.filter((i) => normalizeTimestamp(i.lastUpdateTime) >= windowStart).map((i) => eventIdOf(tenant.tenantId, i.incidentId, i.lastUpdateTime)),
  ];
  try {
    await deps.checkpoints.advance(checkpoint, { lastUpdateTime: advancedTo, boundaryEventIds });
  } catch (err) {
    if (err instanceof CheckpointConflictError) return { ...outcome, status: 'conflict', checkpoint: checkpoint.lastUpdateTime };
    throw err;
  }
  return { ...outcome, checkpoint: advancedTo };
}

function timestampOf(eventId: string): string {
  // eventId = <tenantId>:<incidentId>:<lastUpdateTime>; the timestamp itself contains colons.
  const parts = eventId.split(':');
  return parts.slice(2).join(':');
}

async function forEachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(workers);
}
