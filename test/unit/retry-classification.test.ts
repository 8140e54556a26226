import { RestError as PipelineRestError } from '@azure/core-rest-pipeline';
import { RestError as TablesRestError } from '@azure/data-tables';
import type { SecretClient } from '@azure/keyvault-secrets';
import { RestError as QueueRestError } from '@azure/storage-queue';
import { describe, expect, it } from 'vitest';
import { isRetryable, RetryableError } from '../../shared/errors.js';
import { SecretCache } from '../../shared/auth/secrets.js';

/**
 * A 429 from Key Vault or Storage means "later", not "never": the host must retry the message, not
 * record it as failed or dead-letter it. The SDKs throw their RestError with `statusCode` (Defender's
 * answers, read with fetch, have their own handling and are not covered here).
 */
describe('a 429 from Key Vault or Storage is retried', () => {
  it.each([
    ['Key Vault (SecretClient, @azure/core-rest-pipeline)', PipelineRestError, 'Throttled'],
    ['Queue storage (@azure/storage-queue)', QueueRestError, 'TooManyRequests'],
    ['Table storage (@azure/data-tables)', TablesRestError, 'TooManyRequests'],
  ])('%s: 429 is retryable, as 503 is; 403 is not', (_service, RestError, code) => {
    expect(isRetryable(new RestError('Too many requests', { statusCode: 429, code }))).toBe(true);
    expect(isRetryable(new RestError('Service unavailable', { statusCode: 503, code: 'ServerBusy' }))).toBe(true);
    expect(isRetryable(new RestError('Forbidden', { statusCode: 403, code: 'Forbidden' }))).toBe(false);
  });

  it("SecretCache turns Key Vault's 429 into a retryable failure, and reads the secret once Key Vault answers", async () => {
    let throttled = true;
    const client = {
      vaultUrl: 'https://relay-kv.vault.azure.net',
      getSecret: async (name: string) => {
        if (throttled)
          throw new PipelineRestError(
            'Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached',
            { statusCode: 429, code: 'Throttled' },
          );
        return {
          name,
          value: 'the-value',
          properties: { name, vaultUrl: 'https://relay-kv.vault.azure.net', tags: {} },
        };
      },
    } as unknown as SecretClient;
    const cache = new SecretCache(client);

    const failure = await cache.get('tenant-secret').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(RetryableError);
    expect(isRetryable(failure)).toBe(true);
    expect((failure as RetryableError).message).toMatch(/Key Vault did not answer \(429\)/);

    throttled = false;
    expect(await cache.get('tenant-secret')).toBe('the-value');
  });
});

/**
 * Whether the host retries a queue message or records it as failed: throttling, timeouts, 5xx and
 * network failures are retried, wherever in the `cause` chain they are; anything else fails once.
 */
describe('which failures are retried', () => {
  it('by HTTP status: 408, 429 and every 5xx are; other 4xx are not', () => {
    for (const status of [408, 429, 500, 502, 503, 504])
      expect(isRetryable({ statusCode: status }), String(status)).toBe(true);
    for (const status of [400, 401, 403, 404, 409, 413, 499])
      expect(isRetryable({ statusCode: status }), String(status)).toBe(false);
    expect(isRetryable(Object.assign(new Error('Request Timeout'), { status: 408 }))).toBe(true); // fetch-style `status`
  });

  it('an aborted or timed-out request is, a plain error is not', () => {
    expect(isRetryable(new DOMException('This operation was aborted', 'AbortError'))).toBe(true);
    expect(isRetryable(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))).toBe(true);
    expect(isRetryable(new Error('Unexpected token < in JSON'))).toBe(false);
    expect(isRetryable(new TypeError('Cannot read properties of undefined'))).toBe(false);
  });

  it('follows the cause: fetch\'s "fetch failed" over a reset socket is, over a plain error is not', () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(isRetryable(new TypeError('fetch failed', { cause: reset }))).toBe(true);
    expect(isRetryable(new Error('delivery failed', { cause: new TypeError('fetch failed', { cause: reset }) }))).toBe(
      true,
    );
    expect(isRetryable(new TypeError('fetch failed', { cause: new Error('invalid onRequestStart method') }))).toBe(
      false,
    );
  });

  it('a chain of causes that loops is classified (not retried), without overflowing the stack', () => {
    const loop = new Error('wraps itself');
    (loop as { cause?: unknown }).cause = loop;
    expect(isRetryable(loop)).toBe(false);
    const first = new Error('first');
    (first as { cause?: unknown }).cause = new Error('second', { cause: first });
    expect(isRetryable(first)).toBe(false);
  });
});
