import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { parseHostConfig } from '../local/host/host-config.js';
import { enrichDependencies, handleIncidentEvent } from '../shared/enrich/enrich-handler.js';
import { envelopeFor } from '../shared/messages/events.js';
import type { Logger } from '../shared/telemetry/logging.js';
import { encodeMessage, QUEUE_NAMES } from '../shared/storage/queues.js';
import { loadConfig } from '../shared/config/config.js';
import { createServices } from '../shared/services.js';
import { GRAPH_PAGE_SIZE } from '../shared/sources/graph/client.js';
import { pollToTheEnd } from './poll-chain.js';
import { forEachLimited, perSecond } from './stats.js';
import { addPartnerTenant, BENCH_ROUTED_QUEUE, clearQueue, type BenchWorld } from './world.js';

/**
 * Figures 1 and 2 and the call counts of figure 3, each side of a ratio on the same client and the
 * same (fresh) Azurite:
 *   - figure 1: raw `sendMessage` of the very messages the poller will send, the poll, raw again;
 *   - figure 2: raw receive+send+delete and the enricher, chunk by chunk, on the same messages.
 */
export const SEND_CONCURRENCY = 16; // the poller's default sendConcurrency
/** host.json's queue batching, which both sides of figure 2 are consumed with. */
const HOST_QUEUES = parseHostConfig(JSON.parse(readFileSync(resolve('host.json'), 'utf8'))).queues;
export const QUEUE_BATCH = HOST_QUEUES.batchSize;
const RAW_IN = 'bench-raw-in';
const RAW_OUT = 'bench-raw-out';

export interface IngestRound {
  incidents: number;
  messageBytes: { mean: number; max: number };
  /** Raw sends of the same messages into the same empty queue just before and just after the poll (A-B-A). */
  rawSend: { elapsedMs: number[]; perSecond: number };
  ingest: { elapsedMs: number; perSecond: number; enqueued: number; pages: number; runs: number };
  /** Defender calls the poll made (the client's count, and what the stand-in saw). */
  calls: { client: number; standIn: number };
}

/** The Graph list calls of figure 3: one Graph tenant's N new incidents polled to the end. */
export interface GraphListing {
  incidents: number;
  /** The incidents a Graph list page holds (`$top`). */
  pageSize: number;
  enqueued: number;
  pages: number;
  runs: number;
  /** Graph calls the poll made (the client's count, and what the stand-in saw). */
  calls: { client: number; standIn: number };
}

export interface EnrichRun {
  events: number;
  chunks: number;
  rawReceiveSendDelete: { elapsedMs: number; perSecond: number };
  enrich: { elapsedMs: number; perSecond: number; routed: number; other: Record<string, number>; withAlerts: number };
  /** Defender calls the enricher made for these events. */
  calls: { client: number; standIn: number };
}

/** A logger that keeps nothing but counts what went wrong (a benchmark run must not drown in log lines). */
export function countingLogger(): Logger & { warnings: number; errors: number; lastError?: string } {
  const logger = {
    warnings: 0,
    errors: 0,
    lastError: undefined as string | undefined,
    info: () => undefined,
    warn: () => void (logger.warnings += 1),
    error: (m: string) => {
      logger.errors += 1;
      logger.lastError = m;
    },
  };
  return logger;
}

const decode = (text: string): unknown => JSON.parse(Buffer.from(text, 'base64').toString('utf8'));

/**
 * Takes `count` messages off a queue as the Functions host does: a batch of `batchSize` handled
 * concurrently, the next batch fetched once no more than `newBatchThreshold` are still in flight;
 * `handle` runs on each message, which is deleted once handled.
 */
