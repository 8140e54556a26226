import { metrics, type Counter, type Gauge, type Histogram, type MeterProvider } from '@opentelemetry/api';
import { GUID } from '../config/config.js';
import type { IncidentApi } from '../messages/events.js';
import { DIMENSIONS, FAILED_POLL_OUTCOME, METRICS } from './telemetry-names.js';

/**
 * The relay's metrics: every instrument, and one typed function per thing worth counting, so that a
 * call site names what happened and this module alone decides instruments and dimensions (exactly
 * DIMENSIONS; a dimension is never free text, incident content or a URL). Through the OpenTelemetry
 * API only: until telemetry.ts starts the SDK (no connection string: never) every call is the API's
 * no-op. The API keeps no proxy for meters, so the instruments are made from whichever MeterProvider
 * is registered when a metric is recorded, and made again if another one is registered later.
 */
export const METER_NAME = 'defender-relay';

/** Where the incident events came from: a poll, a push (envelope source `webhook`), or a replay of dead letters. */
export type EventSource = 'poll' | 'push' | 'replay';
/** Why an event was not routed again: its eventId was routed already, or only the relay's own write-back changed. */
export type SkipReason = 'duplicate' | 'echo';
/** How a poll run ended (PollOutcome's status), or `failed` when it threw. */
export type PollRunOutcome = 'polled' | 'continued' | 'retrying' | 'conflict' | 'disabled' | typeof FAILED_POLL_OUTCOME;
/** What is known of a queue's depth: approximate message counts by queue name. */
export type QueueDepths = ReadonlyMap<string, number>;

interface Instruments {
  incidentsListed: Counter;
  eventsEnqueued: Counter;
  eventsRouted: Counter;
  eventsDeadLettered: Counter;
  eventsPoisoned: Counter;
  eventsSkipped: Counter;
  defenderCalls: Counter;
  graphCalls: Counter;
  tokenRequests: Counter;
  keyVaultRequests: Counter;
  pollDuration: Histogram;
  deliveryLatency: Histogram;
  checkpointLag: Gauge;
}

/** What the observable gauges read when the SDK collects (once per export interval). */
const observed: {
  queueDepths?: () => Promise<QueueDepths>;
  budgetUsage: Partial<Record<IncidentApi, () => ReadonlyMap<string, number>>>;
} = { budgetUsage: {} };

let bound: { provider: MeterProvider; instruments: Instruments } | undefined;

function instruments(): Instruments {
  const provider = metrics.getMeterProvider();
  if (bound?.provider !== provider) bound = { provider, instruments: createInstruments(provider) };
  return bound.instruments;
}

function createInstruments(provider: MeterProvider): Instruments {
  const meter = provider.getMeter(METER_NAME);
  meter
    .createObservableGauge(METRICS.queueDepth, { description: 'Approximate messages in a queue', unit: '{message}' })
    .addCallback(async (result) => {
      for (const [queue, depth] of (await observed.queueDepths?.()) ?? [])
        result.observe(depth, { [DIMENSIONS.queue]: queue });
    });
  // One gauge per API: their budgets (and limits) are apart, as the tenants read through each.
  for (const [api, name, title] of [
    ['defender', METRICS.defenderBudgetUsed, 'Defender'],
    ['graph', METRICS.graphBudgetUsed, 'Microsoft Graph'],
  ] as const)
    meter
      .createObservableGauge(name, {
        description: `Share of the tenant's per-minute ${title} call budget used, as this instance last saw it`,
        unit: '1',
      })
      .addCallback((result) => {
        for (const [tenantId, share] of observed.budgetUsage[api]?.() ?? [])
          result.observe(share, { [DIMENSIONS.tenant]: tenantDimension(tenantId) });
      });
  return {
    incidentsListed: meter.createCounter(METRICS.incidentsListed, { description: 'Incidents listed to a poll' }),
    eventsEnqueued: meter.createCounter(METRICS.eventsEnqueued, { description: 'Incident events sent to incidents' }),
    eventsRouted: meter.createCounter(METRICS.eventsRouted, { description: 'Events delivered to a destination' }),
    eventsDeadLettered: meter.createCounter(METRICS.eventsDeadLettered, {
      description: 'Messages moved to a dead-letter queue',
    }),
    eventsPoisoned: meter.createCounter(METRICS.eventsPoisoned, {
      description: 'Messages whose last allowed attempt failed (the host moves them to the poison queue)',
    }),
    eventsSkipped: meter.createCounter(METRICS.eventsSkipped, { description: 'Events not routed again' }),
    defenderCalls: meter.createCounter(METRICS.defenderCalls, { description: 'Defender API calls answered' }),
    graphCalls: meter.createCounter(METRICS.graphCalls, { description: 'Microsoft Graph security API calls answered' }),
    tokenRequests: meter.createCounter(METRICS.tokenRequests, { description: 'Token requests to Entra ID' }),
    keyVaultRequests: meter.createCounter(METRICS.keyVaultRequests, { description: 'Secret reads from Key Vault' }),
    pollDuration: meter.createHistogram(METRICS.pollDuration, {
      description: 'One poll run',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000] },
    }),
    deliveryLatency: meter.createHistogram(METRICS.deliveryLatency, {
      description: "From the incident's lastUpdateTime to its delivery",
      unit: 'ms',
      advice: {
        explicitBucketBoundaries: [1_000, 5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 900_000, 3_600_000],
      },
    }),
    checkpointLag: meter.createGauge(METRICS.checkpointLag, {
      description: "Now minus the tenant's checkpoint, after a poll",
      unit: 's',
    }),
  };
}

