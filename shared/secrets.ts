import type { SecretClient } from '@azure/keyvault-secrets';
import { isRetryable, PermanentError, RetryableError } from './errors.js';

/**
 * Key Vault secrets with a TTL cache: a poll cycle reads no secret after warm-up, and a rotated
 * secret is picked up either when the TTL lapses or at once through `refresh` after an auth failure.
 */
export class SecretCache {
  readonly #entries = new Map<string, { value: string; fetchedAt: number }>();
  readonly #inFlight = new Map<string, Promise<string>>();
  /** Key Vault reads made so far (the benchmark counts them). */
  reads = 0;

  constructor(
    private readonly client: SecretClient,
    private readonly ttlMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The secret's current value, from the cache while it is fresh. */
  async get(name: string, context: { tenantId?: string } = {}): Promise<string> {
    const entry = this.#entries.get(name);
    if (entry && this.now() - entry.fetchedAt < this.ttlMs) return entry.value;
    return this.refresh(name, context);
  }

  /** Reads the secret from Key Vault now (e.g. after the credential it holds was refused: it may have rotated). */
  refresh(name: string, context: { tenantId?: string } = {}): Promise<string> {
    // Concurrent callers share one read.
    let pending = this.#inFlight.get(name);
    if (!pending) {
      pending = this.#read(name, context).finally(() => this.#inFlight.delete(name));
      this.#inFlight.set(name, pending);
    }
    return pending;
  }

  async #read(name: string, context: { tenantId?: string }): Promise<string> {
    this.reads += 1;
    const operation = `read Key Vault secret '${name}'`;
    try {
      const secret = await this.client.getSecret(name);
      if (secret.value === undefined) throw new PermanentError('The Key Vault secret has no value', { ...context, operation });
      this.#entries.set(name, { value: secret.value, fetchedAt: this.now() });
      return secret.value;
    } catch (err) {
      if (err instanceof PermanentError) throw err;
      const e = err as { code?: string; statusCode?: number; message?: string };
      const detail = { ...context, operation, status: e.statusCode, code: e.code };
      if (e.code === 'SecretNotFound') throw new PermanentError(`Key Vault has no secret named '${name}'`, detail, { cause: err });
      if (e.statusCode === 403) throw new PermanentError(`The app's identity may not read Key Vault secret '${name}' (403 ${e.code ?? ''})`.trim(), detail, { cause: err });
      if (isRetryable(err)) throw new RetryableError(`Key Vault did not answer (${e.statusCode ?? e.code ?? 'network error'})`, detail, { cause: err });
      throw new PermanentError(`Key Vault refused to return the secret: ${e.message?.split('\n')[0] ?? 'unknown error'}`, detail, { cause: err });
    }
  }
}
