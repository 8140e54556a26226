import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { BlobServiceClient } from '@azure/storage-blob';
import { deadLetter } from '../../shared/messages/dead-letter.js';
import { DELIVERY_LOG_TABLE } from '../../shared/route/delivery-log.js';
import { MessageSender } from '../../shared/storage/queues.js';
import { pushSignatureHeader } from '../../shared/api/webhook-signature.js';
import { queueDepth, waitForFlowSettled } from '../support/flow-tally.js';
import { schemaProblems } from '../support/published-schemas.js';
import { drainQueue, routedDefenderEvent } from '../support/queues.js';
import { startLocalStack, type StartedStack } from '../support/start-process.js';
import { DEFENDER_DOCS_LIST_EXAMPLE } from '../support/webhook-payloads.js';

/** `npm start` seen from outside: a user's process, the stack file, the real SDK clients, Ctrl-C. */
const repo = resolve(import.meta.dirname, '..', '..');

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), done(true)));
    socket.once('error', () => done(false));
  });
}

describe('npm start', () => {
  let stateDir: string;
  let tlsDir: string;
  let child: ChildProcess;
  let stack: StartedStack;
  let readyMs = 0;
  let info: StackInfo;
  /** Routed messages read off the queues (tests drain them), each checked against the published schema. */
  let routedChecked = 0;
  const schemaFindings: string[] = [];
  const drainRouted = async (queues: QueueServiceClient, queue: string) => {
    const messages = await drainQueue(queues, queue);
    routedChecked += messages.length;
    for (const message of messages)
      schemaFindings.push(...schemaProblems('routed-message', message).map((p) => `${queue}: ${p}`));
    return messages;
  };

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-'));
    const started = Date.now();
    // The stack serves the test run's certificate, so that this process (trusting the run's CA) reaches Azurite's HTTPS.
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    stack = await startLocalStack(['--port', '0', '--state-dir', stateDir, '--quiet', '--no-activity'], {
      ...process.env,
      ...stackTlsEnv(tlsDir),
    });
    child = stack.child;
    readyMs = Date.now() - started;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
  }, 90_000);

  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  it('runs the app as Azure does: Storage through its managed identity, no connection string, no client secret', async () => {
    const settings = info.appSettings;
    expect(settings.AzureWebJobsStorage).toBeUndefined();
    expect(settings.AZURE_CLIENT_SECRET).toBeUndefined();
    expect(settings).toMatchObject({
      AzureWebJobsStorage__credential: 'managedidentity',
      AzureWebJobsStorage__clientId: settings.AZURE_CLIENT_ID,
    });
    for (const service of ['queue', 'table', 'blob'])
      expect(settings[`AzureWebJobsStorage__${service}ServiceUri`]).toMatch(
        /^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/,
      );
    // The service URIs take no anonymous caller: the host and the app reach them only with the identity's tokens.
    const anonymous = await fetch(
      `${settings.AzureWebJobsStorage__queueServiceUri}/poll-requests/messages?peekonly=true`,
    );
    expect(anonymous.status).toBe(403);
    const local = JSON.parse(readFileSync(join(stateDir, 'local.settings.json'), 'utf8')) as {
      Values: Record<string, string>;
    };
    expect(local.Values.IDENTITY_ENDPOINT).toMatch(/^https:\/\/localhost:\d+\/msi\/token$/);
    expect(local.Values.IDENTITY_HEADER).toBeTruthy();
  });

  it('is ready within a minute and says where everything runs', () => {
    expect(readyMs).toBeLessThan(60_000);
    for (const url of [info.entra.authorityHost, info.keyVault.url, info.defender.url, info.host])
      expect(stack.output).toContain(url);
    console.log(`npm start: ready in ${(readyMs / 1000).toFixed(1)} s`);
  });

  it('writes stack.json with three demo tenants, both contexts and both sources, and a CA the stand-ins use', () => {
    expect(info.tenants.map((t) => `${t.context} ${t.source}`).sort()).toEqual([
      'application defender',
      'partner defender',
      'partner graph',
    ]);
    // One instance: `hosts` lists it, and `host` (kept for the programs that read it) is that one.
    expect(info.hosts).toEqual([info.host]);
    expect(readFileSync(info.caCertPath, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(info.entra.authorityHost).toMatch(/^https:\/\/localhost:\d+$/);
    expect(info.keyVault.url).toMatch(/^https:/);
    expect(info.defender.url).toMatch(/^https:/);
    expect(info.graph.url).toMatch(/^https:/);
    expect(info.queues).toMatchObject({
      pollRequests: 'poll-requests',
      incidents: 'incidents',
      poison: 'incidents-poison',
    });
    const partner = info.demoApps.find((a) => a.multiTenant);
    for (const tenant of info.tenants.filter((t) => t.context === 'partner'))
      expect(partner?.consentedTenants).toContain(tenant.tenantId);
  });

  it('answers GET /api/health with every check healthy', async () => {
    const res = await fetch(`${info.host}/api/health`);
    const body = (await res.json()) as { status: string; checks: { name: string; ok: boolean; detail: string }[] };
    expect(res.status).toBe(200);
    expect(body.status).toBe('healthy');
    expect(body.checks.map((c) => c.name).sort()).toEqual(['configuration', 'keyVault', 'storage', 'token']);
    const text = JSON.stringify(body);
    for (const secret of [info.appIdentity.clientSecret, ...info.demoApps.map((a) => a.clientSecret)])
      expect(text).not.toContain(secret);
  });

  it('lets the real SDK clients reach every demo tenant in every context using only stack.json', () => {
    const run = spawnSync(
      process.execPath,
      ['dist/local/check-stack.js', '--stack', join(stateDir, 'stack.json'), '--json'],
      { cwd: repo, encoding: 'utf8' },
    );
    const results = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
      check: string;
      ok: boolean;
      detail: string;
    }[];
    expect(results.filter((r) => !r.ok)).toEqual([]);
    const names = results.map((r) => r.check).join('\n');
    expect(names).toMatch(/\(application, defender\): list incidents/);
    expect(names).toMatch(/\(partner, defender\): list incidents/);
    expect(names).toMatch(/\(partner, graph\): list incidents/);
    expect(names).toMatch(/user context \(on-behalf-of/);
    expect(names).toMatch(/tenant that did not consent/);
    expect(run.status).toBe(0);
  }, 60_000);

  it('routes every incident event of every demo tenant: events in = events routed + dead-lettered', async () => {
    const depth = queueDepth(info);
    const tally = await waitForFlowSettled(info, 130, 45_000);
    expect(tally.eventsIn).toBeGreaterThanOrEqual(130); // 60 Fabrikam + 40 Northwind + 30 Woodgrove (Graph) on the first poll
    expect(tally.processed + tally.deadLettered).toBe(tally.eventsIn);
    expect(await depth('incidents-poison')).toBe(0);
    for (const q of info.queues.routed) expect(await depth(q), q).toBeGreaterThan(0);
  }, 60_000);

  it('replays a dead-lettered event through POST /api/replay, routing nothing twice', async () => {
    const cs = info.storage.connectionString;
    const queues = QueueServiceClient.fromConnectionString(cs);
    const depth = async (q: string) => (await queues.getQueueClient(q).getProperties()).approximateMessagesCount ?? 0;
    // An event already routed, dead-lettered as a destination outage would have left it.
    const event = await routedDefenderEvent(queues, 'routed-archive');
    expect(event, 'a routed Defender incident among the first 32').toBeDefined();
    await deadLetter(
      new MessageSender(queues, async () => BlobServiceClient.fromConnectionString(cs)),
      'incidents',
      event!,
      'e2e: a destination was down',
    );
    const routedBefore = await Promise.all(info.queues.routed.map(depth));

    const res = await fetch(`${info.host}/api/replay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ source: 'deadletter', tenantId: event!.tenantId }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ moved: 1, refused: [] });
    await expect
      .poll(async () => (await depth('incidents')) + (await depth('incidents-deadletter')), {
        timeout: 20_000,
        interval: 500,
      })
      .toBe(0);
    // Already delivered: the enricher finds it in the delivery log and routes it nowhere again.
    expect(await Promise.all(info.queues.routed.map(depth))).toEqual(routedBefore);
  }, 40_000);

  it("routes incidents pushed to the webhook (Microsoft's documented example), exactly once even when pushed twice", async () => {
    const tenantId = info.tenants.find((t) => t.context === 'application')!.tenantId;
    const push = (timestamp: number) =>
      fetch(`${info.host}/api/incidents?tenantId=${tenantId}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-relay-signature': pushSignatureHeader(
            info.webhookHmacKey,
            { tenantId, method: 'POST', path: '/api/incidents' },
            DEFENDER_DOCS_LIST_EXAMPLE,
            timestamp,
          ),
        },
        body: DEFENDER_DOCS_LIST_EXAMPLE,
      });
    const now = Math.floor(Date.now() / 1000);
    const first = await push(now);
    expect(first.status).toBe(202);
    const { eventIds } = (await first.json()) as { eventIds: string[] };
    expect(eventIds).toHaveLength(3);
    expect((await push(now)).status).toBe(401); // the same signature twice is a replay
    expect((await push(now - 1)).status).toBe(202); // signed again: accepted, and the enricher drops the repeats

    const cs = info.storage.connectionString;
    const deliveries = TableClient.fromConnectionString(cs, DELIVERY_LOG_TABLE, { allowInsecureConnection: true });
    const queues = QueueServiceClient.fromConnectionString(cs);
    const routesOf = async () => {
      const found = new Map<string, string>();
      for await (const row of deliveries.listEntities<{ routes?: string }>({
        queryOptions: { filter: `PartitionKey eq '${tenantId}' and routes ge ''` },
      })) {
        found.set(decodeURIComponent(row.rowKey!.replace(/~/g, '%')), row.routes ?? '');
      }
      return found;
    };
    let routed = new Map<string, string>();
    for (const started = Date.now(); Date.now() - started < 30_000; await new Promise((r) => setTimeout(r, 500))) {
      routed = await routesOf();
      const pending = (await queues.getQueueClient('incidents').getProperties()).approximateMessagesCount ?? 0;
      if (eventIds.every((id) => routed.has(id)) && pending === 0) break;
    }
    for (const id of eventIds) expect(routed.get(id), id).toBeTruthy();

    // Every routed queue holds each pushed event at most once, with the incident as Microsoft documents it.
    const documented = (JSON.parse(DEFENDER_DOCS_LIST_EXAMPLE) as { value: { incidentId: number }[] }).value;
    for (const q of info.queues.routed) {
      const messages = (await drainRouted(queues, q)) as { eventId: string; incident: { incidentId: number } }[];
      for (const id of eventIds) {
        const copies = messages.filter((m) => m.eventId === id);
        expect(copies.length, `${id} in ${q}`).toBeLessThanOrEqual(1);
        if (copies[0])
          expect(copies[0].incident).toEqual(documented.find((i) => i.incidentId === copies[0]!.incident.incidentId));
      }
    }
  }, 60_000);

  it("keeps two tenants apart: each tenant's push key pushes for its own tenant, never for the other", async () => {
    const [a, b] = info.tenants;
    const pushAs = (signer: typeof a, target: typeof a, incidentId: number) => {
      const body = JSON.stringify({
        ...(JSON.parse(DEFENDER_DOCS_LIST_EXAMPLE) as { value: object[] }).value[0],
        incidentId,
        lastUpdateTime: new Date().toISOString(),
      });
      const signature = pushSignatureHeader(
        signer!.pushKey,
        { tenantId: target!.tenantId, method: 'POST', path: '/api/incidents' },
        body,
      );
      return fetch(`${info.host}/api/incidents?tenantId=${target!.tenantId}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-relay-signature': signature },
        body,
      });
    };
    // A signature made with one tenant's key, for the other tenant: refused, whichever way round.
    const crossed = [await pushAs(a, b, 990_001), await pushAs(b, a, 990_002)];
    expect(crossed.map((r) => r.status)).toEqual([401, 401]);
    // Each for itself: accepted.
    const own = [await pushAs(a, a, 990_003), await pushAs(b, b, 990_004)];
    expect(own.map((r) => r.status)).toEqual([202, 202]);
    const ownIds = (
      await Promise.all(own.map(async (r) => ((await r.json()) as { eventIds: string[] }).eventIds))
    ).flat();

    const deliveries = TableClient.fromConnectionString(info.storage.connectionString, DELIVERY_LOG_TABLE, {
      allowInsecureConnection: true,
    });
    const logged = async () => {
      const ids: string[] = [];
      for await (const row of deliveries.listEntities({ queryOptions: { select: ['RowKey'] } }))
        ids.push(decodeURIComponent(row.rowKey!.replace(/~/g, '%')));
      return ids;
    };
    let ids: string[] = [];
    for (const started = Date.now(); Date.now() - started < 30_000; await new Promise((r) => setTimeout(r, 500))) {
      ids = await logged();
      if (ownIds.every((id) => ids.includes(id))) break;
    }
    expect(ownIds.every((id) => ids.includes(id))).toBe(true);
    // Once the accepted pushes are through, nothing of the crossed ones exists under either tenant.
    expect(ids.filter((id) => /:99000[12]:/.test(id))).toEqual([]);
  }, 60_000);

  it('writes only messages the published schemas (schema/) accept: every routed message, dead letter and poisoned event', async () => {
    const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
    for (const queue of info.queues.routed) await drainRouted(queues, queue);
    for (const message of await drainQueue(queues, 'incidents-deadletter'))
      schemaFindings.push(...schemaProblems('dead-letter', message).map((p) => `incidents-deadletter: ${p}`));
    for (const message of await drainQueue(queues, 'incidents-poison'))
      schemaFindings.push(...schemaProblems('incident-event', message).map((p) => `incidents-poison: ${p}`));
    expect(schemaFindings).toEqual([]);
    expect(routedChecked).toBeGreaterThan(0);
  }, 30_000);

  it('stops every process it started on Ctrl-C', async () => {
    const ports = [new URL(info.host).port, new URL(info.storage.queueUrl).port, new URL(info.defender.url).port].map(
      Number,
    );
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const port of ports) expect(await portOpen(port)).toBe(false);
  }, 30_000);
});
