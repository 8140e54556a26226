import { randomUUID } from 'node:crypto';
import type { QueueClient, DequeuedMessageItem } from '@azure/storage-queue';
import type { QueueFunction } from './app-loader.js';
import type { QueueOptions } from './host-config.js';
import type { Invoker } from './invoker.js';
import { resolveStorageConnection } from './storage-connection.js';
import type { RpcTypedData } from './worker-contract.js';

/**
 * The extension's lease on a message it is processing; renewed at half-time while it runs
 * (azure-sdk-for-net sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Listeners/QueueListener.cs,
 * constructor: `_visibilityTimeout = TimeSpan.FromMinutes(10)`, "if the function runs longer than this, the
 * invisibility will be updated on a timer periodically").
 */
export const LEASE_SECONDS = 10 * 60;

/**
 * Tests only: `LOCAL_HOST_QUEUE_LEASE_SECONDS` shortens the lease (time scaling), so that a test that kills an
 * instance need not wait 10 minutes for its messages to come back. Read by the local host alone, never by the
 * app. It is refused below `MIN_TEST_LEASE_SECONDS`: the app's event claim (shared/route/delivery-log.ts) lasts 2
 * minutes, and as in Azure a dead instance's message must come back only after its claim has lapsed.
 */
export const LEASE_SECONDS_VARIABLE = 'LOCAL_HOST_QUEUE_LEASE_SECONDS';
export const MIN_TEST_LEASE_SECONDS = 130;

/** The lease in seconds: the extension's 10 minutes, or the test's `LOCAL_HOST_QUEUE_LEASE_SECONDS`. */
export function queueLeaseSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[LEASE_SECONDS_VARIABLE];
  if (text === undefined || text === '') return LEASE_SECONDS;
  const seconds = Number(text);
  if (!/^\d+$/.test(text) || seconds < MIN_TEST_LEASE_SECONDS || seconds > LEASE_SECONDS)
    throw new Error(
      `${LEASE_SECONDS_VARIABLE} must be a whole number of seconds from ${MIN_TEST_LEASE_SECONDS} to ${LEASE_SECONDS}, not '${text}': ` +
        "the queue lease must outlast the app's 2-minute event claim, as the extension's 10 minutes do in Azure.",
    );
  return seconds;
}
/** The extension's fastest polling interval, used again as soon as messages arrive. */
const MIN_POLLING_INTERVAL_MS = 100;

/**
 * The extension's back-off for an empty queue (azure-sdk-for-net
 * sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Timers/RandomizedExponentialBackoffStrategy.cs,
 * created with the minimum as the delta): each empty poll waits min + r · 2^(n-1) · min, r uniform in
 * [0.8, 1.2), up to the maximum (100 ms, ~200, ~300, ~500, ~900 …); a poll that finds messages goes back to the minimum.
 */
export class RandomizedExponentialBackoff {
  static readonly RANDOMIZATION_FACTOR = 0.2;
  #current = 0;
  #exponent = 0;

