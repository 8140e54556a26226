import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { deadLetterQueueOf, poisonQueueOf } from '../messages/dead-letter.js';
import type { IncidentEnvelope } from '../messages/events.js';
import { recordEventEnqueued } from '../telemetry/metrics.js';
import type { BlobServiceProvider } from './storage.js';
import { traceEnqueue } from '../telemetry/tracing.js';

/** Queue names the app uses (the Bicep creates the same ones). */
export const QUEUE_NAMES = {
  pollRequests: 'poll-requests',
  incidents: 'incidents',
  poison: 'incidents-poison',
} as const;
export const CLAIM_CHECK_CONTAINER = 'incident-payloads';

/** A queue message holds 64 KiB of base64 text; leave room for the envelope around a claim-check. */
const MAX_BASE64_MESSAGE = 60 * 1024;

/** Encodes a message as the Functions queue trigger expects it by default (base64 of JSON). */
export function encodeMessage(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64');
}

/**
 * Sends JSON messages to Storage queues, base64-encoded; an incident event too big for a message goes
 * to Blob storage and the message carries `incidentRef` instead (claim-check).
 */
export class MessageSender {
  readonly #created = new Map<string, Promise<unknown>>();
  /** One client per queue: building one costs a request pipeline, which a hot path should not pay per message. */
  readonly #clients = new Map<string, QueueClient>();

  constructor(
    private readonly queues: QueueServiceClient,
    private readonly blobs: BlobServiceProvider,
    /** False for another team's account, where the app may only send (the owner creates queues and containers). */
    private readonly options: { createMissing?: boolean } = {},
  ) {}

  send(queueName: string, value: unknown, options: { visibilityTimeoutSeconds?: number } = {}): Promise<void> {
    return this.#sendEncoded(queueName, encodeMessage(value), options);
  }

  async #sendEncoded(
    queueName: string,
    text: string,
    options: { visibilityTimeoutSeconds?: number } = {},
  ): Promise<void> {
    let queue = this.#clients.get(queueName);
    if (!queue) {
      queue = this.queues.getQueueClient(queueName);
      this.#clients.set(queueName, queue);
    }
    if (this.options.createMissing !== false) await this.#once(`queue:${queueName}`, () => queue.createIfNotExists());
    await queue.sendMessage(text, { visibilityTimeout: options.visibilityTimeoutSeconds, messageTimeToLive: -1 });
  }

  /**
   * Sends an incident event, claim-checking the incident when the message would be too large. The
   * event starts the trace of its incident version (tracing.ts), whose context its message carries.
   */
  async sendEvent(queueName: string, envelope: IncidentEnvelope): Promise<{ claimChecked: boolean }> {
    const blobName = `${envelope.tenantId}/${envelope.incidentId}/${envelope.lastUpdateTime.replace(/:/g, '')}.json`;
    const sent = await traceEnqueue(envelope, (traced) =>
      this.sendWithClaimCheck(queueName, traced, { container: CLAIM_CHECK_CONTAINER, blobName }),
    );
    recordEventEnqueued(envelope.tenantId, envelope.source === 'webhook' ? 'push' : 'poll');
    return sent;
  }

  /**
   * Sends any message with an `incident` field; when the message would be too large, the incident goes
   * to `container/blobName` in Blob storage and the message carries `incidentRef: { blobUrl }` instead.
   */
  async sendWithClaimCheck(
    queueName: string,
    message: { incident?: unknown },
    place: { container: string; blobName: string },
  ): Promise<{ claimChecked: boolean }> {
    const encoded = encodeMessage(message);
    if (encoded.length <= MAX_BASE64_MESSAGE || !message.incident) {
      await this.#sendEncoded(queueName, encoded);
      return { claimChecked: false };
    }
    const container = (await this.blobs()).getContainerClient(place.container);
    if (this.options.createMissing !== false)
      await this.#once(`container:${place.container}`, () => container.createIfNotExists());
    const blob = container.getBlockBlobClient(place.blobName);
    const body = JSON.stringify(message.incident);
    await blob.upload(body, Buffer.byteLength(body), { blobHTTPHeaders: { blobContentType: 'application/json' } });
    const { incident: _incident, ...rest } = message;
    await this.send(queueName, { ...rest, incidentRef: { blobUrl: blob.url } });
    return { claimChecked: true };
  }

  #once(key: string, create: () => Promise<unknown>): Promise<unknown> {
    let pending = this.#created.get(key);
    if (!pending) {
      pending = create().catch((err: unknown) => {
        this.#created.delete(key);
        throw err;
      });
      this.#created.set(key, pending);
    }
    return pending;
  }
}

/** Reads a claim-checked incident back (the URL must be in this app's storage account). */
export async function readClaimCheck(blobService: BlobServiceProvider, blobUrl: string): Promise<unknown> {
  const blobs = await blobService();
  const serviceUrl = blobs.url.endsWith('/') ? blobs.url : `${blobs.url}/`;
  if (!blobUrl.startsWith(serviceUrl))
    throw new Error(`The claim-check ${blobUrl} is not in this app's storage account`);
  const [container, ...name] = blobUrl.slice(serviceUrl.length).split('?')[0]!.split('/');
  const blob = blobs.getContainerClient(container!).getBlobClient(decodeURIComponent(name.join('/')));
  const buffer = await blob.downloadToBuffer();
  return JSON.parse(buffer.toString('utf8')) as unknown;
}

/** The queues whose depth is a metric: the app's own two and where their failures go. */
export const MONITORED_QUEUES: readonly string[] = [QUEUE_NAMES.incidents, QUEUE_NAMES.pollRequests].flatMap(
  (queue) => [queue, poisonQueueOf(queue), deadLetterQueueOf(queue)],
);

/**
 * Reads the approximate message count of each queue (one Get Queue Metadata each, in parallel), at
 * most once per `minIntervalMs`: a collection sooner gets the last reading, so the cost stays a few
 * storage operations per interval however often the metrics are collected. A queue that does not
 * exist has no message; one that cannot be read is left out of that reading.
 */
export function queueDepthReader(
  queues: QueueServiceClient,
  names: readonly string[] = MONITORED_QUEUES,
  minIntervalMs = 30_000,
  now: () => number = Date.now,
): () => Promise<Map<string, number>> {
  let last: { at: number; reading: Promise<Map<string, number>> } | undefined;
  const read = async () => {
    const depths = await Promise.all(
      names.map(async (name): Promise<[string, number] | undefined> => {
        try {
          const { approximateMessagesCount } = await queues.getQueueClient(name).getProperties();
          return [name, approximateMessagesCount ?? 0];
        } catch (err) {
          return (err as { statusCode?: number }).statusCode === 404 ? [name, 0] : undefined;
        }
      }),
    );
    return new Map(depths.filter((depth) => depth !== undefined));
  };
  return () => {
    if (!last || now() - last.at >= minIntervalMs) last = { at: now(), reading: read() };
    return last.reading;
  };
}
