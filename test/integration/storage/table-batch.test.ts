import { randomUUID } from 'node:crypto';
import { RestError, TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { TableWriteBatcher } from '../../../shared/storage/table-batch.js';

/** A table on Azurite, with every request the batcher sends counted by kind. */
async function countedTable(lingerMs = 0, writersLeft?: (partitionKey: string) => number) {
  const client = TableClient.fromConnectionString(
    inject('storage').connectionString,
    `batch${randomUUID().replace(/-/g, '').slice(0, 12)}`,
    { allowInsecureConnection: true },
  );
  await client.createTable();
  const requests = { transactions: 0, single: 0 };
  const count = <F extends (...args: never[]) => Promise<unknown>>(f: F, kind: keyof typeof requests) =>
    ((...args: Parameters<F>) => {
      requests[kind] += 1;
      return f(...args);
    }) as F;
  client.submitTransaction = count(client.submitTransaction.bind(client), 'transactions');
  client.createEntity = count(client.createEntity.bind(client), 'single');
  client.updateEntity = count(client.updateEntity.bind(client), 'single');
  return { client, requests, batcher: new TableWriteBatcher(async () => client, lingerMs, writersLeft) };
}

describe('table write batcher (group commit)', () => {
  it('sends the writes one turn of the event loop makes to one partition as one transaction, each caller getting its ETag', async () => {
    const { client, requests, batcher } = await countedTable();
    const rows = Array.from({ length: 16 }, (_, i) => ({
      partitionKey: 'tenant-a',
      rowKey: `event-${i}`,
      state: 'claimed',
    }));
    const etags = await Promise.all(rows.map((row) => batcher.submit([['create', row]])));
    expect(requests).toEqual({ transactions: 1, single: 0 });
    // Each ETag is the entity's own: a conditional update with it succeeds.
    const [etag] = etags[3]!;
    await client.updateEntity({ partitionKey: 'tenant-a', rowKey: 'event-3', state: 'routed' }, 'Merge', { etag });
    expect((await client.getEntity<{ state: string }>('tenant-a', 'event-3')).state).toBe('routed');
  });

  it('with a linger, gathers writes that come a few milliseconds apart; without, sends them as they come', async () => {
    const write = async (batcher: TableWriteBatcher, rowKey: string, delayMs: number) => {
      await new Promise((r) => setTimeout(r, delayMs));
      return batcher.submit([['create', { partitionKey: 'p', rowKey }]]);
    };
    // A linger far longer than the writes' spacing, and writes one after another without one: on a busy
    // machine timers fire late, so neither side may depend on a few milliseconds.
    const lingering = await countedTable(500);
    await Promise.all([
      write(lingering.batcher, 'a', 0),
      write(lingering.batcher, 'b', 3),
      write(lingering.batcher, 'c', 6),
    ]);
    expect(lingering.requests).toEqual({ transactions: 1, single: 0 });
    const eager = await countedTable();
    for (const rowKey of ['a', 'b', 'c']) await write(eager.batcher, rowKey, 1);
    expect(eager.requests).toEqual({ transactions: 0, single: 3 });
  });

  it('sends a lingering batch as soon as the caller says no more writes are coming for its partition', async () => {
    // Three invocations hold claims in partition p; each write's caller counts itself out first.
    let left = 3;
    const { requests, batcher } = await countedTable(10_000, (partition) => (partition === 'p' ? left : 1));
    const write = async (rowKey: string, delayMs: number) => {
      await new Promise((r) => setTimeout(r, delayMs));
      left -= 1;
      return batcher.submit([['create', { partitionKey: 'p', rowKey }]]);
    };
    const started = performance.now();
    await Promise.all([write('a', 0), write('b', 5), write('c', 10)]);
    // Within far less than the 10 s linger, and still one transaction.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(requests).toEqual({ transactions: 1, single: 0 });
  });

  it('keeps partitions apart and writes a lone entity with a plain request', async () => {
    const { requests, batcher } = await countedTable();
    await Promise.all([
      batcher.submit([['create', { partitionKey: 'tenant-a', rowKey: '1' }]]),
      batcher.submit([['create', { partitionKey: 'tenant-a', rowKey: '2' }]]),
      batcher.submit([['create', { partitionKey: 'tenant-b', rowKey: '1' }]]),
    ]);
    expect(requests).toEqual({ transactions: 1, single: 1 });
  });

  it('gives a conflict only to the caller it belongs to; the other writes of the batch still apply', async () => {
    const { client, batcher } = await countedTable();
    await client.createEntity({ partitionKey: 'p', rowKey: 'taken' });
    const { etag: stale } = await client.upsertEntity({ partitionKey: 'p', rowKey: 'changed', v: 1 }, 'Replace');
    await client.upsertEntity({ partitionKey: 'p', rowKey: 'changed', v: 2 }, 'Replace');
    const outcomes = await Promise.allSettled([
      batcher.submit([['create', { partitionKey: 'p', rowKey: 'new-1' }]]),
      batcher.submit([['create', { partitionKey: 'p', rowKey: 'taken' }]]),
      batcher.submit([['update', { partitionKey: 'p', rowKey: 'changed', v: 3 }, 'Replace', { etag: stale }]]),
      batcher.submit([['create', { partitionKey: 'p', rowKey: 'new-2' }]]),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(((outcomes[1] as PromiseRejectedResult).reason as RestError).statusCode).toBe(409);
    expect(((outcomes[2] as PromiseRejectedResult).reason as RestError).statusCode).toBe(412);
    expect((await client.getEntity<{ v: number }>('p', 'changed')).v).toBe(2);
    for (const rowKey of ['new-1', 'new-2']) expect((await client.getEntity('p', rowKey)).rowKey).toBe(rowKey);
  });

  it("keeps a caller's own writes atomic: a group that fails applies none of them", async () => {
    const { client, batcher } = await countedTable();
    await client.createEntity({ partitionKey: 'p', rowKey: 'taken' });
    await expect(
      batcher.submit([
        ['upsert', { partitionKey: 'p', rowKey: 'side', v: 1 }, 'Replace'],
        ['create', { partitionKey: 'p', rowKey: 'taken' }],
      ]),
    ).rejects.toMatchObject({ statusCode: 409 });
    await expect(client.getEntity('p', 'side')).rejects.toMatchObject({ statusCode: 404 });
  });

  it('puts a second write to the same row in the next transaction, after the first', async () => {
    const { client, batcher } = await countedTable();
    const [created, duplicate] = await Promise.allSettled([
      batcher.submit([['create', { partitionKey: 'p', rowKey: 'same', n: 1 }]]),
      batcher.submit([['create', { partitionKey: 'p', rowKey: 'same', n: 2 }]]),
    ]);
    expect([created.status, duplicate.status].sort()).toEqual(['fulfilled', 'rejected']);
    expect((await client.getEntity('p', 'same')).rowKey).toBe('same');
  });
});
