import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ResultsReader, queueClient, spawnHost, uniqueName, type HostProcess } from '../fixtures/host-app/harness.js';

interface Recorded {
  kind: string;
  message?: unknown;
  timer?: { schedule: { adjustForDST: boolean }; scheduleStatus: { last: string; next: string; lastUpdated: string }; isPastDue: boolean };
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
  // Every second, but each run takes 1.5 s: occurrences that pass while it runs must be skipped.
  host = await spawnHost({ env: { ...env, FIXTURE_SCHEDULE: '*/1 * * * * *', FIXTURE_TIMER_SLEEP_MS: '1500' } });
});
afterAll(async () => {
  await host?.stop();
});

describe('local host: timer triggers', () => {
  it('fires on an NCRONTAB schedule with seconds and passes the TimerInfo shape', async () => {
    await results.waitFor(() => timerRuns().length >= 3, 15_000);
    const [first, second, third] = timerRuns();
    expect(first!.timer).toEqual({
      schedule: { adjustForDST: true },
      scheduleStatus: { last: '0001-01-01T00:00:00', next: expect.stringMatching(/\.000Z$/), lastUpdated: '0001-01-01T00:00:00' },
      isPastDue: false,
    });
    // Each run reports the previous occurrence as `last`, and `next` is a whole second after its own occurrence.
    expect(Date.parse(second!.timer!.scheduleStatus.last)).toBe(Date.parse(first!.timer!.scheduleStatus.next) - 1000);
    expect(Date.parse(third!.timer!.scheduleStatus.last) % 1000).toBe(0);
    await host.waitForLine(/Executing 'Functions\.tick' \(Reason='Timer fired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z', Id=[0-9a-f-]+\)/);
  });

  it('never overlaps itself: the next run starts after the previous one finished', async () => {
    await results.waitFor(() => timerRuns().length >= 3, 15_000);
    const runs = timerRuns();
    for (let i = 1; i < runs.length; i++) {
      expect(runs[i]!.startedAt).toBeGreaterThanOrEqual(runs[i - 1]!.finishedAt);
      // The occurrence due during the 1.5 s run was skipped, not queued: the next run starts on the
      // following whole second (2 s after the previous start), not right after the previous run.
      expect(runs[i]!.startedAt - runs[i - 1]!.startedAt).toBeGreaterThanOrEqual(1900);
      expect(runs[i]!.startedAt % 1000).toBeLessThan(400);
    }
  });

  it('runs a timer or a queue function now through the admin API', async () => {
    const after = host.lines.length;
    const timerResponse = await fetch(`${host.url}/admin/functions/tick`, { method: 'POST', body: JSON.stringify({ input: '' }), headers: { 'content-type': 'application/json' } });
    expect(timerResponse.status).toBe(202);
    await host.waitForLine(/Executing 'Functions\.tick' \(Reason='This function was programmatically called via the host APIs\.'/, { after, timeoutMs: 10_000 });

    const queueResponse = await fetch(`${host.url}/admin/functions/recordMessage`, { method: 'POST', body: JSON.stringify({ input: '{"tag":"admin"}' }) });
    expect(queueResponse.status).toBe(202);
    await results.waitFor((entries) => entries.some((e) => e.kind === 'queue'));
    expect(results.entries.find((e) => e.kind === 'queue')).toMatchObject({ message: { tag: 'admin' } });
  });

  it('runs once at start-up with runOnStartup', async () => {
    const startupResults = uniqueName('host-timer-startup');
    const reader = new ResultsReader<Recorded>(queueClient(storage.connectionString, startupResults));
    await queueClient(storage.connectionString, startupResults).create();
    const started = Date.now();
    const onStartup = await spawnHost({ env: { ...env, FIXTURE_RESULTS_QUEUE: startupResults, FIXTURE_SCHEDULE: '0 0 0 1 1 *', FIXTURE_RUN_ON_STARTUP: 'true' } });
    try {
      await reader.waitFor((entries) => entries.length === 1, 10_000);
      expect(reader.entries[0]!.startedAt - started).toBeLessThan(8_000);
      expect(reader.entries[0]!.timer).toMatchObject({ isPastDue: false, scheduleStatus: { next: expect.stringMatching(/-01-01T00:00:00\.000Z$/) } });
    } finally {
      await onStartup.stop();
    }
  });
});
