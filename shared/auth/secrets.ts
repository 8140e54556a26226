import type { SecretClient } from '@azure/keyvault-secrets';
import { isTenantCredential, NotTenantCredentialError } from './credential-fence.js';
import { isRetryable, PermanentError, RetryableError } from '../errors.js';
import { recordKeyVaultRead } from '../telemetry/metrics.js';
import { untrustedCertificateCode, untrustedCertificateMessage } from './tls-errors.js';

interface CachedSecret {
  value: string;
  /** The version's tags: whether it is a tenant credential is decided from them, without another read. */
  tags?: Record<string, string>;
  fetchedAt: number;
}

/** How long a secret found without the tenant-credential tag is trusted to still lack it. */
export const UNTAGGED_RECHECK_MS = 60_000;

/**
 * Key Vault secrets with a TTL cache: a poll cycle reads no secret after warm-up, and a rotated
 * secret is picked up either when the TTL lapses or at once through `refresh` after an auth failure.
 * A tenant's credential is read through `getTenantCredential`, which also requires the secret's
 * tenant-credential tag (cached with the value, so the check costs no read).
 */
export class SecretCache {
  readonly #entries = new Map<string, CachedSecret>();
  readonly #inFlight = new Map<string, Promise<CachedSecret>>();
  /** Key Vault reads made so far (the benchmark counts them). */
  reads = 0;

  constructor(
    private readonly client: SecretClient,
    private readonly ttlMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The secret's current value, from the cache while it is fresh. */
  async get(name: string, context: { tenantId?: string } = {}): Promise<string> {
    return (await this.#current(name, context)).value;
  }

  /** Reads the secret from Key Vault now (e.g. after the credential it holds was refused: it may have rotated). */
  async refresh(name: string, context: { tenantId?: string } = {}): Promise<string> {
    return (await this.#fresh(name, context)).value;
  }

  /**
   * A tenant's credential: as `get`, but only from a secret tagged as a tenant credential
   * (`credential-fence.ts`); any other secret, such as the relay's own HMAC key, is refused with
   * `NotTenantCredentialError` and its value is not returned. The tag is cached with the value.
   */
  async getTenantCredential(name: string, context: { tenantId?: string } = {}): Promise<string> {
    // An untagged secret is looked at again sooner, so tagging it takes effect within a minute (at
    // one read a minute per such secret); a tagged one is read once per TTL like any other.
    const cached = this.#entries.get(name);
    const maxAgeMs =
      cached && !isTenantCredential(cached.tags) ? Math.min(this.ttlMs, UNTAGGED_RECHECK_MS) : this.ttlMs;
    return this.#asTenantCredential(name, await this.#current(name, context, maxAgeMs), context);
  }

  /** As `refresh`, for a tenant's credential (see `getTenantCredential`). */
  async refreshTenantCredential(name: string, context: { tenantId?: string } = {}): Promise<string> {
    return this.#asTenantCredential(name, await this.#fresh(name, context), context);
  }

  #asTenantCredential(name: string, secret: CachedSecret, context: { tenantId?: string }): string {
    if (!isTenantCredential(secret.tags))
      throw new NotTenantCredentialError(name, this.client.vaultUrl, {
        ...context,
        operation: `read tenant credential '${name}'`,
      });
    return secret.value;
  }

  #current(name: string, context: { tenantId?: string }, maxAgeMs = this.ttlMs): CachedSecret | Promise<CachedSecret> {
    const entry = this.#entries.get(name);
    if (entry && this.now() - entry.fetchedAt < maxAgeMs) return entry;
    return this.#fresh(name, context);
  }

  #fresh(name: string, context: { tenantId?: string }): Promise<CachedSecret> {
    // Concurrent callers share one read.
    let pending = this.#inFlight.get(name);
    if (!pending) {
      pending = this.#read(name, context).finally(() => this.#inFlight.delete(name));
      this.#inFlight.set(name, pending);
    }
    return pending;
  }

  async #read(name: string, context: { tenantId?: string }): Promise<CachedSecret> {
    this.reads += 1;
    const operation = `read Key Vault secret '${name}'`;
    try {
      const secret = await this.client.getSecret(name);
      if (secret.value === undefined)
        throw new PermanentError('The Key Vault secret has no value', { ...context, operation });
      const entry = { value: secret.value, tags: secret.properties.tags, fetchedAt: this.now() };
      this.#entries.set(name, entry);
      recordKeyVaultRead(true);
      return entry;
    } catch (err) {
      recordKeyVaultRead(false);
      if (err instanceof PermanentError) throw err;
      const e = err as { code?: string; statusCode?: number; message?: string };
      const detail = { ...context, operation, status: e.statusCode, code: e.code };
      if (e.code === 'SecretNotFound')
        throw new PermanentError(`Key Vault has no secret named '${name}'`, detail, { cause: err });
      if (e.statusCode === 403)
        throw new PermanentError(
          `The app's identity may not read Key Vault secret '${name}' (403 ${e.code ?? ''})`.trim(),
          detail,
          { cause: err },
        );
      const untrusted = untrustedCertificateCode(err);
      if (untrusted)
        throw new PermanentError(untrustedCertificateMessage('Key Vault', untrusted), detail, { cause: err });
      if (isRetryable(err))
        throw new RetryableError(`Key Vault did not answer (${e.statusCode ?? e.code ?? 'network error'})`, detail, {
          cause: err,
        });
      throw new PermanentError(
        `Key Vault refused to return the secret: ${e.message?.split('\n')[0] ?? 'unknown error'}`,
        detail,
        { cause: err },
      );
    }
  }
}
