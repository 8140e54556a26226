import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyLocalSettings, resolveAppSettings } from '../../../local/host/app-settings.js';
import { expandGlob, globToRegExp } from '../../../local/host/glob.js';
import { parseHostConfig } from '../../../local/host/host-config.js';
import { createCoreApi } from '../../../local/host/core-api.js';
import { formatTimeSpan } from '../../../local/host/invoker.js';
import {
  decodeBase64Message,
  LinearSpeedup,
  RandomizedExponentialBackoff,
} from '../../../local/host/queue-listener.js';
import { matchRoute, parseRouteTemplate } from '../../../local/host/routes.js';
import {
  checkPastDue,
  monitorsSchedule,
  NEVER,
  parseSchedule,
  type ScheduleStatus,
} from '../../../local/host/timer-trigger.js';
import { parseTimeSpan } from '../../../local/host/timespan.js';
import { localHostId } from '../../../local/host/schedule-monitor.js';

describe('route templates', () => {
  const match = (template: string, path: string) => matchRoute(parseRouteTemplate(template), path);

  it('matches literals case-insensitively and captures decoded parameters', () => {
    expect(match('Tenants/{tenantId}/incidents', 'tenants/a%20b/INCIDENTS')).toEqual({ tenantId: 'a b' });
    expect(match('tenants/{tenantId}/incidents', 'tenants/x')).toBeUndefined();
    expect(match('tenants/{tenantId}', 'tenants/x/extra')).toBeUndefined();
  });

  it('applies constraints', () => {
    expect(match('items/{id:int}', 'items/42')).toEqual({ id: '42' });
    expect(match('items/{id:int}', 'items/abc')).toBeUndefined();
    expect(match('items/{id:guid}', 'items/3f2504e0-4f89-11d3-9a0c-0305e82c3301')).toBeDefined();
    expect(match('items/{id:alpha:maxlength(3)}', 'items/abcd')).toBeUndefined();
    expect(match('items/{n:range(1,5)}', 'items/6')).toBeUndefined();
    expect(() => parseRouteTemplate('items/{id:nonsense}')).toThrow(/unsupported route constraint 'nonsense'/);
  });

  it('supports optional and catch-all parameters at the end only', () => {
    expect(match('greet/{name?}', 'greet')).toEqual({});
    expect(match('greet/{name?}', 'greet/bob')).toEqual({ name: 'bob' });
    expect(match('files/{*path}', 'files/a/b/c.txt')).toEqual({ path: 'a/b/c.txt' });
    expect(match('files/{*path}', 'files')).toEqual({});
    expect(() => parseRouteTemplate('{*rest}/x')).toThrow(/catch-all/);
    expect(() => parseRouteTemplate('{a?}/x')).toThrow(/optional/);
  });
});

describe('glob', () => {
  const dir = mkdtempSync(join(tmpdir(), 'host-glob-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const file of [
    'dist/functions/a.js',
    'dist/functions/b.js',
    'dist/functions/b.js.map',
    'dist/functions/sub/c.js',
    'dist/shared/d.js',
    'node_modules/x/e.js',
  ]) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), '');
  }

  it('* stays within a segment, ** crosses segments, node_modules is skipped', () => {
    expect(expandGlob(dir, 'dist/functions/*.js')).toEqual(['dist/functions/a.js', 'dist/functions/b.js']);
    expect(expandGlob(dir, './dist/**/*.js')).toEqual([
      'dist/functions/a.js',
      'dist/functions/b.js',
      'dist/functions/sub/c.js',
      'dist/shared/d.js',
    ]);
    expect(expandGlob(dir, '**/e.js')).toEqual([]);
    expect(globToRegExp('a/**/b.js').test('a/b.js')).toBe(true);
    expect(globToRegExp('a/?.js').test('a/xy.js')).toBe(false);
  });
});

