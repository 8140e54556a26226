import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from 'node:https';
import { ClientSecretCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { AzureMonitorMetricExporter, AzureMonitorTraceExporter } from '@azure/monitor-opentelemetry-exporter';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { startAppInsights, type AppInsightsStandIn, type TelemetrySummary } from '../../../local/appinsights/server.js';
import { MAX_REQUEST_BYTES } from '../../../local/appinsights/body.js';
import { MAX_ITEMS_PER_BATCH } from '../../../local/appinsights/envelopes.js';
import { telemetryHeadline } from '../../../local/appinsights/headline.js';
import { createDemoWorld } from '../../../local/demo.js';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { appSettingsFor } from '../../../local/stack.js';
import { METRICS } from '../../../shared/telemetry/telemetry-names.js';
import { useIdentityEndpoint } from '../../support/identity-endpoint.js';

/**
 * The Application Insights ingestion stand-in with the real Azure Monitor exporters in front of it and the
 * Entra stand-in's tokens: everything as in Azure but the connection string's endpoints. Statsbeat is off
 * (APPLICATION_INSIGHTS_NO_STATSBEAT, read when an exporter is built), so nothing is sent to Microsoft's own
 * statsbeat components; offline storage is off, so a refused export fails instead of being kept on disk.
 */
process.env.APPLICATION_INSIGHTS_NO_STATSBEAT = 'true';

const MONITOR_SCOPE = 'https://monitor.azure.com/.default';
const tenantId = randomUUID();
const otherTenantId = randomUUID();
const relayApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
const noRoleApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
const foreignApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };

let entra: EntraStandIn;
let ai: AppInsightsStandIn;
const log: string[] = [];

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls') });
  entra.registry.addTenant({ tenantId, displayName: 'Relay provider' });
  entra.registry.addTenant({ tenantId: otherTenantId, displayName: 'Somebody else' });
  for (const [app, home] of [
    [relayApp, tenantId],
    [noRoleApp, tenantId],
    [foreignApp, otherTenantId],
  ] as const)
    entra.registry.addApp({
      clientId: app.clientId,
      displayName: app.clientId,
      homeTenantId: home,
      multiTenant: false,
      secrets: [app.secret],
    });
  ai = await startAppInsights({ tls: inject('tls'), verifier: entra.verifier, tenantId, log: (l) => log.push(l) });
  ai.grant(entra.registry.servicePrincipalId(tenantId, relayApp.clientId)!);
  // The foreign app holds the role too: what refuses it is its token's tenant, not RBAC.
  ai.grant(entra.registry.servicePrincipalId(otherTenantId, foreignApp.clientId)!);
});

afterAll(async () => {
  await ai?.close();
  await entra?.close();
});

beforeEach(() => ai.telemetry.clear());

const credentialOf = (app: { clientId: string; secret: string }, tenant = tenantId): TokenCredential =>
  new ClientSecretCredential(tenant, app.clientId, app.secret, {
    authorityHost: entra.url,
    disableInstanceDiscovery: true,
  });

/** A counter exported once through the real metric exporter; the exporter's own verdict on the export. */
async function exportCounter(
  name: string,
  points: [value: number, dimensions: Record<string, string>][],
  options: { connectionString?: string; credential?: TokenCredential; storageDirectory?: string },
): Promise<ExportResult> {
  const exporter = new AzureMonitorMetricExporter({
    connectionString: options.connectionString ?? ai.connectionString,
    credential: options.credential,
    ...(options.storageDirectory ? { storageDirectory: options.storageDirectory } : { disableOfflineStorage: true }),
  });
  // The reader reports a failed export only to OpenTelemetry's error handler: keep the exporter's verdict.
  const results: ExportResult[] = [];
  const recording: PushMetricExporter = {
    export: (metrics, done) =>
      exporter.export(metrics, (result) => {
        results.push(result);
        done(result);
      }),
    forceFlush: () => exporter.forceFlush(),
    shutdown: () => exporter.shutdown(),
    selectAggregationTemporality: (type) => exporter.selectAggregationTemporality(type),
  };
  const provider = new MeterProvider({
    readers: [new PeriodicExportingMetricReader({ exporter: recording, exportIntervalMillis: 3_600_000 })],
  });
  const counter = provider.getMeter('defender-relay').createCounter(name);
  for (const [value, dimensions] of points) counter.add(value, dimensions);
  await provider.forceFlush().catch(() => undefined);
  await provider.shutdown().catch(() => undefined);
  expect(results, 'one export').toHaveLength(1);
  return results[0]!;
}

const lastRequest = () => ai.requests().at(-1);

