import { afterEach, describe, expect, it, vi } from 'vitest';
import { PermanentError, RetryableError } from '../../../shared/errors.js';
import { ApiCaller, apiOf, retryAfterHeader, type ApiService } from '../../../shared/sources/api-call.js';
import { CallBudget } from '../../../shared/sources/call-budget.js';
import type { Tenant } from '../../../shared/tenants/tenants.js';

/** The call loop both API clients share (shared/sources/api-call.ts), with fetch stubbed. */

const tenant = { tenantId: 't1', displayName: 'T1' } as Tenant;

function tokenSource() {
  const asked: string[] = [];
  const invalidated: string[] = [];
  return {
    asked,
    invalidated,
    getToken: async (t: Tenant) => {
      asked.push(t.tenantId);
      return `token-${asked.length}`;
    },
    invalidate: (t: Tenant) => void invalidated.push(t.tenantId),
  };
}

/** A service of the test's: error bodies `{"error": {"code", "message"}}`, every API one budget name. */
function service(recorded: number[] = []): ApiService {
  return {
    name: 'Test API',
    headers: { prefer: 'x' },
    budgetApi: () => 'all',
    parseError: (text) => {
      try {
        const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
        return { code: body.error?.code, message: body.error?.message };
      } catch {
        return { message: text || undefined };
      }
    },
    retryAfterMs: (headers, _error, now) => retryAfterHeader(headers.get('retry-after'), now),
    trace: (_tenantId, _api, call) => call(() => undefined),
    record: (_tenantId, status) => void recorded.push(status),
  };
}

function callerWith(answers: (() => Response)[], options: { maxRetries?: number } = {}) {
  const fetch = vi.fn(async () => answers.shift()!());
  vi.stubGlobal('fetch', fetch);
  const tokens = tokenSource();
  const slept: number[] = [];
  const recorded: number[] = [];
  const caller = new ApiCaller(service(recorded), 'https://api.example/base', tokens, {
    budget: new CallBudget({ perMinute: 100, perHour: 1000 }),
    sleep: async (ms) => void slept.push(ms),
    random: () => 0,
    ...options,
  });
  return { caller, fetch, tokens, slept, recorded };
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), { status, headers });
const call = (path = '/base/items', operation = 'listItems') => ({
  operation,
  method: 'GET' as const,
  url: new URL(`https://api.example${path}`),
});

afterEach(() => vi.unstubAllGlobals());

describe('ApiCaller', () => {
  it('refuses a URL on another origin before asking for a token or sending anything', async () => {
    const { caller, fetch, tokens } = callerWith([]);
    for (const url of [
      'https://evil.example/base/items',
      'http://api.example/base/items',
      'https://api.example:8443/x',
    ]) {
      const err = await caller
        .send(tenant, { operation: 'listItems', method: 'GET', url: new URL(url) })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as Error).message).toMatch(
        /^Refused to send the tenant's token to .*: Test API is https:\/\/api\.example \(tenant t1, listItems\)$/,
      );
    }
    expect(tokens.asked).toEqual([]);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("sends the service's headers with the token, which they cannot replace, and counts each attempt", async () => {
    const { caller, fetch, recorded } = callerWith([json(503, {}), json(200, { ok: true })]);
    expect(await caller.send(tenant, { ...call(), method: 'POST', body: { a: 1 } })).toEqual({ ok: true });
    const [url, init] = fetch.mock.calls[0] as unknown as [URL, RequestInit];
    expect(String(url)).toBe('https://api.example/base/items');
    expect(init.headers).toEqual({
      prefer: 'x',
      authorization: 'Bearer token-1',
      accept: 'application/json',
      'content-type': 'application/json',
    });
    expect(init.body).toBe('{"a":1}');
    expect(recorded).toEqual([503, 200]);
    expect(caller.calls.get('t1')).toBe(2);
  });

  it('backs off exponentially with jitter, capped, and gives up after maxRetries naming the service, tenant and call', async () => {
    const { caller, slept } = callerWith(Array.from({ length: 5 }, () => json(500, {})));
    const err = (await caller.send(tenant, call()).catch((e: unknown) => e)) as RetryableError;
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toBe('Test API failed (500) (tenant t1, listItems)');
    expect(slept).toEqual([250, 500, 1_000, 2_000]);
  });

  it('renews the token once on 401, then gives up with the service code', async () => {
    const unauthorized = json(401, { error: { code: 'InvalidToken', message: 'expired' } });
    const { caller, tokens } = callerWith([unauthorized, json(200, { ok: 1 }), unauthorized, unauthorized]);
    expect(await caller.send(tenant, call())).toEqual({ ok: 1 });
    expect(tokens.invalidated).toEqual(['t1']);
    const err = (await caller.send(tenant, call()).catch((e: unknown) => e)) as PermanentError;
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toBe('Test API refused the token (401): expired (tenant t1, listItems)');
    expect(err).toMatchObject({ status: 401, code: 'InvalidToken' });
    expect(tokens.invalidated).toEqual(['t1', 't1']);
  });

  it('words permanent refusals with what the service said, and without a dangling colon when it said nothing', async () => {
    const { caller } = callerWith([
      json(403, { error: { code: 'Forbidden', message: 'Missing role.' } }),
      () => new Response('', { status: 400 }),
      json(404, { error: { message: 'No such item.' } }),
    ]);
    const messages: string[] = [];
    for (let i = 0; i < 3; i++)
      messages.push(((await caller.send(tenant, call()).catch((e: unknown) => e)) as Error).message);
    expect(messages).toEqual([
      'Test API denied the call (403), a permission is missing: Forbidden Missing role. (tenant t1, listItems)',
      'Test API rejected the call (400) (tenant t1, listItems)',
      'Test API rejected the call (404): No such item. (tenant t1, listItems)',
    ]);
  });

  it('gives views per budget class that share the call counters', async () => {
    const { caller } = callerWith([json(200, {}), json(200, {})]);
    const push = caller.withBudgetClass('push');
    expect(push.budgetClass).toBe('push');
    expect(push.budget).toBe(caller.budget);
    expect(push.settings).toEqual(caller.settings);
    await push.send(tenant, call());
    await caller.send(tenant, call());
    expect(push.calls).toBe(caller.calls);
    expect(caller.calls.get('t1')).toBe(2);
  });
});

describe('retryAfterHeader', () => {
  it('reads seconds or an HTTP date, never a negative wait, and nothing from anything else', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(retryAfterHeader('7', now)).toBe(7_000);
    expect(retryAfterHeader('0.5', now)).toBe(500);
    expect(retryAfterHeader('-3', now)).toBe(0);
    expect(retryAfterHeader('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterHeader('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    expect(retryAfterHeader('soon', now)).toBeUndefined();
    expect(retryAfterHeader('', now)).toBeUndefined();
    expect(retryAfterHeader(null, now)).toBeUndefined();
  });

  it("knows an operation's API by its first word", () => {
    expect(apiOf('getIncident 42')).toBe('getIncident');
    expect(apiOf('listIncidents')).toBe('listIncidents');
  });
});
