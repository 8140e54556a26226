import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  errors,
  jwtVerify,
  type FetchImplementation,
  type JWTPayload,
} from 'jose';

/**
 * Validates Entra ID bearer tokens sent to the relay's own endpoints (webhook push, analyst calls):
 * RS256 signature against the issuing tenant's published keys, issuer of that tenant, audience,
 * expiry, and the tenants allowed. What the caller may do (roles, scopes) is the endpoint's decision.
 * When the keys cannot be fetched (Entra unreachable), that is `SigningKeysUnavailableError`, not an
 * invalid token: the endpoints answer 503 with Retry-After.
 *
 * Both access token versions are accepted, each on its own terms. The version is the relay API's
 * registration's choice (`accessTokenAcceptedVersion`, null = 1), not the caller's endpoint:
 * - v1.0 (`ver` "1.0"): `iss` = `https://sts.windows.net/{tid}/`, keys from `/{tid}/discovery/keys`,
 *   the caller in `appid`, the user in `upn`; `aud` the App ID URI or the client id, as the caller's scope named it;
 * - v2.0 (`ver` "2.0"): `iss` = `{authority}/{tid}/v2.0`, keys from `/{tid}/discovery/v2.0/keys`,
 *   the caller in `azp`, the user in `preferred_username` (or `upn` if configured as an optional claim); `aud` the client id.
 * A claim only the other version carries is never read (`appid` "only present in v1.0 tokens", `azp`
 * "only present in v2.0 tokens").
 * https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference#payload-claims
 * https://learn.microsoft.com/entra/identity-platform/access-tokens#v10-and-v20-tokens
 * https://learn.microsoft.com/entra/identity-platform/reference-app-manifest#accesstokenacceptedversion-attribute
 */
export interface EntraPrincipal {
  tenantId: string;
  objectId?: string;
  /** The calling application: `appid` in v1.0 tokens, `azp` in v2.0 (never the other version's claim). */
  clientId: string;
  /** The token's version (`ver`), which decided the issuer, keys and claims read. */
  version: AccessTokenVersion;
  roles: string[];
  scopes: string[];
  userPrincipalName?: string;
  /** The raw token, for on-behalf-of exchanges. Never log it. */
  token: string;
  claims: JWTPayload;
}

export class TokenValidationError extends Error {
  constructor(
    /** 401: not authenticated (missing, malformed, expired, forged); 403: authenticated but not allowed. */
    readonly status: 401 | 403,
    /** What the caller is told. */
    message: string,
    /** What the log says, when it says more than the caller may learn. */
    readonly detail: string = message,
  ) {
    super(message);
    // Stryker disable next-line StringLiteral: its callers (webhook-auth, user-context) tell it by instanceof and answer with its status, message and detail; the name reaches no answer or log line
    this.name = 'TokenValidationError';
  }
}

/**
 * The one answer to every token refused before its signature is verified (malformed, no tenant, a
 * tenant not accepted, a forged signature): what differs is logged, never answered, so a caller
 * without a valid token cannot learn which tenants the relay accepts.
 */
export const UNVERIFIED_TOKEN_MESSAGE = 'The bearer token is not valid for this API';
const unverified = (detail: string) => new TokenValidationError(401, UNVERIFIED_TOKEN_MESSAGE, detail);

/**
 * Entra ID's signing keys for the token's tenant could not be fetched (no answer, a 5xx or 429, a timeout,
 * or a 200 that is no key set): the token is neither valid nor invalid yet. The endpoints answer 503
 * with Retry-After and log this error's message; a key set that was fetched but lacks the token's key,
 * or Entra refusing the keys of a tenant it does not know (4xx), is an invalid token (401) as before.
 */
export class SigningKeysUnavailableError extends Error {
  constructor(
    /** The key set's address. */
    readonly url: string,
    /** What went wrong, for the log. */
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Entra ID's signing keys could not be fetched from ${url}: ${reason}`, options);
    this.name = 'SigningKeysUnavailableError';
  }
}

/** What the caller is told when Entra's keys could not be fetched (the same for every tenant). */
export const SIGNING_KEYS_UNAVAILABLE_MESSAGE =
  'The relay could not reach Entra ID to verify the token just now: retry the request';

/** `ver` 1.0 or 2.0. */
export type AccessTokenVersion = 1 | 2;

/** Entra's v1.0 issuer for a tenant: "If the token issued is a v2.0 token (see the ver claim), the URI ends in /v2.0". */
export const V1_ISSUER_HOST = 'https://sts.windows.net';

