import { randomUUID } from 'node:crypto';
import { AzureNamedKeyCredential, TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { describe, expect, inject, it } from 'vitest';
import { deadLetter, deadLetterQueueOf, poisonQueueOf } from '../../../shared/messages/dead-letter.js';
import { ClaimLostError, DeliveryLog, type ClaimResult } from '../../../shared/route/delivery-log.js';
import { encodeMessage, MessageSender } from '../../../shared/storage/queues.js';
import { replayIncidents, replayRequestSchema } from '../../../shared/route/replay.js';
import { drainQueue } from '../../support/queues.js';
import { startThrottlingStorage } from '../../support/throttling-storage.js';

const unique = (prefix: string) => `${prefix}${randomUUID().replace(/-/g, '').slice(0, 12)}`;

function storage() {
  const cs = inject('storage').connectionString;
  return { queues: QueueServiceClient.fromConnectionString(cs), blobs: BlobServiceClient.fromConnectionString(cs), cs };
}

const drain = drainQueue;

describe('replay of dead-lettered and poisoned events', () => {
  it('moves everything back, or only what the filter selects, and reports the counts', async () => {
    const { queues, blobs } = storage();
    const target = unique('incidents');
    const sender = new MessageSender(queues, async () => blobs);
    const [a, b] = [randomUUID(), randomUUID()];
    await deadLetter(sender, target, { eventId: `${a}:1:t`, tenantId: a }, 'rule "x" names unknown destination "y"');
    await deadLetter(sender, target, { eventId: `${b}:2:t`, tenantId: b }, 'invalid envelope: schema');
    const poison = queues.getQueueClient(poisonQueueOf(target));
    await poison.createIfNotExists();
    await poison.sendMessage(encodeMessage({ eventId: `${a}:3:t`, tenantId: a }));

    const onlyA = await replayIncidents(replayRequestSchema.parse({ tenantId: a }), queues, target);
    expect(onlyA).toEqual({ moved: 2, skipped: 1, bySource: { deadletter: 1, poison: 1 }, refused: [] });
    expect(((await drain(queues, target)) as { eventId: string }[]).map((e) => e.eventId).sort()).toEqual([
      `${a}:1:t`,
      `${a}:3:t`,
    ]);

    // The skipped dead letter is still there, visible, and a reason filter finds it.
    const byReason = await replayIncidents(
      replayRequestSchema.parse({ source: 'deadletter', reasonContains: 'invalid envelope' }),
      queues,
      target,
    );
    expect(byReason.moved).toBe(1);
    expect(await drain(queues, target)).toEqual([{ eventId: `${b}:2:t`, tenantId: b }]);
    expect(await drain(queues, deadLetterQueueOf(target))).toEqual([]);
  });

  it('leaves a message too deep for the enricher where it is, naming its event id and why', async () => {
    const { queues } = storage();
    const target = unique('incidents');
    const poison = queues.getQueueClient(poisonQueueOf(target));
    await poison.createIfNotExists();
    const tenantId = randomUUID();
    // 3,500 levels: what the Functions library's conversion of a trigger payload cannot take (and JSON.stringify barely can).
    const deep = `{"eventId":"${tenantId}:7:t","tenantId":"${tenantId}","incident":{"incidentId":7,"x":${'['.repeat(3_500)}${']'.repeat(3_500)}}}`;
    await poison.sendMessage(Buffer.from(deep).toString('base64'));
    await poison.sendMessage(encodeMessage({ eventId: `${tenantId}:8:t`, tenantId }));

    const result = await replayIncidents(replayRequestSchema.parse({ source: 'poison' }), queues, target);
    expect(result.moved).toBe(1);
    expect(result.refused).toEqual([
      {
        eventId: `${tenantId}:7:t`,
        reason: expect.stringMatching(/^structure: incident\.x(\.0)+: nested deeper than 36 levels$/),
      },
    ]);
    expect(((await drain(queues, target)) as { eventId: string }[]).map((e) => e.eventId)).toEqual([`${tenantId}:8:t`]);
    expect((await poison.peekMessages()).peekedMessageItems).toHaveLength(1);
  });

  it('validates the request', () => {
    expect(replayRequestSchema.safeParse({ source: 'everything' }).success).toBe(false);
    expect(replayRequestSchema.safeParse({ tenantId: 'x' }).success).toBe(false);
    expect(replayRequestSchema.safeParse({ surprise: 1 }).success).toBe(false);
    expect(replayRequestSchema.parse({})).toEqual({ source: 'all', max: 1000 });
  });
});

describe('delivery log', () => {
  const newLogOn = (table: string) =>
    new DeliveryLog(TableClient.fromConnectionString(storage().cs, table, { allowInsecureConnection: true }));
  const newLog = () => newLogOn(unique('deliveries'));
  const claimOf = (result: ClaimResult) => {
    if (result.status !== 'claimed') throw new Error(`expected a claim, got ${result.status}`);
    return result.claim;
  };

  it('keeps the destinations served across a released claim, and the routed event for good', async () => {
    const log = newLog();
    const eventId = `${randomUUID()}:924565:2020-09-06T14:46:57.2900000Z`;
    const first = claimOf(await log.claim(eventId));
    expect(first.delivered).toEqual(new Set());
    await log.recordDelivery(first, 'soc-queue');
    await log.recordDelivery(first, 'soc-queue');
    expect(await log.isRouted(eventId)).toBe(false);
    await log.release(first); // a retryable failure after the first destination

    const retry = claimOf(await log.claim(eventId));
    expect(retry.delivered).toEqual(new Set(['soc-queue']));
    await log.complete(retry, ['high-to-soc'], { delivered: ['teams'] });
    expect(await log.isRouted(eventId)).toBe(true);
    expect(await log.claim(eventId)).toEqual({ status: 'routed' });
  });

  it('records the incident fingerprint with the commit, in the tenant partition whatever the case of its id', async () => {
    const log = newLog();
    const tenantId = randomUUID();
    const claim = claimOf(await log.claim(`${tenantId.toUpperCase()}:7:2020-09-06T14:46:57.2900000Z`));
    await log.complete(claim, ['default'], { fingerprint: { incidentId: 7, value: 'abc' } });
    expect(await log.lastRoutedFingerprint(tenantId, 7)).toBe('abc');
    expect(await log.lastRoutedFingerprint(tenantId, 8)).toBeUndefined();
  });

  it('routes an event whose id names no tenant once, like any other, and says so when its claim is lost', async () => {
    // eventIdOf always starts an id with the tenant; a message carrying another id is still claimed once.
    const log = newLog();
    const eventId = `:5:2020-09-06T14:46:57.2900000Z`;
    const stale = claimOf(await log.claim(eventId));
    expect(await log.claim(eventId)).toEqual({ status: 'busy' });
    const claim = claimOf(await log.claim(eventId, 2 * 60_000, new Date(Date.now() + 3 * 60_000)));
    // What the enricher logs for the invocation that outlived its lease: the tenant is unknown, not left out.
    const lost = await log.recordDelivery(stale, 'siem').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(lost).toBeInstanceOf(ClaimLostError);
    expect((lost as Error).message).toBe(
      `the claim on event ${eventId} was taken over by another invocation after its lease ran out (tenant unknown, record the event in the delivery log)`,
    );
    await log.complete(claim, ['default']);
    expect(await log.isRouted(eventId)).toBe(true);
    expect(await log.claim(eventId)).toEqual({ status: 'routed' });
  });

  it('lets one invocation at a time claim an event, and takes over a claim whose lease ran out', async () => {
    const log = newLog();
    const eventId = `${randomUUID()}:1:2020-09-06T14:46:57.2900000Z`;
    const [a, b] = await Promise.all([log.claim(eventId), log.claim(eventId)]);
    expect([a.status, b.status].sort()).toEqual(['busy', 'claimed']);
    const stale = claimOf(a.status === 'claimed' ? a : b);
    await log.recordDelivery(stale, 'siem');
    expect(await log.claim(eventId)).toEqual({ status: 'busy' });
    // An invocation that crashed never releases: after the lease, another one takes over, with what it delivered.
    const later = new Date(Date.now() + 3 * 60_000);
    const takenOver = claimOf(await log.claim(eventId, 2 * 60_000, later));
    expect(takenOver.delivered).toEqual(new Set(['siem']));
    // The stale holder can neither record, nor commit, nor release the new claim.
    const lost = await log.recordDelivery(stale, 'teams').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(lost).toBeInstanceOf(ClaimLostError);
    // What the enricher logs: which event, whose tenant, that another invocation took it over, and in which store.
    expect(lost).toMatchObject({ tenantId: eventId.split(':')[0], operation: expect.stringContaining('delivery log') });
    expect((lost as Error).message).toContain(eventId);
    expect((lost as Error).message).toContain('taken over');
    await expect(log.complete(stale, ['x'], { fingerprint: { incidentId: 1, value: 'f' } })).rejects.toBeInstanceOf(
      ClaimLostError,
    );
    await log.release(stale);
    expect(await log.claim(eventId, 2 * 60_000, later)).toEqual({ status: 'busy' });
    expect(await log.isRouted(eventId)).toBe(false);
    await log.release(takenOver);
    expect((await log.claim(eventId)).status).toBe('claimed');
  });

  it('lets only one of two instances take over the same lapsed claim, when both read it before either writes', async () => {
    const table = unique('deliveries');
    const eventId = `${randomUUID()}:2:2020-09-06T14:46:57.2900000Z`;
    claimOf(await newLogOn(table).claim(eventId)); // by an invocation that crashed
    // After its lease, two instances get a redelivery at once; both see the lapsed claim before either takes it over.
    let reads = 0;
    let bothRead: () => void = () => undefined;
    const barrier = new Promise<void>((resolve) => (bothRead = resolve));
    class Racing extends TableClient {
      override async getEntity<T extends object>(...args: Parameters<TableClient['getEntity']>) {
        const entity = await super.getEntity<T>(...args);
        if (++reads === 2) bothRead();
        return entity;
      }
      override async updateEntity(...args: Parameters<TableClient['updateEntity']>) {
        await barrier;
        return super.updateEntity(...args);
      }
    }
    const parts = new Map(
      storage()
        .cs.split(';')
        .filter(Boolean)
        .map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
    );
    const credential = new AzureNamedKeyCredential(parts.get('AccountName')!, parts.get('AccountKey')!);
    const instance = () =>
      new DeliveryLog(new Racing(parts.get('TableEndpoint')!, table, credential, { allowInsecureConnection: true }));
    const later = new Date(Date.now() + 3 * 60_000);
    const results = await Promise.all([
      instance().claim(eventId, 2 * 60_000, later),
      instance().claim(eventId, 2 * 60_000, later),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['busy', 'claimed']);
  });

  it('reports a write Storage refuses as the storage error, not as a lost claim or another holder, and keeps the claim', async () => {
    const throttling = await startThrottlingStorage(storage().cs);
    try {
      const table = unique('deliveries');
      const log = new DeliveryLog(
        TableClient.fromConnectionString(throttling.connectionString, table, {
          allowInsecureConnection: true,
          retryOptions: { maxRetries: 0 },
        }),
      );
      const eventId = `${randomUUID()}:3:2020-09-06T14:46:57.2900000Z`;
      const writes = (r: { service: string; method: string; path: string }) =>
        r.service === 'table' &&
        r.method !== 'GET' &&
        (r.path.startsWith(`/devstoreaccount1/${table}`) || r.path === '/devstoreaccount1/$batch');
      const refused = (work: Promise<unknown>) =>
        work.then(
          (value) => ({ value }),
          (err: unknown) => err,
        );

      // 429 to the claim: the delivery fails and is retried; it does not pass for another invocation routing the event.
      claimOf(await log.claim(`${randomUUID()}:0:t`)); // the table exists
      throttling.throttle(writes);
      expect(await refused(log.claim(eventId))).toMatchObject({ statusCode: 429 });
      throttling.throttle(() => false);
      const claim = claimOf(await log.claim(eventId));

      // 429 to recording, committing and releasing: reported as such, and the claim is still this invocation's.
      throttling.throttle(writes);
      for (const attempt of [
        () => log.recordDelivery(claim, 'siem'),
        () => log.complete(claim, ['default'], { fingerprint: { incidentId: 3, value: 'f' } }),
        () => log.release(claim),
      ]) {
        const err = await refused(attempt());
        expect(err).not.toBeInstanceOf(ClaimLostError);
        expect(err).toMatchObject({ statusCode: 429 });
      }
      throttling.throttle(() => false);
      await log.recordDelivery(claim, 'siem');
      await log.complete(claim, ['default']);
      expect(await log.claim(eventId)).toEqual({ status: 'routed' });

      // 429 to taking over a lapsed claim: the storage error again, not "busy".
      const crashed = `${randomUUID()}:4:2020-09-06T14:46:57.2900000Z`;
      claimOf(await log.claim(crashed));
      throttling.throttle((r) => writes(r) && r.method === 'PUT'); // the take-over, not the create that finds the row
      expect(await refused(log.claim(crashed, 2 * 60_000, new Date(Date.now() + 3 * 60_000)))).toMatchObject({
        statusCode: 429,
      });
      throttling.throttle(() => false);
      expect((await log.claim(crashed, 2 * 60_000, new Date(Date.now() + 3 * 60_000))).status).toBe('claimed');
    } finally {
      await throttling.close();
    }
  });

  it('commits the claims an instance holds in one transaction as soon as the last one submits, through deliveries, failures and releases', async () => {
    // A write waits for the instance's other claims on the tenant to join its transaction, and goes the
    // moment each has a write waiting. The wait's cap is made long here, so that a round waiting for it shows.
    const throttling = await startThrottlingStorage(storage().cs);
    try {
      let transactions = 0;
      const log = new DeliveryLog(
        TableClient.fromConnectionString(throttling.connectionString, unique('deliveries'), {
          allowInsecureConnection: true,
          retryOptions: { maxRetries: 0 },
          additionalPolicies: [
            {
              position: 'perCall',
              policy: {
                name: 'count-transactions',
                sendRequest: (request, next) => {
                  if (new URL(request.url).pathname.endsWith('/$batch')) transactions += 1;
                  return next(request);
                },
              },
            },
          ],
        }),
        { commitLingerMs: 20_000 },
      );
      const tenantId = randomUUID();
      let incident = 0;
      const claim = async (count: number) =>
        (
          await Promise.all(
            Array.from({ length: count }, () => log.claim(`${tenantId}:${++incident}:2020-09-06T14:46:57.2900000Z`)),
          )
        ).map(claimOf);
      /** The writes, started together: how many transactions they took, how long, and how each ended. */
      const together = async (writes: Promise<unknown>[]) => {
        const [before, started] = [transactions, Date.now()];
        const settled = await Promise.allSettled(writes);
        return {
          transactions: transactions - before,
          fast: Date.now() - started < 10_000,
          failed: settled.filter((s) => s.status === 'rejected').length,
        };
      };
      const oneFastTransaction = { transactions: 1, fast: true, failed: 0 };

      // Deliveries recorded, then the commits: the claims are held (idle) again between the two.
      const [a, b, c] = await claim(3);
      expect(await together([a!, b!, c!].map((held) => log.recordDelivery(held, 'siem')))).toEqual(oneFastTransaction);
      expect(await together([a!, b!, c!].map((held) => log.complete(held, ['default'])))).toEqual(oneFastTransaction);

      // Two commits and a release: none of the three is held afterwards.
      const [d, e, f] = await claim(3);
      expect(await together([log.complete(d!, ['default']), log.complete(e!, ['default']), log.release(f!)])).toEqual(
        oneFastTransaction,
      );

      // Commits Storage refuses: the claims are still held, and their releases go together.
      const [g, h] = await claim(2);
      throttling.throttle((r) => r.service === 'table' && r.method !== 'GET'); // the transaction, then each commit alone
      expect(await together([log.complete(g!, ['default']), log.complete(h!, ['default'])])).toEqual({
        ...oneFastTransaction,
        failed: 2,
      });
      throttling.throttle(() => false);
      expect(await together([log.release(g!), log.release(h!)])).toEqual(oneFastTransaction);

      // Nothing left over: the next claims commit together at once.
      const [i, j] = await claim(2);
      expect(await together([log.complete(i!, ['default']), log.complete(j!, ['default'])])).toEqual(
        oneFastTransaction,
      );
      expect(await Promise.all([a, d, e, i].map((held) => log.isRouted(held!.eventId)))).toEqual([
        true,
        true,
        true,
        true,
      ]);
      expect(await Promise.all([f, g].map((held) => log.isRouted(held!.eventId)))).toEqual([false, false]);
    } finally {
      await throttling.close();
    }
  });
});
