import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RecordedProblem, RecordedRow } from '../../local/logs-ingestion/server.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import type { StackInfo } from '../../local/stack.js';
import { DEFAULT_SENTINEL_STREAM, SENTINEL_COLUMNS } from '../../shared/route/destinations/sentinel-columns.js';
import { loadRoutingRules, selectRoutes } from '../../shared/route/routing.js';
import { defenderViewOf } from '../../shared/sources/graph/incident-view.js';
import { expectedDeliveries, waitForFlowSettled } from '../support/flow-tally.js';
import { startLocalStack, type StartedStack } from '../support/start-process.js';

/**
 * `npm start` and Microsoft Sentinel: the demo routes send high-priority incidents to a `sentinel`
 * destination, which the app delivers as its managed identity through the real LogsIngestionClient to
 * the Logs Ingestion stand-in. Read back over the stand-in's control surface, as any other process would.
 */

describe('npm start sends Sentinel rows', () => {
  let stateDir: string;
  let tlsDir: string;
  let child: ChildProcess;
  let stack: StartedStack;
  let info: StackInfo;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-sentinel-'));
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-sentinel-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    stack = await startLocalStack(['--port', '0', '--state-dir', stateDir, '--no-activity'], {
      ...process.env,
      ...stackTlsEnv(tlsDir),
    });
    child = stack.child;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
  }, 90_000);

  afterAll(() => {
    if (child?.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  const control = async <T>(path: string): Promise<T> => {
    const answer = await fetch(`${info.logsIngestion.controlUrl}${path}`);
    expect(answer.status, path).toBe(200);
    return (await answer.json()) as T;
  };

  it('writes the stand-in and its rule into stack.json and the demo routes', () => {
    expect(info.logsIngestion).toMatchObject({
      endpoint: expect.stringMatching(/^https:\/\/localhost:\d+$/),
      ruleId: expect.stringMatching(/^dcr-[0-9a-f]{32}$/),
      streamName: DEFAULT_SENTINEL_STREAM,
    });
    const routes = loadRoutingRules(join(stateDir, 'routes.json'), {
      allowedHosts: ['localhost'],
      allowLoopback: true,
    });
    expect(routes.destinations.get('sentinel')).toMatchObject({
      type: 'sentinel',
      endpoint: info.logsIngestion.endpoint,
      ruleId: info.logsIngestion.ruleId,
      streamName: DEFAULT_SENTINEL_STREAM,
    });
    expect(stack.output).toContain(`Sentinel:    curl '${info.logsIngestion.controlUrl}/rows?limit=5'`);
  });

  it('delivers one row per high-priority incident version, with the documented columns, as the managed identity', async () => {
    const tally = await waitForFlowSettled(info, 130, 60_000);
    expect(tally).toMatchObject({ pending: 0, deadLettered: 0 });
    const routesFile = join(stateDir, 'routes.json');
    const { expected } = await expectedDeliveries(info, routesFile);
    const wanted = [...(expected.get('sentinel') ?? [])].sort();
    expect(wanted.length, 'the demo routes send some incidents to Sentinel').toBeGreaterThan(0);

    const { rows } = await control<{ rows: RecordedRow[] }>(`/rows?rule=${info.logsIngestion.ruleId}&limit=10000`);
    expect(rows.map((r) => r.columns.EventId as string).sort()).toEqual(wanted);
    for (const row of rows) {
      expect(row.stream).toBe(DEFAULT_SENTINEL_STREAM);
      // The app's user-assigned managed identity, as in Azure (its object id is the token's oid).
      expect(row.oid).toBeTruthy();
      expect(Object.keys(row.columns)).toEqual(SENTINEL_COLUMNS.map((c) => c.name));
    }
    expect(new Set(rows.map((r) => r.oid)).size).toBe(1);
    // Nothing the service would have dropped, emptied or truncated.
    const { problems } = await control<{ problems: RecordedProblem[] }>(`/problems?rule=${info.logsIngestion.ruleId}`);
    expect(problems).toEqual([]);

    // Each row says what the rules matched on: a high priority, and a route that names the sentinel destination.
    const table = loadRoutingRules(routesFile, { allowedHosts: ['localhost'], allowLoopback: true });
    for (const { columns } of rows) {
      expect(['high-to-soc', 'risky-medium']).toContain(columns.Route);
      expect(columns.Priority as number).toBeGreaterThanOrEqual(60);
      expect(columns.IncidentTruncated).toBe(false);
      // The Incident column keeps the incident as its API gave it; the other columns read it in Defender's shape.
      const asGiven = columns.Incident as Record<string, unknown>;
      const incident = columns.IncidentApi === 'graph' ? defenderViewOf(asGiven) : asGiven;
      expect(columns.IncidentApi).toBe(asGiven.id === undefined ? 'defender' : 'graph');
      expect(incident.incidentId).toBe(columns.IncidentId);
      expect(columns.Severity).toBe(incident.severity);
      expect(columns.PortalUrl).toBe(
        `https://security.microsoft.com/incidents/${String(columns.IncidentId)}?tid=${String(columns.CustomerTenantId)}`,
      );
      expect(info.tenants.map((t) => t.tenantId)).toContain(columns.CustomerTenantId);
      expect(
        selectRoutes(table, {
          tenantId: columns.CustomerTenantId as string,
          incident,
          enrichment: {
            priority: columns.Priority as number,
            tenantDisplayName: columns.CustomerTenantName as string,
            serviceSources: columns.ServiceSources as string[],
            mitre: { techniques: columns.MitreTechniques as string[] },
          },
        }).some((route) => route.destinations.includes('sentinel')),
      ).toBe(true);
    }
    await expect
      .poll(() => stack.output.includes(`sentinel: ${rows.length} rows`), { timeout: 15_000, interval: 500 })
      .toBe(true);
  }, 90_000);

  it('stops on Ctrl-C', async () => {
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
  }, 30_000);
});
