import { randomBytes, randomUUID } from 'node:crypto';
import { request } from 'node:https';
import { gzipSync } from 'node:zlib';
import { ClientSecretCredential, type TokenCredential } from '@azure/identity';
import { isAggregateLogsUploadError, LogsIngestionClient } from '@azure/monitor-ingestion';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { MAX_CALL_BYTES, MAX_FIELD_BYTES } from '../../../local/logs-ingestion/rows.js';
import { startLogsIngestion, type LogsIngestionStandIn } from '../../../local/logs-ingestion/server.js';
import { DEFAULT_SENTINEL_STREAM, SENTINEL_COLUMNS } from '../../../shared/route/destinations/sentinel-columns.js';

/**
 * The Logs Ingestion stand-in with the real `LogsIngestionClient` (@azure/monitor-ingestion 1.2.0) in front
 * of it and the Entra stand-in's tokens: as in Azure but for the endpoint. Retries are off in the clients
 * here, so each refusal is seen as the service gave it (the SDK would otherwise retry a 429 after its
 * Retry-After).
 */

const tenantId = randomUUID();
const otherTenantId = randomUUID();
const relayApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
const noRoleApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
const foreignApp = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };

let entra: EntraStandIn;
let li: LogsIngestionStandIn;
let ruleId: string;
let otherRuleId: string;
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
  li = await startLogsIngestion({ tls: inject('tls'), verifier: entra.verifier, tenantId, log: (l) => log.push(l) });
  ruleId = li.addRule({
    name: 'dcr-defender-relay',
    streamDeclarations: { [DEFAULT_SENTINEL_STREAM]: { columns: SENTINEL_COLUMNS } },
  }).immutableId;
  otherRuleId = li.addRule({
    name: 'dcr-other',
    streamDeclarations: { 'Custom-Other_CL': { columns: [{ name: 'TimeGenerated', type: 'datetime' }] } },
  }).immutableId;
  li.grant(entra.registry.servicePrincipalId(tenantId, relayApp.clientId)!, ruleId);
  // The foreign app holds the role: what refuses it is its token's tenant.
  li.grant(entra.registry.servicePrincipalId(otherTenantId, foreignApp.clientId)!, ruleId);
});

afterAll(async () => {
  await li?.close();
  await entra?.close();
});

beforeEach(() => {
  li.store.clear();
  li.setLimits({ requestsPerMinute: 12_000, bytesPerMinute: 2 * 1024 ** 3 });
});

const credentialOf = (app: { clientId: string; secret: string }, tenant = tenantId): TokenCredential =>
  new ClientSecretCredential(tenant, app.clientId, app.secret, {
    authorityHost: entra.url,
    disableInstanceDiscovery: true,
  });

const clientFor = (credential: TokenCredential = credentialOf(relayApp)) =>
  new LogsIngestionClient(li.url, credential, { retryOptions: { maxRetries: 0 } });

/** A row of the relay's table, every column present. */
function row(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    TimeGenerated: new Date().toISOString(),
    EventId: `evt-${randomUUID()}`,
    CustomerTenantId: randomUUID(),
    CustomerTenantName: 'Fabrikam',
    IncidentId: 924565,
    IncidentName: 'Multi-stage incident',
    LastUpdateTime: '2026-05-04T09:12:30.1234567Z',
    Severity: 'High',
    Status: 'Active',
    Classification: 'Unknown',
    Determination: 'NotAvailable',
    Priority: 85,
    PriorityReasons: ['severity High: +50'],
    MitreTechniques: ['T1003.001'],
    MitreTactics: [{ id: 'TA0006', name: 'Credential Access' }],
    AlertCount: 3,
    ActiveAlertCount: 2,
    UserCount: 1,
    DeviceCount: 2,
    IpCount: 0,
    UrlCount: 0,
    FileHashCount: 1,
    MailboxCount: 0,
    PortalUrl: 'https://security.microsoft.com/incidents/924565',
    ServiceSources: ['MicrosoftDefenderForEndpoint'],
    Route: 'high-to-sentinel',
    IncidentApi: 'defender',
    Incident: { incidentId: 924565, alerts: [] },
    IncidentTruncated: false,
    ...overrides,
  };
}

