import { randomUUID } from 'node:crypto';
import { ClientSecretCredential } from '@azure/identity';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { generateIncidents } from '../../../local/defender/generator.js';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { startLogsIngestion, type LogsIngestionStandIn } from '../../../local/logs-ingestion/server.js';
import {
  deliver,
  routedMessageFor,
  SentinelClients,
  type DeliveryDeps,
  type RoutedMessage,
} from '../../../shared/route/destinations/index.js';
import { DEFAULT_SENTINEL_STREAM, SENTINEL_COLUMNS } from '../../../shared/route/destinations/sentinel-columns.js';
import { sentinelRow } from '../../../shared/route/destinations/sentinel.js';
import { deriveEnrichment } from '../../../shared/enrich/enrichment.js';
import { PermanentError, RetryableError } from '../../../shared/errors.js';
import { envelopeFor } from '../../../shared/messages/events.js';
import { loadRoutingRules, type RoutingTable } from '../../../shared/route/routing.js';

/**
 * The Sentinel destination as the enricher calls it (`deliver`), with the real LogsIngestionClient, a
 * client-secret credential standing in for the app's managed identity, and the Logs Ingestion stand-in.
 */

const tenantId = randomUUID();
const customerTenantId = randomUUID();
const relayApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
const policy = { allowedHosts: ['localhost'], allowLoopback: true, timeoutMs: 5_000 };

let entra: EntraStandIn;
let li: LogsIngestionStandIn;
let ruleId: string;
let relayOid: string;

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls') });
  entra.registry.addTenant({ tenantId, displayName: 'Relay provider' });
  entra.registry.addApp({
    clientId: relayApp.clientId,
    displayName: 'defender-relay',
    homeTenantId: tenantId,
    multiTenant: false,
    secrets: [relayApp.secret],
  });
  li = await startLogsIngestion({ tls: inject('tls'), verifier: entra.verifier, tenantId });
  ruleId = li.addRule({
    name: 'dcr-defender-relay',
    streamDeclarations: { [DEFAULT_SENTINEL_STREAM]: { columns: SENTINEL_COLUMNS } },
  }).immutableId;
  relayOid = entra.registry.servicePrincipalId(tenantId, relayApp.clientId)!;
  li.grant(relayOid, ruleId);
});

afterAll(async () => {
  await li?.close();
  await entra?.close();
});

beforeEach(() => {
  li.store.clear();
  li.setLimits({ requestsPerMinute: 12_000 });
});

const credential = () =>
  new ClientSecretCredential(tenantId, relayApp.clientId, relayApp.secret, {
    authorityHost: entra.url,
    disableInstanceDiscovery: true,
  });

function tableFor(destination: Record<string, unknown> = {}, allowedHosts = policy.allowedHosts): RoutingTable {
  return loadRoutingRules(
    {
      destinations: { sentinel: { type: 'sentinel', endpoint: li.url, ruleId, ...destination } },
      rules: [],
      defaultRoute: { destinations: ['sentinel'] },
    },
    { allowedHosts, allowLoopback: true },
  );
}

function depsFor(overrides: Partial<DeliveryDeps['policy']> = {}): DeliveryDeps {
  const p = { ...policy, ...overrides };
  return {
    policy: p,
    secrets: { get: () => Promise.reject(new Error('no secrets here')) },
    queues: {} as DeliveryDeps['queues'],
    sentinel: new SentinelClients(credential(), p),
    now: () => new Date('2026-05-04T10:00:00.000Z'),
  };
}

function message(incident?: Record<string, unknown>): RoutedMessage {
  const chosen =
    incident ??
    (generateIncidents({ tenantId: customerTenantId, count: 5, seed: 'sentinel', redirectedShare: 0 }).find(
      (i) => (i.alerts as unknown[]).length > 0,
    ) as unknown as Record<string, unknown>);
  const envelope = envelopeFor(customerTenantId, chosen as { incidentId: number; lastUpdateTime: string }, 'poll');
  const enrichment = deriveEnrichment(chosen, { tenantId: customerTenantId, tenantDisplayName: 'Fabrikam' });
  return routedMessageFor(envelope, chosen, enrichment, { name: 'high-to-sentinel' }, 'sentinel');
}

