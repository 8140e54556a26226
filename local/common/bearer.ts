import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';

/** Why a bearer token was refused; services map these to their own 401 answers. */
export type TokenRejection =
  'missing' | 'malformed' | 'invalid_signature' | 'expired' | 'wrong_audience' | 'wrong_issuer';

export class TokenRejectedError extends Error {
  constructor(
    readonly reason: TokenRejection,
    message: string,
  ) {
    super(message);
    this.name = 'TokenRejectedError';
  }
}

export interface VerifiedToken {
  claims: JWTPayload & {
    tid: string;
    oid?: string;
    appid?: string;
    azp?: string;
    roles?: string[];
    scp?: string;
    idtyp?: string;
    upn?: string;
  };
  /** The client the token was issued to (`appid` in v1 tokens, `azp` in v2). */
  clientId: string;
  roles: string[];
  scopes: string[];
}

export interface TokenVerifier {
  /** Verifies `Authorization: Bearer <jwt>`: signature (RS256, the Entra stand-in's keys), expiry, audience, issuer. */
  verifyAuthorization(header: string | undefined, options: { audience: string | string[] }): Promise<VerifiedToken>;
}

/**
 * Builds a verifier over the Entra stand-in's key set. The issuer must be the one Entra writes for the
 * token's own `tid` in the token's own version (`ver` 1.0: sts.windows.net, 2.0: `/v2.0`), so a token
 * signed for one tenant cannot claim another; the client is `appid` in v1 tokens, `azp` in v2, each
 * "only present" in its version.
 * https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference#payload-claims
 */
export function createTokenVerifier(options: {
  jwks: () => JSONWebKeySet;
  issuerFor: (tenantId: string, version: 1 | 2) => string;
}): TokenVerifier {
  return {
    async verifyAuthorization(header, { audience }) {
      if (!header) throw new TokenRejectedError('missing', 'No Authorization header was sent.');
      const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
      if (!match?.[1])
        throw new TokenRejectedError('malformed', 'The Authorization header is not of the form "Bearer <token>".');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(match[1], createLocalJWKSet(options.jwks()), {
          algorithms: ['RS256'],
          audience,
          clockTolerance: 5,
        }));
      } catch (err) {
        throw toRejection(err);
      }
      const tid = typeof payload.tid === 'string' ? payload.tid : undefined;
      if (!tid) throw new TokenRejectedError('malformed', 'The token has no tid claim.');
      const version = payload.ver === '1.0' ? 1 : payload.ver === '2.0' ? 2 : undefined;
      if (!version) throw new TokenRejectedError('malformed', 'The token has no ver claim of 1.0 or 2.0.');
      if (payload.iss !== options.issuerFor(tid, version)) {
        throw new TokenRejectedError(
          'wrong_issuer',
          `The token's issuer ${String(payload.iss)} is not the issuer of tenant ${tid} for a v${version}.0 token.`,
        );
      }
      const claims = payload as VerifiedToken['claims'];
      const clientId = version === 1 ? claims.appid : claims.azp;
      if (typeof clientId !== 'string' || !clientId) {
        throw new TokenRejectedError(
          'malformed',
          `The v${version}.0 token names no client (${version === 1 ? 'appid' : 'azp'}).`,
        );
      }
      return {
        claims,
        clientId,
        roles: Array.isArray(claims.roles) ? claims.roles : [],
        scopes: typeof claims.scp === 'string' ? claims.scp.split(' ').filter(Boolean) : [],
      };
    },
  };
}

function toRejection(err: unknown): TokenRejectedError {
  if (err instanceof errors.JWTExpired) return new TokenRejectedError('expired', 'The token is expired.');
  if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'aud') {
    return new TokenRejectedError('wrong_audience', 'The token was not issued for this resource (audience).');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSNoMatchingKey) {
    return new TokenRejectedError('invalid_signature', 'The token signature is invalid.');
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return new TokenRejectedError('invalid_signature', 'The token is not signed with an allowed algorithm.');
  }
  return new TokenRejectedError('malformed', 'The token could not be parsed or validated.');
}