/**
 * A tenant as a dimension: its id (a GUID, lower case). Anything else, as a message from the queue may
 * hold, is one value: a hostile message can neither put its text in a dimension nor multiply series.
 */
function tenantDimension(tenantId: string): string {
  return GUID.test(tenantId) ? tenantId.toLowerCase() : 'invalid';
}

/** Incidents a poll's page listed, by the API it listed them from. */
export function recordIncidentsListed(tenantId: string, count: number, api: IncidentApi): void {
  if (count > 0)
    instruments().incidentsListed.add(count, {
      [DIMENSIONS.tenant]: tenantDimension(tenantId),
      [DIMENSIONS.source]: api,
    });
}

export function recordEventEnqueued(tenantId: string, source: EventSource): void {
  instruments().eventsEnqueued.add(1, { [DIMENSIONS.tenant]: tenantDimension(tenantId), [DIMENSIONS.source]: source });
}

/** One delivery to one destination of a route; `latencyMs` from the incident's lastUpdateTime, when it was delivered (not dropped). */
export function recordEventRouted(
  tenantId: string,
  route: string,
  destination: string,
  latencyMs: number | undefined,
): void {
  const { eventsRouted, deliveryLatency } = instruments();
  const tenant = tenantDimension(tenantId);
  eventsRouted.add(1, {
    [DIMENSIONS.tenant]: tenant,
    [DIMENSIONS.route]: route,
    [DIMENSIONS.destination]: destination,
  });
  if (latencyMs !== undefined && Number.isFinite(latencyMs))
    deliveryLatency.record(Math.max(0, latencyMs), {
      [DIMENSIONS.tenant]: tenant,
      [DIMENSIONS.destination]: destination,
    });
}

/** A message moved to `<queue>-deadletter`; `queue` is that dead-letter queue, `reason` a short category. */
export function recordDeadLettered(queue: string, reason: string): void {
  instruments().eventsDeadLettered.add(1, { [DIMENSIONS.queue]: queue, [DIMENSIONS.reason]: reason });
}

/** A message whose last allowed attempt failed: the host moves it to `queue` (`<queue>-poison`); `reason` a short category. */
export function recordPoisoned(queue: string, reason: string): void {
  instruments().eventsPoisoned.add(1, { [DIMENSIONS.queue]: queue, [DIMENSIONS.reason]: reason });
}

export function recordEventSkipped(tenantId: string, reason: SkipReason): void {
  instruments().eventsSkipped.add(1, { [DIMENSIONS.tenant]: tenantDimension(tenantId), [DIMENSIONS.reason]: reason });
}

/** A Defender API call answered with `status` (429s included). */
export function recordDefenderCall(tenantId: string, status: number): void {
  instruments().defenderCalls.add(1, {
    [DIMENSIONS.tenant]: tenantDimension(tenantId),
    [DIMENSIONS.status]: String(status),
  });
}

/** A Microsoft Graph security API call answered with `status` (429s included): counted apart from Defender's, whose limits and alert differ. */
export function recordGraphCall(tenantId: string, status: number): void {
  instruments().graphCalls.add(1, {
    [DIMENSIONS.tenant]: tenantDimension(tenantId),
    [DIMENSIONS.status]: String(status),
  });
}

export function recordTokenRequest(tenantId: string, succeeded: boolean): void {
  instruments().tokenRequests.add(1, {
    [DIMENSIONS.tenant]: tenantDimension(tenantId),
    [DIMENSIONS.outcome]: succeeded ? 'success' : 'failure',
  });
}

export function recordKeyVaultRead(succeeded: boolean): void {
  instruments().keyVaultRequests.add(1, { [DIMENSIONS.outcome]: succeeded ? 'success' : 'failure' });
}

export function recordPollRun(tenantId: string, outcome: PollRunOutcome, durationMs: number): void {
  instruments().pollDuration.record(durationMs, {
    [DIMENSIONS.tenant]: tenantDimension(tenantId),
    [DIMENSIONS.outcome]: outcome,
  });
}

/** After a poll: how far the tenant's checkpoint is behind `now`. */
export function recordCheckpointLag(tenantId: string, checkpoint: string, now: Date): void {
  const at = Date.parse(checkpoint);
  if (Number.isNaN(at)) return;
  instruments().checkpointLag.record(Math.max(0, (now.getTime() - at) / 1000), {
    [DIMENSIONS.tenant]: tenantDimension(tenantId),
  });
}

/** What the queue-depth gauge reports when collected; it should bound its own cost (see queues.ts `queueDepthReader`). */
export function observeQueueDepths(read: () => Promise<QueueDepths>): void {
  observed.queueDepths = read;
  instruments();
}

/** What an API's budget gauge reports when collected: per tenant, the share of its per-minute budget used. */
export function observeBudgetUsage(api: IncidentApi, read: () => ReadonlyMap<string, number>): void {
  observed.budgetUsage[api] = read;
  instruments();
}
