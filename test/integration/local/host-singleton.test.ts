import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseSingletonOptions } from '../../../local/host/host-config.js';
import { queueClient, spawnHost, uniqueName, type HostProcess } from '../../fixtures/host-app/harness.js';

/**
 * The timer's singleton lock across instances of one app (one host id) on one storage account: the
 * fixture's host.json shortens the listener lock period and the recovery interval to the least the
 * real host allows (15 s each), through the real host's `singleton` section.
 */
const storage = inject('storage');
const hostId = uniqueName('singleton');
const lockId = `${hostId}/Host.Functions.tick.Listener`;
const hostsContainer = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(
  'azure-webjobs-hosts',
);
const lockBlob = hostsContainer.getBlockBlobClient(`locks/${lockId}`);
const resultsQueueName = uniqueName('host-singleton-results');
const env = {
  AzureWebJobsStorage: storage.connectionString,
  AzureFunctionsWebHost__hostid: hostId,
  FIXTURE_QUEUE: uniqueName('host-singleton-in'),
  FIXTURE_RESULTS_QUEUE: resultsQueueName,
  FIXTURE_ROUTE: 'fixture',
  // Every second: a timer that ran on two instances would show at once.
  FIXTURE_SCHEDULE: '*/1 * * * * *',
};
const LOCK_PERIOD_MS = 15_000;
const RECOVERY_INTERVAL_MS = 15_000;
/** Start-up, a storage round trip and the log line on a busy machine. */
const SLACK_MS = 3_000;