/** The RestError of the one chunk a failed upload of one row carries. */
async function refusal(
  upload: Promise<void>,
): Promise<{ statusCode?: number; code?: string; message: string; retryAfter?: string }> {
  const err = await upload.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isAggregateLogsUploadError(err), String(err)).toBe(true);
  const cause = (
    err as {
      errors: {
        cause: Error & {
          statusCode?: number;
          code?: string;
          response?: { headers: { get(n: string): string | undefined } };
        };
      }[];
    }
  ).errors[0]!.cause;
  return {
    statusCode: cause.statusCode,
    code: cause.code,
    message: cause.message,
    retryAfter: cause.response?.headers.get('retry-after'),
  };
}

/** A raw POST, for what the SDK never sends (a body that is no array, a body over the limit as sent). */
async function post(
  path: string,
  body: Buffer,
  headers: Record<string, string>,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${li.url}${path}`,
      { method: 'POST', headers: { 'content-length': String(body.length), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('the Logs Ingestion stand-in with the real LogsIngestionClient', () => {
  it('stores the rows of an upload (gzip, as the SDK sends it) with the declared columns, 204', async () => {
    const rows = [row(), row({ Severity: 'Medium', Priority: 60 })];
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, rows);
    const stored = li.store.rows({ rule: ruleId });
    expect(stored.map((r) => r.columns)).toEqual(rows);
    expect(stored[0]).toMatchObject({
      stream: DEFAULT_SENTINEL_STREAM,
      oid: entra.registry.servicePrincipalId(tenantId, relayApp.clientId),
    });
    expect(li.store.problems()).toEqual([]);
    expect(li.requests().at(-1)).toMatchObject({
      status: 204,
      rowsReceived: 2,
      rowsStored: 2,
      contentEncoding: 'gzip',
    });
    expect(li.requests().at(-1)!.path).toBe(`/dataCollectionRules/${ruleId}/streams/${DEFAULT_SENTINEL_STREAM}`);
    expect(li.store.summary()).toMatchObject({
      callsAccepted: 1,
      rowsStored: 2,
      rowsByStream: { [`${ruleId}/${DEFAULT_SENTINEL_STREAM}`]: 2 },
    });
  });

  it('serves what arrived on its control surface', async () => {
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [row({ IncidentId: 7 })]);
    const get = async (path: string) =>
      (await fetch(`${li.controlUrl}${path}`)).json() as Promise<Record<string, unknown>>;
    const { rows } = (await get(`/rows?rule=${ruleId}`)) as { rows: { columns: Record<string, unknown> }[] };
    expect(rows.map((r) => r.columns.IncidentId)).toEqual([7]);
    const { rules } = (await get('/rules')) as {
      rules: { immutableId: string; streams: Record<string, { columns: unknown[] }> }[];
    };
    expect(rules.find((r) => r.immutableId === ruleId)!.streams[DEFAULT_SENTINEL_STREAM]!.columns).toEqual(
      SENTINEL_COLUMNS.map(({ name, type }) => ({ name, type })),
    );
    expect(await get('/summary')).toMatchObject({ rowsStored: 1 });
    expect((await fetch(`${li.controlUrl}/rows`, { method: 'DELETE' })).status).toBe(204);
    expect(li.store.rows()).toEqual([]);
  });

  it('refuses a token issued for another audience: 401', async () => {
    const relay = credentialOf(relayApp);
    // A credential that asks for Key Vault whatever the SDK asks for.
    const vaultToken: TokenCredential = {
      getToken: (_scopes, options) => relay.getToken('https://vault.azure.net/.default', options),
    };
    const answer = await refusal(clientFor(vaultToken).upload(ruleId, DEFAULT_SENTINEL_STREAM, [row()]));
    expect(answer).toMatchObject({ statusCode: 401, code: 'InvalidToken' });
    expect(li.requests().at(-1)).toMatchObject({ status: 401, refusal: 'wrong_audience' });
    expect(li.store.rows()).toEqual([]);
  });

  it("refuses another tenant's token (its principal holds the role): 401", async () => {
    const answer = await refusal(
      clientFor(credentialOf(foreignApp, otherTenantId)).upload(ruleId, DEFAULT_SENTINEL_STREAM, [row()]),
    );
    expect(answer).toMatchObject({ statusCode: 401 });
    expect(li.requests().at(-1)).toMatchObject({ refusal: 'wrong_tenant' });
  });

  it('refuses a caller without Monitoring Metrics Publisher on the rule: 403 OperationFailed, as the service words it', async () => {
    const answer = await refusal(clientFor(credentialOf(noRoleApp)).upload(ruleId, DEFAULT_SENTINEL_STREAM, [row()]));
    expect(answer.statusCode).toBe(403);
    expect(answer.code).toBe('OperationFailed');
    expect(answer.message).toMatch(
      new RegExp(
        `^The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '${ruleId}'`,
      ),
    );
    // The role on one rule is not a role on another.
    const other = await refusal(
      clientFor().upload(otherRuleId, 'Custom-Other_CL', [{ TimeGenerated: new Date().toISOString() }]),
    );
    expect(other).toMatchObject({ statusCode: 403, code: 'OperationFailed' });
    expect(li.store.rows()).toEqual([]);
  });

  it('answers an unknown rule 404 NotFound: "Data collection rule with immutable Id \'…\' not found."', async () => {
    const unknown = `dcr-${randomBytes(16).toString('hex')}`;
    const answer = await refusal(clientFor().upload(unknown, DEFAULT_SENTINEL_STREAM, [row()]));
    expect(answer).toEqual({
      statusCode: 404,
      code: 'NotFound',
      message: `Data collection rule with immutable Id '${unknown}' not found.`,
      retryAfter: undefined,
    });
  });

  it('answers a stream the rule does not declare 404 NotFound', async () => {
    const answer = await refusal(clientFor().upload(ruleId, 'Custom-DefenderRelayIncident_CL', [row()]));
    expect(answer).toMatchObject({ statusCode: 404, code: 'NotFound' });
    expect(answer.message).toContain("Stream 'Custom-DefenderRelayIncident_CL'");
  });

  it('refuses a call over 1 MB, sent or once inflated: 413, and keeps nothing of it', async () => {
    // The SDK sends a row over its 1 MB chunk size alone; hex text compresses to about half, under 1 MB as sent.
    const big = row({ Incident: { blob: randomBytes(600_000).toString('hex') } });
    const inflated = await refusal(clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [big]));
    expect(inflated).toMatchObject({ statusCode: 413, code: 'RequestEntityTooLarge' });
    expect(inflated.message).toContain('once inflated');
    // Incompressible bytes: over the limit as sent.
    const path = `/dataCollectionRules/${ruleId}/streams/${DEFAULT_SENTINEL_STREAM}?api-version=2023-01-01`;
    const token = (await credentialOf(relayApp).getToken('https://monitor.azure.com/.default'))!.token;
    const sent = await post(path, gzipSync(randomBytes(MAX_CALL_BYTES + 10), { level: 0 }), {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    expect(sent.status).toBe(413);
    expect(li.store.rows()).toEqual([]);
    // Just under the limit is taken.
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [row({ Incident: { blob: 'a'.repeat(60_000) } })]);
    expect(li.store.rows()).toHaveLength(1);
  });

  it('takes a row with an undeclared, a missing and a mistyped column (204), stores what the stream declares and logs each problem', async () => {
    const { Priority: _dropped, ...withoutPriority } = row();
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [
      { ...withoutPriority, TenantId: 'x', AlertCount: 'three' },
    ]);
    const [stored] = li.store.rows();
    expect(Object.keys(stored!.columns)).toEqual(SENTINEL_COLUMNS.map((c) => c.name));
    expect(stored!.columns).toMatchObject({ Priority: null, AlertCount: null });
    expect(stored!.columns.TenantId).toBeUndefined();
    expect(li.store.problems().map((p) => [p.kind, p.column])).toEqual([
      ['undeclared-column', 'TenantId'],
      ['missing-column', 'Priority'],
      ['type-mismatch', 'AlertCount'],
    ]);
  });

  it('truncates a field over 64 KB, as the service does (a dynamic value becomes text)', async () => {
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [row({ Incident: { text: 'z'.repeat(70_000) } })]);
    const [stored] = li.store.rows();
    expect(typeof stored!.columns.Incident).toBe('string');
    expect(Buffer.byteLength(stored!.columns.Incident as string)).toBe(MAX_FIELD_BYTES);
    expect(li.store.problems()).toMatchObject([{ kind: 'field-truncated', column: 'Incident' }]);
  });

  it('answers 204 to a body that is no array and ingests nothing; 400 to text that is not JSON', async () => {
    const path = `/dataCollectionRules/${ruleId}/streams/${DEFAULT_SENTINEL_STREAM}?api-version=2023-01-01`;
    const token = (await credentialOf(relayApp).getToken('https://monitor.azure.com/.default'))!.token;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    expect((await post(path, Buffer.from(JSON.stringify(row())), headers)).status).toBe(204);
    expect(li.store.rows()).toEqual([]);
    expect(li.store.problems()).toMatchObject([{ kind: 'not-an-array' }]);
    const notJson = await post(path, Buffer.from('[{"TimeGenerated":'), headers);
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.text)).toMatchObject({ error: { code: 'InvalidJson' } });
    // Without an api-version the call is refused before the rule is looked at.
    const noVersion = await post(path.replace(/\?.*/, ''), Buffer.from('[]'), headers);
    expect(noVersion.status).toBe(400);
  });

  it('throttles a rule over its requests per minute: 429 with Retry-After (the SDK waits for it when it retries)', async () => {
    li.setLimits({ requestsPerMinute: 2 });
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [row()]);
    await clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [row()]);
    const answer = await refusal(clientFor().upload(ruleId, DEFAULT_SENTINEL_STREAM, [row()]));
    expect(answer).toMatchObject({ statusCode: 429, code: 'TooManyRequests' });
    expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(59);
    expect(li.store.rows()).toHaveLength(2);
    // Another rule has its own window.
    li.grant(entra.registry.servicePrincipalId(tenantId, relayApp.clientId)!, otherRuleId);
    await clientFor().upload(otherRuleId, 'Custom-Other_CL', [{ TimeGenerated: new Date().toISOString() }]);
    li.revoke(entra.registry.servicePrincipalId(tenantId, relayApp.clientId)!, otherRuleId);
  });

  it('refuses, as deploying would, a rule that declares a reserved column or a stream without Custom-', () => {
    expect(() =>
      li.addRule({
        name: 'bad',
        streamDeclarations: { 'Custom-X_CL': { columns: [{ name: 'TenantId', type: 'string' }] } },
      }),
    ).toThrow(/TenantId is a reserved column name/);
    expect(() =>
      li.addRule({ name: 'bad', streamDeclarations: { X_CL: { columns: [{ name: 'A', type: 'string' }] } } }),
    ).toThrow(/must begin with Custom-/);
    expect(() =>
      li.addRule({
        name: 'bad',
        streamDeclarations: { 'Custom-X_CL': { columns: [{ name: 'A', type: 'guid' as never }] } },
      }),
    ).toThrow(/type guid/);
  });

  it('logs each request without row content or tokens', () => {
    expect(log.length).toBeGreaterThan(0);
    expect(log.join('\n')).not.toMatch(/eyJ|Fabrikam|Multi-stage/);
  });
});
