import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  ResultsReader,
  queueClient,
  spawnHost,
  uniqueName,
  type HostProcess,
} from '../../fixtures/host-app/harness.js';

interface Recorded {
  kind: string;
  message?: unknown;
  timer?: {
    schedule: { adjustForDST: boolean };
    scheduleStatus: { last: string; next: string; lastUpdated: string } | null;
    isPastDue: boolean;
  };
  startedAt: number;
  finishedAt: number;
}

const storage = inject('storage');
const resultsQueueName = uniqueName('host-timer-results');
const resultsQueue = queueClient(storage.connectionString, resultsQueueName);
const results = new ResultsReader<Recorded>(resultsQueue);
const timerRuns = () => results.entries.filter((e) => e.kind === 'timer');
const env = {
  AzureWebJobsStorage: storage.connectionString,
  FIXTURE_QUEUE: uniqueName('host-timer-in'),
  FIXTURE_RESULTS_QUEUE: resultsQueueName,
  FIXTURE_ROUTE: 'fixture',
};

let host: HostProcess;
beforeAll(async () => {
  await resultsQueue.create();
  // Every second, but each run takes 1.5 s: the occurrence that passes while it runs fires as soon as it ends.
  host = await spawnHost({
    env: {
      ...env,
      FIXTURE_SCHEDULE: '*/1 * * * * *',
      FIXTURE_TIMER_SLEEP_MS: '1500',
      AzureFunctionsWebHost__hostid: uniqueName('timer-host'),
    },
  });
});
afterAll(async () => {
  await host?.stop();
});

/** The status blob the real host keeps for a timer: azure-webjobs-hosts/timers/{hostId}/Host.Functions.{name}/status. */
function statusBlob(hostId: string, functionName = 'tick') {
  return BlobServiceClient.fromConnectionString(storage.connectionString)
    .getContainerClient('azure-webjobs-hosts')
    .getBlockBlobClient(`timers/${hostId}/Host.Functions.${functionName}/status`);
}
async function readStatus(hostId: string): Promise<{ Last: string; Next: string; LastUpdated: string } | undefined> {
  try {
    return JSON.parse((await statusBlob(hostId).downloadToBuffer()).toString('utf8')) as {
      Last: string;
      Next: string;
      LastUpdated: string;
    };
  } catch {
    return undefined;
  }
}
async function writeStatus(hostId: string, status: { Last: string; Next: string; LastUpdated: string }): Promise<void> {
  await BlobServiceClient.fromConnectionString(storage.connectionString)
    .getContainerClient('azure-webjobs-hosts')
    .createIfNotExists();
  const body = JSON.stringify(status);
  await statusBlob(hostId).upload(body, body.length);
}

/** Starts a host whose timer runs every five minutes (monitored) with its own host id and results queue. */
async function fiveMinuteHost(hostId: string, extra: Record<string, string> = {}) {
  const queueName = uniqueName('host-timer-monitored');
  await queueClient(storage.connectionString, queueName).create();
  const reader = new ResultsReader<Recorded>(queueClient(storage.connectionString, queueName));
  const process = await spawnHost({
    env: {
      ...env,
      FIXTURE_RESULTS_QUEUE: queueName,
      FIXTURE_SCHEDULE: '0 */5 * * * *',
      AzureFunctionsWebHost__hostid: hostId,
      ...extra,
    },
  });
  return { process, reader };
}

const fiveMinutes = 5 * 60_000;
const nextFiveMinuteMark = (t: number) => Math.floor(t / fiveMinutes) * fiveMinutes + fiveMinutes;
/** These tests must not straddle a five-minute mark, where the schedule itself would fire. */
async function clearOfFiveMinuteMark(): Promise<void> {
  const untilMark = nextFiveMinuteMark(Date.now()) - Date.now();
  if (untilMark < 20_000) await new Promise((r) => setTimeout(r, untilMark + 1_000));
}

