import type { AccessToken, AuthenticationError, TokenCredential } from '@azure/identity';
import type { AppConfig } from '../config/config.js';
import { isRetryable, PermanentError, RetryableError } from '../errors.js';
import { loadIdentity } from './lazy-identity.js';
import { recordTokenRequest } from '../telemetry/metrics.js';
import type { SecretCache } from './secrets.js';
import type { Tenant } from '../tenants/tenants.js';

/**
 * Defender tokens for the application and partner contexts. A token is cached per (tenant, client,
 * scope) and renewed shortly before it expires, so a tenant costs one token request per token
 * lifetime. The credential built from the tenant's secret is kept across renewals, so a renewal reads
 * nothing from Key Vault; when Entra refuses the credential, the secret is re-read once (it may have
 * been rotated) before the tenant is reported as failing.
 */
export interface DefenderTokenProviderOptions {
  secrets: SecretCache;
  entra: AppConfig['entra'];
  /** The Function App's own identity, for tenants whose credential kind is `managedIdentity`. */
  appCredential: TokenCredential;
  scope: string;
  /** Whose tokens these are, for messages (default "Defender"). */
  apiName?: string;
  /** Renew this long before expiry (default TOKEN_REFRESH_MARGIN_MS). */
  refreshMarginMs?: number;
  now?: () => number;
}

/**
 * Every call asks the provider for its token, so a token need only outlive the call it is sent with
 * (the client's timeout is 30 s) plus clock skew. A wider margin would renew an hour's token a poll
 * cycle early, and cost more than one request per lifetime.
 */
export const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000;

interface CachedToken {
  token: AccessToken;
  /** The secret the credential was built from, to tell whether a re-read found a new one. */
  secretValue?: string;
  credential: TokenCredential;
  /** Which credential of the tenant's it is (kind and secret name): a changed registration builds a new one. */
  source: string;
}

/** AADSTS codes meaning "the credential itself was refused" — a rotated secret may fix them. */
const CREDENTIAL_REFUSED = new Set([7000215, 7000222, 700027, 700024, 700023]);

const AADSTS_EXPLANATIONS: Record<number, string> = {
  7000215: 'the client secret is wrong',
  7000222: 'the client secret has expired',
  700027: 'the certificate was not accepted',
  700024: 'the client assertion has expired',
  700016:
    'the app is not known in this tenant: the tenant admin has not consented (send the admin-consent link) or the client id is wrong',
  90002: 'the tenant does not exist',
  500011: 'the Defender API is not available in this tenant',
  65001: 'consent is missing for the requested permissions',
};

export class DefenderTokenProvider {
  readonly #cache = new Map<string, CachedToken>();
  /** Token requests sent to Entra (cache misses); the benchmark counts them per tenant. */
  readonly requests = new Map<string, number>();

  constructor(private readonly options: DefenderTokenProviderOptions) {}