export interface EntraTokenValidatorOptions {
  authorityHost: string;
  /**
   * Accepted `aud` values, exactly: the API's client id (v2 tokens, and v1 tokens requested by it) and
   * its App ID URI (v1 tokens requested by it). A form left out is refused, whichever version.
   */
  audiences: string[];
  /** Tenants whose tokens are accepted; undefined accepts any tenant (the caller checks it). */
  allowedTenantIds?: string[];
  clockToleranceSeconds?: number;
  /** How long a fetch of a tenant's keys may take (default 5 s, jose's); longer is an outage (503). */
  keysTimeoutMs?: number;
}

const MAX_CACHED_TENANTS = 1_000;
const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class EntraTokenValidator {
  readonly #keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  readonly #authorityHost: string;

  constructor(private readonly options: EntraTokenValidatorOptions) {
    this.#authorityHost = options.authorityHost.replace(/\/+$/, '');
  }

  async validate(authorization: string | null | undefined): Promise<EntraPrincipal> {
    if (!authorization) throw new TokenValidationError(401, 'No bearer token: send Authorization: Bearer <token>');
    const match = /^Bearer\s+([\w-]+\.[\w-]+\.[\w-]*)$/i.exec(authorization.trim());
    if (!match) throw unverified('the Authorization header is not a bearer JWT');
    const token = match[1]!;

    // The tenant picks the keys and issuer to check against; nothing from the token is trusted before that check.
    let claimed: JWTPayload;
    try {
      claimed = decodeJwt(token);
    } catch {
      throw unverified('the bearer token is not a valid JWT');
    }
    // Stryker disable next-line StringLiteral: equivalent: whatever stands in for a missing tid is refused by the GUID test below, as '' is
    const tenantId = typeof claimed.tid === 'string' ? claimed.tid.toLowerCase() : '';
    if (!TENANT_ID.test(tenantId)) throw unverified('the token has no valid tid claim');
    if (this.options.allowedTenantIds && !this.options.allowedTenantIds.includes(tenantId)) {
      throw unverified(`tokens from tenant ${tenantId} are not accepted here`);
    }
    // The version picks the one issuer and key set the token must match; the signature then binds it.
    const version = claimed.ver === '1.0' ? 1 : claimed.ver === '2.0' ? 2 : undefined;
    if (!version) throw unverified('the token has no ver claim of 1.0 or 2.0');

    let claims: JWTPayload;
    const keysUrl = this.keysUrlFor(tenantId, version);
    try {
      ({ payload: claims } = await jwtVerify(token, this.#keySet(keysUrl), {
        algorithms: ['RS256'],
        audience: this.options.audiences,
        issuer: this.issuerFor(tenantId, version),
        clockTolerance: this.options.clockToleranceSeconds ?? 60,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      // Entra could not give the keys: nothing is known about the token yet, so it is not called invalid.
      if (err instanceof SigningKeysUnavailableError) throw err;
      if (err instanceof KeysRefusedError)
        throw unverified(
          `Entra ID refused the signing keys of tenant ${tenantId} (HTTP ${err.status} from ${keysUrl}): it does not know the tenant`,
        );
      if (err instanceof errors.JWKSTimeout)
        throw new SigningKeysUnavailableError(
          keysUrl,
          `no answer within ${this.options.keysTimeoutMs ?? KEYS_TIMEOUT_MS} ms`,
          { cause: err },
        );
      // jose checks claims only once the signature verified: only then may the answer say more.
      if (err instanceof errors.JWTExpired || err instanceof errors.JWTClaimValidationFailed)
        throw new TokenValidationError(401, describeJoseError(err));
      throw unverified(describeJoseError(err));
    }
    // The caller as its version names it; a token without that claim is no Entra token of that version.
    const clientClaim = version === 1 ? 'appid' : 'azp';
    const clientId = claims[clientClaim];
    if (typeof clientId !== 'string' || !clientId) {
      throw new TokenValidationError(401, `The v${version}.0 token names no calling application (${clientClaim})`);
    }
    const upn = typeof claims.upn === 'string' ? claims.upn : undefined;
    const preferred =
      version === 2 && typeof claims.preferred_username === 'string' ? claims.preferred_username : undefined;
    return {
      tenantId,
      version,
      objectId: typeof claims.oid === 'string' ? claims.oid : undefined,
      clientId,
      roles: Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [],
      scopes: typeof claims.scp === 'string' ? claims.scp.split(' ').filter(Boolean) : [],
      userPrincipalName: upn ?? preferred,
      token,
      claims,
    };
  }

  /** The one issuer a token of this tenant and version may carry. */
  issuerFor(tenantId: string, version: AccessTokenVersion): string {
    return version === 1 ? `${V1_ISSUER_HOST}/${tenantId}/` : `${this.#authorityHost}/${tenantId}/v2.0`;
  }

  /**
   * The tenant's published keys for the version: the v2.0 metadata's jwks_uri, and for v1.0 tokens the
   * same address without `/v2.0` ("Just remove the /v2.0 in the URL if you validate v1.0 tokens").
   */
  keysUrlFor(tenantId: string, version: AccessTokenVersion): string {
    return `${this.#authorityHost}/${tenantId}/${version === 1 ? 'discovery/keys' : 'discovery/v2.0/keys'}`;
  }

  #keySet(url: string) {
    let keys = this.#keySets.get(url);
    if (!keys) {
      // Bounded: tokens naming ever new tenants must not grow this map without end.
      if (this.#keySets.size >= MAX_CACHED_TENANTS) this.#keySets.delete(this.#keySets.keys().next().value!);
      keys = createRemoteJWKSet(new URL(url), {
        cooldownDuration: 30_000,
        cacheMaxAge: 3_600_000,
        timeoutDuration: this.options.keysTimeoutMs ?? KEYS_TIMEOUT_MS,
        [customFetch]: fetchKeys,
      });
      this.#keySets.set(url, keys);
    }
    return keys;
  }
}

/** Entra answered a request for a tenant's keys with a status that is no outage (400 for a tenant it does not know). */
class KeysRefusedError extends Error {
  constructor(readonly status: number) {
    // Stryker disable next-line StringLiteral: equivalent: validate() always turns it into an unverified-token refusal naming the status; its message and name reach no answer or log line
    super(`Entra ID refused the signing keys (HTTP ${status})`);
    // Stryker disable next-line StringLiteral: as above
    this.name = 'KeysRefusedError';
  }
}

/** jose's default: a key set not fetched within this is an outage. */
const KEYS_TIMEOUT_MS = 5_000;

/**
 * Fetches a key set as jose would, telling Entra being unavailable (no answer, 408, 429, 5xx, a 200 that
 * is no JSON key set) apart from Entra refusing the keys (another status: jose refuses it, and the token
 * is invalid). jose turns its own timeout (a TimeoutError) into JWKSTimeout.
 */
const fetchKeys: FetchImplementation = async (url, options) => {
  const unavailable = (reason: string, cause?: unknown) => new SigningKeysUnavailableError(url, reason, { cause });
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, options);
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => undefined);
      if (response.status >= 500 || response.status === 408 || response.status === 429)
        throw unavailable(`HTTP ${response.status}`);
      throw new KeysRefusedError(response.status);
    }
    text = await response.text();
  } catch (err) {
    if (
      err instanceof SigningKeysUnavailableError ||
      err instanceof KeysRefusedError ||
      (err as Error | undefined)?.name === 'TimeoutError'
    )
      throw err;
    throw unavailable(`no answer (${fetchFailure(err)})`, err);
  }
  let keys: unknown;
  try {
    keys = (JSON.parse(text) as { keys?: unknown } | null)?.keys;
  } catch {
    // Not JSON: no key set (keys stays undefined).
  }
  if (!Array.isArray(keys)) throw unavailable('the answer (HTTP 200) is not a JSON key set');
  // The body was read: jose gets it anew (it reads only the status, 200 by default, and the JSON).
  return new Response(text);
};

/** The network error behind a failed fetch: undici's `fetch failed` names it in its cause (ECONNREFUSED, ECONNRESET, a TLS code). */
function fetchFailure(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const message = typeof cause?.message === 'string' ? cause.message : err instanceof Error ? err.message : String(err);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'The token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'The token was issued for another audience';
    if (err.claim === 'iss')
      return 'The token was not issued by the tenant it names, in the issuer form of its version (ver)';
    if (err.claim === 'nbf') return 'The token is not valid yet';
    return `The token's ${err.claim} claim is not acceptable`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported)
    return 'The token is not signed with RS256';
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSNoMatchingKey)
    return 'The token signature is not valid';
  // jose's own errors say what it found; what else could fail (a key jose will not use, say) is not described.
  if (err instanceof errors.JOSEError) return `The token could not be verified (${err.message})`;
  return 'The token could not be verified';
}