async function consume(
  queue: QueueClient,
  count: number | { left: number },
  handle: (messageText: string) => Promise<void>,
): Promise<void> {
  const { batchSize, newBatchThreshold } = HOST_QUEUES;
  // Several instances consuming one queue share what is left to take.
  const shared = typeof count === 'number' ? { left: count } : count;
  const total = shared.left;
  const inFlight = new Set<Promise<void>>();
  let idle = 0;
  let failure: unknown;
  while (shared.left > 0) {
    while (inFlight.size > newBatchThreshold) await Promise.race(inFlight);
    if (failure) throw failure;
    // Meanwhile another instance may have taken the rest (a receive of 0 messages is a 400).
    if (shared.left <= 0) break;
    const wanted = Math.min(batchSize, shared.left);
    shared.left -= wanted;
    const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: wanted, visibilityTimeout: 300 });
    shared.left += wanted - receivedMessageItems.length;
    if (receivedMessageItems.length === 0) {
      // The rest may be in flight still (here or on another instance), or Azurite slow to show what was sent.
      if (++idle > 20) throw new Error(`Queue ${queue.name} ran dry with ${shared.left} of ${total} messages left`);
      await (inFlight.size > 0 ? Promise.race(inFlight) : new Promise((r) => setTimeout(r, 50)));
      continue;
    }
    idle = 0;
    for (const m of receivedMessageItems) {
      const work: Promise<void> = handle(m.messageText)
        .then(() => queue.deleteMessage(m.messageId, m.popReceipt))
        .then(
          () => undefined,
          (err: unknown) => void (failure ??= err),
        )
        .finally(() => inFlight.delete(work));
      inFlight.add(work);
    }
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
}

/**
 * Warms a fresh Azurite and fresh services (connections, tables, token, JIT) with a small poll and
 * raw sends, so that neither side of a ratio pays for being first.
 */
async function warmUp(bench: BenchWorld, logger: Logger): Promise<void> {
  const tenantId = randomUUID();
  await addPartnerTenant(bench, { tenantId, displayName: 'Bench warm-up', incidents: 64, seed: `warm-up-${tenantId}` });
  const queues = bench.services.storage.queues;
  const payloads = bench.defender.store
    .list(tenantId)
    .map((incident) => encodeMessage(envelopeFor(tenantId, incident, 'poll')));
  for (const name of [QUEUE_NAMES.incidents, RAW_IN]) {
    const queue = queues.getQueueClient(name);
    await queue.createIfNotExists();
    await forEachLimited(
      payloads,
      SEND_CONCURRENCY,
      async (text) => void (await queue.sendMessage(text, { messageTimeToLive: -1 })),
    );
  }
  await pollToTheEnd(bench.services, tenantId, logger);
  for (const name of [QUEUE_NAMES.incidents, QUEUE_NAMES.pollRequests, RAW_IN]) await clearQueue(queues, name);
}

/** Figure 1 (and the list calls of figure 3): one new tenant's N incidents, polled between two raw sends of the same messages. */
export async function runIngestRound(bench: BenchWorld, round: string, incidents: number): Promise<IngestRound> {
  const { services, defender, partnerApp } = bench;
  const logger = countingLogger();
  await warmUp(bench, logger);
  const tenantId = randomUUID();
  await addPartnerTenant(bench, { tenantId, displayName: `Bench ${round}`, incidents, seed: `bench-${round}` });
  await services.tokens.getToken(await services.registry.get(tenantId)); // steady state: the token is cached for the hour
  const standInCalls = () => defender.stats.for(tenantId, partnerApp.clientId).calls;

  // The messages the poller will send, byte for byte but for receivedAt.
  const payloads = defender.store
    .list(tenantId)
    .map((incident) => encodeMessage(envelopeFor(tenantId, incident, 'poll')));
  const sizes = payloads.map((p) => p.length);
  const queues = services.storage.queues;
  for (const name of [QUEUE_NAMES.incidents, QUEUE_NAMES.pollRequests]) await clearQueue(queues, name);
  const rawSend = async (queueName: string) => {
    const queue = queues.getQueueClient(queueName);
    const started = performance.now();
    await forEachLimited(
      payloads,
      SEND_CONCURRENCY,
      async (text) => void (await queue.sendMessage(text, { messageTimeToLive: -1 })),
    );
    return performance.now() - started;
  };

  const before = await rawSend(QUEUE_NAMES.incidents);
  await clearQueue(queues, QUEUE_NAMES.incidents);
  const clientBefore = services.defender.calls.get(tenantId) ?? 0;
  const standInBefore = standInCalls();
  const started = performance.now();
  const polled = await pollToTheEnd(bench.services, tenantId, logger);
  const ingestMs = performance.now() - started;
  if (polled.enqueued !== incidents)
    throw new Error(`The poll enqueued ${polled.enqueued} events for ${incidents} incidents`);
  const calls = {
    client: (services.defender.calls.get(tenantId) ?? 0) - clientBefore,
    standIn: standInCalls() - standInBefore,
  };
  await clearQueue(queues, QUEUE_NAMES.incidents);
  const after = await rawSend(QUEUE_NAMES.incidents);
  await clearQueue(queues, QUEUE_NAMES.incidents);

  return {
    incidents,
    messageBytes: { mean: sizes.reduce((a, b) => a + b, 0) / sizes.length, max: Math.max(...sizes) },
    rawSend: { elapsedMs: [before, after], perSecond: perSecond(2 * incidents, before + after) },
    ingest: { elapsedMs: ingestMs, perSecond: perSecond(incidents, ingestMs), ...polled },
    calls,
  };
}