describe('the sentinel destination', () => {
  it('sends a routed message as one row of the documented columns, which the stand-in stores without a problem', async () => {
    const routed = message();
    const result = await deliver(tableFor(), 'sentinel', routed, depsFor());
    expect(result).toMatchObject({
      destination: 'sentinel',
      type: 'sentinel',
      outcome: 'delivered',
      status: 204,
      incidentTruncated: false,
    });
    const stored = li.store.rows({ rule: ruleId, stream: DEFAULT_SENTINEL_STREAM });
    expect(stored).toHaveLength(1);
    expect(stored[0]!.oid).toBe(relayOid);
    expect(stored[0]!.columns).toEqual(sentinelRow(routed, new Date('2026-05-04T10:00:00.000Z')));
    expect(stored[0]!.columns).toMatchObject({
      CustomerTenantId: customerTenantId,
      IncidentId: routed.incidentId,
      EventId: routed.eventId,
      Route: 'high-to-sentinel',
      Incident: routed.incident,
    });
    expect(li.store.problems()).toEqual([]);
  });

  it('turns a 429 into a RetryableError carrying its Retry-After', async () => {
    li.setLimits({ requestsPerMinute: 1 });
    await deliver(tableFor(), 'sentinel', message(), depsFor());
    const err = await deliver(tableFor(), 'sentinel', message(), depsFor()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ status: 429, code: 'TooManyRequests', tenantId: customerTenantId });
    expect((err as RetryableError).retryAfterMs).toBeGreaterThanOrEqual(59_000);
    expect(li.store.rows()).toHaveLength(1);
  });

  it('sends an incident too large for its column reduced, saying so, and the row is stored whole', async () => {
    const base = message().incident;
    const alerts = Array.from({ length: 300 }, (_, i) => ({
      alertId: `da${i}`,
      title: `Credential dumping ${i}`,
      severity: 'High',
      status: 'New',
      category: 'CredentialAccess',
      mitreTechniques: ['T1003.001'],
      devices: [{ deviceDnsName: `host-${i}.contoso.com` }],
      entities: Array.from({ length: 6 }, (_, j) => ({ entityType: 'File', fileName: `dump-${i}-${j}.dmp` })),
    }));
    const result = await deliver(tableFor(), 'sentinel', message({ ...base, alerts }), depsFor());
    expect(result).toMatchObject({ outcome: 'delivered', incidentTruncated: true });
    const [stored] = li.store.rows();
    expect(stored!.columns.IncidentTruncated).toBe(true);
    expect(stored!.columns.AlertCount).toBe(300);
    expect(stored!.columns.Incident).toMatchObject({
      incidentId: base.incidentId,
      truncatedByRelay: { alertCount: 300 },
    });
    // Nothing the service would have had to truncate.
    expect(li.store.problems()).toEqual([]);
  });

  it('dead-letters what the service refuses, with its code: no role (403), an unknown rule or stream (404)', async () => {
    li.revoke(relayOid, ruleId);
    try {
      const forbidden = await deliver(tableFor(), 'sentinel', message(), depsFor()).catch((e: unknown) => e);
      expect(forbidden).toBeInstanceOf(PermanentError);
      expect(forbidden).toMatchObject({ status: 403, code: 'OperationFailed' });
      expect((forbidden as Error).message).toMatch(/Monitoring Metrics Publisher/);
    } finally {
      li.grant(relayOid, ruleId);
    }
    const unknownRule = await deliver(
      tableFor({ ruleId: `dcr-${'0'.repeat(32)}` }),
      'sentinel',
      message(),
      depsFor(),
    ).catch((e: unknown) => e);
    expect(unknownRule).toMatchObject({ status: 404, code: 'NotFound', retryable: false });
    const unknownStream = await deliver(
      tableFor({ streamName: 'Custom-Nope_CL' }),
      'sentinel',
      message(),
      depsFor(),
    ).catch((e: unknown) => e);
    expect(unknownStream).toMatchObject({ status: 404, code: 'NotFound', retryable: false });
    expect(li.store.rows()).toEqual([]);
  });

  it('refuses to connect where the SSRF guard says no: loopback without DESTINATION_ALLOW_LOOPBACK, a host off the list', async () => {
    const before = li.requests().length;
    const loopback = await deliver(tableFor(), 'sentinel', message(), depsFor({ allowLoopback: false })).catch(
      (e: unknown) => e,
    );
    expect(loopback).toBeInstanceOf(PermanentError);
    expect(loopback).toMatchObject({ code: 'DestinationBlocked' });
    const offList = await deliver(
      tableFor(),
      'sentinel',
      message(),
      depsFor({ allowedHosts: ['*.ingest.monitor.azure.com'] }),
    ).catch((e: unknown) => e);
    expect(offList).toMatchObject({ code: 'DestinationBlocked', retryable: false });
    expect(li.requests()).toHaveLength(before);
  });

  it('retries when the endpoint cannot be reached', async () => {
    const closed = await startLogsIngestion({ tls: inject('tls'), verifier: entra.verifier, tenantId });
    const url = closed.url;
    await closed.close();
    const table = loadRoutingRules(
      {
        destinations: { sentinel: { type: 'sentinel', endpoint: url, ruleId } },
        rules: [],
        defaultRoute: { destinations: ['sentinel'] },
      },
      { allowedHosts: ['localhost'], allowLoopback: true },
    );
    const err = await deliver(table, 'sentinel', message(), depsFor()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ code: 'ECONNREFUSED' });
  });
});
