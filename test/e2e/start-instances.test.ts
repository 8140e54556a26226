import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { lastScreen, queueDepth, tallyDestinations, waitForFlowSettled, webhookCounts } from '../support/flow-tally.js';
import { startLocalStack, type StartedStack } from '../support/start-process.js';

/** `npm start -- --instances 3`: one app on three local hosts, one Azurite, one set of stand-ins, as Azure scales out. */
const repo = resolve(import.meta.dirname, '..', '..');

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), done(true)));
    socket.once('error', () => done(false));
  });
}

/** "enrichIncident 40 (1 failed) · pollTenant 1" → invocations per function. */
function figuresOf(instanceLine: string): Map<string, number> {
  return new Map(
    [...instanceLine.matchAll(/(\w+) (\d+)(?: \(\d+ failed\))?/g)]
      .filter(([, name]) => name !== 'instance')
      .map(([, name, n]) => [name!, Number(n)]),
  );
}

describe('npm start -- --instances 3', () => {
  let stateDir: string;
  let tlsDir: string;
  let child: ChildProcess;
  let stack: StartedStack;
  let info: StackInfo;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-instances-'));
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-instances-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    // Not --quiet: the hosts' lines (the singleton lock's among them) are part of what this test reads.
    stack = await startLocalStack(['--port', '0', '--instances', '3', '--state-dir', stateDir, '--no-activity'], {
      ...process.env,
      ...stackTlsEnv(tlsDir),
    });
    child = stack.child;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
  }, 120_000);

  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  it('runs three instances of the one app, each answering, listed in stack.json', async () => {
    expect(info.hosts).toHaveLength(3);
    expect(new Set(info.hosts).size).toBe(3);
    expect(info.host).toBe(info.hosts[0]);
    for (const url of info.hosts) {
      const res = await fetch(`${url}/api/health`);
      expect(res.status, url).toBe(200);
      expect(((await res.json()) as { status: string }).status, url).toBe('healthy');
    }
    expect(stack.output).toContain(`Instances:   ${info.hosts.join('  ')}`);
    for (const n of [1, 2, 3]) expect(stack.output).toMatch(new RegExp(`\\[functions #${n}\\] Host ready: `));
  });

  it('routes every incident of both demo tenants exactly once across the instances: each destination gets each event once', async () => {
    const depth = queueDepth(info);
    const tally = await waitForFlowSettled(info, 130, 60_000);
    expect(tally.eventsIn).toBeGreaterThanOrEqual(130); // 60 Fabrikam + 40 Northwind + 30 Woodgrove (Graph) on the first poll
    expect(tally).toMatchObject({ pending: 0, deadLettered: 0, processed: tally.eventsIn });
    expect(await depth('incidents-poison')).toBe(0);

    // What each destination should have got (every routed event once per destination of its routes), against
    // what it got: each queue destination each event exactly once, each receiver (its count on the screen) as many.
    const { routed, expected, queued, schemaProblems, webhooksExpected } = await tallyDestinations(
      info,
      join(stateDir, 'routes.json'),
    );
    expect(schemaProblems, 'queued messages the published schema refuses').toEqual([]);
    let queuedCount = 0;
    for (const [destination, eventIds] of queued) {
      expect([...eventIds].sort(), destination).toEqual([...(expected.get(destination) ?? [])].sort());
      queuedCount += eventIds.length;
    }
    expect(queuedCount).toBeGreaterThan(0);
    await expect
      .poll(() => webhookCounts(stack.output, 3), { timeout: 10_000, interval: 500 })
      .toEqual(webhooksExpected);
    console.log(
      `npm start --instances 3: ${routed.size} events routed; deliveries ${JSON.stringify({ ...webhooksExpected, queued: queuedCount })}`,
    );
  }, 90_000);

  it('shows what each instance did, and runs the poll timer on one instance only (the singleton lock)', async () => {
    // The poll timer fires at the top of each minute; the stack polled the demo tenants itself at start. The
    // screen is redrawn every few seconds: wait for one that shows the timer's run and every enrichment.
    const shown = () => {
      const figures = (lastScreen(stack.output, 3)?.perInstance ?? []).map(figuresOf);
      return {
        timerRan: figures.some((f) => (f.get('pollSchedule') ?? 0) > 0),
        allEnriched: figures.reduce((n, f) => n + (f.get('enrichIncident') ?? 0), 0) >= 100,
      };
    };
    await expect.poll(shown, { timeout: 75_000, interval: 1_000 }).toEqual({ timerRan: true, allEnriched: true });
    const screen = lastScreen(stack.output, 3)!;
    expect(screen.perInstance.map((l) => /^instance (\d) :(\d+) {2}/.exec(l)?.slice(1))).toEqual(
      info.hosts.map((url, i) => [String(i + 1), new URL(url).port]),
    );
    const figures = screen.perInstance.map(figuresOf);
    expect(figures.filter((f) => (f.get('pollSchedule') ?? 0) > 0)).toHaveLength(1);
    const enriched = figures.reduce((n, f) => n + (f.get('enrichIncident') ?? 0), 0);
    expect(enriched).toBeGreaterThanOrEqual(100);
    console.log(`npm start --instances 3, per instance:\n  ${screen.perInstance.join('\n  ')}`);

    // One holder of the poll timer's lock, the two others waiting for it; one lock id: the three are one app (one host id).
    const lockLines = stack.output
      .split('\n')
      .filter((l) => /Singleton lock .*\/Host\.Functions\.pollSchedule\.Listener\)/.test(l));
    const holders = new Set(
      lockLines.filter((l) => l.includes('Singleton lock acquired')).map((l) => /\[functions #(\d)\]/.exec(l)?.[1]),
    );
    const waiting = new Set(
      lockLines
        .filter((l) => l.includes('Unable to acquire Singleton lock'))
        .map((l) => /\[functions #(\d)\]/.exec(l)?.[1]),
    );
    expect(holders.size).toBe(1);
    expect([...holders, ...waiting].sort()).toEqual(['1', '2', '3']);
    expect(new Set(lockLines.map((l) => /\(([^)]+)\)/.exec(l)?.[1])).size).toBe(1);
    const holder = Number([...holders][0]) - 1;
    expect(figures[holder]!.get('pollSchedule')).toBeGreaterThan(0);
  }, 90_000);

  it('stops every instance on Ctrl-C', async () => {
    const ports = info.hosts.map((url) => Number(new URL(url).port));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const port of ports) expect(await portOpen(port)).toBe(false);
  }, 30_000);
});

describe('npm start -- --instances out of range', () => {
  it('refuses at once, saying what it takes', () => {
    for (const value of ['0', '9', 'two']) {
      const run = spawnSync(process.execPath, ['dist/local/start.js', '--instances', value], {
        cwd: repo,
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(run.status, value).toBe(1);
      expect(run.stderr).toContain(`--instances must be a whole number from 1 to 8, not '${value}'.`);
    }
  });
});