/**
 * Figure 3's Graph list calls: a new tenant read through Microsoft Graph, its N incidents polled to the
 * end through the app's queue handler as figure 1 polls a Defender tenant. Only calls are counted, so
 * nothing is timed and no raw reference is sent.
 */
export async function runGraphListing(bench: BenchWorld, incidents: number): Promise<GraphListing> {
  const { services, graph, partnerApp } = bench;
  const logger = countingLogger();
  const tenantId = randomUUID();
  await addPartnerTenant(bench, {
    tenantId,
    displayName: 'Bench Graph',
    incidents,
    seed: `graph-${tenantId}`,
    source: 'graph',
  });
  await services.graphTokens.getToken(await services.registry.get(tenantId)); // steady state, as figure 1
  const queues = services.storage.queues;
  for (const name of [QUEUE_NAMES.incidents, QUEUE_NAMES.pollRequests]) await clearQueue(queues, name);
  const standInCalls = () => graph.stats.for(tenantId, partnerApp.clientId).calls;
  const clientBefore = services.graph.calls.get(tenantId) ?? 0;
  const standInBefore = standInCalls();
  const polled = await pollToTheEnd(services, tenantId, logger);
  if (polled.enqueued !== incidents)
    throw new Error(`The Graph poll enqueued ${polled.enqueued} events for ${incidents} incidents`);
  const calls = {
    client: (services.graph.calls.get(tenantId) ?? 0) - clientBefore,
    standIn: standInCalls() - standInBefore,
  };
  await clearQueue(queues, QUEUE_NAMES.incidents);
  return { incidents, pageSize: GRAPH_PAGE_SIZE, ...polled, calls };
}

/**
 * Figure 2 (and the extra calls of figure 3): a polled tenant's events through the enricher
 * (receive a batch → handle → delete, from `incidents`), against raw receive+send+delete of the
 * same messages. Both run chunk by chunk, alternating which goes first, and each chunk's messages
 * are enqueued (untimed) just before: Azurite's delete slows down with every message it holds, so
 * both sides see the same small queues and the same machine load.
 */
