import type { AppConfig } from '../config/config.js';
import {
  EntraTokenValidator,
  SIGNING_KEYS_UNAVAILABLE_MESSAGE,
  SigningKeysUnavailableError,
  TokenValidationError,
  type EntraPrincipal,
} from './entra-token.js';
import { RelayError } from '../errors.js';
import type { HmacKeyGrant, WebhookAccess } from './webhook-access.js';
import {
  checkTimestamp,
  computePushSignature,
  parseSignatureHeader,
  pushSignatureMatches,
  SignatureError,
  type SignedRequest,
} from './webhook-signature.js';

/**
 * Who may push incidents: an Entra application whose token carries the required app role, or a
 * system holding an HMAC key (Key Vault) that signs each request; `WebhookAccess` then says for which
 * tenants. Errors carry the HTTP status to answer and a message safe to return: never the token,
 * signature or key, and, before a credential is verified, nothing that depends on the tenant.
 */
export class WebhookAuthError extends Error {
  /** The calling application, when its token was valid but not enough (for the log line). */
  readonly clientId?: string;
  /** What the log line says, when it says more than the caller may learn. */
  readonly detail: string;

  constructor(
    readonly status: 401 | 403 | 500 | 503,
    message: string,
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown; clientId?: string; detail?: string },
  ) {
    super(message, options);
    this.clientId = options?.clientId;
    this.detail = options?.detail ?? message;
    // Stryker disable next-line StringLiteral: its one caller (webhook-push) tells it by instanceof and answers with its status, message and headers; the name reaches no answer or log line
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
  /** The access file's name of the key that signed. */
  keyName: string;
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
  tokens: Pick<EntraTokenValidator, 'validate'>;
  requiredRole: string;
  /** Who may push for whom (the webhook access file); read when first needed. */
  access: () => WebhookAccess;
  hmac: { keys: HmacKeySource; toleranceSeconds: number };
  now?: () => number;
}

/**
 * The one answer to every signed request refused before a key verified it (malformed header, no key
 * for that tenant, a signature that does not match), so that it says nothing about which tenants
 * have keys.
 */
export const UNVERIFIED_SIGNATURE_MESSAGE =
  'The X-Relay-Signature is not valid for this request: sign "<t>.<tenant id>.POST /api/incidents.<raw body>" with HMAC-SHA256 and a key granted that tenant, and send t=<t>,v2=<hex>';

/**
 * A rotated key is re-read after a mismatch, but at most this often per key (forged requests must not
 * hammer Key Vault). Per key, so that one tenant's forgeries never spend the re-read another tenant's
 * rotated key needs.
 */
const KEY_REFRESH_INTERVAL_MS = 60_000;

export class WebhookAuthenticator {
  readonly #now: () => number;
  /** When each key (Key Vault secret name) was last re-read after a mismatch; as many entries as the access file has keys. */
  readonly #keyRefreshedAt = new Map<string, number>();

  constructor(private readonly options: WebhookAuthenticatorOptions) {
    this.#now = options.now ?? Date.now;
  }

  /** Which credential the request brings; 401 (asking for a bearer token) when none or both. */
  credentialKind(headers: { get(name: string): string | null }, signatureHeaderName: string): CredentialKind {
    const bearer = headers.get('authorization') !== null;
    const signed = headers.get(signatureHeaderName) !== null;
    if (bearer && signed)
      throw new WebhookAuthError(401, 'Send either an Authorization bearer token or an X-Relay-Signature, not both');
    if (bearer) return 'bearer';
    if (signed) return 'hmac';
    throw new WebhookAuthError(
      401,
      'Authentication required: send Authorization: Bearer <Entra token for the relay API>, or sign the request with X-Relay-Signature',
      {
        'WWW-Authenticate': 'Bearer',
      },
    );
  }

