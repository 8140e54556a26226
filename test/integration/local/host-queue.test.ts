import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import {
  FIXTURE_APP,
  ResultsReader,
  base64,
  queueClient,
  spawnHost,
  uniqueName,
  type HostProcess,
} from '../../fixtures/host-app/harness.js';

/** What the fixture's recordMessage function writes for each invocation. */
interface Recorded {
  kind: string;
  message: unknown;
  type: string;
  dequeueCount: number;
  concurrent: number;
  at: number;
  metadata: {
    id: string;
    popReceipt: string;
    insertionTime: string;
    expirationTime: string;
    nextVisibleTime: string;
    queueTrigger: unknown;
  };
}

const storage = inject('storage');
const inputQueueName = uniqueName('host-q');
const resultsQueueName = uniqueName('host-q-results');
const inputQueue = queueClient(storage.connectionString, inputQueueName);
const poisonQueue = queueClient(storage.connectionString, `${inputQueueName}-poison`);
const resultsQueue = queueClient(storage.connectionString, resultsQueueName);
const results = new ResultsReader<Recorded>(resultsQueue);
const tagged = (tag: string) => results.entries.filter((e) => (e.message as { tag?: string } | null)?.tag === tag);
const send = (body: unknown) => inputQueue.sendMessage(base64(JSON.stringify(body)));

let host: HostProcess;
beforeAll(async () => {
  await resultsQueue.create();
  host = await spawnHost({
    env: {
      AzureWebJobsStorage: storage.connectionString,
      FIXTURE_QUEUE: inputQueueName,
      FIXTURE_RESULTS_QUEUE: resultsQueueName,
      FIXTURE_SCHEDULE: '0 0 0 1 1 *',
      FIXTURE_ROUTE: 'fixture',
    },
  });
});
afterAll(async () => {
  await host?.stop();
});

async function peekPoison(): Promise<string[]> {
  if (!(await poisonQueue.exists())) return [];
  const { peekedMessageItems } = await poisonQueue.peekMessages({ numberOfMessages: 32 });
  return peekedMessageItems.map((m) => m.messageText);
}

