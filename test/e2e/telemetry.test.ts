import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { encodeMessage } from '../../shared/storage/queues.js';
import { METRICS } from '../../shared/telemetry/telemetry-names.js';
import { waitForFlowSettled } from '../support/flow-tally.js';
import { startLocalStack } from '../support/start-process.js';

/**
 * What `npm start` sends to Application Insights, as the ingestion stand-in received it from the real
 * Azure Monitor exporter: every metric the alerts and the workbook read, and the trace of one incident
 * version from its poll to each destination. The exporter's interval is 60 s in Azure; here
 * OTEL_METRIC_EXPORT_INTERVAL (which the distro reads) makes it 2 s.
 */
interface Item {
  type: string;
  name: string;
  id?: string;
  operationId?: string;
  parentId?: string;
  properties: Record<string, string>;
}

describe('telemetry from npm start, through the Application Insights stand-in', () => {
  let stateDir: string;
  let tlsDir: string;
  let child: ChildProcess;
  let info: StackInfo;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-telemetry-'));
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-telemetry-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    const stack = await startLocalStack(['--port', '0', '--state-dir', stateDir, '--quiet', '--no-activity'], {
      ...process.env,
      ...stackTlsEnv(tlsDir),
      OTEL_METRIC_EXPORT_INTERVAL: '2000',
    });
    child = stack.child;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
    await waitForFlowSettled(info, 130, 45_000);
  }, 90_000);

  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  const control = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${info.appInsights.controlUrl}${path}`);
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return (await res.json()) as T;
  };
  const items = async (type: string) => (await control<{ items: Item[] }>(`/telemetry?type=${type}&limit=10000`)).items;

  it('receives every metric the alerts and the workbook read, with its dimensions', async () => {
    const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
    // A message that is no incident event (dead-lettered), and a copy of a routed event (skipped as a duplicate).
    await queues.getQueueClient('incidents').sendMessage(encodeMessage({ not: 'an incident event' }));
    const [routed] = (await queues.getQueueClient('routed-archive').peekMessages()).peekedMessageItems;
    const copy = JSON.parse(Buffer.from(routed!.messageText, 'base64').toString('utf8')) as Record<string, unknown>;
    const { enrichment: _e, route: _r, traceparent: _t, tracestate: _s, ...event } = copy;
    await queues.getQueueClient('incidents').sendMessage(encodeMessage(event));

    // Poisoning takes five failures of one message: held by test/integration/telemetry/telemetry.test.ts instead.
    const expected = Object.values(METRICS).filter((name) => name !== METRICS.eventsPoisoned);
    const missing = async () => {
      const seen = Object.keys((await control<{ metrics: object }>('/summary')).metrics);
      return expected.filter((name) => !seen.includes(name));
    };
    await expect.poll(missing, { timeout: 30_000, interval: 1_000 }).toEqual([]);

    const metrics = await items('metric');
    const dimensionsOf = (name: string) => metrics.filter((m) => m.name === name).map((m) => m.properties);
    const tenants = info.tenants.map((t) => t.tenantId);
    expect(dimensionsOf(METRICS.defenderCalls).some((d) => tenants.includes(d.tenant!) && d.status === '200')).toBe(
      true,
    );
    expect(
      dimensionsOf(METRICS.eventsRouted).some((d) => d.route && d.destination && tenants.includes(d.tenant!)),
    ).toBe(true);
    expect(dimensionsOf(METRICS.eventsDeadLettered).some((d) => d.queue === 'incidents-deadletter' && d.reason)).toBe(
      true,
    );
    expect(dimensionsOf(METRICS.eventsSkipped).some((d) => d.reason === 'duplicate')).toBe(true);
    expect(dimensionsOf(METRICS.pollDuration).some((d) => d.outcome === 'polled' && tenants.includes(d.tenant!))).toBe(
      true,
    );
    expect(dimensionsOf(METRICS.queueDepth).map((d) => d.queue)).toContain('incidents-poison');
    // No incident content and no secret in any dimension.
    const text = JSON.stringify(metrics);
    for (const secret of [info.appIdentity.clientSecret, ...info.demoApps.map((a) => a.clientSecret)])
      expect(text).not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]{10,}\.[\w-]{10,}\./);
  }, 60_000);

  it('follows one incident version in one trace: enqueued (linked to its poll), enriched, delivered to each destination', async () => {
    // Spans are exported in batches, a few seconds after they end: wait for one version's whole trace.
    const spansNow = async () => [...(await items('request')), ...(await items('dependency'))];
    const chainIn = (spans: Item[]) => {
      for (const enqueued of spans.filter((s) => s.name === 'enqueue incident' && s.properties['relay.event_id'])) {
        const trace = spans.filter((s) => s.operationId === enqueued.operationId);
        const enrich = trace.find((s) => s.name === 'enrich incident' && s.parentId === enqueued.id);
        const deliveries = trace.filter((s) => s.name.startsWith('deliver ') && s.parentId === enrich?.id);
        if (enrich && deliveries.length > 0) return { enqueued, enrich, deliveries };
      }
      return undefined;
    };
    let spans: Item[] = [];
    await expect
      .poll(async () => chainIn((spans = await spansNow())) !== undefined, { timeout: 30_000, interval: 1_000 })
      .toBe(true);
    const { enqueued, enrich, deliveries } = chainIn(spans)!;
    expect(enrich.properties['relay.event_id']).toBe(enqueued.properties['relay.event_id']);
    for (const delivery of deliveries)
      expect(delivery.properties.destination).toBe(delivery.name.slice('deliver '.length));
    // The poll run that listed it is another trace (the timer's invocation), linked from the enqueue span.
    const polls = spans.filter((s) => s.name === 'poll tenant');
    const links = JSON.parse(enqueued.properties['_MS.links'] ?? '[]') as { operation_Id: string; id: string }[];
    expect(links.some((l) => polls.some((p) => p.operationId === l.operation_Id && p.id === l.id))).toBe(true);
  }, 30_000);
});