export async function runEnrich(bench: BenchWorld, events: number, chunk: number): Promise<EnrichRun> {
  const { services, defender, partnerApp } = bench;
  const deps = enrichDependencies(services);
  deps.routing(); // the routing file is read once per process, before the first event
  await warmUp(bench, countingLogger());
  // The tenant's incidents hold their alerts (none is a redirect): enrichment needs no API call.
  const warmUpEvents = QUEUE_BATCH * 2;
  const tenantId = randomUUID();
  await addPartnerTenant(bench, {
    tenantId,
    displayName: 'Bench enrich',
    incidents: events + warmUpEvents,
    seed: `enrich-${tenantId}`,
  });
  const all = defender.store.list(tenantId).map((incident) => encodeMessage(envelopeFor(tenantId, incident, 'poll')));
  const payloads = all.slice(warmUpEvents);
  const logger = countingLogger();
  const queues = services.storage.queues;
  const incidentsQueue = queues.getQueueClient(QUEUE_NAMES.incidents);
  const rawIn = queues.getQueueClient(RAW_IN);
  const rawOut = queues.getQueueClient(RAW_OUT);
  for (const name of [QUEUE_NAMES.incidents, RAW_IN, RAW_OUT, BENCH_ROUTED_QUEUE]) await clearQueue(queues, name);
  const standInCalls = () => defender.stats.for(tenantId, partnerApp.clientId).calls;
  const enqueue = (queue: QueueClient, texts: string[]) =>
    forEachLimited(
      texts,
      SEND_CONCURRENCY,
      async (text) => void (await queue.sendMessage(text, { messageTimeToLive: -1 })),
    );

  const statuses: Record<string, number> = {};
  let withAlerts = 0;
  let rawMs = 0;
  let enrichMs = 0;
  let chunks = 0;
  const raw = async (count: number) => {
    const started = performance.now();
    await consume(rawIn, count, async (text) => void (await rawOut.sendMessage(text, { messageTimeToLive: -1 })));
    rawMs += performance.now() - started;
  };
  const enrich = async (count: number) => {
    const started = performance.now();
    await consume(incidentsQueue, count, async (text) => {
      const message = decode(text) as { incident?: { alerts?: unknown[] } };
      if ((message.incident?.alerts?.length ?? 0) > 0) withAlerts += 1;
      const outcome = await handleIncidentEvent(message, deps, logger);
      statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1;
    });
    enrichMs += performance.now() - started;
  };

  // One untimed chunk of each first, then the figures.
  await enqueue(rawIn, all.slice(0, warmUpEvents));
  await enqueue(incidentsQueue, all.slice(0, warmUpEvents));
  await raw(warmUpEvents);
  await enrich(warmUpEvents);
  rawMs = 0;
  enrichMs = 0;
  withAlerts = 0;
  for (const key of Object.keys(statuses)) delete statuses[key];

  const clientBefore = services.defender.calls.get(tenantId) ?? 0;
  const standInBefore = standInCalls();
  for (let done = 0; done < events; done += chunk) {
    const texts = payloads.slice(done, done + chunk);
    await enqueue(rawIn, texts);
    await enqueue(incidentsQueue, texts);
    if (chunks % 2 === 0) {
      await raw(texts.length);
      await enrich(texts.length);
    } else {
      await enrich(texts.length);
      await raw(texts.length);
    }
    chunks += 1;
    for (const name of [RAW_OUT, BENCH_ROUTED_QUEUE]) await clearQueue(queues, name);
  }
  const calls = {
    client: (services.defender.calls.get(tenantId) ?? 0) - clientBefore,
    standIn: standInCalls() - standInBefore,
  };
  const { routed = 0, ...other } = statuses;
  if (routed !== events)
    throw new Error(
      `The enricher routed ${routed} of ${events} events (${JSON.stringify(other)}; last error: ${logger.lastError ?? 'none'})`,
    );
  return {
    events,
    chunks,
    rawReceiveSendDelete: { elapsedMs: rawMs, perSecond: perSecond(events, rawMs) },
    enrich: { elapsedMs: enrichMs, perSecond: perSecond(events, enrichMs), routed, other, withAlerts },
    calls,
  };
}

export interface InstancesEnrichRun {
  instances: number;
  events: number;
  chunks: number;
  /** The same events, chunk by chunk, enriched by one instance and by `instances` instances sharing the queue. */
  single: { elapsedMs: number; perSecond: number };
  several: { elapsedMs: number; perSecond: number };
  /** Raw receive+send+delete of the same messages by one consumer and by `instances`: what the storage (here one Azurite) lets any consumer gain. */
  raw: { single: { elapsedMs: number; perSecond: number }; several: { elapsedMs: number; perSecond: number } };
}

/**
 * Figure 2 with instances: the enricher on one instance against `instances` instances consuming the
 * one queue at once, as Flex Consumption scales out. Each instance is the app's services of its own
 * (its own connections, its own grouped delivery-log transactions) consuming as host.json says, all
 * in this process; chunks alternate which side goes first. Raw receive+send+delete consumers, one
 * and `instances` of them on the same connections, run beside them: Azurite handles requests one at a
 * time, so their ratio is the most the storage here lets any consumer scale.
 */
