import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload } from 'jose';

/**
 * Validates Entra ID bearer tokens sent to the relay's own endpoints (webhook push, analyst calls):
 * RS256 signature against the issuing tenant's published keys, issuer of that tenant, audience,
 * expiry, and the tenants allowed. What the caller may do (roles, scopes) is the endpoint's decision.
 */
export interface EntraPrincipal {
  tenantId: string;
  objectId?: string;
  /** The calling application (`azp` in v2 tokens, `appid` in v1). */
  clientId?: string;
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

export interface EntraTokenValidatorOptions {
  authorityHost: string;
  /** Accepted `aud` values (the API's client id and its application id URI). */
  audiences: string[];
  /** Tenants whose tokens are accepted; undefined accepts any tenant (the caller checks it). */
  allowedTenantIds?: string[];
  clockToleranceSeconds?: number;
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
    const tenantId = typeof claimed.tid === 'string' ? claimed.tid.toLowerCase() : '';
    if (!TENANT_ID.test(tenantId)) throw unverified('the token has no valid tid claim');
    if (this.options.allowedTenantIds && !this.options.allowedTenantIds.includes(tenantId)) {
      throw unverified(`tokens from tenant ${tenantId} are not accepted here`);
    }

    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, this.#keySet(tenantId), {
        algorithms: ['RS256'],
        audience: this.options.audiences,
        issuer: [`${this.#authorityHost}/${tenantId}/v2.0`, `https://sts.windows.net/${tenantId}/`],
        clockTolerance: this.options.clockToleranceSeconds ?? 60,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      // jose checks claims only once the signature verified: only then may the answer say more.
      if (err instanceof errors.JWTExpired || err instanceof errors.JWTClaimValidationFailed) throw new TokenValidationError(401, describeJoseError(err));
      throw unverified(describeJoseError(err));
    }
    return {
      tenantId,
      objectId: typeof claims.oid === 'string' ? claims.oid : undefined,
      clientId: typeof claims.azp === 'string' ? claims.azp : typeof claims.appid === 'string' ? claims.appid : undefined,
      roles: Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [],
      scopes: typeof claims.scp === 'string' ? claims.scp.split(' ').filter(Boolean) : [],
      userPrincipalName: typeof claims.upn === 'string' ? claims.upn : typeof claims.preferred_username === 'string' ? claims.preferred_username : undefined,
      token,
      claims,
    };
  }

  #keySet(tenantId: string) {
    let keys = this.#keySets.get(tenantId);
    if (!keys) {
      // Bounded: tokens naming ever new tenants must not grow this map without end.
      if (this.#keySets.size >= MAX_CACHED_TENANTS) this.#keySets.delete(this.#keySets.keys().next().value!);
      keys = createRemoteJWKSet(new URL(`${this.#authorityHost}/${tenantId}/discovery/v2.0/keys`), { cooldownDuration: 30_000, cacheMaxAge: 3_600_000 });
      this.#keySets.set(tenantId, keys);
    }
    return keys;
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'The token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'The token was issued for another audience';
    if (err.claim === 'iss') return 'The token was not issued by the tenant it names';
    if (err.claim === 'nbf') return 'The token is not valid yet';
    return `The token's ${err.claim} claim is not acceptable`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return 'The token is not signed with RS256';
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSNoMatchingKey) return 'The token signature is not valid';
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JOSEError) return `The token could not be verified (${(err as Error).message})`;
  return 'The token could not be verified';
}