  constructor(
    private readonly minimumMs: number,
    private readonly maximumMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  nextDelay(executionSucceeded: boolean): number {
    if (executionSucceeded) {
      this.#current = this.minimumMs;
      this.#exponent = 1;
    } else if (this.#current !== this.maximumMs) {
      let interval = this.minimumMs;
      if (this.#exponent > 0) {
        const factor =
          1 -
          RandomizedExponentialBackoff.RANDOMIZATION_FACTOR +
          this.random() * 2 * RandomizedExponentialBackoff.RANDOMIZATION_FACTOR;
        interval += factor * 2 ** (this.#exponent - 1) * this.minimumMs;
      }
      if (interval < this.maximumMs) {
        this.#current = interval;
        this.#exponent += 1;
      } else {
        this.#current = this.maximumMs;
      }
    }
    return this.#current;
  }
}

/**
 * The lease renewal's schedule (…Storage.Common/src/Shared/Timers/LinearSpeedupStrategy.cs, as
 * QueueListener.cs `CreateUpdateMessageVisibilityTimer` creates it): every half lease; after a failed
 * renewal, half the last wait, never less than the minimum (1 minute); after a success, back to normal.
 */
export class LinearSpeedup {
  #current: number;

  constructor(
    private readonly normalMs: number,
    private readonly minimumMs: number,
    private readonly divisor = 2,
  ) {
    this.#current = normalMs;
  }

  nextDelay(executionSucceeded: boolean): number {
    this.#current = executionSucceeded ? this.normalMs : Math.max(this.#current / this.divisor, this.minimumMs);
    return this.#current;
  }
}

/** QueueListener.cs `MinimumVisibilityRenewalInterval`. */
const MINIMUM_RENEWAL_INTERVAL_MS = 60_000;

/** Strict base64 (whitespace allowed, as .NET's decoder allows it); undefined when it is not. */
export function decodeBase64Message(text: string): string | undefined {
  const compact = text.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return undefined;
  return Buffer.from(compact, 'base64').toString('utf8');
}

/**
 * One queue trigger, with the Storage Queues extension's semantics: batches with a lease,
 * concurrent processing, a new batch when in-flight drops to newBatchThreshold, exponential
 * back-off when idle, delete on success, visibility back-off on failure and `<queue>-poison`
 * after maxDequeueCount.
 */
export class QueueListener {
  readonly #fn: QueueFunction;
  readonly #options: QueueOptions;
  readonly #invoker: Invoker;
  readonly #log: (line: string) => void;
  readonly #queue: QueueClient;
  readonly #poison: QueueClient;
  readonly #leaseSeconds: number;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #poisonCreated = false;
  #queueExists: boolean | undefined;
  #saidMissing = false;
  /** Ends the current pause early: on stop, and when an invocation finishes while the listener waits for capacity. */
  #wake: () => void = () => undefined;
  #waitingForCapacity = false;

  constructor(fn: QueueFunction, options: QueueOptions, invoker: Invoker, log: (line: string) => void) {
    this.#fn = fn;
    this.#options = options;
    this.#invoker = invoker;
    this.#log = log;
    this.#leaseSeconds = queueLeaseSeconds();
    const service = resolveStorageConnection(fn.connectionSetting).queues();
    this.#queue = service.getQueueClient(fn.queueName);
    this.#poison = service.getQueueClient(`${fn.queueName}-poison`);
  }

  get queueName(): string {
    return this.#fn.queueName;
  }

  /**
   * Starts polling. The trigger queue is not created: like the extension's listener, it checks that
   * the queue exists and polls with back-off until it does (azure-sdk-for-net
   * sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Listeners/QueueListener.cs,
   * `_queueExists`); in Azure the queues come from the deployment.
   */
  async start(): Promise<void> {
    this.#loop = this.#poll();
  }

  /** Stops fetching and waits for the messages already fetched to finish (bounded by the caller). */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#wake();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight]);
  }

  /** Runs the function with `input` as the message text, as the admin API does; no queue message involved. */
  invokeWithText(text: string): void {
    const now = new Date();
    void this.#invoker.invoke(this.#fn, {
      reason: 'This function was programmatically called via the host APIs.',
      data: { string: text },
      triggerMetadata: this.#triggerMetadata(
        {
          messageId: randomUUID(),
          popReceipt: '',
          dequeueCount: 1,
          messageText: text,
          insertedOn: now,
          expiresOn: new Date(now.getTime() + 7 * 86_400_000),
          nextVisibleOn: now,
        },
        text,
      ),
    });
  }

  /** Waits `ms`, or less if woken (an invocation finished, or stop). */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stop.signal.aborted) return resolve();
      const timer = setTimeout(() => this.#wake(), ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = () => undefined;
        resolve();
      };
    });
  }

  async #poll(): Promise<void> {
    const backoff = new RandomizedExponentialBackoff(
      MIN_POLLING_INTERVAL_MS,
      Math.max(this.#options.maxPollingIntervalMs, MIN_POLLING_INTERVAL_MS),
    );
    // As QueueListener.cs: the first empty poll after messages were found waits the minimum again.
    let foundSinceLastDelay = false;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      if (this.#inFlight.size > this.#options.newBatchThreshold) {
        this.#waitingForCapacity = true;
        await this.#pause(60_000);
        this.#waitingForCapacity = false;
        continue;
      }
      let messages: DequeuedMessageItem[] = [];
      try {
        // Checked until it exists, then no more (and again after any failure): the extension's steady state.
        if (this.#queueExists !== true) {
          this.#queueExists = await this.#queue.exists();
          if (!this.#queueExists && !this.#saidMissing) {
            this.#log(
              `[warning] Queue '${this.queueName}' does not exist: function '${this.#fn.metadata.name}' waits for it (create it, as the deployment does).`,
            );
            this.#saidMissing = true;
          }
        }
        if (this.#queueExists) {
          const response = await this.#queue.receiveMessages({
            numberOfMessages: this.#options.batchSize,
            visibilityTimeout: this.#leaseSeconds,
          });
          messages = response.receivedMessageItems;
        }
      } catch (error) {
        this.#queueExists = undefined;
        this.#log(`[warning] Polling queue '${this.queueName}' failed: ${(error as Error).message}`);
      }
      if (signal.aborted && messages.length > 0) {
        // Fetched while stopping: hand them back at once instead of holding them for the lease.
        await Promise.allSettled(
          messages.map((m) => this.#queue.updateMessage(m.messageId, m.popReceipt, undefined, 0)),
        );
        break;
      }
      if (messages.length === 0) {
        // Only stop ends this wait early: the extension wakes it only for a message its own output bindings
        // write (QueueListener.cs, `CreateDelayWithNotificationTask`), which this app does not use.
        const delay = backoff.nextDelay(foundSinceLastDelay);
        foundSinceLastDelay = false;
        await this.#pause(delay);
        continue;
      }
      foundSinceLastDelay = true;
      for (const message of messages) {
        const work = this.#process(message).catch((error: unknown) => {
          this.#log(`[error] Queue '${this.queueName}', message '${message.messageId}': ${(error as Error).message}`);
        });
        this.#inFlight.add(work);
        void work.finally(() => {
          this.#inFlight.delete(work);
          if (this.#waitingForCapacity) this.#wake();
        });
      }
    }
  }

  #triggerMetadata(
    message: Pick<
      DequeuedMessageItem,
      'messageId' | 'popReceipt' | 'dequeueCount' | 'insertedOn' | 'expiresOn' | 'nextVisibleOn' | 'messageText'
    >,
    text: string,
  ): Record<string, RpcTypedData> {
    const json = (value: unknown): RpcTypedData => ({ json: JSON.stringify(value) });
    return {
      QueueTrigger: { string: text },
      Id: { string: message.messageId },
      PopReceipt: { string: message.popReceipt },
      DequeueCount: { int: message.dequeueCount },
      InsertionTime: json(message.insertedOn),
      ExpirationTime: json(message.expiresOn),
      NextVisibleTime: json(message.nextVisibleOn),
      sys: json({ MethodName: this.#fn.metadata.name, UtcNow: new Date().toISOString(), RandGuid: randomUUID() }),
    };
  }

  async #process(message: DequeuedMessageItem): Promise<void> {
    const lease = { popReceipt: message.popReceipt };
    const text =
      this.#options.messageEncoding === 'base64' ? decodeBase64Message(message.messageText) : message.messageText;
    if (text === undefined) {
      // The extension's decoding-failed handler, then its poison path with that path's own line.
      this.#log(
        `[warning] Message decoding has failed! Check MessageEncoding settings. MessageId=${message.messageId}.`,
      );
      this.#log(
        `Message has reached MaxDequeueCount of ${this.#options.maxDequeueCount}. Moving message to queue '${this.queueName}-poison'.`,
      );
      await this.#moveToPoison(message, lease.popReceipt);
      return;
    }
    // Already beyond the limit (e.g. the host died while processing it): poison without invoking.
    if (message.dequeueCount > this.#options.maxDequeueCount) {
      this.#log(
        `Message has reached MaxDequeueCount of ${this.#options.maxDequeueCount}. Moving message to queue '${this.queueName}-poison'.`,
      );
      await this.#moveToPoison(message, lease.popReceipt);
      return;
    }

    // First renewal at half the lease, then as the speed-up strategy says after each attempt.
    const schedule = new LinearSpeedup((this.#leaseSeconds / 2) * 1000, MINIMUM_RENEWAL_INTERVAL_MS);
    let renewal: NodeJS.Timeout | undefined;
    let finished = false;
    const renewLater = (ms: number) => {
      renewal = setTimeout(() => {
        this.#queue
          .updateMessage(message.messageId, lease.popReceipt, undefined, this.#leaseSeconds)
          .then((renewed) => {
            lease.popReceipt = renewed.popReceipt ?? lease.popReceipt;
            return true;
          })
          .catch((error: unknown) => {
            this.#log(
              `[warning] Could not renew the lease on message '${message.messageId}': ${(error as Error).message}`,
            );
            return false;
          })
          .then((renewed) => {
            if (!finished) renewLater(schedule.nextDelay(renewed));
          });
      }, ms);
    };
    renewLater(schedule.nextDelay(true));
    let succeeded: boolean;
    try {
      const outcome = await this.#invoker.invoke(this.#fn, {
        reason: `New queue message detected on '${this.queueName}'.`,
        data: { string: text },
        triggerMetadata: this.#triggerMetadata(message, text),
      });
      succeeded = outcome.succeeded;
    } finally {
      finished = true;
      clearTimeout(renewal);
    }

    if (succeeded) {
      await this.#queue.deleteMessage(message.messageId, lease.popReceipt);
    } else if (message.dequeueCount >= this.#options.maxDequeueCount) {
      this.#log(
        `Message has reached MaxDequeueCount of ${this.#options.maxDequeueCount}. Moving message to queue '${this.queueName}-poison'.`,
      );
      await this.#moveToPoison(message, lease.popReceipt);
    } else {
      await this.#queue.updateMessage(
        message.messageId,
        lease.popReceipt,
        undefined,
        Math.round(this.#options.visibilityTimeoutMs / 1000),
      );
    }
  }

  /** Copies the message as stored (still encoded) to `<queue>-poison`, then deletes the original. */
  async #moveToPoison(message: DequeuedMessageItem, popReceipt: string): Promise<void> {
    if (!this.#poisonCreated) {
      await this.#poison.createIfNotExists();
      this.#poisonCreated = true;
    }
    await this.#poison.sendMessage(message.messageText);
    await this.#queue.deleteMessage(message.messageId, popReceipt);
  }
}
