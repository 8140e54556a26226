import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  ResultsReader,
  base64,
  queueClient,
  spawnHost,
  uniqueName,
  type HostProcess,
} from '../../fixtures/host-app/harness.js';

/**
 * The app runs in a worker process of its own, as in Azure: a function that outlives functionTimeout
 * gets the 2 s grace period, then its worker is restarted (ending the handler) before the trigger
 * sees the failure; a worker that dies is restarted, and the third death in a row stops the host.
 * The fixture's host.json sets functionTimeout 3 s and the queue's visibilityTimeout 2 s.
 */
const storage = inject('storage');
const TIMEOUT_MS = 3_000;
const GRACE_MS = 2_000;
const VISIBILITY_TIMEOUT_MS = 2_000;

interface Recorded {
  kind: string;
  message: { tag?: string } | null;
  dequeueCount: number;
  at: number;
}

function env(queue: string, results: string): Record<string, string> {
  return {
    AzureWebJobsStorage: storage.connectionString,
    FIXTURE_QUEUE: queue,
    FIXTURE_RESULTS_QUEUE: results,
    FIXTURE_SCHEDULE: '0 0 0 1 1 *',
    FIXTURE_ROUTE: 'fixture',
  };
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const linesAfter = (host: HostProcess, after: number) => host.lines.slice(after);
const worker = async (host: HostProcess) =>
  (await (await fetch(`${host.url}/api/worker`)).json()) as { pid: number; appStarts: number };

describe('local host: function timeouts end the worker, as in Azure', () => {
  const inputName = uniqueName('host-w');
  const resultsName = uniqueName('host-w-results');
  const results = new ResultsReader<Recorded>(queueClient(storage.connectionString, resultsName));
  let host: HostProcess;
  beforeAll(async () => {
    await queueClient(storage.connectionString, resultsName).create();
    // The host does not create its trigger queue (as in Azure).
    await queueClient(storage.connectionString, inputName).create();
    host = await spawnHost({ env: env(inputName, resultsName) });
  });
  afterAll(async () => {
    await host?.stop();
  });

  it('answers a timed-out HTTP call 500 only after the grace period and a worker restart, and the handler never finishes', async () => {
    const before = await worker(host);
    expect(before.pid).not.toBe(host.child.pid);
    const after = host.lines.length;
    const started = Date.now();
    const response = await fetch(`${host.url}/api/slow?ms=8000`);
    expect(response.status).toBe(500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS + GRACE_MS - 100);

    const lines = linesAfter(host, after);
    const executing = lines.find((l) => l.includes("Executing 'Functions.slow'"))!;
    const invocationId = /Id=([0-9a-f-]+)/.exec(executing)![1];
    const order = [
      lines.findIndex((l) =>
        l.includes(
          `[error] Timeout value of 00:00:03 exceeded by function 'Functions.slow' (Id: '${invocationId}'). Initiating cancellation.`,
        ),
      ),
      lines.findIndex((l) => l.includes(`Executed 'Functions.slow' (Failed, Id=${invocationId}`)),
      lines.findIndex((l) =>
        l.includes(
          `[warning] A function timeout has occurred. Restarting worker process executing invocationId '${invocationId}'.`,
        ),
      ),
      lines.findIndex((l) => l.includes('[warning] Restart of language worker process(es) completed.')),
    ];
    expect(order.every((index) => index >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);

    // A new worker process, which loaded the app and ran its appStart hooks afresh.
    const now = await worker(host);
    expect(now.pid).not.toBe(before.pid);
    expect(now.appStarts).toBe(1);
    // The old handler was ended with its process: it never logs that it finished.
    await sleep(Math.max(0, started + 8_500 - Date.now()));
    expect(host.lines.some((l) => l.includes('fixture slow finished: 8000'))).toBe(false);
  });

  it('does not restart the worker when the handler finishes within the grace period, though the call still fails', async () => {
    const before = await worker(host);
    const after = host.lines.length;
    const started = Date.now();
    const response = await fetch(`${host.url}/api/slow?ms=4000`);
    expect(response.status).toBe(500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_000 - 100);
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + GRACE_MS);
    expect(linesAfter(host, after).some((l) => l.includes('fixture slow finished: 4000'))).toBe(true);
    expect(linesAfter(host, after).some((l) => l.includes('Restarting worker process'))).toBe(false);
    expect((await worker(host)).pid).toBe(before.pid);
  });

  it('releases a timed-out queue message only after grace, restart and visibilityTimeout; the first run never finishes', async () => {
    const tag = uniqueName('timeout');
    await queueClient(storage.connectionString, inputName).sendMessage(
      base64(JSON.stringify({ tag, firstRunSleepMs: 8_000 })),
    );
    const runs = () => results.entries.filter((e) => e.message?.tag === tag);
    await results.waitFor(() => runs().some((e) => e.kind === 'queue' && e.dequeueCount === 2), 30_000);
    const [first, second] = runs().filter((e) => e.kind === 'queue');
    expect(first!.dequeueCount).toBe(1);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(TIMEOUT_MS + GRACE_MS + VISIBILITY_TIMEOUT_MS - 200);
    // Past the moment the first run's sleep would have ended, it has recorded nothing more.
    await sleep(Math.max(0, first!.at + 9_000 - Date.now()));
    await results.drain();
    expect(runs().filter((e) => e.kind === 'queue-finished')).toEqual([]);
    expect(await queueClient(storage.connectionString, inputName).peekMessages()).toMatchObject({
      peekedMessageItems: [],
    });
  });
});

describe('local host: a worker that dies is restarted, three times at most', () => {
  let host: HostProcess;
  beforeAll(async () => {
    host = await spawnHost({ env: env(uniqueName('host-crash'), uniqueName('host-crash-results')) });
  });
  afterAll(async () => {
    await host?.stop();
  });

  it('fails what the worker was running, logs why, restarts it, and stops the host at the third death', async () => {
    for (let death = 1; death <= 2; death += 1) {
      const before = await worker(host);
      const after = host.lines.length;
      const started = Date.now();
      expect((await fetch(`${host.url}/api/crash`)).status).toBe(500);
      // Failed as the process died, not at the function's timeout.
      expect(Date.now() - started).toBeLessThan(TIMEOUT_MS);
      const lines = linesAfter(host, after);
      expect(
        lines.some((l) =>
          l.includes(
            '[error] Worker uncaught exception (learn more: https://go.microsoft.com/fwlink/?linkid=2097909 ): Error: fixture crash on purpose',
          ),
        ),
      ).toBe(true);
      expect(
        lines.some((l) =>
          l.includes(`[error] Language Worker Process exited. Pid=${before.pid}. node exited with code 1 (0x1)`),
        ),
      ).toBe(true);
      expect(lines.some((l) => l.includes("Executed 'Functions.crash' (Failed"))).toBe(true);
      // The next call waits for the new worker and runs there.
      const now = await worker(host);
      expect(now.pid).not.toBe(before.pid);
      expect(now.appStarts).toBe(1);
    }
    expect((await fetch(`${host.url}/api/crash`)).status).toBe(500);
    await host.waitForLine(
      /Exceeded language worker restart retry count for runtime:node\. Shutting down and proactively recycling the Functions Host to recover/,
    );
    expect(await host.stop()).toBe(1);
  });
});

describe('local host: Ctrl-C', () => {
  it('reaches the worker too, yet the host finishes in-flight work, runs appTerminate in the worker and exits 0', async () => {
    const host = await spawnHost({ env: env(uniqueName('host-int'), uniqueName('host-int-results')), detached: true });
    try {
      const call = fetch(`${host.url}/api/slow?ms=1500`);
      await host.waitForLine(/Executing 'Functions\.slow'/);
      // A terminal sends SIGINT to its whole foreground process group: the host and its worker.
      process.kill(-host.child.pid!, 'SIGINT');
      const response = await call;
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('done');
      expect(await host.stop()).toBe(0);
      expect(host.lines.some((l) => l.includes('fixture appTerminate hook ran: startedBy=appStart'))).toBe(true);
      expect(host.lines.some((l) => l.includes('Language Worker Process exited'))).toBe(false);
    } finally {
      await host.stop();
    }
  });
});