describe('host.json and settings', () => {
  it('applies the Storage Queues extension defaults', () => {
    expect(parseHostConfig({ version: '2.0' }, { processorCount: 1, sku: undefined })).toEqual({
      routePrefix: 'api',
      functionTimeoutMs: 1_800_000,
      queues: {
        batchSize: 16,
        newBatchThreshold: 8,
        maxPollingIntervalMs: 60_000,
        visibilityTimeoutMs: 0,
        maxDequeueCount: 5,
        messageEncoding: 'base64',
      },
    });
  });

  it('defaults newBatchThreshold to (batchSize / 2) × processors, one processor on the Consumption plan', () => {
    const threshold = (queues: Record<string, unknown>, processorCount: number, sku?: string) =>
      parseHostConfig({ extensions: { queues } }, { processorCount, sku }).queues.newBatchThreshold;
    expect(threshold({}, 4)).toBe(32);
    expect(threshold({ batchSize: 32 }, 2, 'FlexConsumption')).toBe(32);
    expect(threshold({ batchSize: 5 }, 2)).toBe(4);
    expect(threshold({ batchSize: 32 }, 4, 'Dynamic')).toBe(16);
    expect(threshold({ batchSize: 32 }, 4, 'dynamic')).toBe(16);
    expect(threshold({ batchSize: 32, newBatchThreshold: 16 }, 4)).toBe(16);
  });

  it('defaults functionTimeout by plan and refuses what the plan does not allow', () => {
    const timeout = (functionTimeout: string | undefined, sku?: string) =>
      parseHostConfig({ functionTimeout }, { processorCount: 1, sku }).functionTimeoutMs;
    expect(timeout(undefined)).toBe(30 * 60_000);
    expect(timeout(undefined, 'FlexConsumption')).toBe(30 * 60_000);
    expect(timeout(undefined, 'Dynamic')).toBe(5 * 60_000);
    expect(timeout('-1')).toBeUndefined();
    expect(timeout('01:30:00', 'FlexConsumption')).toBe(90 * 60_000);
    expect(timeout('00:10:00', 'Dynamic')).toBe(10 * 60_000);
    expect(() => timeout('-1', 'Dynamic')).toThrow(
      "'functionTimeout': FunctionTimeout must be greater than 00:00:01 and less than 00:10:00.",
    );
    expect(() => timeout('00:15:00', 'Dynamic')).toThrow(/less than 00:10:00/);
    expect(() => timeout('00:00:00.5')).toThrow(/greater than 00:00:01/);
  });

  it('refuses the queue options the extension refuses at start-up', () => {
    expect(() => parseHostConfig({ extensions: { queues: { maxDequeueCount: 0 } } })).toThrow(
      "'extensions.queues.maxDequeueCount': MaxDequeueCount must not be less than 1.",
    );
    expect(() => parseHostConfig({ extensions: { queues: { batchSize: 0 } } })).toThrow(/batchSize' must be 1–32/);
    expect(() => parseHostConfig({ extensions: { queues: { maxPollingInterval: '00:00:00.05' } } })).toThrow(
      /MaxPollingInterval must not be less than 00:00:00.1000000/,
    );
    expect(
      parseHostConfig({ extensions: { queues: { maxDequeueCount: 1, maxPollingInterval: '00:00:00.1' } } }).queues,
    ).toMatchObject({ maxDequeueCount: 1, maxPollingIntervalMs: 100 });
  });

  it('reads the repository host.json options and rejects bad values', () => {
    const config = parseHostConfig(
      {
        functionTimeout: '00:10:00',
        extensions: {
          http: { routePrefix: '' },
          queues: {
            batchSize: 4,
            maxPollingInterval: '00:00:02',
            visibilityTimeout: '00:00:05',
            messageEncoding: 'None',
          },
        },
      },
      { processorCount: 1, sku: undefined },
    );
    expect(config).toMatchObject({
      routePrefix: '',
      functionTimeoutMs: 600_000,
      queues: {
        batchSize: 4,
        newBatchThreshold: 2,
        maxPollingIntervalMs: 2000,
        visibilityTimeoutMs: 5000,
        messageEncoding: 'none',
      },
    });
    expect(() => parseHostConfig({ extensions: { queues: { batchSize: 64 } } })).toThrow(/batchSize/);
    expect(() => parseHostConfig({ extensions: { queues: { visibilityTimeout: 5 } } })).toThrow(/visibilityTimeout/);
  });

  it('parses TimeSpans', () => {
    expect(parseTimeSpan('00:00:02')).toBe(2000);
    expect(parseTimeSpan('1.02:03:04.5')).toBe(((26 * 60 + 3) * 60 + 4) * 1000 + 500);
    expect(() => parseTimeSpan('2s')).toThrow(/TimeSpan/);
  });

  it('resolves %SETTING% and names a missing one', () => {
    expect(resolveAppSettings('%A%-x-%B%', 'fn', 'queueName', { A: 'one', B: 'two' })).toBe('one-x-two');
    expect(() => resolveAppSettings('%MISSING%', 'fn', 'schedule', {})).toThrow(
      "Microsoft.Azure.WebJobs.Host: Error indexing method 'Functions.fn'. Microsoft.Azure.WebJobs.Host: '%MISSING%' does not resolve to a value. ('schedule' refers to app setting 'MISSING', which is not set.)",
    );
  });

  it('copies local.settings.json Values without overriding the environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'host-settings-'));
    writeFileSync(
      join(dir, 'local.settings.json'),
      JSON.stringify({ IsEncrypted: false, Values: { A: 'file', B: 'file', C: 'file' } }),
    );
    // An empty variable counts as unset, as Core Tools treats it.
    const env: NodeJS.ProcessEnv = { A: 'env', C: '' };
    expect(applyLocalSettings(dir, env)).toEqual(['B', 'C']);
    expect(env).toEqual({ A: 'env', B: 'file', C: 'file' });
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('queue message decoding', () => {
  it('accepts strict base64 only', () => {
    expect(decodeBase64Message(Buffer.from('{"a":"é"}').toString('base64'))).toBe('{"a":"é"}');
    expect(decodeBase64Message('not base64!!')).toBeUndefined();
    expect(decodeBase64Message('abc')).toBeUndefined();
  });
});

describe('timer schedules', () => {
  it('reads six-field NCRONTAB with seconds, in UTC', () => {
    const schedule = parseSchedule('30 */5 * * * *', 'fn');
    expect(schedule.next(new Date('2026-01-01T10:02:00Z')).toISOString()).toBe('2026-01-01T10:05:30.000Z');
    expect(parseSchedule('0 0 9 * * 1-5', 'fn').next(new Date('2026-01-03T12:00:00Z')).toISOString()).toBe(
      '2026-01-05T09:00:00.000Z',
    );
  });

  it('monitors schedules that fire at most once a minute, as the extension decides', () => {
    const monitored = (expression: string) =>
      monitorsSchedule(expression, parseSchedule(expression, 'fn'), new Date('2026-01-01T10:00:30Z'));
    expect(monitored('0 */5 * * * *')).toBe(true);
    expect(monitored('0 * * * * *')).toBe(true);
    expect(monitored('*/10 * * * * *')).toBe(false);
    expect(monitored('* * * * * *')).toBe(false);
    expect(monitored('*/10 5 * * * *')).toBe(true);
    expect(monitored('00:01:00')).toBe(true);
    expect(monitored('00:00:30')).toBe(false);
  });

  describe('past due at start-up (ScheduleMonitor.CheckPastDueAsync)', () => {
    const schedule = parseSchedule('0 */5 * * * *', 'fn');
    const now = new Date('2026-01-01T10:07:00Z');
    function memoryMonitor() {
      const writes: ScheduleStatus[] = [];
      return {
        writes,
        monitor: {
          getStatus: async () => undefined,
          updateStatus: async (_name: string, status: ScheduleStatus) => void writes.push(status),
        },
      };
    }

    it("records a new timer's first occurrence and is not past due", async () => {
      const { writes, monitor } = memoryMonitor();
      const result = await checkPastDue(monitor, 'Host.Functions.fn', now, schedule, undefined);
      expect(result).toEqual({
        pastDue: false,
        status: { Last: NEVER, Next: '2026-01-01T10:10:00.000Z', LastUpdated: now.toISOString() },
      });
      expect(writes).toEqual([result.status]);
    });

    it('is past due when the recorded next occurrence has passed', async () => {
      const { writes, monitor } = memoryMonitor();
      const last = {
        Last: '2026-01-01T09:00:00.000Z',
        Next: '2026-01-01T09:05:00.000Z',
        LastUpdated: '2026-01-01T09:00:00.000Z',
      };
      expect(await checkPastDue(monitor, 'Host.Functions.fn', now, schedule, last)).toEqual({
        pastDue: true,
        status: last,
      });
      expect(writes).toEqual([]);
    });

    it('is not past due before the recorded next occurrence', async () => {
      const { monitor } = memoryMonitor();
      const last = {
        Last: '2026-01-01T10:05:00.000Z',
        Next: '2026-01-01T10:10:00.000Z',
        LastUpdated: '2026-01-01T10:05:00.000Z',
      };
      expect((await checkPastDue(monitor, 'Host.Functions.fn', now, schedule, last)).pastDue).toBe(false);
    });

    it('starts afresh, not past due, when the schedule changed since the status was written', async () => {
      const { writes, monitor } = memoryMonitor();
      // Written by an hourly schedule: the five-minute one would have had 09:05 after 09:00.
      const last = {
        Last: '2026-01-01T09:00:00.000Z',
        Next: '2026-01-01T10:00:00.000Z',
        LastUpdated: '2026-01-01T09:00:00.000Z',
      };
      const result = await checkPastDue(monitor, 'Host.Functions.fn', now, schedule, last);
      expect(result).toEqual({
        pastDue: false,
        status: { Last: NEVER, Next: '2026-01-01T10:10:00.000Z', LastUpdated: now.toISOString() },
      });
      expect(writes).toEqual([result.status]);
    });
  });

  it('names the host as the real host does when run locally: machine name and a hash of the app folder', () => {
    // .NET's unchecked int arithmetic, computed independently with BigInt.
    const dotnetHash = (text: string) =>
      [...text].reduce((h, c) => BigInt.asIntN(32, h * 31n + BigInt(c.charCodeAt(0))), 23n);
    expect(dotnetHash('ab')).toBe(25208n);
    const path = '/home/soc/defender-relay-with-a-long-folder-name/dist';
    expect(localHostId(path, {}, 'SOC-Laptop_07.corp')).toBe(
      `soclaptop07corp-${(dotnetHash(path) < 0n ? -dotnetHash(path) : dotnetHash(path)).toString()}`.slice(0, 32),
    );
    expect(localHostId('/app', {}, 'a-very-long-machine-name-that-fills-it')).toBe('averylongmachinenamethatfillsit'); // cut at 32, the trailing '-' trimmed
    expect(localHostId('/app', { AzureFunctionsWebHost__hostid: 'relay-prod' }, 'x')).toBe('relay-prod');
  });

  it('reads TimeSpan intervals and refuses nonsense naming the function', () => {
    expect(parseSchedule('00:00:10', 'fn').next(new Date(0)).getTime()).toBe(10_000);
    expect(() => parseSchedule('every minute', 'tick')).toThrow(/Function 'tick'/);
    expect(() => parseSchedule('99 * * * * *', 'tick')).toThrow(/Function 'tick': invalid NCRONTAB/);
  });
});

describe('the timeout log line', () => {
  // .NET's TimeSpan.ToString() ("c" format), which FunctionExecutor writes into
  // "Timeout value of {timeout} exceeded by function '…' (Id: '…'). Initiating cancellation."
  it('writes the timeout as TimeSpan.ToString() does: days and a 7-digit fraction only when not zero', () => {
    expect(formatTimeSpan(10 * 60_000)).toBe('00:10:00');
    expect(formatTimeSpan(2_500)).toBe('00:00:02.5000000');
    expect(formatTimeSpan(26 * 3_600_000)).toBe('1.02:00:00');
    expect(formatTimeSpan(0.5)).toBe('00:00:00.0005000');
  });
});

describe('function registration, as the Node worker keeps it', () => {
  const http = { name: 'hello', bindings: { req: { type: 'httpTrigger', direction: 'in' as const } } };
  it("refuses a second function with the same id (the name when no functionId is given), in the worker's words", () => {
    const { api } = createCoreApi();
    api.registerFunction(http, () => undefined);
    expect(() => api.registerFunction(http, () => undefined)).toThrow(
      'A function with id "hello" has already been registered.',
    );
    expect(() => api.registerFunction({ ...http, functionId: 'hello-2' }, () => undefined)).not.toThrow();
  });

  it('refuses registering or disposing a function once the host has asked for the metadata', () => {
    const { api, registry } = createCoreApi();
    const registered = api.registerFunction(http, () => undefined);
    registry.lockIndexing();
    expect(() => api.registerFunction({ ...http, name: 'late' }, () => undefined)).toThrow(
      'A function can only be registered during app startup.',
    );
    expect(() => registered.dispose()).toThrow('A function can only be disposed during app startup.');
    expect([...registry.functions.keys()]).toEqual(['hello']);
  });
});

describe("the queue listener's back-off on an empty queue", () => {
  // RandomizedExponentialBackoffStrategy as the Storage extension creates it: minimum 100 ms, delta = minimum.
  it('waits min + r·2^(n-1)·min with r in [0.8, 1.2), up to the maximum, and the minimum again after messages', () => {
    const middle = new RandomizedExponentialBackoff(100, 2_000, () => 0.5);
    expect([1, 2, 3, 4, 5, 6, 7].map(() => middle.nextDelay(false))).toEqual([100, 200, 300, 500, 900, 1_700, 2_000]);
    expect(middle.nextDelay(false)).toBe(2_000);
    expect(middle.nextDelay(true)).toBe(100);
    expect(middle.nextDelay(false)).toBe(200);
    const low = new RandomizedExponentialBackoff(100, 60_000, () => 0);
    const high = new RandomizedExponentialBackoff(100, 60_000, () => 0.999_999);
    expect([1, 2, 3].map(() => low.nextDelay(false))).toEqual([100, 180, 260]);
    expect([1, 2, 3].map(() => Math.round(high.nextDelay(false)))).toEqual([100, 220, 340]);
  });
});

describe("the queue listener's lease renewal", () => {
  // LinearSpeedupStrategy as QueueListener.cs creates it: every half lease (5 minutes), 1 minute at the least.
  it('renews every half lease, halves the wait after each failed renewal down to a minute, and goes back after a success', () => {
    const schedule = new LinearSpeedup(300_000, 60_000);
    expect([false, false, false, false].map((ok) => schedule.nextDelay(ok))).toEqual([150_000, 75_000, 60_000, 60_000]);
    expect(schedule.nextDelay(true)).toBe(300_000);
  });
});