describe('local host: timer triggers', () => {
  it('fires on an NCRONTAB schedule with seconds and passes the TimerInfo shape (no status for a sub-minute schedule)', async () => {
    await results.waitFor(() => timerRuns().length >= 2, 15_000);
    const [first] = timerRuns();
    // The extension turns UseMonitor off for schedules that fire more than once a minute.
    expect(first!.timer).toEqual({ schedule: { adjustForDST: true }, scheduleStatus: null, isPastDue: false });
    await host.waitForLine(
      /Executing 'Functions\.tick' \(Reason='Timer fired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', Id=[0-9a-f-]+\)/,
    );
  });

  it('never overlaps itself, and an occurrence that passed during a run fires as soon as the run ends', async () => {
    await results.waitFor(() => timerRuns().length >= 3, 15_000);
    const runs = timerRuns();
    for (let i = 1; i < runs.length; i++) {
      expect(runs[i]!.startedAt).toBeGreaterThanOrEqual(runs[i - 1]!.finishedAt);
      // The next occurrence is computed from when the run started (TimerListener.InvokeJobFunction), so
      // the one due during the 1.5 s run is already past when it ends: it fires at once, not a second later.
      expect(runs[i]!.startedAt - runs[i - 1]!.finishedAt).toBeLessThan(500);
    }
  });

  it('runs a timer or a queue function now through the admin API', async () => {
    const after = host.lines.length;
    const timerResponse = await fetch(`${host.url}/admin/functions/tick`, {
      method: 'POST',
      body: JSON.stringify({ input: '' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(timerResponse.status).toBe(202);
    await host.waitForLine(
      /Executing 'Functions\.tick' \(Reason='This function was programmatically called via the host APIs\.'/,
      { after, timeoutMs: 10_000 },
    );

    const queueResponse = await fetch(`${host.url}/admin/functions/recordMessage`, {
      method: 'POST',
      body: JSON.stringify({ input: '{"tag":"admin"}' }),
    });
    expect(queueResponse.status).toBe(202);
    await results.waitFor((entries) => entries.some((e) => e.kind === 'queue'));
    expect(results.entries.find((e) => e.kind === 'queue')).toMatchObject({ message: { tag: 'admin' } });
  });

  it('runs once at start-up with runOnStartup, with the status the real host keeps in Blob storage', async () => {
    await clearOfFiveMinuteMark();
    const hostId = uniqueName('timer-startup');
    const started = Date.now();
    const { process: onStartup, reader } = await fiveMinuteHost(hostId, { FIXTURE_RUN_ON_STARTUP: 'true' });
    try {
      await reader.waitFor((entries) => entries.length === 1, 10_000);
      expect(reader.entries[0]!.startedAt - started).toBeLessThan(8_000);
      // A new timer: its first occurrence was recorded at start-up, before this run.
      expect(reader.entries[0]!.timer).toEqual({
        schedule: { adjustForDST: true },
        scheduleStatus: {
          last: '0001-01-01T00:00:00',
          next: new Date(nextFiveMinuteMark(started)).toISOString(),
          lastUpdated: expect.any(String),
        },
        isPastDue: false,
      });
      // After the run: Last is when it ran, Next the following occurrence.
      await expect
        .poll(async () => (await readStatus(hostId))?.Last, { timeout: 5_000 })
        .not.toBe('0001-01-01T00:00:00');
      const status = (await readStatus(hostId))!;
      expect(Date.parse(status.Last)).toBeGreaterThanOrEqual(started);
      expect(status.Next).toBe(new Date(nextFiveMinuteMark(Date.parse(status.Last))).toISOString());
    } finally {
      await onStartup.stop();
    }
  });

  it('runs an occurrence missed while the app was stopped at once, with isPastDue, and records the run', async () => {
    await clearOfFiveMinuteMark();
    const hostId = uniqueName('timer-pastdue');
    // Last ran an hour ago; the occurrence five minutes later never ran.
    const last = nextFiveMinuteMark(Date.now() - 3_600_000);
    const missed = {
      Last: new Date(last).toISOString(),
      Next: new Date(last + fiveMinutes).toISOString(),
      LastUpdated: new Date(last).toISOString(),
    };
    await writeStatus(hostId, missed);
    const started = Date.now();
    const { process: restarted, reader } = await fiveMinuteHost(hostId);
    try {
      await reader.waitFor((entries) => entries.length === 1, 10_000);
      expect(reader.entries[0]!.startedAt - started).toBeLessThan(8_000);
      expect(reader.entries[0]!.timer).toEqual({
        schedule: { adjustForDST: true },
        scheduleStatus: { last: missed.Last, next: missed.Next, lastUpdated: missed.LastUpdated },
        isPastDue: true,
      });
      await restarted.waitForLine(/Function 'Functions\.tick' is past due on startup\. Executing now\./);
      await expect.poll(async () => (await readStatus(hostId))?.Last, { timeout: 5_000 }).not.toBe(missed.Last);
      expect((await readStatus(hostId))!.Next).toBe(
        new Date(nextFiveMinuteMark(Date.parse((await readStatus(hostId))!.Last))).toISOString(),
      );
    } finally {
      await restarted.stop();
    }
    // Started again before the next occurrence: nothing is past due, nothing runs.
    const { process: again, reader: quiet } = await fiveMinuteHost(hostId);
    try {
      await new Promise((r) => setTimeout(r, 2_000));
      expect(await quiet.waitFor(() => true)).toEqual([]);
    } finally {
      await again.stop();
    }
  });
});
