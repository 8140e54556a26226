import { RestError as PipelineRestError } from '@azure/core-rest-pipeline';
import { RestError as TablesRestError } from '@azure/data-tables';
import type { SecretClient } from '@azure/keyvault-secrets';
import { RestError as QueueRestError } from '@azure/storage-queue';
import { describe, expect, it } from 'vitest';
import { isRetryable, RetryableError } from '../../shared/errors.js';
import { SecretCache } from '../../shared/secrets.js';

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
        if (throttled) throw new PipelineRestError('Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached', { statusCode: 429, code: 'Throttled' });
        return { name, value: 'the-value', properties: { name, vaultUrl: 'https://relay-kv.vault.azure.net', tags: {} } };
      },
    } as unknown as SecretClient;
    const cache = new SecretCache(client);

    const failure = await cache.get('tenant-secret').then(() => undefined, (err: unknown) => err);
    expect(failure).toBeInstanceOf(RetryableError);
    expect(isRetryable(failure)).toBe(true);
    expect((failure as RetryableError).message).toMatch(/Key Vault did not answer \(429\)/);

    throttled = false;
    expect(await cache.get('tenant-secret')).toBe('the-value');
  });
});