  /** Validates the Entra token (issuer, audience, expiry, tenant) and requires an application's token (not a user's) with the app role. */
  async authenticateBearer(authorization: string): Promise<BearerCaller> {
    let principal: EntraPrincipal;
    try {
      principal = await this.options.tokens.validate(authorization);
    } catch (err) {
      if (err instanceof TokenValidationError) {
        throw new WebhookAuthError(
          err.status,
          err.message,
          // Stryker disable next-line ConditionalExpression: equivalent for `true`: the validator (entra-token.ts) refuses only with 401, so the challenge is always sent; `false` is held by test/integration/api/webhook-auth.test.ts
          err.status === 401 ? { 'WWW-Authenticate': `Bearer error="invalid_token"` } : {},
          { detail: err.detail },
        );
      }
      // Not a bad token: Entra could not give the keys to check it with. Retryable, as Key Vault trouble is.
      if (err instanceof SigningKeysUnavailableError) {
        throw new WebhookAuthError(
          503,
          SIGNING_KEYS_UNAVAILABLE_MESSAGE,
          { 'Retry-After': '10' },
          { cause: err, detail: 'the token could not be verified' },
        );
      }
      throw err;
    }
    const clientId = principal.clientId;
    // Pushing is for applications. A signed-in user's token (delegated: it has scp, and idtyp "user" where
    // Entra adds it) is refused even when the user holds the app role, as the analyst endpoints refuse app tokens.
    if (isDelegated(principal)) {
      throw new WebhookAuthError(
        403,
        `The token is a signed-in user's (delegated): incidents are pushed by applications. Get a token for the application itself ` +
          `(client credentials or a managed identity) with the app role '${this.options.requiredRole}'`,
        {},
        {
          clientId,
          detail: `refused a signed-in user's (delegated) token: ${delegation(principal)}; pushing takes an application's token`,
        },
      );
    }
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

  /** Whether a verified token may push for `tenantId`; 403 naming the grant to add when not. */
  authorizeBearer(caller: BearerCaller, tenantId: string): void {
    if (this.options.access().tokenMayPushFor(caller.principal, tenantId)) return;
    // The caller is known to the log line already: authenticateBearer returned it.
    throw new WebhookAuthError(
      403,
      `Application ${caller.clientId} of tenant ${caller.tenantId} may not push incidents for tenant ${tenantId}: ` +
        `a token pushes for its own tenant (WEBHOOK_ALLOWED_TENANT_IDS), or for the tenants its caller entry lists in WEBHOOK_ACCESS_FILE (callers[].mayPushFor)`,
    );
  }

  /**
   * Verifies a v2 X-Relay-Signature over the request (tenant, method, path) and raw body with the keys
   * granted that tenant (after a mismatch, each re-read if it may have rotated, at most once a minute per
   * key), then the timestamp. Every failure before a key matches gets the same answer; the log line says which it was.
   */
  async authenticateSignature(header: string, body: Uint8Array, request: SignedRequest): Promise<SignedCaller> {
    const { toleranceSeconds } = this.options.hmac;
    let parsed;
    try {
      parsed = parseSignatureHeader(header, 'v2');
    } catch (err) {
      if (err instanceof SignatureError) throw new WebhookAuthError(401, err.message);
      throw err;
    }
    const grants = this.options.access().hmacKeysFor(request.tenantId);
    if (grants.length === 0) {
      // Spend the time a key's check costs, so the answer's timing does not say the tenant has no key either.
      computePushSignature(UNUSED_KEY, parsed.timestamp, request, body);
      throw new WebhookAuthError(
        401,
        UNVERIFIED_SIGNATURE_MESSAGE,
        {},
        { detail: `no HMAC key may sign for tenant ${request.tenantId}` },
      );
    }
    const matches = (key: string) => pushSignatureMatches(parsed, key, request, body);
    let matched = await this.#matchingKey(grants, matches);
    if (!matched) {
      // Only the keys whose own re-read slot is free are read again.
      const now = this.#now();
      const due = grants.filter(
        (g) => now - (this.#keyRefreshedAt.get(g.secretName) ?? -Infinity) >= KEY_REFRESH_INTERVAL_MS,
      );
      for (const grant of due) this.#keyRefreshedAt.set(grant.secretName, now);
      matched = await this.#matchingKey(due, matches, true);
    }
    if (!matched)
      throw new WebhookAuthError(
        401,
        UNVERIFIED_SIGNATURE_MESSAGE,
        {},
        { detail: `the signature does not match any key granted tenant ${request.tenantId}` },
      );
    try {
      checkTimestamp(parsed.timestamp, Math.floor(this.#now() / 1000), toleranceSeconds);
    } catch (err) {
      if (err instanceof SignatureError) throw new WebhookAuthError(401, err.message);
      throw err;
    }
    // The guard remembers what the relay computed, so padding the header with other v2 values is no way around it.
    return {
      kind: 'hmac',
      keyName: matched.grant.name,
      timestamp: parsed.timestamp,
      signature: computePushSignature(matched.key, parsed.timestamp, request, body),
    };
  }

  async #matchingKey(
    grants: HmacKeyGrant[],
    matches: (key: string) => boolean,
    fresh = false,
  ): Promise<{ grant: HmacKeyGrant; key: string } | undefined> {
    for (const grant of grants) {
      const key = await this.#key(grant.secretName, fresh);
      if (matches(key)) return { grant, key };
    }
    return undefined;
  }

  async #key(secretName: string, fresh: boolean): Promise<string> {
    try {
      return fresh ? await this.options.hmac.keys.refresh(secretName) : await this.options.hmac.keys.get(secretName);
    } catch (err) {
      const retryable = err instanceof RelayError && err.retryable;
      throw new WebhookAuthError(
        retryable ? 503 : 500,
        retryable
          ? 'The relay could not read its HMAC key just now: retry the request'
          : 'The relay could not read its HMAC key: its operator must fix the Key Vault secret',
        retryable ? { 'Retry-After': '10' } : {},
        { cause: err },
      );
    }
  }
}

/** Whether the token acts for a signed-in user: `scp` is in delegated tokens only, `idtyp` (an optional claim) says "user" for them. */
function isDelegated(principal: EntraPrincipal): boolean {
  return principal.claims.scp !== undefined || principal.claims.idtyp === 'user';
}

/** What made the token a user's, for the log line (never the user's name). */
function delegation(principal: EntraPrincipal): string {
  const { scp, idtyp } = principal.claims;
  return [scp !== undefined && `scp ${JSON.stringify(scp)}`, idtyp !== undefined && `idtyp ${JSON.stringify(idtyp)}`]
    .filter(Boolean)
    .join(', ');
}

/** Never a real key: what a request for a tenant without keys is checked against, for the time it takes. */
const UNUSED_KEY = 'no key is granted this tenant';

/** The authenticator the app uses: tokens for the relay API from the tenants the access allows, HMAC keys from Key Vault. */
export function createWebhookAuthenticator(
  config: AppConfig,
  keys: HmacKeySource,
  access: () => WebhookAccess,
): WebhookAuthenticator {
  const audiences = [config.relayApi.clientId, config.relayApi.uri].filter((a): a is string => Boolean(a));
  let tokens: EntraTokenValidator | undefined;
  const validator = () =>
    (tokens ??= new EntraTokenValidator({
      authorityHost: config.entra.authorityHost,
      audiences,
      allowedTenantIds: access().tokenTenantIds(),
    }));
  return new WebhookAuthenticator({
    tokens: { validate: (authorization) => validator().validate(authorization) },
    requiredRole: config.webhook.requiredRole,
    access,
    hmac: { keys, toleranceSeconds: config.webhook.hmacToleranceSeconds },
  });
}