describe('local host: queue triggers (host.json: batchSize 4, newBatchThreshold 2, visibilityTimeout 2 s, maxDequeueCount 3)', () => {
  it('does not create its trigger queue, as in Azure, and takes messages once it exists', async () => {
    await host.waitForLine(
      new RegExp(`Queue '${inputQueueName}' does not exist: function 'recordMessage' waits for it`),
    );
    expect(await inputQueue.exists()).toBe(false);
    await inputQueue.create();
    const sent = await send({ tag: 'first', n: 0 });
    await results.waitFor(() => tagged('first').length === 1, 10_000);
    expect(tagged('first')[0]!.metadata.id).toBe(sent.messageId);
  });

  it('decodes base64 and hands the function the parsed JSON with trigger metadata; deletes on success', async () => {
    const after = host.lines.length;
    const sent = await send({ tag: 'hello', n: 1 });
    const [entry] = await results.waitFor(() => tagged('hello').length === 1).then(() => tagged('hello'));
    expect(entry).toMatchObject({
      message: { tag: 'hello', n: 1 },
      type: 'object',
      dequeueCount: 1,
      metadata: { id: sent.messageId, popReceipt: 'string', queueTrigger: { tag: 'hello', n: 1 } },
    });
    expect(new Date(entry!.metadata.insertionTime).toISOString()).toBe(entry!.metadata.insertionTime);
    expect(Date.parse(entry!.metadata.expirationTime)).toBeGreaterThan(Date.parse(entry!.metadata.insertionTime));
    // Received with the extension's 10-minute lease (invisible to other instances meanwhile).
    const leaseMs = Date.parse(entry!.metadata.nextVisibleTime) - Date.parse(entry!.metadata.insertionTime);
    expect(leaseMs).toBeGreaterThan(9.5 * 60_000);
    expect(leaseMs).toBeLessThanOrEqual(10 * 60_000 + 5_000);
    await host.waitForLine(
      new RegExp(
        `Executing 'Functions\\.recordMessage' \\(Reason='New queue message detected on '${inputQueueName}'\\.', Id=[0-9a-f-]+\\)`,
      ),
      { after },
    );
    await host.waitForLine(/Executed 'Functions\.recordMessage' \(Succeeded, Id=[0-9a-f-]+, Duration=\d+ms\)/, {
      after,
    });
    await expect
      .poll(async () => (await inputQueue.getProperties()).approximateMessagesCount, { timeout: 5_000 })
      .toBe(0);
  });

  it('hands over text that is not JSON as a string', async () => {
    await inputQueue.sendMessage(base64('plain words, not JSON'));
    await results.waitFor((entries) => entries.some((e) => e.message === 'plain words, not JSON'));
    expect(results.entries.find((e) => e.message === 'plain words, not JSON')).toMatchObject({
      type: 'string',
      dequeueCount: 1,
    });
  });

  it('retries a failed message with a growing dequeueCount, not before visibilityTimeout', async () => {
    await send({ tag: 'retry', fail: 1 });
    await results.waitFor(() => tagged('retry').length === 2);
    const [first, second] = tagged('retry');
    expect([first!.dequeueCount, second!.dequeueCount]).toEqual([1, 2]);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1900);
    expect(await peekPoison()).toEqual([]);
  });

  it('moves a message that keeps failing to <queue>-poison with its original text after maxDequeueCount', async () => {
    const after = host.lines.length;
    const original = base64(JSON.stringify({ tag: 'poison', fail: 99 }));
    await inputQueue.sendMessage(original);
    await expect.poll(peekPoison, { timeout: 15_000, interval: 200 }).toContain(original);
    await results.drain();
    expect(tagged('poison').map((e) => e.dequeueCount)).toEqual([1, 2, 3]);
    await host.waitForLine(
      new RegExp(`Message has reached MaxDequeueCount of 3\\. Moving message to queue '${inputQueueName}-poison'\\.`),
      { after },
    );
    expect((await inputQueue.getProperties()).approximateMessagesCount).toBe(0);
  });

  it('sends a message already dequeued more than maxDequeueCount times (its host died mid-run) to poison without running it', async () => {
    const queueName = uniqueName('host-q-overdue');
    const queue = queueClient(storage.connectionString, queueName);
    await queue.create();
    await queue.sendMessage(base64(JSON.stringify({ tag: 'overdue' })));
    // Four receives that never finish, as four crashed hosts would leave it (maxDequeueCount is 3).
    for (let i = 0; i < 4; i++) {
      await expect
        .poll(async () => (await queue.receiveMessages({ visibilityTimeout: 1 })).receivedMessageItems.length, {
          timeout: 5_000,
          interval: 100,
        })
        .toBe(1);
    }
    const second = await spawnHost({
      env: {
        AzureWebJobsStorage: storage.connectionString,
        FIXTURE_QUEUE: queueName,
        FIXTURE_RESULTS_QUEUE: resultsQueueName,
        FIXTURE_SCHEDULE: '0 0 0 1 1 *',
        FIXTURE_ROUTE: 'fixture',
      },
    });
    try {
      await second.waitForLine(
        new RegExp(`Message has reached MaxDequeueCount of 3\\. Moving message to queue '${queueName}-poison'\\.`),
      );
      const poisoned = queueClient(storage.connectionString, `${queueName}-poison`);
      await expect
        .poll(async () => (await poisoned.peekMessages()).peekedMessageItems.map((m) => m.messageText), {
          timeout: 5_000,
        })
        .toEqual([base64(JSON.stringify({ tag: 'overdue' }))]);
      expect(second.lines.some((l) => l.includes("Executing 'Functions.recordMessage'"))).toBe(false);
      expect(tagged('overdue')).toEqual([]);
    } finally {
      await second.stop();
    }
  });

  it('sends a message that is not base64 straight to poison, saying why', async () => {
    const after = host.lines.length;
    await inputQueue.sendMessage('not base64 at all!');
    await expect.poll(peekPoison, { timeout: 10_000, interval: 200 }).toContain('not base64 at all!');
    // The extension's words: the decoding failure, then its poison path's line (which names MaxDequeueCount even here).
    await host.waitForLine(/Message decoding has failed! Check MessageEncoding settings\. MessageId=[\w-]+\./, {
      after,
    });
    await host.waitForLine(/Message has reached MaxDequeueCount of \d+\. Moving message to queue '[\w-]+-poison'\./, {
      after,
    });
    await results.drain();
    expect(results.entries.filter((e) => e.message === 'not base64 at all!')).toEqual([]);
  });

  it('runs a batch concurrently but never more than batchSize + newBatchThreshold at once', async () => {
    await Promise.all(Array.from({ length: 12 }, (_, i) => send({ tag: 'batch', i, sleepMs: 700 })));
    await results.waitFor(() => tagged('batch').length === 12, 20_000);
    const peak = Math.max(...tagged('batch').map((e) => e.concurrent));
    expect(peak).toBeGreaterThanOrEqual(4);
    expect(peak).toBeLessThanOrEqual(6);
    expect(new Set(tagged('batch').map((e) => (e.message as { i: number }).i)).size).toBe(12);
  });

  it('passes raw text through with messageEncoding none', async () => {
    const plainQueueName = uniqueName('host-q-plain');
    await queueClient(storage.connectionString, plainQueueName).create();
    const plain = await spawnHost({
      appDir: join(FIXTURE_APP, 'plain-encoding'),
      env: {
        AzureWebJobsStorage: storage.connectionString,
        FIXTURE_QUEUE: plainQueueName,
        FIXTURE_RESULTS_QUEUE: resultsQueueName,
      },
    });
    try {
      await queueClient(storage.connectionString, plainQueueName).sendMessage(JSON.stringify({ tag: 'plain' }));
      await results.waitFor(() => tagged('plain').length === 1);
      expect(tagged('plain')[0]).toMatchObject({ message: { tag: 'plain' }, type: 'object', dequeueCount: 1 });
    } finally {
      await plain.stop();
    }
  });
});
