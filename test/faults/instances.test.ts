import { readdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { LEASE_SECONDS_VARIABLE, queueLeaseSeconds } from '../../local/host/queue-listener.js';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { eventIdOf } from '../../shared/messages/events.js';
import { pollRequest } from '../../shared/ingest/ingest.js';
import { MessageSender, QUEUE_NAMES } from '../../shared/storage/queues.js';
import { queueDepth, tallyDestinations, waitForFlowSettled } from '../support/flow-tally.js';
import { startLocalStack, type StartedStack } from '../support/start-process.js';

/**
 * An instance of the app dies (SIGKILL, as when Azure reclaims an instance) while it has enrichment
 * invocations running: real processes, `npm start -- --instances 3`. Its messages stay invisible for the
 * Storage Queues extension's lease and then come back to the other two instances; by then the app's event
 * claims (2 minutes) have lapsed, so the survivors take the events over, skipping the destinations the dead
 * instance had already served. Nothing may be lost, nothing routed twice, nothing poisoned.
 *
 * Time is scaled for the test: the local host's queue lease is 140 s instead of 10 minutes
 * (LOCAL_HOST_QUEUE_LEASE_SECONDS, local/PARITY.md), still longer than the claim, as in Azure. The whole
 * scenario takes about 3.5 minutes, most of it waiting for that lease.
 */
const LEASE_SECONDS = 140;
/** How long Defender takes to answer a write-back once the second wave starts: the invocations wait on it. */
const WRITE_BACK_DELAY_MS = 20_000;

/**
 * Routes with queue destinations only (each queue is read back event by event: exactly once each). Closed
 * incidents are dropped; those tagged `second-wave` (no generated incident is) go to two queues and are
 * written back to (tagged): the second wave tags every open incident so.
 */
const ROUTES = {
  destinations: {
    'soc-queue': { type: 'queue', queueName: 'routed-high' },
    archive: { type: 'queue', queueName: 'routed-archive' },
    nowhere: { type: 'drop' },
  },
  rules: [
    { name: 'closed-drop', match: { status: ['Resolved', 'Redirected'] }, destinations: ['nowhere'] },
    {
      name: 'second-wave',
      match: { tags: ['second-wave'] },
      destinations: ['soc-queue', 'archive'],
      writeBack: { tag: 'relayed:second-wave' },
    },
  ],
  defaultRoute: { destinations: ['archive'] },
};

/** The enrichIncident invocations each instance started and finished, read from the host lines npm start prints. */
class Invocations {
  /** Invocation id → instance (0-based) and when this test first saw it start. */
  readonly started = new Map<string, { instance: number; at: number }>();
  readonly finished = new Set<string>();
  #read = 0;

  constructor(private readonly stack: StartedStack) {}

  /** Reads the lines printed since the last call (complete lines only). */
  update(): void {
    const output = this.stack.output;
    const end = output.lastIndexOf('\n') + 1;
    for (const line of output.slice(this.#read, end).split('\n')) {
      const started = /\[functions #(\d)\] .*Executing 'Functions\.enrichIncident' \(.*Id=([\w-]+)\)/.exec(line);
      if (started) this.started.set(started[2]!, { instance: Number(started[1]) - 1, at: Date.now() });
      const finished =
        /\[functions #(\d)\] .*Executed 'Functions\.enrichIncident' \((?:Succeeded|Failed), Id=([\w-]+)/.exec(line);
      if (finished) this.finished.add(finished[2]!);
    }
    this.#read = end;
  }

  /** The instance's invocations started (since `since`) and not finished. */
  running(instance: number, since = 0): string[] {
    return [...this.started]
      .filter(([id, s]) => s.instance === instance && s.at >= since && !this.finished.has(id))
      .map(([id]) => id);
  }

  /** When the instance last started one (0: never). */
  lastStart(instance: number): number {
    return Math.max(0, ...[...this.started.values()].filter((s) => s.instance === instance).map((s) => s.at));
  }
}

/** The processes whose parent is `pid` (read from /proc: the host's worker). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: the command may hold spaces and parentheses, so read after its last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

/** Whether the process is gone (a zombie no one has reaped yet counts as gone: it runs nothing). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function control(info: StackInfo, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${info.defender.controlUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  expect(res.ok, `${method} ${path}: ${res.status}`).toBe(true);
  return res.status === 204 ? undefined : res.json();
}

describe('LOCAL_HOST_QUEUE_LEASE_SECONDS: time scaling of the local host, for tests', () => {
  it("keeps the extension's 10 minutes unless set, and refuses a lease that would not outlast the app's 2-minute event claim", () => {
    expect(queueLeaseSeconds({})).toBe(600);
    expect(queueLeaseSeconds({ [LEASE_SECONDS_VARIABLE]: '' })).toBe(600);
    expect(queueLeaseSeconds({ [LEASE_SECONDS_VARIABLE]: '130' })).toBe(130);
    expect(queueLeaseSeconds({ [LEASE_SECONDS_VARIABLE]: '600' })).toBe(600);
    for (const value of ['129', '120', '0', '-140', '140.5', '1e3', 'ten', '601'])
      expect(() => queueLeaseSeconds({ [LEASE_SECONDS_VARIABLE]: value }), value).toThrow(
        `LOCAL_HOST_QUEUE_LEASE_SECONDS must be a whole number of seconds from 130 to 600, not '${value}'`,
      );
  });
});

describe('an instance killed mid-batch (npm start -- --instances 3)', () => {
  const dirs: string[] = [];
  let stack: StartedStack | undefined;

  afterAll(async () => {
    const child = stack?.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      // Ctrl-C stops the hosts, the stand-ins and Azurite; SIGKILL only if that hangs.
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGINT');
      await Promise.race([exited, sleep(30_000).then(() => child.kill('SIGKILL'))]);
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('SIGKILL of an instance with enrichIncident invocations running: the other two take its messages over once the lease runs out; nothing lost, nothing routed twice, nothing poisoned', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-faults-kill-'));
    const tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-faults-kill-tls-'));
    dirs.push(stateDir, tlsDir);
    writeStackTls(tlsDir, inject('tls'));
    const routesFile = join(stateDir, 'kill-routes.json');
    writeFileSync(routesFile, JSON.stringify(ROUTES, null, 2));
    stack = await startLocalStack(
      ['--port', '0', '--instances', '3', '--state-dir', stateDir, '--no-activity', '--routes', routesFile],
      { ...process.env, ...stackTlsEnv(tlsDir), [LEASE_SECONDS_VARIABLE]: String(LEASE_SECONDS) },
    );
    const info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
    expect(info.hostPids).toHaveLength(3);
    const depth = queueDepth(info);
    const invocations = new Invocations(stack);

    // Wave 1: the first poll's 100 incidents, routed to the archive without a write-back.
    const first = await waitForFlowSettled(info, 130, 90_000);
    expect(first).toMatchObject({ pending: 0, deadLettered: 0, processed: first.eventsIn });

    // Wave 2: Defender answers write-backs slowly, and every open incident is tagged second-wave (a new
    // version). Each is delivered to both queues at once, then its invocation waits on the write-back (those
    // the tenant's call budget cannot serve skip it and finish at once).
    await control(info, 'POST', '/faults', {
      target: 'defender',
      spec: { kind: 'delay', ms: WRITE_BACK_DELAY_MS },
      pathContains: '/api/incidents/',
    });
    type Version = { incidentId: number; status: string; lastUpdateTime: string };
    const firstVersions: string[] = [];
    const secondVersions: string[] = [];
    // The Defender tenants (the Graph tenant's write-backs go to another stand-in, which the fault above does not slow).
    for (const { tenantId } of info.tenants.filter((t) => t.source === 'defender')) {
      const { value } = (await control(info, 'GET', `/tenants/${tenantId}/incidents`)) as { value: Version[] };
      for (const incident of value) {
        firstVersions.push(eventIdOf(tenantId, incident.incidentId, incident.lastUpdateTime));
        if (incident.status === 'Resolved' || incident.status === 'Redirected') continue;
        const changed = (await control(info, 'PATCH', `/tenants/${tenantId}/incidents/${incident.incidentId}`, {
          tags: ['second-wave'],
        })) as Version;
        secondVersions.push(eventIdOf(tenantId, changed.incidentId, changed.lastUpdateTime));
      }
    }
    const changedCount = secondVersions.length;
    expect(firstVersions).toHaveLength(100); // 60 Fabrikam + 40 Northwind
    expect(changedCount).toBeGreaterThan(20);
    const wave2 = Date.now();
    const sender = new MessageSender(QueueServiceClient.fromConnectionString(info.storage.connectionString), async () =>
      BlobServiceClient.fromConnectionString(info.storage.connectionString),
    );
    for (const tenant of info.tenants)
      await sender.send(QUEUE_NAMES.pollRequests, pollRequest(tenant.tenantId, 'manual'));

    // The victim: an instance with invocations running that started none for 2 s (so each has delivered and
    // waits on Defender: the kill lands between destinations and write-back, not in the middle of a send).
    let victim: number | undefined;
    let unfinished: string[] = [];
    for (const deadline = Date.now() + 60_000; victim === undefined && Date.now() < deadline; await sleep(200)) {
      invocations.update();
      const candidates = [0, 1, 2]
        .map((i) => ({ i, running: invocations.running(i, wave2) }))
        .filter(({ i, running }) => running.length > 0 && Date.now() - invocations.lastStart(i) >= 2_000)
        .sort((a, b) => b.running.length - a.running.length);
      if (candidates[0]) ({ i: victim, running: unfinished } = candidates[0]);
    }
    expect(victim, 'an instance with enrichIncident invocations running').toBeDefined();
    const hostPid = info.hostPids[victim!]!;
    const workers = childrenOf(hostPid);
    expect(workers, 'the host runs its worker process').toHaveLength(1);
    process.kill(hostPid, 'SIGKILL');
    const killedAt = Date.now();
    // The worker goes with its host (its IPC channel closes), as the Node worker ends with its gRPC stream.
    await expect.poll(() => gone(hostPid), { timeout: 10_000, interval: 100 }).toBe(true);
    await expect.poll(() => gone(workers[0]!), { timeout: 10_000, interval: 100 }).toBe(true);
    await control(info, 'DELETE', '/faults?target=defender');

    // The survivors finish their own wave; the dead instance's messages stay invisible until their lease runs out.
    await sleep(Math.max(0, killedAt + WRITE_BACK_DELAY_MS + 15_000 - Date.now()));
    expect(await depth(QUEUE_NAMES.incidents), "the dead instance's messages, still leased").toBeGreaterThanOrEqual(
      unfinished.length,
    );

    // Then they come back, and the other two instances route them: everything in is routed.
    const tally = await waitForFlowSettled(info, first.eventsIn + changedCount, (LEASE_SECONDS + 90) * 1000);
    expect(tally).toMatchObject({ pending: 0, deadLettered: 0, processed: tally.eventsIn });
    expect(tally.eventsIn).toBeGreaterThanOrEqual(first.eventsIn + changedCount);
    expect(await depth(QUEUE_NAMES.poison)).toBe(0);
    expect(Date.now() - killedAt, 'settled only after the lease ran out').toBeGreaterThanOrEqual(
      (LEASE_SECONDS - 15) * 1000,
    );

    // The kill was mid-batch: what the victim had started never completed there.
    invocations.update();
    expect(unfinished.length).toBeGreaterThan(0);
    expect(unfinished.filter((id) => invocations.finished.has(id))).toEqual([]);

    // Every destination got every event of its routes exactly once (queues only: read back event by event).
    const { routed, expected, queued, schemaProblems } = await tallyDestinations(info, routesFile);
    expect(schemaProblems, 'queued messages the published schema refuses').toEqual([]);
    expect([...queued.keys()].sort()).toEqual(['archive', 'soc-queue']);
    for (const [destination, eventIds] of queued)
      expect([...eventIds].sort(), destination).toEqual([...(expected.get(destination) ?? [])].sort());
    // Every version of every incident of the demo tenants is among them: the first poll's, and each second-wave one at both queues.
    expect(
      firstVersions.filter((id) => !routed.has(id)),
      'first versions not routed',
    ).toEqual([]);
    for (const destination of ['soc-queue', 'archive']) {
      const got = new Set(queued.get(destination));
      expect(
        secondVersions.filter((id) => !got.has(id)),
        `second-wave versions missing at ${destination}`,
      ).toEqual([]);
    }
    console.log(
      `instance ${victim! + 1} killed with ${unfinished.length} enrichIncident invocation(s) running; ` +
        `${routed.size} events routed (${changedCount} changed in the second wave), settled ${((Date.now() - killedAt) / 1000).toFixed(0)} s after the kill`,
    );
  }, 420_000);
});