const escaped = lockId.replace(/[.\\/]/g, '\\$&');
/** When each scheduled run of 'tick' started and ended, from the host's own log lines ("[<ISO>] Executing …"). */
function runsOf(host: HostProcess): { started: number[]; finished: number[] } {
  const at = (pattern: RegExp) =>
    host.lines.filter((l) => pattern.test(l)).map((l) => Date.parse(/^\[([^\]]+)\]/.exec(l)![1]!));
  return {
    started: at(/Executing 'Functions\.tick' \(Reason='Timer fired at /),
    finished: at(/Executed 'Functions\.tick' \(/),
  };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const hosts: HostProcess[] = [];
async function startInstance(): Promise<HostProcess> {
  const host = await spawnHost({ env });
  hosts.push(host);
  return host;
}
/** Waits for the first scheduled run on any of `candidates`; returns the instance running it. */
async function firstRunOn(
  candidates: HostProcess[],
  timeoutMs = LOCK_PERIOD_MS + RECOVERY_INTERVAL_MS + SLACK_MS,
): Promise<HostProcess> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) {
    const running = candidates.find((h) => runsOf(h).started.length > 0);
    if (running) return running;
  }
  throw new Error(`No instance ran the timer within ${timeoutMs} ms`);
}
/** The one instance running the timer, checking that no other runs it. */
function holderAmong(candidates: HostProcess[]): HostProcess {
  const running = candidates.filter((h) => runsOf(h).started.length > 0);
  expect(running).toHaveLength(1);
  return running[0]!;
}

describe('local host: a timer runs on one instance of the app at a time (singleton listener lock)', () => {
  let a: HostProcess;
  let b: HostProcess;
  /** The instance holding the lock, as each test leaves it. */
  let holder: HostProcess;

  beforeAll(async () => {
    await queueClient(storage.connectionString, resultsQueueName).create();
    // Another instance (here the test, as an Azure host of the same id would) holds the lock blob's lease.
    await hostsContainer.createIfNotExists();
    await lockBlob.upload('', 0);
    await lockBlob.getBlobLeaseClient('00000000-0000-0000-0000-00000000a2e0').acquireLease(LOCK_PERIOD_MS / 1000);
    [a, b] = await Promise.all([startInstance(), startInstance()]);
  }, 60_000);

  afterAll(async () => {
    for (const host of hosts) host.child.kill('SIGCONT');
    await Promise.all(hosts.map((h) => h.stop('SIGKILL')));
  });

  it('respects a lease another instance holds on locks/{hostId}/Host.Functions.tick.Listener, and takes it within the recovery interval once released', async () => {
    for (const host of [a, b])
      await host.waitForLine(new RegExp(`\\[debug\\] Unable to acquire Singleton lock \\(${escaped}\\)\\.`));
    await sleep(2_000);
    expect([...runsOf(a).started, ...runsOf(b).started]).toEqual([]);

    const released = Date.now();
    await lockBlob.getBlobLeaseClient('00000000-0000-0000-0000-00000000a2e0').releaseLease();
    await firstRunOn([a, b]);
    const takeover = Date.now() - released;
    expect(takeover).toBeLessThan(RECOVERY_INTERVAL_MS + SLACK_MS);
    await sleep(3_000);
    holder = holderAmong([a, b]);
    expect(runsOf(holder).started.length).toBeGreaterThanOrEqual(2);
    await holder.waitForLine(new RegExp(`\\[debug\\] Singleton lock acquired \\(${escaped}\\)`));
    const properties = await lockBlob.getProperties();
    expect({ state: properties.leaseState, duration: properties.leaseDuration }).toEqual({
      state: 'leased',
      duration: 'fixed',
    });
    console.log(`singleton: taken over ${takeover} ms after the lease was released`);
  }, 40_000);

  it('hands over when the holder stops (SIGTERM releases the lease): never on both at once', async () => {
    const stopping = holder;
    const other = holder === a ? b : a;
    const stopped = Date.now();
    expect(await stopping.stop('SIGTERM')).toBe(0);
    expect(stopping.lines).toContainEqual(expect.stringContaining(`[debug] Singleton lock released (${lockId})`));
    holder = await firstRunOn([other]);
    const takeover = Date.now() - stopped;
    expect(takeover).toBeLessThan(RECOVERY_INTERVAL_MS + SLACK_MS);
    // The holder's last run had ended (its listener stopped before the lease was released) when the other's first began.
    expect(Math.max(...runsOf(stopping).finished)).toBeLessThanOrEqual(Math.min(...runsOf(other).started));
    console.log(`singleton: taken over ${takeover} ms after SIGTERM`);
  }, 40_000);

  it('takes over from a holder killed with SIGKILL once its lease lapses: within the lock period and one recovery interval', async () => {
    const c = await startInstance();
    await c.waitForLine(/Unable to acquire Singleton lock/);
    const killed = Date.now();
    await holder.stop('SIGKILL');
    holder = await firstRunOn([c]);
    const takeover = Date.now() - killed;
    // The lease was renewed at most half a lock period before the kill: it outlived the holder by at least that.
    expect(takeover).toBeGreaterThanOrEqual(LOCK_PERIOD_MS / 2 - 500);
    expect(takeover).toBeLessThan(LOCK_PERIOD_MS + RECOVERY_INTERVAL_MS + SLACK_MS);
    console.log(`singleton: taken over ${takeover} ms after SIGKILL`);
  }, 60_000);

  it('shuts down a host whose lease another took while it was frozen: its renewal fails with 409, as the real host logs it', async () => {
    const frozen = holder;
    const d = await startInstance();
    await d.waitForLine(/Unable to acquire Singleton lock/);
    frozen.child.kill('SIGSTOP');
    holder = await firstRunOn([d]);
    const after = frozen.lines.length;
    frozen.child.kill('SIGCONT');
    const renewalFailed = await frozen.waitForLine(
      new RegExp(
        `\\[error\\] Singleton lock renewal failed for blob '${escaped}' with error code 409: \\w+\\. The last successful renewal completed at \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d{1,3})?Z \\(-?\\d+ milliseconds ago\\) with a duration of \\d+ milliseconds\\. The lease period was 15000 milliseconds\\.`,
      ),
      { after },
    );
    await frozen.waitForLine(/\[error\] An unhandled exception has occurred\. Host is shutting down\./, { after });
    expect(await frozen.stop()).toBe(1);
    console.log(`singleton: ${renewalFailed.replace(/^\[[^\]]+\] /, '')}`);
    // The instance that took over goes on.
    const runs = runsOf(d).started.length;
    await sleep(1_500);
    expect(runsOf(d).started.length).toBeGreaterThan(runs);
  }, 60_000);
});

describe('host.json singleton (SingletonOptions)', () => {
  it('defaults as SingletonOptions does, with the 15 s listener lock of the Development environment', () => {
    expect(parseSingletonOptions({}, {})).toEqual({
      lockPeriodMs: 15_000,
      listenerLockPeriodMs: 60_000,
      lockAcquisitionTimeoutMs: Number.POSITIVE_INFINITY,
      lockAcquisitionPollingIntervalMs: 5_000,
      listenerLockRecoveryPollingIntervalMs: 60_000,
    });
    expect(parseSingletonOptions({}, { azureFunctionsEnvironment: 'Development' }).listenerLockPeriodMs).toBe(15_000);
    expect(
      parseSingletonOptions(
        {
          singleton: {
            listenerLockPeriod: '00:00:30',
            listenerLockRecoveryPollingInterval: '10675199.02:48:05.4775807',
          },
        },
        {},
      ),
    ).toMatchObject({ listenerLockPeriodMs: 30_000, listenerLockRecoveryPollingIntervalMs: Number.POSITIVE_INFINITY });
  });

  it('refuses what SingletonOptions refuses: lease periods outside 15–60 s, a recovery interval under 15 s, polling under 500 ms', () => {
    expect(() => parseSingletonOptions({ singleton: { listenerLockPeriod: '00:00:10' } }, {})).toThrow(
      /'singleton\.listenerLockPeriod' must be from 00:00:15 to 00:01:00/,
    );
    expect(() => parseSingletonOptions({ singleton: { lockPeriod: '00:01:01' } }, {})).toThrow(
      /'singleton\.lockPeriod'/,
    );
    expect(() => parseSingletonOptions({ singleton: { listenerLockRecoveryPollingInterval: '00:00:14' } }, {})).toThrow(
      /at least 00:00:15/,
    );
    expect(() => parseSingletonOptions({ singleton: { lockAcquisitionPollingInterval: '00:00:00.4' } }, {})).toThrow(
      /at least 00:00:00\.5/,
    );
  });
});