export async function runEnrichInstances(
  bench: BenchWorld,
  options: { instances: number; events: number; chunk: number },
): Promise<InstancesEnrichRun> {
  const apps = Array.from({ length: options.instances }, (_, i) =>
    i === 0 ? bench.services : createServices(loadConfig(bench.appSettings)),
  );
  const deps = apps.map((services) => enrichDependencies(services));
  for (const d of deps) d.routing();
  const logger = countingLogger();
  await warmUp(bench, logger);
  const tenantId = randomUUID();
  const warmUpEvents = QUEUE_BATCH * options.instances;
  await addPartnerTenant(bench, {
    tenantId,
    displayName: 'Bench enrich instances',
    incidents: 2 * options.events + warmUpEvents,
    seed: `enrich-instances-${tenantId}`,
  });
  const all = bench.defender.store
    .list(tenantId)
    .map((incident) => encodeMessage(envelopeFor(tenantId, incident, 'poll')));
  const queues = bench.services.storage.queues;
  for (const name of [QUEUE_NAMES.incidents, RAW_IN, RAW_OUT]) await clearQueue(queues, name);
  let routed = 0;
  const enrichers = deps.map((d, i) => ({
    from: apps[i]!.storage.queues,
    handle: async (text: string) => {
      const outcome = await handleIncidentEvent(decode(text), d, logger);
      if (outcome.status === 'routed') routed += 1;
    },
  }));
  const raws = apps.map((app) => {
    const out = app.storage.queues.getQueueClient(RAW_OUT);
    return {
      from: app.storage.queues,
      handle: async (text: string) => void (await out.sendMessage(text, { messageTimeToLive: -1 })),
    };
  });
  type Consumer = { from: QueueServiceClient; handle: (text: string) => Promise<void> };
  const run = async (queueName: string, texts: string[], consumers: Consumer[]) => {
    await forEachLimited(
      texts,
      SEND_CONCURRENCY,
      async (text) => void (await queues.getQueueClient(queueName).sendMessage(text, { messageTimeToLive: -1 })),
    );
    const left = { left: texts.length };
    const started = performance.now();
    await Promise.all(consumers.map((c) => consume(c.from.getQueueClient(queueName), left, c.handle)));
    return performance.now() - started;
  };
  await run(QUEUE_NAMES.incidents, all.slice(0, warmUpEvents), enrichers);
  await run(RAW_IN, all.slice(0, warmUpEvents), raws);
  routed = 0;
  const payloads = all.slice(warmUpEvents);
  const timed = { single: 0, several: 0, rawSingle: 0, rawSeveral: 0 };
  let chunks = 0;
  for (let done = 0; done < 2 * options.events; done += 2 * options.chunk, chunks += 1) {
    const a = payloads.slice(done, done + options.chunk);
    const b = payloads.slice(done + options.chunk, done + 2 * options.chunk);
    const [first, second] = chunks % 2 === 0 ? [a, b] : [b, a];
    timed.single += await run(QUEUE_NAMES.incidents, first, enrichers.slice(0, 1));
    timed.several += await run(QUEUE_NAMES.incidents, second, enrichers);
    timed.rawSeveral += await run(RAW_IN, first, raws);
    timed.rawSingle += await run(RAW_IN, second, raws.slice(0, 1));
    for (const name of [BENCH_ROUTED_QUEUE, RAW_OUT]) await clearQueue(queues, name);
  }
  if (routed !== 2 * options.events)
    throw new Error(
      `The enrichers routed ${routed} of ${2 * options.events} events (last error: ${logger.lastError ?? 'none'})`,
    );
  const side = (elapsedMs: number) => ({ elapsedMs, perSecond: perSecond(options.events, elapsedMs) });
  return {
    instances: options.instances,
    events: options.events,
    chunks,
    single: side(timed.single),
    several: side(timed.several),
    raw: { single: side(timed.rawSingle), several: side(timed.rawSeveral) },
  };
}