async function tokenFor(app = relayApp, tenant = tenantId, scope = MONITOR_SCOPE): Promise<string> {
  return (await credentialOf(app, tenant).getToken(scope))!.token;
}

/** POSTs to the stand-in by hand: what the exporter never sends. */
async function post(path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${ai.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  return {
    status: res.status,
    reason: res.statusText,
    headers: res.headers,
    body: text ? JSON.parse(text) : undefined,
  };
}

/** An envelope as the exporter writes a metric point. */
function metricEnvelope(overrides: Record<string, unknown> = {}, value = 1) {
  return {
    name: 'Microsoft.ApplicationInsights.Metric',
    time: new Date().toISOString(),
    iKey: ai.instrumentationKey,
    ver: 1,
    data: {
      baseType: 'MetricData',
      baseData: { ver: 2, metrics: [{ name: 'hand.made', value, dataPointType: 'Aggregation' }], properties: {} },
    },
    ...overrides,
  };
}

describe('the real exporters, authenticated by the Entra stand-in', () => {
  it('records a counter with its dimensions and values, totals per name and dimension, readable over the control API', async () => {
    const exported = await exportCounter(
      METRICS.eventsRouted,
      [
        [2, { tenant: 't1', route: 'high', destination: 'siem' }],
        [1, { tenant: 't1', route: 'high', destination: 'siem' }],
        [5, { tenant: 't2', route: 'default', destination: 'teams' }],
      ],
      { credential: credentialOf(relayApp) },
    );
    expect(exported).toEqual({ code: ExportResultCode.SUCCESS });
    expect(lastRequest()).toMatchObject({ path: '/v2.1/track', status: 200, itemsReceived: 2, itemsAccepted: 2 });
    expect(lastRequest()?.oid).toBe(entra.registry.servicePrincipalId(tenantId, relayApp.clientId));

    // Counters are exported as deltas, one point per set of dimensions.
    const points = ai.telemetry.metrics(METRICS.eventsRouted);
    expect(points.map((p) => ({ value: p.value, properties: p.properties }))).toEqual(
      expect.arrayContaining([
        { value: 3, properties: { tenant: 't1', route: 'high', destination: 'siem' } },
        { value: 5, properties: { tenant: 't2', route: 'default', destination: 'teams' } },
      ]),
    );
    expect(points).toHaveLength(2);
    expect(points[0]!.envelope).toMatchObject({
      name: 'Microsoft.ApplicationInsights.Metric',
      iKey: ai.instrumentationKey,
      data: { baseType: 'MetricData' },
    });
    expect(ai.telemetry.metricTotals(METRICS.eventsRouted)).toMatchObject({
      points: 2,
      sum: 8,
      byDimension: { 'tenant=t1': 3, 'tenant=t2': 5, 'destination=siem': 3 },
    });

    const listed = (await (
      await fetch(`${ai.controlUrl}/telemetry?type=metric&name=${encodeURIComponent(METRICS.eventsRouted)}`)
    ).json()) as { items: Record<string, unknown>[] };
    expect(listed.items).toHaveLength(2);
    expect(listed.items[0]).not.toHaveProperty('envelope');
    const summary = (await (await fetch(`${ai.controlUrl}/summary`)).json()) as TelemetrySummary;
    expect(summary).toMatchObject({ itemsReceived: 2, itemsAccepted: 2, itemsRejected: 0 });
    expect(summary.metrics[METRICS.eventsRouted]?.sum).toBe(8);
    expect(telemetryHeadline(summary)).toBe(
      '2 items · routed 8 · defender calls 0 (429: 0) · graph calls 0 (429: 0) · dead-lettered 0',
    );
  });

  it('records a parent and child span as a request and a dependency of one operation', async () => {
    const exporter = new AzureMonitorTraceExporter({
      connectionString: ai.connectionString,
      credential: credentialOf(relayApp),
      disableOfflineStorage: true,
    });
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const tracer = provider.getTracer('defender-relay');
    const parent = tracer.startSpan('pollTenant', { kind: SpanKind.SERVER });
    const child = tracer.startSpan(
      'GET /api/incidents',
      { kind: SpanKind.CLIENT, attributes: { tenant: 't1' } },
      trace.setSpan(context.active(), parent),
    );
    child.end();
    parent.end();
    await provider.forceFlush();
    await provider.shutdown();

    const [request] = ai.telemetry.items({ type: 'request' });
    const [dependency] = ai.telemetry.items({ type: 'dependency' });
    expect(request).toMatchObject({ id: parent.spanContext().spanId, operationId: parent.spanContext().traceId });
    expect(request!.parentId).toBeUndefined();
    expect(dependency).toMatchObject({
      name: 'GET /api/incidents',
      id: child.spanContext().spanId,
      operationId: parent.spanContext().traceId,
      parentId: parent.spanContext().spanId,
      properties: { tenant: 't1' },
    });
    expect(ai.telemetry.spans()).toHaveLength(2);
  });

  it("takes the app's user-assigned managed identity, as the deployed app authenticates (ClientId=…;Authorization=AAD)", async () => {
    const identity = entra.registry.addManagedIdentity({ name: 'id-defender-relay', tenantId });
    entra.msi.assign(identity.clientId);
    ai.grant(identity.principalId);
    await useIdentityEndpoint(entra.msi);
    const exported = await exportCounter(METRICS.defenderCalls, [[1, { tenant: 't1', status: '429' }]], {
      credential: new ManagedIdentityCredential({ clientId: identity.clientId }),
    });
    expect(exported).toEqual({ code: ExportResultCode.SUCCESS });
    expect(lastRequest()).toMatchObject({ status: 200, oid: identity.principalId });
    expect(ai.telemetry.metricTotals(METRICS.defenderCalls).byDimension['status=429']).toBe(1);
    expect(telemetryHeadline(ai.telemetry.summary())).toBe(
      '1 items · routed 0 · defender calls 1 (429: 1) · graph calls 0 (429: 0) · dead-lettered 0',
    );
  });
});

describe('Entra authentication, local authentication disabled', () => {
  it('refuses an export without a token: 401, nothing recorded; the exporter keeps the batch to retry it', async () => {
    // 401 and 403 are retriable to the exporter (src/utils/breezeUtils.ts isRetriable): it writes the batch to its
    // offline storage and tries again later, and reports the export done.
    const storageDirectory = mkdtempSync(join(tmpdir(), 'appinsights-offline-'));
    try {
      expect(await exportCounter('refused.metric', [[1, {}]], { storageDirectory })).toEqual({
        code: ExportResultCode.SUCCESS,
      });
      expect(lastRequest()).toMatchObject({
        status: 401,
        reason: 'Unauthorized - please provide the valid authorization token',
        refusal: 'missing',
      });
      expect(ai.telemetry.items()).toEqual([]);
      const kept = readdirSync(storageDirectory, { recursive: true, encoding: 'utf8' });
      expect(kept.filter((f) => f.endsWith('.ai.json'))).toHaveLength(1);
    } finally {
      rmSync(storageDirectory, { recursive: true, force: true });
    }
  });

  it("refuses a token issued for another audience (the exporter's AADAudience pointed at Key Vault): 401", async () => {
    await exportCounter('refused.metric', [[1, {}]], {
      connectionString: `${ai.connectionString};AADAudience=https://vault.azure.net/.default`,
      credential: credentialOf(relayApp),
    });
    expect(lastRequest()).toMatchObject({ status: 401, refusal: 'wrong_audience' });
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('refuses a token of another tenant, even for a principal holding the role there: 401', async () => {
    await exportCounter('refused.metric', [[1, {}]], { credential: credentialOf(foreignApp, otherTenantId) });
    expect(lastRequest()).toMatchObject({ status: 401, refusal: 'wrong_tenant' });
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('refuses an identity of the tenant without Monitoring Metrics Publisher on the component: 403', async () => {
    await exportCounter('refused.metric', [[1, {}]], { credential: credentialOf(noRoleApp) });
    expect(lastRequest()).toMatchObject({
      status: 403,
      reason: 'Forbidden - provided credentials do not grant the access to ingest the telemetry into the component',
      refusal: `no role for oid ${entra.registry.servicePrincipalId(tenantId, noRoleApp.clientId)}`,
    });
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('refuses a forged token (signed by another key) and a malformed header: 401', async () => {
    const token = await tokenFor();
    const [header, payload] = token.split('.');
    const forged = `${header}.${payload}.${Buffer.from('not the signature').toString('base64url')}`;
    for (const authorization of [`Bearer ${forged}`, token, 'Bearer', 'Basic dXNlcjpwYXNz']) {
      const answer = await post('/v2.1/track', JSON.stringify([metricEnvelope()]), { authorization });
      expect(answer.status).toBe(401);
    }
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('answers an authenticated call to the older /v2/track as the service does: 400, v2 takes no authentication', async () => {
    const answer = await post('/v2/track', JSON.stringify([metricEnvelope()]), {
      authorization: `Bearer ${await tokenFor()}`,
    });
    expect(answer).toMatchObject({
      status: 400,
      reason: 'Incorrect API was used - v2 API does not support authentication',
    });
    expect((await post('/v2/track', JSON.stringify([metricEnvelope()]))).status).toBe(401);
    expect(ai.telemetry.items()).toEqual([]);
  });
});

describe('the track contract: per-item results, limits and bodies', () => {
  let authorization: string;
  beforeAll(async () => {
    authorization = `Bearer ${await tokenFor()}`;
  });

  it("rejects every item of an export with another component's instrumentation key: 400 Invalid instrumentation key", async () => {
    const otherKey = randomUUID();
    await expect(
      exportCounter('wrong.key', [[1, {}]], {
        connectionString: ai.connectionString.replace(ai.instrumentationKey, otherKey),
        credential: credentialOf(relayApp),
      }),
    ).resolves.toMatchObject({ code: ExportResultCode.FAILED });
    expect(lastRequest()).toMatchObject({
      status: 400,
      reason: 'Invalid instrumentation key',
      itemsReceived: 1,
      itemsAccepted: 0,
    });
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('accepts the valid items of a batch and answers 206 with one error per refused item', async () => {
    const { time: _time, ...withoutTime } = metricEnvelope();
    const answer = await post(
      '//v2.1/track',
      JSON.stringify([
        metricEnvelope({}, 7),
        metricEnvelope({ iKey: randomUUID() }),
        withoutTime,
        metricEnvelope({ data: { baseType: 'RequestData', baseData: { ver: 2, id: 'a', duration: '00:00:01.000' } } }),
      ]),
      { authorization },
    );
    expect(answer.status).toBe(206);
    expect(answer.body).toEqual({
      itemsReceived: 4,
      itemsAccepted: 1,
      errors: [
        { index: 1, statusCode: 400, message: 'Invalid instrumentation key' },
        {
          index: 2,
          statusCode: 400,
          message:
            "109: Field 'time' on type 'Envelope' is required but missing or empty. Expected: string, Actual: undefined",
        },
        {
          index: 3,
          statusCode: 400,
          message:
            "109: Field 'responseCode' on type 'RequestData' is required but missing or empty. Expected: string, Actual: undefined",
        },
      ],
    });
    expect(ai.telemetry.metrics('hand.made').map((p) => p.value)).toEqual([7]);
  });

  it('rejects an item over the documented 64 KB: alone 400, beside a valid one 206', async () => {
    const big = metricEnvelope({ tags: { 'ai.cloud.role': 'x'.repeat(64 * 1024) } });
    const alone = await post('/v2.1/track', JSON.stringify([big]), { authorization });
    expect(alone.status).toBe(400);
    expect(alone.body.errors).toEqual([
      { index: 0, statusCode: 400, message: 'The telemetry item exceeds the maximum size of 65536 bytes' },
    ]);
    const beside = await post('/v2.1/track', JSON.stringify([metricEnvelope(), big]), { authorization });
    expect(beside.status).toBe(206);
    expect(beside.body).toMatchObject({ itemsReceived: 2, itemsAccepted: 1, errors: [{ index: 1 }] });
    expect(ai.telemetry.items()).toHaveLength(1);
  });

  it('refuses a batch of more than the documented 64,000 items as a whole: 400', async () => {
    const items = `[${Array.from({ length: MAX_ITEMS_PER_BATCH + 1 }, () => '{}').join(',')}]`;
    const answer = await post('/v2.1/track', items, { authorization });
    expect(answer).toMatchObject({
      status: 400,
      reason: `The batch has ${MAX_ITEMS_PER_BATCH + 1} items; at most ${MAX_ITEMS_PER_BATCH} are accepted`,
      body: { itemsReceived: MAX_ITEMS_PER_BATCH + 1, itemsAccepted: 0, errors: [] },
    });
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('refuses a request over the stand-in ceiling with 413 and closes the connection, sent or inflated', async () => {
    const answer = await new Promise<{ status: number; connection?: string }>((resolve, reject) => {
      const req = request(`${ai.url}/v2.1/track`, { method: 'POST', headers: { authorization } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, connection: res.headers.connection });
      });
      req.on('error', reject);
      req.end(Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20));
    });
    expect(answer).toEqual({ status: 413, connection: 'close' });
    // A small gzip body that inflates past the ceiling: refused while inflating.
    const bomb = gzipSync(Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20));
    expect(bomb.length).toBeLessThan(100_000);
    expect((await post('/v2.1/track', bomb, { authorization, 'content-encoding': 'gzip' })).status).toBe(413);
    expect(ai.telemetry.items()).toEqual([]);
  });

  it('takes a gzip body (Content-Encoding: gzip, as the exporter sends to Azure) and refuses other encodings', async () => {
    const body = JSON.stringify([metricEnvelope({}, 11)]);
    const zipped = await post('/v2.1/track', gzipSync(body), { authorization, 'content-encoding': 'gzip' });
    expect(zipped).toMatchObject({ status: 200, body: { itemsReceived: 1, itemsAccepted: 1, errors: [] } });
    expect((await post('/v2.1/track', body, { authorization, 'content-encoding': 'br' })).status).toBe(400);
    expect(ai.telemetry.metrics('hand.made').map((p) => p.value)).toEqual([11]);
  });

  it('answers a body that is not JSON with 400 and records nothing; the token is checked first', async () => {
    for (const garbage of ['{"name": ', 'not json', '"a string"', '42', '']) {
      const answer = await post('/v2.1/track', garbage, { authorization });
      expect(answer.status).toBe(400);
      expect(answer.body).toEqual({ itemsReceived: 0, itemsAccepted: 0, errors: [] });
    }
    expect((await post('/v2.1/track', 'not json')).status).toBe(401);
    expect(ai.telemetry.summary()).toMatchObject({ itemsReceived: 0, requestsRefused: 6 });
  });

  it('takes one envelope per line (x-json-stream, which the swagger lists)', async () => {
    const lines = [metricEnvelope({}, 1), metricEnvelope({}, 2)].map((e) => JSON.stringify(e)).join('\n');
    const answer = await post('/v2.1/track', lines, { authorization, 'content-type': 'application/x-json-stream' });
    expect(answer.status).toBe(200);
    expect(ai.telemetry.metrics('hand.made').map((p) => p.value)).toEqual([1, 2]);
  });

  it("answers the distro's Live Metrics ping at LiveEndpoint: authenticated, this component's key, never subscribed", async () => {
    const ping = `/QuickPulseService.svc/ping?api-version=2024-04-01-preview&ikey=${ai.instrumentationKey}`;
    const answer = await post(ping, JSON.stringify({ Instance: 'local' }), { authorization });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-ms-qps-subscribed')).toBe('false');
    expect(answer.body).toEqual({ ETag: '', Metrics: [], DocumentStreams: [], QuotaInfo: null });
    expect((await post(ping, '{}')).status).toBe(401);
    expect((await post(ping.replace(ai.instrumentationKey, randomUUID()), '{}', { authorization })).status).toBe(400);
    expect(ai.telemetry.summary().livePings).toBe(1);
  });

  it('keeps totals past the items it drops, and bounds what it keeps', async () => {
    const small = await startAppInsights({
      tls: inject('tls'),
      verifier: entra.verifier,
      tenantId,
      maxItems: 3,
      instrumentationKey: ai.instrumentationKey,
    });
    try {
      small.grant(entra.registry.servicePrincipalId(tenantId, relayApp.clientId)!);
      const batch = [1, 2, 3, 4, 5].map((v) => metricEnvelope({}, v));
      const res = await fetch(`${small.url}/v2.1/track`, {
        method: 'POST',
        headers: { authorization },
        body: JSON.stringify(batch),
      });
      expect(res.status).toBe(200);
      expect(small.telemetry.metrics('hand.made').map((p) => p.value)).toEqual([3, 4, 5]);
      expect(small.telemetry.metricTotals('hand.made')).toMatchObject({ points: 5, sum: 15, last: 5 });
    } finally {
      await small.close();
    }
  });
});

describe('the local stack', () => {
  it("gives the app the component's connection string, Entra authentication with its identity, and statsbeat off", () => {
    const world = createDemoWorld();
    const standIns = {
      entra: { url: 'https://localhost:4' },
      keyVault: { url: 'https://localhost:5' },
      defender: { url: 'https://localhost:6' },
      routesFile: 'routes.json',
      appInsights: ai,
    } as unknown as Parameters<typeof appSettingsFor>[2];
    const clientId = randomUUID();
    const identityBased = appSettingsFor(
      world,
      { blobUrl: 'https://b', queueUrl: 'https://q', tableUrl: 'https://t', managedIdentityClientId: clientId },
      standIns,
    );
    expect(identityBased).toMatchObject({
      APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${ai.instrumentationKey};IngestionEndpoint=${ai.url}/;LiveEndpoint=${ai.url}/`,
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `ClientId=${clientId};Authorization=AAD`,
      APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
    });
    // func start (--no-host): no managed identity of the app here.
    expect(appSettingsFor(world, 'UseDevelopmentStorage=true', standIns)).toMatchObject({
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD',
      APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
    });
  });
});
