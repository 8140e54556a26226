import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { valueFits } from '../../../local/logs-ingestion/rows.js';
import { generateIncidents } from '../../../local/defender/generator.js';
import { routedMessageFor, type RoutedMessage } from '../../../shared/route/destinations/index.js';
import {
  DEFAULT_SENTINEL_STREAM,
  MAX_FIELD_BYTES,
  SENTINEL_COLUMNS,
} from '../../../shared/route/destinations/sentinel-columns.js';
import {
  capText,
  classifyIngestionFailure,
  fitIncident,
  sentinelRow,
} from '../../../shared/route/destinations/sentinel.js';
import { deriveEnrichment } from '../../../shared/enrich/enrichment.js';
import { PermanentError, RetryableError } from '../../../shared/errors.js';
import { envelopeFor } from '../../../shared/messages/events.js';
import { loadRoutingRules, RoutingConfigError } from '../../../shared/route/routing.js';

const TENANT = '8d2a6f0e-1c3b-4e5f-9a7b-2c4d6e8f0a1b';
const RULE = 'dcr-0123456789abcdef0123456789abcdef';
const docs = JSON.parse(
  readFileSync(new URL('../../fixtures/incidents/docs-example.json', import.meta.url), 'utf8'),
) as {
  value: Record<string, unknown>[];
};

function routed(incident: Record<string, unknown>, route = 'high-to-sentinel'): RoutedMessage {
  const envelope = envelopeFor(TENANT, incident as { incidentId: number; lastUpdateTime: string }, 'poll');
  const enrichment = deriveEnrichment(incident, { tenantId: TENANT, tenantDisplayName: 'Fabrikam' });
  return routedMessageFor(envelope, incident, enrichment, { name: route }, 'sentinel');
}

const policy = { allowedHosts: ['*.ingest.monitor.azure.com'] };
const routes = (destination: Record<string, unknown>) => ({
  destinations: { sentinel: { type: 'sentinel', ...destination } },
  rules: [],
  defaultRoute: { destinations: ['sentinel'] },
});
function problemsOf(destination: Record<string, unknown>): string[] {
  try {
    loadRoutingRules(routes(destination), policy);
  } catch (err) {
    expect(err).toBeInstanceOf(RoutingConfigError);
    return (err as RoutingConfigError).problems.map((p) => `${p.field}: ${p.message}`);
  }
  throw new Error('expected the destination to be refused');
}

describe('a sentinel destination in the routing file', () => {
  const endpoint = 'https://dce-relay-a1b2.westeurope-1.ingest.monitor.azure.com';

  it('takes endpoint, ruleId and streamName, the stream defaulting to Custom-DefenderRelayIncidents_CL', () => {
    const table = loadRoutingRules(routes({ endpoint, ruleId: RULE }), policy);
    expect(table.destinations.get('sentinel')).toEqual({
      name: 'sentinel',
      type: 'sentinel',
      endpoint,
      ruleId: RULE,
      streamName: DEFAULT_SENTINEL_STREAM,
    });
    expect(DEFAULT_SENTINEL_STREAM).toBe('Custom-DefenderRelayIncidents_CL');
    const other = loadRoutingRules(routes({ endpoint, ruleId: RULE, streamName: 'Custom-Other_CL' }), policy);
    expect(other.destinations.get('sentinel')).toMatchObject({ streamName: 'Custom-Other_CL' });
  });

  it('says what is wrong with each field', () => {
    expect(
      problemsOf({
        endpoint,
        ruleId: '/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/z',
      }),
    ).toEqual([
      `destinations "sentinel": ruleId: must be the data collection rule's immutable id, dcr- and 32 hex digits (not its resource id or name)`,
    ]);
    expect(problemsOf({ endpoint: endpoint.replace('https', 'http'), ruleId: RULE })).toEqual([
      'destinations "sentinel": endpoint: must be an https:// URL',
    ]);
    expect(problemsOf({ endpoint: `${endpoint}/?sig=x`, ruleId: RULE })).toEqual([
      'destinations "sentinel": endpoint: must be the logs ingestion URL alone (https://<name>.<region>-1.ingest.monitor.azure.com), without a query',
    ]);
    expect(problemsOf({ endpoint, ruleId: RULE, streamName: 'DefenderRelayIncidents_CL' })).toEqual([
      'destinations "sentinel": streamName: must be a custom stream name: Custom- then letters, digits and underscores',
    ]);
    expect(problemsOf({ ruleId: RULE })[0]).toMatch(/^destinations "sentinel": endpoint: /);
    expect(problemsOf({ endpoint, ruleId: RULE, url: endpoint })[0]).toMatch(/unknown field "url"/i);
  });

  it('holds the endpoint to DESTINATION_ALLOWED_HOSTS, as webhook URLs: the endpoint gets the app’s token', () => {
    expect(problemsOf({ endpoint: 'https://collector.example.net', ruleId: RULE })).toEqual([
      'destinations "sentinel": endpoint: the host is not on DESTINATION_ALLOWED_HOSTS (host collector.example.net)',
    ]);
  });
});

