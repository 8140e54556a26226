import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpanKind, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import type { Incident } from '../../../local/defender/generator.js';
import { appSettingsFor, registerDemoTenants, SIEM_HMAC_SECRET_NAME } from '../../../local/stack.js';
import { loadConfig, type AppConfig } from '../../../shared/config/config.js';
import { DefenderClient } from '../../../shared/sources/defender/client.js';
import { enrichDependencies, handleIncidentEvent, MAX_DEQUEUE_COUNT } from '../../../shared/enrich/enrich-handler.js';
import { envelopeFor, TRACEPARENT, type IncidentEnvelope } from '../../../shared/messages/events.js';
import { handlePollRequest } from '../../../shared/ingest/ingest-handlers.js';
import { pollRequest } from '../../../shared/ingest/ingest.js';
import { observeBudgetUsage, observeQueueDepths } from '../../../shared/telemetry/metrics.js';
import { QUEUE_NAMES, queueDepthReader } from '../../../shared/storage/queues.js';
import { replayIncidents, replayRequestSchema } from '../../../shared/route/replay.js';
import { createServices, type Services } from '../../../shared/services.js';
import { DIMENSIONS, FAILED_POLL_OUTCOME, METRICS } from '../../../shared/telemetry/telemetry-names.js';
import { drainQueue } from '../../support/queues.js';
import { highRisk, seedIncident } from '../../support/seeded-incidents.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { installTestTelemetry, pointsOf, totalOf, type TestTelemetry } from '../../support/telemetry.js';

/**
 * Metrics and traces as the real handlers record them (poll, enrich, destinations, dead letters,
 * poison, replay), read from the OpenTelemetry SDK's in-memory exporters: each metric with exactly
 * its dimensions, one trace per incident version from the poll to each destination, and nothing
 * secret or incident-shaped in any attribute or dimension.
 */
