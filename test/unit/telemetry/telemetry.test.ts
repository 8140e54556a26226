import { randomUUID } from 'node:crypto';
import type { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/config/config.js';
import { failureCategory, PermanentError, RetryableError } from '../../../shared/errors.js';
import { envelopeFor, envelopeSchema } from '../../../shared/messages/events.js';
import { recordEventSkipped, recordKeyVaultRead } from '../../../shared/telemetry/metrics.js';
import { MONITORED_QUEUES, queueDepthReader } from '../../../shared/storage/queues.js';
import { telemetrySettings } from '../../../shared/telemetry/telemetry.js';
import { DIMENSIONS, METRICS } from '../../../shared/telemetry/telemetry-names.js';
import { installTestTelemetry, pointsOf, type TestTelemetry } from '../../support/telemetry.js';

const IKEY = '1b1b1b1b-2c2c-4d4d-8e8e-9f9f9f9f9f9f';
const CLIENT_ID = '3c3c3c3c-4d4d-4e4e-8f8f-a0a0a0a0a0a0';

describe('telemetry settings (APPLICATIONINSIGHTS_CONNECTION_STRING, APPLICATIONINSIGHTS_AUTHENTICATION_STRING)', () => {
  const settings = (env: Record<string, string>) => telemetrySettings(env);
  const problemsOf = (env: Record<string, string>) => {
    try {
      settings(env);
      return [];
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems;
    }
  };

  it('is off without a connection string', () => {
    expect(settings({})).toBeUndefined();
    expect(settings({ APPLICATIONINSIGHTS_CONNECTION_STRING: '  ' })).toBeUndefined();
  });

  it("reads Azure's connection string and the managed identity to authenticate with", () => {
    const connectionString = `InstrumentationKey=${IKEY};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/`;
    expect(
      settings({
        APPLICATIONINSIGHTS_CONNECTION_STRING: connectionString,
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `ClientId=${CLIENT_ID};Authorization=AAD`,
      }),
    ).toEqual({ connectionString, entra: { clientId: CLIENT_ID }, local: false });
    expect(
      settings({
        APPLICATIONINSIGHTS_CONNECTION_STRING: connectionString,
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'authorization=aad',
      }),
    ).toMatchObject({ entra: { clientId: undefined } });
    expect(settings({ APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${IKEY}` })).toEqual({
      connectionString: `InstrumentationKey=${IKEY}`,
      entra: undefined,
      local: false,
    });
  });

  it('knows an ingestion endpoint on this machine (a local stand-in) as local', () => {
    for (const endpoint of [
      'https://localhost:8443/',
      'https://127.0.0.1:1/',
      'http://127.0.0.1:9',
      'https://[::1]:443',
    ])
      expect(
        settings({ APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${IKEY};IngestionEndpoint=${endpoint}` }),
      ).toMatchObject({ local: true });
    expect(
      settings({
        APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${IKEY};IngestionEndpoint=https://localhost.example.com/`,
      }),
    ).toMatchObject({ local: false });
  });

  it('refuses a malformed setting by name, never echoing its value', () => {
    const secretish = `not-a-key-${randomUUID()}`;
    const problems = problemsOf({
      APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${secretish};IngestionEndpoint=http://dc.example.com/`,
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `ClientId=${secretish};Authorization=AAD`,
    });
    expect(problems).toEqual([
      expect.stringMatching(/^APPLICATIONINSIGHTS_CONNECTION_STRING must hold InstrumentationKey=<GUID>/),
      'APPLICATIONINSIGHTS_CONNECTION_STRING: IngestionEndpoint must be an https:// URL',
      expect.stringMatching(/^APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be Authorization=AAD/),
    ]);
    expect(problems.join('\n')).not.toContain(secretish);
    expect(
      problemsOf({
        APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${IKEY}`,
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=Basic',
      }),
    ).toHaveLength(1);
  });
});

describe('trace context in the event envelope (W3C traceparent, tracestate)', () => {
  const envelope = envelopeFor(randomUUID(), { incidentId: 7, lastUpdateTime: '2026-12-01T10:00:00Z' }, 'poll');
  const traceparent = `00-${'4bf92f3577b34da6a3ce929d0e0e4736'}-${'00f067aa0ba902b7'}-01`;
  const parsed = (fields: Record<string, unknown>) => {
    const result = envelopeSchema.safeParse({ ...envelope, ...fields });
    expect(result.success).toBe(true);
    return result.data!;
  };

  it('keeps a valid one, and an envelope without one stays valid', () => {
    expect(parsed({})).not.toHaveProperty('traceparent');
    expect(
      parsed({ traceparent, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7, tenant@vendor=x' }),
    ).toMatchObject({ traceparent, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7, tenant@vendor=x' });
  });

  it('drops what is not exactly W3C, without refusing the event', () => {
    for (const hostile of [
      traceparent.toUpperCase(),
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`,
      `ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`,
      `01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra`,
      `${traceparent}\r\nX-Injected: 1`,
      ` ${traceparent}`,
      42,
      { traceId: 'x' },
    ])
      expect(parsed({ traceparent: hostile }).traceparent).toBeUndefined();
    for (const hostile of [
      'x'.repeat(513),
      Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','),
      'Upper=case',
      'key=value with = sign',
      'key=',
      'key=a,,other=b',
      'key=a\nother=b',
      ['key=a'],
    ])
      expect(parsed({ traceparent, tracestate: hostile })).toEqual(
        expect.objectContaining({ traceparent, tracestate: undefined }),
      );
  });
});

describe('failure categories (a dimension or attribute, never the message)', () => {
  it('names throttling, timeouts, busy events, other retryable and permanent failures', () => {
    expect(failureCategory(new RetryableError('x', { status: 429 }))).toBe('throttled');
    expect(failureCategory(Object.assign(new RetryableError('x'), { name: 'BudgetSpentError' }))).toBe('throttled');
    expect(failureCategory(Object.assign(new RetryableError('x'), { name: 'ClientTimeoutError' }))).toBe('timeout');
    expect(failureCategory(new RetryableError('x', { code: 'Timeout' }))).toBe('timeout');
    expect(failureCategory(Object.assign(new RetryableError('x'), { name: 'EventBusy' }))).toBe('busy');
    expect(failureCategory(new RetryableError('x', { status: 503 }))).toBe('unavailable');
    expect(failureCategory(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe('unavailable');
    expect(failureCategory(new PermanentError('x', { status: 403 }))).toBe('permanent');
    expect(failureCategory(new Error('anything else'))).toBe('permanent');
  });
});

describe('queue depth reader', () => {
  function fakeQueues(depths: Record<string, number | Error>) {
    const reads: string[] = [];
    const client = {
      getQueueClient: (name: string) => ({
        getProperties: async () => {
          reads.push(name);
          const depth = depths[name];
          if (depth instanceof Error) throw depth;
          if (depth === undefined) throw Object.assign(new Error('QueueNotFound'), { statusCode: 404 });
          return { approximateMessagesCount: depth };
        },
      }),
    } as unknown as QueueServiceClient;
    return { client, reads };
  }

  it("watches the app's queues and where their failures go", () => {
    expect(MONITORED_QUEUES).toEqual([
      'incidents',
      'incidents-poison',
      'incidents-deadletter',
      'poll-requests',
      'poll-requests-poison',
      'poll-requests-deadletter',
    ]);
  });

  it('reads each queue once per interval however often it is asked, a missing queue as empty, an unreadable one not at all', async () => {
    let now = 1_000_000;
    const { client, reads } = fakeQueues({
      incidents: 12,
      'incidents-poison': Object.assign(new Error('server busy'), { statusCode: 503 }),
    });
    const read = queueDepthReader(client, ['incidents', 'incidents-poison', 'incidents-deadletter'], 30_000, () => now);
    const expected = new Map([
      ['incidents', 12],
      ['incidents-deadletter', 0],
    ]);
    expect(await read()).toEqual(expected);
    now += 29_999;
    expect(await read()).toEqual(expected);
    expect(reads).toHaveLength(3);
    now += 1;
    await read();
    expect(reads).toHaveLength(6);
  });
});

describe('metric dimensions', () => {
  let telemetry: TestTelemetry;
  beforeAll(() => void (telemetry = installTestTelemetry()));
  afterAll(() => telemetry.uninstall());
  beforeEach(() => telemetry.reset());

  it('is a tenant id in lower case, and anything else one value, whatever a message holds', async () => {
    const tenantId = randomUUID();
    recordEventSkipped(tenantId.toUpperCase(), 'duplicate');
    recordEventSkipped('<script>alert(1)</script>', 'duplicate');
    recordEventSkipped(`${tenantId} OR 1=1`, 'echo');
    const points = await telemetry.collect();
    expect(pointsOf(points, METRICS.eventsSkipped).map((p) => p.attributes)).toEqual([
      { [DIMENSIONS.tenant]: tenantId, [DIMENSIONS.reason]: 'duplicate' },
      { [DIMENSIONS.tenant]: 'invalid', [DIMENSIONS.reason]: 'duplicate' },
      { [DIMENSIONS.tenant]: 'invalid', [DIMENSIONS.reason]: 'echo' },
    ]);
  });

  it('starts again on a meter provider registered later (the SDK starts after the app is loaded)', async () => {
    recordKeyVaultRead(true);
    telemetry.reset();
    recordKeyVaultRead(false);
    expect(pointsOf(await telemetry.collect(), METRICS.keyVaultRequests).map((p) => [p.attributes, p.value])).toEqual([
      [{ [DIMENSIONS.outcome]: 'failure' }, 1],
    ]);
  });
});