describe('the row of a routed incident', () => {
  it('has exactly the documented columns, each of its declared type', () => {
    for (const incident of docs.value) {
      const row = sentinelRow(routed(incident), new Date('2026-05-04T10:00:00.000Z'));
      expect(Object.keys(row)).toEqual(SENTINEL_COLUMNS.map((c) => c.name));
      for (const column of SENTINEL_COLUMNS)
        expect(valueFits(column.type, row[column.name]), `${column.name} is ${column.type}`).toBe(true);
    }
  });

  it("maps the incident, its enrichment and the route (Microsoft's documented example)", () => {
    const incident = docs.value.find((i) => i.incidentId === 924565)!;
    const message = routed(incident);
    const row = sentinelRow(message, new Date('2026-05-04T10:00:00.000Z'));
    const { enrichment } = message;
    expect(row).toMatchObject({
      TimeGenerated: '2026-05-04T10:00:00.000Z',
      EventId: message.eventId,
      CustomerTenantId: TENANT,
      CustomerTenantName: 'Fabrikam',
      IncidentId: 924565,
      IncidentName: incident.incidentName,
      LastUpdateTime: incident.lastUpdateTime,
      Severity: 'Medium',
      Status: incident.status,
      Classification: incident.classification ?? null,
      Determination: incident.determination ?? null,
      Priority: enrichment.priority,
      PriorityReasons: enrichment.priorityReasons,
      MitreTechniques: enrichment.mitre?.techniques,
      MitreTactics: enrichment.mitre?.tactics,
      AlertCount: enrichment.alertCount,
      ActiveAlertCount: enrichment.activeAlertCount,
      PortalUrl: `https://security.microsoft.com/incidents/924565?tid=${TENANT}`,
      ServiceSources: enrichment.serviceSources,
      Route: 'high-to-sentinel',
      Incident: incident,
      IncidentTruncated: false,
    });
    const totals = (enrichment.entities as { totals: Record<string, number> }).totals;
    expect([row.UserCount, row.DeviceCount, row.IpCount, row.UrlCount, row.FileHashCount, row.MailboxCount]).toEqual([
      totals.users,
      totals.devices,
      totals.ips,
      totals.urls,
      totals.fileHashes,
      totals.mailboxes,
    ]);
    expect(row.UserCount! + row.IpCount!).toBeGreaterThan(0);
  });

  it('writes null for what the incident or enrichment lacks, never undefined', () => {
    const row = sentinelRow(
      {
        ...routed({ incidentId: 5, lastUpdateTime: '2026-05-04T09:00:00Z' }),
        enrichment: { priority: 5, portalUrl: null, serviceSources: [] },
      },
      new Date(),
    );
    expect(Object.values(row)).not.toContain(undefined);
    expect(row).toMatchObject({
      IncidentName: null,
      Severity: null,
      CustomerTenantName: null,
      UserCount: null,
      MitreTechniques: [],
    });
  });
});

describe('an incident too large for its column', () => {
  const huge = () => {
    const [incident] = generateIncidents({
      tenantId: TENANT,
      count: 1,
      seed: 'huge',
      redirectedShare: 0,
    }) as unknown as Record<string, unknown>[];
    const alerts = Array.from({ length: 400 }, (_, i) => ({
      alertId: `da${i}`,
      title: `Suspicious activity ${i}`,
      severity: 'High',
      status: 'New',
      category: 'CredentialAccess',
      serviceSource: 'MicrosoftDefenderForEndpoint',
      mitreTechniques: ['T1003.001'],
      devices: [{ deviceDnsName: `host-${i}.contoso.com`, riskScore: 'High', osPlatform: 'Windows11' }],
      entities: Array.from({ length: 5 }, (_, j) => ({ entityType: 'Process', fileName: `tool-${i}-${j}.exe` })),
    }));
    return { ...incident!, alerts, comments: [{ comment: 'x'.repeat(10_000) }] } as Record<string, unknown>;
  };

  it('is kept whole while it fits', () => {
    const incident = docs.value[0]!;
    expect(fitIncident(incident)).toEqual({ value: incident, truncated: false });
  });

  it('is reduced below the 64 KB the service keeps of a field, saying so in the row and in the value', () => {
    const incident = huge();
    expect(Buffer.byteLength(JSON.stringify(incident))).toBeGreaterThan(200_000);
    const row = sentinelRow(routed(incident), new Date());
    expect(row.IncidentTruncated).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(row.Incident))).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    const reduced = row.Incident as Record<string, unknown> & {
      alerts: Record<string, unknown>[];
      truncatedByRelay: Record<string, unknown>;
    };
    expect(reduced.incidentId).toBe(incident.incidentId);
    expect(reduced.comments).toBeUndefined();
    expect(reduced.alerts.length).toBeGreaterThan(50);
    expect(reduced.alerts[0]).toEqual({
      alertId: 'da0',
      title: 'Suspicious activity 0',
      severity: 'High',
      status: 'New',
      category: 'CredentialAccess',
      serviceSource: 'MicrosoftDefenderForEndpoint',
      mitreTechniques: ['T1003.001'],
    });
    expect(reduced.truncatedByRelay).toMatchObject({ alertCount: 400, alertsKept: reduced.alerts.length });
    // The rest of the row still describes the whole incident.
    expect(row.AlertCount).toBe(400);
    expect(Buffer.byteLength(JSON.stringify(row))).toBeLessThan(100_000);
  });

  it('keeps only what identifies it when even its own fields are too large', () => {
    const incident = {
      incidentId: 9,
      incidentName: 'n',
      lastUpdateTime: '2026-05-04T09:00:00Z',
      ...Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`field${i}`, 'y'.repeat(1000)])),
    };
    const fitted = fitIncident(incident);
    expect(fitted.truncated).toBe(true);
    expect(fitted.value).toMatchObject({ incidentId: 9, incidentName: 'n', truncatedByRelay: { alertsKept: 0 } });
    expect(fitted.value.field0).toBeUndefined();
  });

  it('cuts text on a character boundary', () => {
    const text = 'é'.repeat(40_000);
    const cut = capText(text);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(cut.endsWith('…')).toBe(true);
    expect(cut).not.toContain('\uFFFD');
  });
});

