import type { AppConfig } from './config.js';
import { EntraTokenValidator, TokenValidationError, type EntraPrincipal } from './entra-token.js';
import { RelayError } from './errors.js';
import { checkTimestamp, parseSignatureHeader, signatureMatches, SignatureError, computeSignature } from './webhook-signature.js';

/**
 * Who may push incidents: an Entra application whose token carries the required app role, or a
 * system holding the shared HMAC key (Key Vault) that signs each request. Errors carry the HTTP
 * status to answer and a message safe to return: never the token, signature or key.
 */
export class WebhookAuthError extends Error {
  /** The calling application, when its token was valid but not enough (for the log line). */
  readonly clientId?: string;

  constructor(
    readonly status: 401 | 403 | 500 | 503,
    message: string,
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown; clientId?: string },
  ) {
    super(message, options);
    this.clientId = options?.clientId;
    this.name = 'WebhookAuthError';
  }
}

export interface BearerCaller {
  kind: 'bearer';
  tenantId: string;
  clientId: string;
  principal: EntraPrincipal;
}
export interface SignedCaller {
  kind: 'hmac';
  timestamp: number;
  /** The signature the relay computed (what the replay guard remembers). */
  signature: Buffer;
}
export type WebhookCaller = BearerCaller | SignedCaller;

export type CredentialKind = 'bearer' | 'hmac';

/** The part of SecretCache the authenticator needs. */
export interface HmacKeySource {
  get(name: string): Promise<string>;
  refresh(name: string): Promise<string>;
}

export interface WebhookAuthenticatorOptions {
  tokens: EntraTokenValidator;
  requiredRole: string;
  hmac: { keys: HmacKeySource; secretName?: string; toleranceSeconds: number };
  now?: () => number;
}

/** A rotated key is re-read after a mismatch, but at most this often (forged requests must not hammer Key Vault). */
const KEY_REFRESH_INTERVAL_MS = 60_000;

export class WebhookAuthenticator {
  readonly #now: () => number;
  #lastKeyRefreshAt = 0;

  constructor(private readonly options: WebhookAuthenticatorOptions) {
    this.#now = options.now ?? Date.now;
  }

  /** Which credential the request brings; 401 (asking for a bearer token) when none or both. */
  credentialKind(headers: { get(name: string): string | null }, signatureHeaderName: string): CredentialKind {
    const bearer = headers.get('authorization') !== null;
    const signed = headers.get(signatureHeaderName) !== null;
    if (bearer && signed) throw new WebhookAuthError(401, 'Send either an Authorization bearer token or an X-Relay-Signature, not both');
    if (bearer) return 'bearer';
    if (signed) return 'hmac';
    throw new WebhookAuthError(401, 'Authentication required: send Authorization: Bearer <Entra token for the relay API>, or sign the request with X-Relay-Signature', {
      'WWW-Authenticate': 'Bearer',
    });
  }

  /** Validates the Entra token (issuer, audience, expiry, tenant) and requires the app role. */
  async authenticateBearer(authorization: string): Promise<BearerCaller> {
    let principal: EntraPrincipal;
    try {
      principal = await this.options.tokens.validate(authorization);
    } catch (err) {
      if (err instanceof TokenValidationError) {
        throw new WebhookAuthError(err.status, err.message, err.status === 401 ? { 'WWW-Authenticate': `Bearer error="invalid_token"` } : {});
      }
      throw err;
    }
    const clientId = principal.clientId ?? 'unknown client';
    if (!principal.roles.includes(this.options.requiredRole)) {
      throw new WebhookAuthError(
        403,
        `The token of application ${clientId} does not carry the app role '${this.options.requiredRole}': ` +
          `assign that role of the relay API to the application (admin consent), then get a new token`,
        {},
        { clientId },
      );
    }
    return { kind: 'bearer', tenantId: principal.tenantId, clientId, principal };
  }

  /**
   * Verifies X-Relay-Signature over the raw body: well-formed, HMAC matches the key from Key Vault
   * (re-read once if it may have rotated), timestamp within the tolerance.
   */
  async authenticateSignature(header: string, body: Uint8Array): Promise<SignedCaller> {
    const { secretName, toleranceSeconds } = this.options.hmac;
    if (!secretName) {
      throw new WebhookAuthError(401, 'Signed requests are not accepted here (no HMAC key is configured: WEBHOOK_HMAC_SECRET_NAME): send an Entra bearer token');
    }
    try {
      const parsed = parseSignatureHeader(header);
      let key = await this.#key(secretName);
      let matches = signatureMatches(parsed, key, body);
      if (!matches && this.#now() - this.#lastKeyRefreshAt >= KEY_REFRESH_INTERVAL_MS) {
        this.#lastKeyRefreshAt = this.#now();
        key = await this.#key(secretName, true);
        matches = signatureMatches(parsed, key, body);
      }
      if (!matches) throw new SignatureError('The X-Relay-Signature does not match the body: sign "<t>.<raw body bytes>" with HMAC-SHA256 and the shared key');
      checkTimestamp(parsed.timestamp, Math.floor(this.#now() / 1000), toleranceSeconds);
      // The guard remembers what the relay computed, so padding the header with other v1 values is no way around it.
      return { kind: 'hmac', timestamp: parsed.timestamp, signature: computeSignature(key, parsed.timestamp, body) };
    } catch (err) {
      if (err instanceof SignatureError) throw new WebhookAuthError(401, err.message);
      throw err;
    }
  }

  async #key(secretName: string, fresh = false): Promise<string> {
    try {
      return fresh ? await this.options.hmac.keys.refresh(secretName) : await this.options.hmac.keys.get(secretName);
    } catch (err) {
      const retryable = err instanceof RelayError && err.retryable;
      throw new WebhookAuthError(retryable ? 503 : 500, retryable
        ? 'The relay could not read its HMAC key just now: retry the request'
        : 'The relay could not read its HMAC key: its operator must fix the Key Vault secret', retryable ? { 'Retry-After': '10' } : {}, { cause: err });
    }
  }
}

/** The authenticator the app uses: tokens for the relay API from the allowed tenants, the HMAC key from Key Vault. */
export function createWebhookAuthenticator(config: AppConfig, keys: HmacKeySource): WebhookAuthenticator {
  const audiences = [config.relayApi.clientId, config.relayApi.uri].filter((a): a is string => Boolean(a));
  return new WebhookAuthenticator({
    tokens: new EntraTokenValidator({ authorityHost: config.entra.authorityHost, audiences, allowedTenantIds: config.webhook.allowedTenantIds }),
    requiredRole: config.webhook.requiredRole,
    hmac: { keys, secretName: config.webhook.hmacSecretName, toleranceSeconds: config.webhook.hmacToleranceSeconds },
  });
}
