import type { TokenCredential } from '@azure/identity';
import { QueueServiceClient } from '@azure/storage-queue';
import { isRetryable, PermanentError, RetryableError } from '../../errors.js';
import { MessageSender } from '../../storage/queues.js';
import { lazyBlobService, type BlobServiceProvider } from '../../storage/storage.js';
import type { NamedDestination } from '../routing.js';
import type { RoutedMessage } from './types.js';

/** Where routed messages too large for a queue message keep their incident (a lifecycle rule can expire it). */
export const ROUTED_PAYLOADS_CONTAINER = 'routed-payloads';

export type QueueDestination = Extract<NamedDestination, { type: 'queue' }>;

/** The queue and blob clients of another storage account, reached with the app's own identity. */
export type AccountClientsFactory = (accountUrl: string) => { queues: QueueServiceClient; blobs: BlobServiceProvider };

/** `https://acct.queue.core.windows.net` → `https://acct.blob.core.windows.net` (where that account's claim-checks go). */
export function blobUrlForQueueAccount(accountUrl: string): string {
  const url = new URL(accountUrl);
  url.hostname = url.hostname.replace(/\.queue\./, '.blob.');
  return url.toString().replace(/\/+$/, '');
}

export function identityAccountClients(credential: TokenCredential): AccountClientsFactory {
  return (accountUrl) => ({
    queues: new QueueServiceClient(accountUrl, credential),
    blobs: lazyBlobService(
      ({ BlobServiceClient }) => new BlobServiceClient(blobUrlForQueueAccount(accountUrl), credential),
    ),
  });
}

/**
 * Senders for queue destinations: the app's own account (queues created on first use), or another
 * account by URL through an identity-based connection, where the app only sends (it needs the
 * Storage Queue Data Message Sender role, plus Storage Blob Data Contributor for claim-checks; the
 * owner creates the queue and the `routed-payloads` container).
 */
export class QueueDestinations {
  readonly #others = new Map<string, MessageSender>();

  constructor(
    private readonly own: MessageSender,
    private readonly accountClients: AccountClientsFactory,
  ) {}

  senderFor(accountUrl?: string): MessageSender {
    if (!accountUrl) return this.own;
    const key = accountUrl.replace(/\/+$/, '').toLowerCase();
    let sender = this.#others.get(key);
    if (!sender) {
      const { queues, blobs } = this.accountClients(accountUrl);
      sender = new MessageSender(queues, blobs, { createMissing: false });
      this.#others.set(key, sender);
    }
    return sender;
  }
}

/** Sends the routed message as base64 JSON (what a Functions queue trigger reads), claim-checking a large incident. */
export async function deliverToQueue(
  destination: QueueDestination,
  message: RoutedMessage,
  queues: QueueDestinations,
): Promise<{ claimChecked: boolean }> {
  const account = destination.accountUrl ? new URL(destination.accountUrl).host : "the app's storage account";
  const operation = `deliver to queue destination "${destination.name}" (${destination.queueName} in ${account})`;
  const blobName = `${destination.queueName}/${message.tenantId}/${message.incidentId}/${message.lastUpdateTime.replace(/:/g, '')}.json`;
  try {
    return await queues
      .senderFor(destination.accountUrl)
      .sendWithClaimCheck(destination.queueName, message, { container: ROUTED_PAYLOADS_CONTAINER, blobName });
  } catch (err) {
    const e = err as { statusCode?: number; code?: string };
    const context = { tenantId: message.tenantId, operation, status: e.statusCode, code: e.code };
    const answer = [e.statusCode, e.code].filter(Boolean).join(' ') || 'network error';
    if (isRetryable(err))
      throw new RetryableError(`Storage did not take the message (${answer})`, context, { cause: err });
    if (e.code === 'QueueNotFound' || e.code === 'ContainerNotFound') {
      throw new PermanentError(
        `The ${e.code === 'QueueNotFound' ? `queue ${destination.queueName}` : `container ${ROUTED_PAYLOADS_CONTAINER}`} does not exist; create it in that account`,
        context,
        { cause: err },
      );
    }
    if (e.statusCode === 403 || e.statusCode === 401) {
      throw new PermanentError(
        `The app's identity may not send to this queue (${answer}); grant it Storage Queue Data Message Sender (and Storage Blob Data Contributor for large incidents)`,
        context,
        { cause: err },
      );
    }
    throw new PermanentError(
      `Storage refused the message (${e.statusCode || e.code ? answer : (err as Error).message.split('\n')[0]})`,
      context,
      { cause: err },
    );
  }
}