  #key(tenant: Tenant): string {
    return `${tenant.tenantId}|${tenant.clientId}|${this.options.scope}`;
  }

  /** A valid bearer token for the tenant's Defender API. */
  async getToken(tenant: Tenant): Promise<string> {
    const now = (this.options.now ?? Date.now)();
    const cached = this.#cache.get(this.#key(tenant));
    if (cached && cached.token.expiresOnTimestamp - now > (this.options.refreshMarginMs ?? TOKEN_REFRESH_MARGIN_MS))
      return cached.token.token;
    return (await this.#acquire(tenant, false)).token.token;
  }

  /** Forget the tenant's token (e.g. after the API answered 401), so the next call gets a new one. */
  invalidate(tenant: Tenant): void {
    this.#cache.delete(this.#key(tenant));
  }

  async #acquire(tenant: Tenant, afterSecretRefresh: boolean): Promise<CachedToken> {
    const key = this.#key(tenant);
    const { credential, secretValue } = await this.#credentialFor(tenant, afterSecretRefresh);
    this.requests.set(tenant.tenantId, (this.requests.get(tenant.tenantId) ?? 0) + 1);
    try {
      const token = await credential.getToken(this.options.scope, { tenantId: tenant.tenantId });
      if (!token)
        throw new PermanentError('The credential returned no token', {
          tenantId: tenant.tenantId,
          operation: `acquire ${this.options.apiName ?? 'Defender'} token`,
        });
      recordTokenRequest(tenant.tenantId, true);
      const entry = { token, secretValue, credential, source: sourceOf(tenant) };
      this.#cache.set(key, entry);
      return entry;
    } catch (err) {
      recordTokenRequest(tenant.tenantId, false);
      const code = aadstsCode(err) ?? (await this.#tenantRefusal(err, tenant));

      if (
        !afterSecretRefresh &&
        code !== undefined &&
        CREDENTIAL_REFUSED.has(code) &&
        tenant.credential.kind !== 'managedIdentity'
      ) {
        const fresh = await this.options.secrets.refreshTenantCredential(tenant.credential.secretName, {
          tenantId: tenant.tenantId,
        });
        if (fresh !== secretValue) return this.#acquire(tenant, true);
      }
      throw toTokenError(err, tenant, code, this.options.apiName);
    }
  }

  /**
   * MSAL reports a tenant that Entra does not know only as "endpoints cannot be resolved", as it
   * would an unreachable Entra. Entra's own answer for the tenant's OpenID metadata tells them apart
   * (AADSTS90002 for an unknown tenant), so a wrong tenant id is named, and not retried.
   */
  async #tenantRefusal(err: unknown, tenant: Tenant): Promise<number | undefined> {
    if (
      !String((err as Error)?.message).includes('endpoints_resolution_error') ||
      tenant.credential.kind === 'managedIdentity'
    )
      return undefined;
    const metadata = new URL(
      `${encodeURIComponent(tenant.tenantId)}/v2.0/.well-known/openid-configuration`,
      this.options.entra.authorityHost.replace(/\/?$/, '/'),
    );
    try {
      const response = await fetch(metadata, { signal: AbortSignal.timeout(5_000) });
      if (response.ok || response.status >= 500) return undefined;
      const body = (await response.json()) as { error_codes?: unknown };
      const [code] = Array.isArray(body.error_codes) ? body.error_codes : [];
      return typeof code === 'number' ? code : undefined;
    } catch {
      return undefined; // unreachable indeed: the caller reports it as such
    }
  }

  async #credentialFor(
    tenant: Tenant,
    refreshed: boolean,
  ): Promise<{ credential: TokenCredential; secretValue?: string }> {
    const authority = {
      authorityHost: this.options.entra.authorityHost,
      disableInstanceDiscovery: this.options.entra.disableInstanceDiscovery,
    };
    const cached = this.#cache.get(this.#key(tenant));
    // A renewal reuses the credential (and MSAL's cache in it); only a refusal makes it read the secret again.
    if (cached && cached.source === sourceOf(tenant) && !refreshed) return cached;
    // Only a secret tagged as a tenant credential is read for one: a tenant naming the relay's own HMAC
    // key is refused here, before its value could reach Entra ID (credential-fence.ts).
    switch (tenant.credential.kind) {
      case 'managedIdentity':
        return { credential: this.options.appCredential };
      case 'secret': {
        const secret = await this.options.secrets.getTenantCredential(tenant.credential.secretName, {
          tenantId: tenant.tenantId,
        });
        const { ClientSecretCredential } = await loadIdentity();
        return {
          credential: new ClientSecretCredential(tenant.tenantId, tenant.clientId, secret, authority),
          secretValue: secret,
        };
      }
      case 'certificate': {
        const pem = await this.options.secrets.getTenantCredential(tenant.credential.secretName, {
          tenantId: tenant.tenantId,
        });
        const { ClientCertificateCredential } = await loadIdentity();
        return {
          credential: new ClientCertificateCredential(
            tenant.tenantId,
            tenant.clientId,
            { certificate: pem },
            authority,
          ),
          secretValue: pem,
        };
      }
    }
  }
}

function sourceOf(tenant: Tenant): string {
  return tenant.credential.kind === 'managedIdentity'
    ? 'managedIdentity'
    : `${tenant.credential.kind}:${tenant.credential.secretName}`;
}

/**
 * An Entra refusal as @azure/identity reports it, told by the name its errors.ts gives it: the SDK
 * loads lazily (lazy-identity.ts), so its class is not at hand here.
 */
function isAuthenticationError(err: unknown): err is AuthenticationError {
  return err instanceof Error && err.name === 'AuthenticationError';
}

/** The AADSTS code of an Entra refusal, if there is one. */
export function aadstsCode(err: unknown): number | undefined {
  if (isAuthenticationError(err)) {
    const codes = err.errorResponse?.errorCodes;
    if (codes?.[0] !== undefined) return Number(codes[0]);
  }
  const m = /AADSTS(\d+)/.exec(err instanceof Error ? err.message : String(err));
  return m ? Number(m[1]) : undefined;
}

function toTokenError(err: unknown, tenant: Tenant, code = aadstsCode(err), apiName = 'Defender'): Error {
  if (err instanceof PermanentError || err instanceof RetryableError) return err;
  const context = {
    tenantId: tenant.tenantId,
    operation: `acquire ${apiName} token for client ${tenant.clientId}`,
    code: code ? `AADSTS${code}` : undefined,
  };
  if (code !== undefined) {
    const why = AADSTS_EXPLANATIONS[code] ?? 'Entra ID refused the request';
    return new PermanentError(`Entra ID refused the token request: AADSTS${code}, ${why}`, context, { cause: err });
  }
  const status = isAuthenticationError(err) ? err.statusCode : undefined;
  if (status === undefined || status >= 500 || isRetryable(err)) {
    return new RetryableError('Entra ID could not be reached or failed', { ...context, status }, { cause: err });
  }
  return new PermanentError(
    `Entra ID refused the token request (HTTP ${status})`,
    { ...context, status },
    { cause: err },
  );
}