describe('telemetry: metrics and traces of the relay', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let config: AppConfig;
  let services: Services;
  let queues: QueueServiceClient;
  let telemetry: TestTelemetry;
  let dir: string;
  /** In the Teams destination's URL, as an incoming-webhook URL holds its key. */
  const urlSecret = `sig-${randomBytes(16).toString('hex')}`;
  const logs: string[] = [];
  const log = {
    info: (m: string) => logs.push(m),
    warn: (m: string) => logs.push(m),
    error: (m: string) => logs.push(m),
  };
  const realFetch = globalThis.fetch;

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 256 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    dir = mkdtempSync(join(tmpdir(), 'relay-telemetry-'));
    const routesFile = join(dir, 'routes.json');
    writeFileSync(
      routesFile,
      JSON.stringify({
        destinations: {
          'soc-queue': { type: 'queue', queueName: 'routed-high' },
          archive: { type: 'queue', queueName: 'routed-archive' },
          siem: { type: 'webhook', url: `${stack.receivers.siem.url}/siem`, hmacSecretName: SIEM_HMAC_SECRET_NAME },
          teams: { type: 'teams', url: `${stack.receivers.teams.url}/teams?code=${urlSecret}` },
          nowhere: { type: 'drop' },
        },
        rules: [
          { name: 'closed-drop', match: { status: ['Resolved', 'Redirected'] }, destinations: ['nowhere'] },
          {
            name: 'high-to-soc',
            match: { severity: ['High'], minPriority: 60 },
            destinations: ['soc-queue', 'teams', 'siem'],
            writeBack: { tag: 'relayed:high-to-soc' },
            hunting: [{ name: 'recent-logons', query: 'DeviceLogonEvents | where DeviceName in ({deviceNames})' }],
          },
        ],
        defaultRoute: { destinations: ['archive'] },
      }),
    );
    config = loadConfig({ ...appSettingsFor(stack.world, azurite.connectionString, stack), ROUTES_FILE: routesFile });
    services = createServices(config);
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
    telemetry = installTestTelemetry();
  }, 60_000);
  afterAll(async () => {
    await telemetry?.uninstall();
    await Promise.all([stack?.close(), azurite?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    for (const q of [QUEUE_NAMES.incidents, 'incidents-deadletter', 'routed-high', 'routed-archive']) await drain(q);
    for (const r of Object.values(stack.receivers)) r.setFailures(0);
    telemetry.reset();
  });
  afterEach(() => void vi.restoreAllMocks());

  const drain = (queueName: string) => drainQueue(queues, queueName);
  const fabrikam = () => stack.world.tenants.find((t) => t.context === 'application')!;
  const northwind = () => stack.world.tenants.find((t) => t.context === 'partner')!;

  /** A new incident of the `high-to-soc` rule in the Defender stand-in, updated now (the next poll lists it). */
  const seedHighRiskIncident = (tenantId: string) =>
    seedIncident(stack.defender.store, tenantId, (i) => {
      highRisk(i);
      i.lastUpdateTime = new Date().toISOString();
    });

  /** Polls the tenant as the queue trigger would, then takes the events it enqueued off the queue. */
  async function pollAndTakeEvents(tenantId: string, app: Services = services) {
    const outcome = await handlePollRequest(pollRequest(tenantId, 'manual'), app, log);
    return { outcome, events: (await drain(QUEUE_NAMES.incidents)) as IncidentEnvelope[] };
  }

  const eventOf = (events: IncidentEnvelope[], incident: Incident) =>
    events.find((e) => e.incidentId === incident.incidentId)!;

  const spansNamed = (name: string | RegExp) =>
    telemetry.spans().filter((s) => (typeof name === 'string' ? s.name === name : name.test(s.name)));
  const traceIdOf = (traceparent: string | undefined) => traceparent?.split('-')[1];
  const spanIdOf = (traceparent: string | undefined) => traceparent?.split('-')[2];
  const isChildOf = (child: ReadableSpan, parent: ReadableSpan) =>
    child.spanContext().traceId === parent.spanContext().traceId &&
    child.parentSpanContext?.spanId === parent.spanContext().spanId;

  it('follows one incident version in one trace: the poll that enqueued it, the enricher, each destination', async () => {
    const incident = seedHighRiskIncident(fabrikam().tenantId);
    const siemBefore = stack.receivers.siem.accepted().length;
    const { outcome, events } = await pollAndTakeEvents(fabrikam().tenantId);
    expect(outcome).toMatchObject({ status: 'polled' });
    for (const event of events) expect(event.traceparent).toMatch(TRACEPARENT);
    // Every version its own trace.
    expect(new Set(events.map((e) => traceIdOf(e.traceparent))).size).toBe(events.length);

    const event = eventOf(events, incident);
    expect(await handleIncidentEvent(event, enrichDependencies(services), log)).toMatchObject({ status: 'routed' });

    const [poll] = spansNamed('poll tenant');
    expect(poll!.attributes).toMatchObject({
      [DIMENSIONS.tenant]: fabrikam().tenantId,
      [DIMENSIONS.outcome]: 'polled',
    });
    // The listing's Defender calls belong to the poll run.
    const listing = spansNamed('Defender listIncidents');
    expect(listing.length).toBeGreaterThan(0);
    for (const call of listing) {
      expect(isChildOf(call, poll!)).toBe(true);
      expect(call.kind).toBe(SpanKind.CLIENT);
      expect(call.attributes['http.response.status_code']).toBe(200);
    }

    const traceId = traceIdOf(event.traceparent)!;
    const enqueue = spansNamed('enqueue incident').find((s) => s.attributes['relay.event_id'] === event.eventId)!;
    expect(enqueue.spanContext()).toMatchObject({ traceId, spanId: spanIdOf(event.traceparent) });
    expect(enqueue.kind).toBe(SpanKind.PRODUCER);
    expect(enqueue.parentSpanContext).toBeUndefined(); // a trace of its own…
    expect(enqueue.links.map((l) => l.context.spanId)).toEqual([poll!.spanContext().spanId]); // …linked to the poll run

    const [enrich] = spansNamed('enrich incident');
    expect(isChildOf(enrich!, enqueue)).toBe(true);
    expect(enrich!.kind).toBe(SpanKind.CONSUMER);
    expect(enrich!.attributes).toMatchObject({
      [DIMENSIONS.tenant]: fabrikam().tenantId,
      [DIMENSIONS.outcome]: 'routed',
      'relay.event_id': event.eventId,
    });
    // Hunting and the write-back are Defender calls of this event.
    expect(spansNamed(/^Defender (runHuntingQuery|updateIncident)$/).every((s) => isChildOf(s, enrich!))).toBe(true);
    expect(spansNamed(/^Defender (runHuntingQuery|updateIncident)$/)).toHaveLength(2);

    const deliveries = spansNamed(/^deliver /);
    expect(deliveries.map((s) => s.name).sort()).toEqual(['deliver siem', 'deliver soc-queue', 'deliver teams']);
    for (const delivery of deliveries) {
      expect(isChildOf(delivery, enrich!)).toBe(true);
      expect(delivery.attributes[DIMENSIONS.route]).toBe('high-to-soc');
    }
    const span = (name: string) => deliveries.find((s) => s.name === name)!;
    expect(span('deliver soc-queue').kind).toBe(SpanKind.PRODUCER);
    expect(span('deliver siem').kind).toBe(SpanKind.CLIENT);

    // What each destination receives names its delivery span: a consumer can go on in the same trace.
    const [routed] = (await drain('routed-high')) as IncidentEnvelope[];
    expect(routed!.traceparent).toBe(`00-${traceId}-${span('deliver soc-queue').spanContext().spanId}-01`);
    const [siem] = stack.receivers.siem.accepted().slice(siemBefore);
    expect(siem!.signatureValid).toBe(true);
    expect(siem!.headers.traceparent).toBe(`00-${traceId}-${span('deliver siem').spanContext().spanId}-01`);
    expect((siem!.body as IncidentEnvelope).traceparent).toBe(siem!.headers.traceparent);

    // A redelivery of the message (the host's retry, a replay) joins the same trace.
    telemetry.reset();
    expect(await handleIncidentEvent(event, enrichDependencies(services), log)).toMatchObject({
      status: 'duplicate',
    });
    const [again] = spansNamed('enrich incident');
    expect(again!.spanContext().traceId).toBe(traceId);
    expect(again!.parentSpanContext?.spanId).toBe(enqueue.spanContext().spanId);
  });

  it('starts a trace of its own for a message that names none, or names one not in W3C form, and routes it all the same', async () => {
    const incident = seedHighRiskIncident(northwind().tenantId);
    const envelope = envelopeFor(northwind().tenantId, incident, 'poll');
    const hostile = {
      ...envelope,
      traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01\nInjected: yes`,
      tracestate: 'x'.repeat(10_000),
    };
    expect(await handleIncidentEvent(hostile, enrichDependencies(services), log)).toMatchObject({
      status: 'routed',
    });
    const [enrich] = spansNamed('enrich incident');
    expect(enrich!.parentSpanContext).toBeUndefined();
    expect(enrich!.spanContext().traceId).not.toBe('a'.repeat(32));
    const [routed] = (await drain('routed-high')) as IncidentEnvelope[];
    expect(routed!.traceparent).toMatch(TRACEPARENT);
    expect(routed!.tracestate).toBeUndefined();
  });

  it('records each metric of the poll and the enricher with exactly its dimensions', async () => {
    // A fresh app: its first token request and Key Vault read are counted too.
    const app = createServices(config);
    const deps = enrichDependencies(app);
    const tenantId = fabrikam().tenantId;
    const incident = seedHighRiskIncident(tenantId);
    observeQueueDepths(queueDepthReader(app.storage.queues, [QUEUE_NAMES.incidents, 'incidents-deadletter'], 0));
    observeBudgetUsage('defender', () => app.defender.budget.minuteShares?.() ?? new Map());

    const outcome = (await handlePollRequest(pollRequest(tenantId, 'manual'), app, log))!;
    expect(outcome.status).toBe('polled');
    // The queue gauge reads the queue as it is: the events wait there.
    const beforeEnrich = await telemetry.collect();
    expect(pointsOf(beforeEnrich, METRICS.queueDepth, { [DIMENSIONS.queue]: QUEUE_NAMES.incidents })).toEqual([
      expect.objectContaining({ value: outcome.enqueued }),
    ]);
    const events = (await drain(QUEUE_NAMES.incidents)) as IncidentEnvelope[];
    const event = eventOf(events, incident);
    const routedAt = Date.now();
    expect(await handleIncidentEvent(event, deps, log)).toMatchObject({ status: 'routed' });
    expect(await handleIncidentEvent(event, deps, log)).toMatchObject({ status: 'duplicate' });
    const echo = stack.defender.store.get(tenantId, incident.incidentId)!;
    expect(await handleIncidentEvent(envelopeFor(tenantId, echo, 'poll'), deps, log)).toMatchObject({
      status: 'echo',
    });

    const points = await telemetry.collect();
    const tenant = { [DIMENSIONS.tenant]: tenantId };
    expect(pointsOf(points, METRICS.incidentsListed).map((p) => p.attributes)).toEqual([
      { ...tenant, [DIMENSIONS.source]: 'defender' },
    ]);
    expect(totalOf(points, METRICS.incidentsListed)).toBe(outcome.fetched);
    expect(pointsOf(points, METRICS.eventsEnqueued).map((p) => p.attributes)).toEqual([
      { ...tenant, [DIMENSIONS.source]: 'poll' },
    ]);
    expect(totalOf(points, METRICS.eventsEnqueued)).toBe(outcome.enqueued);
    for (const destination of ['soc-queue', 'teams', 'siem']) {
      expect(pointsOf(points, METRICS.eventsRouted, { [DIMENSIONS.destination]: destination })).toEqual([
        {
          name: METRICS.eventsRouted,
          attributes: { ...tenant, [DIMENSIONS.route]: 'high-to-soc', [DIMENSIONS.destination]: destination },
          value: 1,
        },
      ]);
      const [latency] = pointsOf(points, METRICS.deliveryLatency, { [DIMENSIONS.destination]: destination });
      expect(latency!.attributes).toEqual({ ...tenant, [DIMENSIONS.destination]: destination });
      expect(latency!.count).toBe(1);
      // From the incident's lastUpdateTime to its delivery.
      expect(latency!.value).toBeGreaterThanOrEqual(routedAt - Date.parse(incident.lastUpdateTime) - 1);
      expect(latency!.value).toBeLessThanOrEqual(Date.now() - Date.parse(incident.lastUpdateTime));
    }
    expect(pointsOf(points, METRICS.eventsSkipped).map((p) => [p.attributes, p.value])).toEqual(
      expect.arrayContaining([
        [{ ...tenant, [DIMENSIONS.reason]: 'duplicate' }, 1],
        [{ ...tenant, [DIMENSIONS.reason]: 'echo' }, 1],
      ]),
    );
    // Listing pages, hunting and the write-back: every call answered 200.
    expect(pointsOf(points, METRICS.defenderCalls).map((p) => p.attributes)).toEqual([
      { ...tenant, [DIMENSIONS.status]: '200' },
    ]);
    expect(totalOf(points, METRICS.defenderCalls)).toBe(app.defender.calls.get(tenantId));
    expect(pointsOf(points, METRICS.tokenRequests).map((p) => [p.attributes, p.value])).toEqual([
      [{ ...tenant, [DIMENSIONS.outcome]: 'success' }, 1],
    ]);
    expect(pointsOf(points, METRICS.keyVaultRequests).map((p) => p.attributes)).toEqual([
      { [DIMENSIONS.outcome]: 'success' },
    ]);
    expect(pointsOf(points, METRICS.pollDuration).map((p) => [p.attributes, p.count])).toEqual([
      [{ ...tenant, [DIMENSIONS.outcome]: 'polled' }, 1],
    ]);
    const [lag] = pointsOf(points, METRICS.checkpointLag);
    expect(lag!.attributes).toEqual(tenant);
    // The checkpoint advanced to at most five minutes (the poll's overlap) before now.
    expect(lag!.value).toBeGreaterThanOrEqual(0);
    expect(lag!.value).toBeLessThanOrEqual(5 * 60 + 60);
    const [budget] = pointsOf(points, METRICS.defenderBudgetUsed);
    expect(budget!.attributes).toEqual(tenant);
    expect(budget!.value).toBeGreaterThan(0);
    expect(budget!.value).toBeLessThanOrEqual(1);
    expect(pointsOf(points, METRICS.queueDepth).map((p) => [p.attributes, p.value])).toEqual(
      expect.arrayContaining([
        [{ [DIMENSIONS.queue]: QUEUE_NAMES.incidents }, 0],
        [{ [DIMENSIONS.queue]: 'incidents-deadletter' }, 0],
      ]),
    );
    expect(pointsOf(points, METRICS.queueDepth)).toHaveLength(2);
    expect(pointsOf(points, METRICS.eventsDeadLettered)).toEqual([]);
    expect(pointsOf(points, METRICS.eventsPoisoned)).toEqual([]);
  });

  it("records a Graph tenant's poll under Graph's names: listed from graph, Graph's calls and Graph's budget gauge", async () => {
    const app = createServices(config);
    observeBudgetUsage('defender', () => app.defender.budget.minuteShares?.() ?? new Map());
    observeBudgetUsage('graph', () => app.graph.budget.minuteShares?.() ?? new Map());
    const woodgrove = stack.world.tenants.find((t) => t.source === 'graph')!;
    const { outcome, events } = await pollAndTakeEvents(woodgrove.tenantId, app);
    expect(outcome).toMatchObject({ status: 'polled' });
    expect(events.length).toBeGreaterThan(0);

    const points = await telemetry.collect();
    const tenant = { [DIMENSIONS.tenant]: woodgrove.tenantId };
    expect(pointsOf(points, METRICS.incidentsListed).map((p) => p.attributes)).toEqual([
      { ...tenant, [DIMENSIONS.source]: 'graph' },
    ]);
    expect(totalOf(points, METRICS.incidentsListed)).toBe(outcome!.fetched);
    expect(pointsOf(points, METRICS.graphCalls).map((p) => p.attributes)).toEqual([
      { ...tenant, [DIMENSIONS.status]: '200' },
    ]);
    expect(totalOf(points, METRICS.graphCalls)).toBe(outcome!.pages);
    expect(pointsOf(points, METRICS.defenderCalls)).toEqual([]);
    // The share of Graph's per-minute budget (135 calls), not Defender's (45): one call per page listed.
    const [graphBudget] = pointsOf(points, METRICS.graphBudgetUsed);
    expect(graphBudget!.attributes).toEqual(tenant);
    expect(graphBudget!.value).toBeCloseTo(outcome!.pages / 135, 5);
    expect(pointsOf(points, METRICS.defenderBudgetUsed)).toEqual([]);
  });

  it('counts dead letters, poisoned messages and replays by queue and a short reason, and a failed poll as failed', async () => {
    const deps = enrichDependencies(services);
    // Dead letters: an invalid event, an event of a tenant nobody registered, an invalid poll request.
    expect(await handleIncidentEvent({ hello: 'world' }, deps, log)).toMatchObject({ status: 'dead-lettered' });
    const stranger = randomUUID();
    const strangers = envelopeFor(stranger, { incidentId: 1, lastUpdateTime: '2026-11-23T10:00:00Z' }, 'webhook');
    expect(await handleIncidentEvent(strangers, deps, log)).toMatchObject({ status: 'dead-lettered' });
    expect(await handlePollRequest({ tenantId: 42 }, services, log)).toBeUndefined();

    // Poisoned: the last allowed attempt of an event whose destination keeps failing.
    const event = envelopeFor(fabrikam().tenantId, seedHighRiskIncident(fabrikam().tenantId), 'poll');
    stack.receivers.siem.setFailures(Infinity, 503);
    for (const dequeueCount of [1, MAX_DEQUEUE_COUNT])
      await expect(handleIncidentEvent(event, deps, log, { dequeueCount })).rejects.toThrow(/siem/);

    // A poll that Defender throttles, with no retry left: failed, and poisoned on its last attempt.
    const throttled = { ...services, defender: new DefenderClient({ ...defenderOptions(), maxRetries: 0 }) };
    vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) =>
      new URL(input instanceof Request ? input.url : input.toString()).pathname.endsWith('/api/incidents')
        ? Promise.resolve(
            Response.json(
              { error: { code: 'TooManyRequests', message: 'Rate limit is exceeded. Try again in 1 seconds.' } },
              { status: 429 },
            ),
          )
        : realFetch(input, init),
    );
    await expect(
      handlePollRequest(pollRequest(fabrikam().tenantId, 'manual'), throttled, log, {
        dequeueCount: MAX_DEQUEUE_COUNT,
      }),
    ).rejects.toThrow(/429/);
    vi.restoreAllMocks();

    // Replayed: the dead letters go back to incidents (the stranger's with its tenant).
    expect(await replayIncidents(replayRequestSchema.parse({ source: 'deadletter' }), queues)).toMatchObject({
      moved: 2,
    });

    const points = await telemetry.collect();
    expect(pointsOf(points, METRICS.eventsDeadLettered).map((p) => [p.attributes, p.value])).toEqual(
      expect.arrayContaining([
        [{ [DIMENSIONS.queue]: 'incidents-deadletter', [DIMENSIONS.reason]: 'invalid-message' }, 1],
        [{ [DIMENSIONS.queue]: 'incidents-deadletter', [DIMENSIONS.reason]: 'tenant-unknown' }, 1],
        [{ [DIMENSIONS.queue]: 'poll-requests-deadletter', [DIMENSIONS.reason]: 'invalid-message' }, 1],
      ]),
    );
    expect(pointsOf(points, METRICS.eventsDeadLettered)).toHaveLength(3);
    expect(pointsOf(points, METRICS.eventsPoisoned).map((p) => [p.attributes, p.value])).toEqual(
      expect.arrayContaining([
        [{ [DIMENSIONS.queue]: 'incidents-poison', [DIMENSIONS.reason]: 'unavailable' }, 1],
        [{ [DIMENSIONS.queue]: 'poll-requests-poison', [DIMENSIONS.reason]: 'throttled' }, 1],
      ]),
    );
    expect(pointsOf(points, METRICS.eventsPoisoned)).toHaveLength(2);
    expect(pointsOf(points, METRICS.pollDuration).map((p) => [p.attributes, p.count])).toEqual([
      [{ [DIMENSIONS.tenant]: fabrikam().tenantId, [DIMENSIONS.outcome]: FAILED_POLL_OUTCOME }, 1],
    ]);
    // A failing tenant falls behind: its lag is reported from the checkpoint it has (the earlier polls').
    const [lag] = pointsOf(points, METRICS.checkpointLag, { [DIMENSIONS.tenant]: fabrikam().tenantId });
    const recorded = (await services.tenantStatus.get(fabrikam().tenantId)).checkpoint!;
    expect(Math.abs(lag!.value - (Date.now() - Date.parse(recorded)) / 1000)).toBeLessThan(10);
    expect(pointsOf(points, METRICS.defenderCalls, { [DIMENSIONS.status]: '429' })).toEqual([
      expect.objectContaining({
        attributes: { [DIMENSIONS.tenant]: fabrikam().tenantId, [DIMENSIONS.status]: '429' },
      }),
    ]);
    expect(
      pointsOf(points, METRICS.eventsEnqueued, { [DIMENSIONS.source]: 'replay' }).map((p) => p.attributes),
    ).toEqual(
      expect.arrayContaining([
        { [DIMENSIONS.tenant]: 'invalid', [DIMENSIONS.source]: 'replay' },
        { [DIMENSIONS.tenant]: stranger, [DIMENSIONS.source]: 'replay' },
      ]),
    );
    const [failedPoll] = spansNamed('poll tenant');
    expect(failedPoll!.attributes[DIMENSIONS.outcome]).toBe(FAILED_POLL_OUTCOME);
    expect(failedPoll!.attributes['error.type']).toBe('throttled');
  });

  it('counts an event a push enqueues as push, in a trace of its own linked to the request', async () => {
    const tenantId = northwind().tenantId;
    const envelope = envelopeFor(tenantId, seedHighRiskIncident(tenantId), 'webhook');
    // The invocation of POST /api/incidents, as the host's trace context makes it the active span.
    const request = await trace.getTracer('host').startActiveSpan('POST /api/incidents', async (span) => {
      await services.sender.sendEvent(QUEUE_NAMES.incidents, envelope);
      span.end();
      return span;
    });
    const [sent] = (await drain(QUEUE_NAMES.incidents)) as IncidentEnvelope[];
    const [enqueue] = spansNamed('enqueue incident');
    expect(enqueue!.parentSpanContext).toBeUndefined();
    expect(enqueue!.links.map((l) => l.context.spanId)).toEqual([request.spanContext().spanId]);
    expect(enqueue!.attributes[DIMENSIONS.source]).toBe('webhook');
    expect(traceIdOf(sent!.traceparent)).toBe(enqueue!.spanContext().traceId);
    expect(pointsOf(await telemetry.collect(), METRICS.eventsEnqueued).map((p) => [p.attributes, p.value])).toEqual([
      [{ [DIMENSIONS.tenant]: tenantId, [DIMENSIONS.source]: 'push' }, 1],
    ]);
  });

  it('puts no secret, token, URL or incident content in any span attribute or metric dimension', async () => {
    const incident = seedHighRiskIncident(northwind().tenantId);
    const { events } = await pollAndTakeEvents(northwind().tenantId, createServices(config));
    const deps = enrichDependencies(services);
    await handleIncidentEvent(eventOf(events, incident), deps, log);
    stack.receivers.teams.setFailures(1, 400);
    await handleIncidentEvent(
      envelopeFor(northwind().tenantId, seedHighRiskIncident(northwind().tenantId), 'poll'),
      deps,
      log,
    );

    const spans = telemetry.spans();
    expect(spans.length).toBeGreaterThan(events.length);
    const values = [
      ...spans.flatMap((s) => [
        s.name,
        s.status.message ?? '',
        ...Object.values(s.attributes),
        ...s.events.flatMap((e) => [e.name, ...Object.values(e.attributes ?? {})]),
        ...s.links.flatMap((l) => Object.values(l.attributes ?? {})),
      ]),
      ...(await telemetry.collect()).flatMap((p) => Object.values(p.attributes)),
    ].map(String);
    const text = values.join('\n');

    for (const secret of [
      urlSecret,
      stack.world.siemHmacKey,
      stack.world.appIdentity.clientSecret,
      ...stack.world.apps.map((a) => a.clientSecret),
    ])
      expect(text).not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
    expect(text).not.toMatch(/https?:\/\//);
    const content = [incident.incidentName, ...incident.alerts.flatMap((a) => [a.title, a.description])].filter(
      (t): t is string => typeof t === 'string' && t.length >= 12,
    );
    expect(content.length).toBeGreaterThan(0);
    for (const piece of content) expect(text).not.toContain(piece);
  });

  /** The app's Defender client settings, for a client that differs in one. */
  function defenderOptions() {
    return { apiUrl: services.config.defender.apiUrl, tokens: services.tokens };
  }
});
