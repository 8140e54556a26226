import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyLocalSettings, resolveAppSettings } from '../../local/host/app-settings.js';
import { expandGlob, globToRegExp } from '../../local/host/glob.js';
import { parseHostConfig } from '../../local/host/host-config.js';
import { decodeBase64Message } from '../../local/host/queue-listener.js';
import { compareRoutePrecedence, matchRoute, parseRouteTemplate } from '../../local/host/routes.js';
import { parseSchedule } from '../../local/host/timer-trigger.js';
import { parseTimeSpan } from '../../local/host/timespan.js';

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

  it('prefers literal over constrained over plain over catch-all', () => {
    const routes = ['items/{*rest}', 'items/{name}', 'items/{id:int}', 'items/new'].map(parseRouteTemplate);
    expect(routes.sort(compareRoutePrecedence).map((r) => r.template)).toEqual(['items/new', 'items/{id:int}', 'items/{name}', 'items/{*rest}']);
  });
});

describe('glob', () => {
  const dir = mkdtempSync(join(tmpdir(), 'host-glob-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const file of ['dist/functions/a.js', 'dist/functions/b.js', 'dist/functions/b.js.map', 'dist/functions/sub/c.js', 'dist/shared/d.js', 'node_modules/x/e.js']) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), '');
  }

  it('* stays within a segment, ** crosses segments, node_modules is skipped', () => {
    expect(expandGlob(dir, 'dist/functions/*.js')).toEqual(['dist/functions/a.js', 'dist/functions/b.js']);
    expect(expandGlob(dir, './dist/**/*.js')).toEqual(['dist/functions/a.js', 'dist/functions/b.js', 'dist/functions/sub/c.js', 'dist/shared/d.js']);
    expect(expandGlob(dir, '**/e.js')).toEqual([]);
    expect(globToRegExp('a/**/b.js').test('a/b.js')).toBe(true);
    expect(globToRegExp('a/?.js').test('a/xy.js')).toBe(false);
  });
});

describe('host.json and settings', () => {
  it('applies the Storage Queues extension defaults', () => {
    expect(parseHostConfig({ version: '2.0' }, { processorCount: 1, sku: undefined })).toEqual({
      routePrefix: 'api',
      functionTimeoutMs: 300_000,
      queues: { batchSize: 16, newBatchThreshold: 8, maxPollingIntervalMs: 60_000, visibilityTimeoutMs: 0, maxDequeueCount: 5, messageEncoding: 'base64' },
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

  it('refuses the queue options the extension refuses at start-up', () => {
    expect(() => parseHostConfig({ extensions: { queues: { maxDequeueCount: 0 } } })).toThrow("'extensions.queues.maxDequeueCount': MaxDequeueCount must not be less than 1.");
    expect(() => parseHostConfig({ extensions: { queues: { batchSize: 0 } } })).toThrow(/batchSize' must be 1–32/);
    expect(() => parseHostConfig({ extensions: { queues: { maxPollingInterval: '00:00:00.05' } } })).toThrow(/MaxPollingInterval must not be less than 00:00:00.1000000/);
    expect(parseHostConfig({ extensions: { queues: { maxDequeueCount: 1, maxPollingInterval: '00:00:00.1' } } }).queues).toMatchObject({ maxDequeueCount: 1, maxPollingIntervalMs: 100 });
  });

  it('reads the repository host.json options and rejects bad values', () => {
    const config = parseHostConfig({
      functionTimeout: '00:10:00',
      extensions: { http: { routePrefix: '' }, queues: { batchSize: 4, maxPollingInterval: '00:00:02', visibilityTimeout: '00:00:05', messageEncoding: 'None' } },
    }, { processorCount: 1, sku: undefined });
    expect(config).toMatchObject({ routePrefix: '', functionTimeoutMs: 600_000, queues: { batchSize: 4, newBatchThreshold: 2, maxPollingIntervalMs: 2000, visibilityTimeoutMs: 5000, messageEncoding: 'none' } });
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
    expect(() => resolveAppSettings('%MISSING%', 'fn', 'schedule', {})).toThrow("Function 'fn': 'schedule' refers to app setting 'MISSING' (%MISSING%), which is not set.");
  });

  it('copies local.settings.json Values without overriding the environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'host-settings-'));
    writeFileSync(join(dir, 'local.settings.json'), JSON.stringify({ IsEncrypted: false, Values: { A: 'file', B: 'file' } }));
    const env: NodeJS.ProcessEnv = { A: 'env' };
    expect(applyLocalSettings(dir, env)).toEqual(['B']);
    expect(env).toEqual({ A: 'env', B: 'file' });
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
    expect(parseSchedule('0 0 9 * * 1-5', 'fn').next(new Date('2026-01-03T12:00:00Z')).toISOString()).toBe('2026-01-05T09:00:00.000Z');
  });

  it('reads TimeSpan intervals and refuses nonsense naming the function', () => {
    expect(parseSchedule('00:00:10', 'fn').next(new Date(0)).getTime()).toBe(10_000);
    expect(() => parseSchedule('every minute', 'tick')).toThrow(/Function 'tick'/);
    expect(() => parseSchedule('99 * * * * *', 'tick')).toThrow(/Function 'tick': invalid NCRONTAB/);
  });
});
