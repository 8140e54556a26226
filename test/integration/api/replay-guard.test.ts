import { randomBytes, randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ReplayGuard } from '../../../shared/api/replay-guard.js';
import { startThrottlingStorage, type ThrottlingStorage } from '../../support/throttling-storage.js';

/**
 * The replay guard against Azurite, each test on a table of its own: several instances (guards) on one
 * table race as the app's instances do, and Storage's refusals come from the throttling pass-through
 * (429, which the SDK does not retry without Retry-After), so the guard meets the SDK's own RestError.
 */
describe('replay guard (Table storage)', () => {
  const WINDOW = 300;
  let storage: ThrottlingStorage;
  beforeAll(async () => {
    storage = await startThrottlingStorage(inject('storage').connectionString);
  });
  afterAll(async () => {
    await storage?.close();
  });

  const newTableName = () => `replay${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const tableOf = (name: string) =>
    TableClient.fromConnectionString(storage.connectionString, name, { allowInsecureConnection: true });
  /** Storage refuses (429) writes of this table's rows (`POST` inserts, `DELETE`s) until the next call. */
  const refuseRows = (name: string, method: 'POST' | 'DELETE') =>
    storage.throttle(
      (r) => r.service === 'table' && r.method === method && r.path.startsWith(`/devstoreaccount1/${name}`),
    );
  const refuseCreateTable = () =>
    storage.throttle((r) => r.service === 'table' && r.method === 'POST' && r.path === '/devstoreaccount1/Tables');
  const refuseNothing = () => storage.throttle(() => false);
  const rowsOf = async (name: string) => {
    const rows: { partitionKey?: string }[] = [];
    for await (const row of tableOf(name).listEntities()) rows.push(row);
    return rows;
  };

  /** An instance's guard on `name`, whose clock the test sets. */
  function instance(name: string, clock: { nowMs: number }, windowSeconds = WINDOW) {
    return new ReplayGuard(tableOf(name), { windowSeconds, now: () => clock.nowMs });
  }

  it('accepts a signature once across instances racing on a new table', async () => {
    const name = newTableName();
    const clock = { nowMs: Date.now() };
    const [a, b] = [instance(name, clock), instance(name, clock)];
    const signature = randomBytes(32);
    const t = Math.floor(clock.nowMs / 1000);
    // Both create the table and insert the same row at once: one wins, the other sees a replay.
    expect((await Promise.all([a.remember(signature, t), b.remember(signature, t)])).sort()).toEqual([false, true]);
    expect(await a.remember(signature, t)).toBe(false);
    expect(await b.remember(randomBytes(32), t)).toBe(true);
  });

  it('reports a storage failure as an error, not as a replay: the request was not recorded and its retry is accepted', async () => {
    const name = newTableName();
    const guard = instance(name, { nowMs: Date.now() });
    const t = Math.floor(Date.now() / 1000);
    expect(await guard.remember(randomBytes(32), t)).toBe(true); // the table exists

    const signature = randomBytes(32);
    refuseRows(name, 'POST');
    try {
      await expect(guard.remember(signature, t)).rejects.toMatchObject({ statusCode: 429 });
    } finally {
      refuseNothing();
    }
    expect(await guard.remember(signature, t)).toBe(true);
    expect(await guard.remember(signature, t)).toBe(false);
  });

  it('creates its table again on the next request after Storage refused to', async () => {
    const name = newTableName();
    const guard = instance(name, { nowMs: Date.now() });
    const signature = randomBytes(32);
    const t = Math.floor(Date.now() / 1000);
    refuseCreateTable();
    try {
      await expect(guard.remember(signature, t)).rejects.toMatchObject({ statusCode: 429 });
    } finally {
      refuseNothing();
    }
    expect(await guard.remember(signature, t)).toBe(true);
    expect(await guard.remember(signature, t)).toBe(false);
  });

  it('forgets a signature so the identical retry is accepted, also when another instance forgot it first; a refused forget is reported', async () => {
    const name = newTableName();
    const clock = { nowMs: Date.now() };
    const [a, b] = [instance(name, clock), instance(name, clock)];
    const signature = randomBytes(32);
    const t = Math.floor(clock.nowMs / 1000);
    expect(await a.remember(signature, t)).toBe(true);
    await a.forget(signature, t);
    await b.forget(signature, t); // the row is already gone (404): nothing to do
    expect(await b.remember(signature, t)).toBe(true);

    // Storage refuses the delete: the signature is still remembered, and the caller is told.
    refuseRows(name, 'DELETE');
    try {
      await expect(a.forget(signature, t)).rejects.toMatchObject({ statusCode: 429 });
    } finally {
      refuseNothing();
    }
    expect(await a.remember(signature, t)).toBe(false);
  });

  it('prunes at most 200 expired rows a pass, never a row whose timestamp is still acceptable', async () => {
    const name = newTableName();
    const startMs = Date.now();
    const clock = { nowMs: startMs };
    const guard = instance(name, clock);
    const signedAt = Math.floor(startMs / 1000);
    const expired = Array.from({ length: 201 }, () => randomBytes(32));
    for (let i = 0; i < expired.length; i += 25) {
      expect(new Set(await Promise.all(expired.slice(i, i + 25).map((s) => guard.remember(s, signedAt))))).toEqual(
        new Set([true]),
      );
    }

    clock.nowMs = startMs + 601_000; // the first rows' timestamps are past the tolerance
    const live = randomBytes(32);
    const liveAt = Math.floor(clock.nowMs / 1000);
    expect(await guard.remember(live, liveAt)).toBe(true);
    expect(await guard.pruneExpired()).toBe(200);
    expect(await rowsOf(name)).toHaveLength(2); // one expired row left for the next pass, and the live one

    clock.nowMs += WINDOW * 1000; // the next pass, a window later; the live row is still within the tolerance
    expect(await guard.pruneExpired()).toBe(1);
    expect(await rowsOf(name)).toHaveLength(1);
    expect(await guard.remember(live, liveAt)).toBe(false);
  });

  it('prunes on two instances at once without either failing on rows the other deleted', async () => {
    const name = newTableName();
    const startMs = Date.now();
    const clock = { nowMs: startMs };
    const [a, b] = [instance(name, clock), instance(name, clock)];
    const signedAt = Math.floor(startMs / 1000);
    await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).remember(randomBytes(32), signedAt)));

    clock.nowMs = startMs + 601_000;
    const live = randomBytes(32);
    expect(await a.remember(live, Math.floor(clock.nowMs / 1000))).toBe(true);
    // Both list the same expired rows and delete them in the same order: one finds rows already gone (404).
    const passes = await Promise.allSettled([a.pruneExpired(), b.pruneExpired()]);
    expect(passes.map((p) => p.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(await rowsOf(name)).toHaveLength(1);
    expect(await b.remember(live, Math.floor(clock.nowMs / 1000))).toBe(false);
  });

  it('reports a pass Storage refuses (the push logs it) and leaves the rows for the next pass', async () => {
    const name = newTableName();
    const startMs = Date.now();
    const clock = { nowMs: startMs };
    const guard = instance(name, clock);
    const signedAt = Math.floor(startMs / 1000);
    await Promise.all(Array.from({ length: 3 }, () => guard.remember(randomBytes(32), signedAt)));

    clock.nowMs = startMs + 601_000;
    refuseRows(name, 'DELETE');
    try {
      await expect(guard.pruneExpired()).rejects.toMatchObject({ statusCode: 429 });
    } finally {
      refuseNothing();
    }
    expect(await rowsOf(name)).toHaveLength(3);
    clock.nowMs += WINDOW * 1000;
    expect(await guard.pruneExpired()).toBe(3);
    expect(await rowsOf(name)).toEqual([]);
  });

  it('prunes at most once a window per instance: the pushes in between cost no Storage request, and rows expired meanwhile wait for the next pass', async () => {
    const name = newTableName();
    // Timestamps in seconds, from the start of a window.
    const k = Math.floor(Date.now() / 1000 / WINDOW);
    const clock = { nowMs: k * WINDOW * 1000 };
    const guard = instance(name, clock);
    const [old, edge] = [randomBytes(32), randomBytes(32)];
    expect(await guard.remember(old, (k - 1) * WINDOW)).toBe(true);
    expect(await guard.remember(edge, k * WINDOW + 1)).toBe(true);

    clock.nowMs = (k * WINDOW + WINDOW + 1) * 1000; // `edge` is exactly as old as the tolerance: still acceptable
    expect(await guard.pruneExpired()).toBe(1);
    expect(await guard.remember(edge, k * WINDOW + 1)).toBe(false);

    // A second short of a window later, `edge`'s whole window has expired too; but the last pass was less than a window ago.
    clock.nowMs += (WINDOW - 1) * 1000;
    storage.throttle((r) => r.service === 'table' && r.path.startsWith(`/devstoreaccount1/${name}`));
    try {
      expect(await guard.pruneExpired()).toBe(0);
    } finally {
      refuseNothing();
    }
    expect(await rowsOf(name)).toHaveLength(1);

    clock.nowMs += 1_000; // a window after the last pass
    expect(await guard.pruneExpired()).toBe(1);
    expect(await rowsOf(name)).toEqual([]);
  });

  // Partition keys are compared as text: were they not all as long, window 1000000 would sort before
  // 999999 and the pass would delete the newest rows, forgetting signatures whose timestamps are still accepted.
  it.each([
    [1800, 1_000_000, 'January 2027'],
    [300, 10_000_000, 'January 2065'],
    [1000, 1_000_000, 'September 2001'],
  ])(
    'never forgets a signature still acceptable when the window number gains a digit (%i s tolerance, window %i, %s)',
    async (windowSeconds, window, _when) => {
      const name = newTableName();
      const boundary = window * windowSeconds; // the first second of the window with one digit more
      const nowSeconds = boundary + windowSeconds / 2;
      const clock = { nowMs: nowSeconds * 1000 };
      const guard = instance(name, clock, windowSeconds);
      const expired = { signature: randomBytes(32), at: boundary - 2 * windowSeconds };
      const oldestAcceptable = { signature: randomBytes(32), at: nowSeconds - windowSeconds };
      const justSigned = { signature: randomBytes(32), at: nowSeconds };
      for (const { signature, at } of [expired, oldestAcceptable, justSigned])
        expect(await guard.remember(signature, at)).toBe(true);

      expect(await guard.pruneExpired()).toBe(1);
      // Replays of the two still acceptable are refused; the expired one's row is gone.
      expect(await guard.remember(justSigned.signature, justSigned.at)).toBe(false);
      expect(await guard.remember(oldestAcceptable.signature, oldestAcceptable.at)).toBe(false);
      expect(await rowsOf(name)).toHaveLength(2);
    },
  );
});