describe('failures of the Logs Ingestion API', () => {
  const context = { tenantId: TENANT, operation: 'deliver to Sentinel destination "sentinel"' };
  const restError = (
    statusCode: number | undefined,
    code: string,
    message: string,
    headers: Record<string, string> = {},
  ) =>
    Object.assign(new Error(message), {
      name: 'RestError',
      statusCode,
      code,
      response: { headers: { get: (name: string) => headers[name.toLowerCase()] } },
    });
  const aggregated = (cause: unknown) =>
    Object.assign(new Error('\n}'), { name: 'AggregateLogsUploadError', errors: [{ cause, failedLogs: [{}] }] });

  it('retries a 429 after its Retry-After, and 5xx and 408', () => {
    const err = classifyIngestionFailure(
      aggregated(restError(429, 'TooManyRequests', 'slow down', { 'retry-after': '17' })),
      context,
    );
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ status: 429, code: 'TooManyRequests', retryAfterMs: 17_000 });
    for (const status of [408, 500, 503])
      expect(classifyIngestionFailure(aggregated(restError(status, 'X', 'x')), context)).toBeInstanceOf(RetryableError);
  });

  it('dead-letters 400, 401, 403, 404 and 413 with the service code and what to do', () => {
    const forbidden = classifyIngestionFailure(
      aggregated(restError(403, 'OperationFailed', 'The authentication token provided does not have access')),
      context,
    );
    expect(forbidden).toBeInstanceOf(PermanentError);
    expect(forbidden).toMatchObject({ status: 403, code: 'OperationFailed' });
    expect(forbidden.message).toMatch(/Monitoring Metrics Publisher on the data collection rule/);
    const notFound = classifyIngestionFailure(
      aggregated(restError(404, 'NotFound', `Data collection rule with immutable Id '${RULE}' not found.`)),
      context,
    );
    expect(notFound).toMatchObject({ status: 404, code: 'NotFound' });
    expect(notFound.message).toContain(`immutable Id '${RULE}' not found`);
    for (const status of [400, 401, 413])
      expect(classifyIngestionFailure(aggregated(restError(status, 'X', 'x')), context)).toBeInstanceOf(PermanentError);
  });

  it('retries network failures and timeouts; a credential error decides for itself', () => {
    expect(
      classifyIngestionFailure(aggregated(restError(undefined, 'ECONNREFUSED', 'connect ECONNREFUSED')), context),
    ).toBeInstanceOf(RetryableError);
    const timeout = classifyIngestionFailure(
      aggregated(Object.assign(new Error('aborted'), { name: 'AbortError' })),
      context,
    );
    expect(timeout).toMatchObject({ code: 'Timeout', retryable: true });
    expect(
      classifyIngestionFailure(aggregated(restError(undefined, 'EDESTINATIONBLOCKED', 'refused: loopback')), context),
    ).toMatchObject({ code: 'DestinationBlocked', retryable: false });
    const credential = Object.assign(new Error('bad secret'), { name: 'AuthenticationError', statusCode: 401 });
    expect(classifyIngestionFailure(aggregated(credential), context)).toMatchObject({
      code: 'AuthenticationError',
      retryable: false,
    });
  });
});
