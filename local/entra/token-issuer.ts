import { OAuth2Issuer } from 'oauth2-mock-server';
import type { JSONWebKeySet } from 'jose';

/**
 * Signs the Entra stand-in's tokens. The keys (RS256) and signing come from oauth2-mock-server;
 * this module only decides the claims, shaped as Entra shapes them. The version is the resource's
 * (its manifest's `accessTokenAcceptedVersion`, default 1), not the endpoint's:
 * - v1 (Defender, Key Vault, Graph, and any app registration that leaves the default):
 *   `iss = https://sts.windows.net/{tid}/`, `ver: "1.0"`, `appid`, `appidacr`; a user's `upn`, `unique_name`;
 * - v2 (an API whose manifest sets 2): `iss = {authorityHost}/{tid}/v2.0`, `ver: "2.0"`, `azp`, `azpacr`;
 *   a user's `preferred_username` (`upn` only as an optional claim, which the stand-in does not configure).
 * https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
 * https://learn.microsoft.com/entra/identity-platform/access-tokens#token-formats
 */
export interface AccessTokenRequest {
  tenantId: string;
  /** The `aud` claim: for v1 the URI or app id the scope named (e.g. https://api.security.microsoft.com), for v2 the API's client id. */
  audience: string;
  /** The client (application) id the token was issued to. */
  clientId: string;
  /** Object id of the service principal (app tokens) or of the user (delegated tokens). */
  objectId: string;
  /** Application permissions (app-only tokens). */
  roles?: string[];
  /** Delegated permissions (user tokens); written space-separated into `scp`. */
  scopes?: string[];
  /** Present for delegated tokens. */
  user?: { upn: string; name: string };
  /** The resource's accepted version; 1 when not given (Microsoft's default). */
  version?: 1 | 2;
  /** How the client authenticated (`appidacr`/`azpacr`): 0 public client, 1 secret, 2 certificate. */
  clientAuthentication?: ClientAuthenticationMethod;
  lifetimeSeconds?: number;
  /** Claims of one kind of principal only, added as they are (a managed identity's `xms_mirid`). */
  extraClaims?: Record<string, string>;
}

export type ClientAuthenticationMethod = 'public' | 'secret' | 'certificate';
const ACR: Record<ClientAuthenticationMethod, string> = { public: '0', secret: '1', certificate: '2' };

export interface IssuedToken {
  token: string;
  expiresIn: number;
}

export interface TokenIssuer {
  authorityHost: string;
  /** The public keys, as served at `/{tenant}/discovery/v2.0/keys`. */
  jwks(): JSONWebKeySet;
  issuerFor(tenantId: string, version: 1 | 2): string;
  issueAccessToken(request: AccessTokenRequest): Promise<IssuedToken>;
  /** An OpenID Connect id token (v2) for user sign-ins; MSAL builds the signed-in account from it. */
  issueIdToken(request: IdTokenRequest): Promise<string>;
  /**
   * Signs exactly these claims (RS256, the stand-in's key, `typ: JWT`): for tests of token shapes Entra
   * never issues, such as a v1 token with a v2 issuer. Nothing in the stand-in's endpoints calls it.
   */
  signClaims(claims: Record<string, unknown>): Promise<string>;
}

export interface IdTokenRequest {
  tenantId: string;
  /** The client the user signed in to: the id token's `aud`. */
  clientId: string;
  user: { objectId: string; upn: string; name: string };
  lifetimeSeconds?: number;
}

export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3599;

export function issuerFor(authorityHost: string, tenantId: string, version: 1 | 2): string {
  return version === 1
    ? `https://sts.windows.net/${tenantId}/`
    : `${authorityHost.replace(/\/$/, '')}/${tenantId}/v2.0`;
}

export async function createTokenIssuer(authorityHost: string): Promise<TokenIssuer> {
  const issuer = new OAuth2Issuer();
  // buildToken refuses to sign without an issuer url; every token's `iss` is then set per tenant below.
  issuer.url = authorityHost;
  await issuer.keys.generate('RS256');
  return {
    authorityHost,
    jwks: () => ({ keys: issuer.keys.toJSON(false) }) as unknown as JSONWebKeySet,
    issuerFor: (tenantId, version) => issuerFor(authorityHost, tenantId, version),
    async issueAccessToken(req) {
      const version = req.version ?? 1;
      const lifetime = req.lifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
      const token = await issuer.buildToken({
        expiresIn: lifetime,
        scopesOrTransform: (header, payload) => {
          header.typ = 'JWT';
          const now = Math.floor(Date.now() / 1000);
          // Extra claims first: none of them can replace a claim the token's shape decides.
          Object.assign(payload, req.extraClaims, {
            iss: issuerFor(authorityHost, req.tenantId, version),
            aud: req.audience,
            tid: req.tenantId,
            oid: req.objectId,
            sub: req.objectId,
            ver: version === 1 ? '1.0' : '2.0',
            idtyp: req.user ? 'user' : 'app',
            iat: now,
            nbf: now,
            exp: now + lifetime,
            uti: crypto.randomUUID(),
          });
          const acr = req.clientAuthentication ? ACR[req.clientAuthentication] : undefined;
          // appid/appidacr "only present in v1.0 tokens", azp/azpacr "only present in v2.0 tokens".
          if (version === 1) Object.assign(payload, { appid: req.clientId }, acr && { appidacr: acr });
          else Object.assign(payload, { azp: req.clientId }, acr && { azpacr: acr });
          if (req.roles?.length) payload.roles = [...req.roles];
          if (req.scopes?.length) payload.scp = req.scopes.join(' ');
          if (req.user) {
            payload.name = req.user.name;
            // upn and unique_name are v1 claims; preferred_username is "only present in v2.0 tokens".
            if (version === 1) Object.assign(payload, { upn: req.user.upn, unique_name: req.user.upn });
            else payload.preferred_username = req.user.upn;
          }
          delete payload.scope;
        },
      });
      return { token, expiresIn: lifetime };
    },
    async issueIdToken(req) {
      const lifetime = req.lifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
      return issuer.buildToken({
        expiresIn: lifetime,
        scopesOrTransform: (header, payload) => {
          header.typ = 'JWT';
          const now = Math.floor(Date.now() / 1000);
          Object.assign(payload, {
            iss: issuerFor(authorityHost, req.tenantId, 2),
            aud: req.clientId,
            tid: req.tenantId,
            oid: req.user.objectId,
            sub: req.user.objectId,
            name: req.user.name,
            preferred_username: req.user.upn,
            ver: '2.0',
            iat: now,
            nbf: now,
            exp: now + lifetime,
          });
          delete payload.scope;
        },
      });
    },
    async signClaims(claims) {
      return issuer.buildToken({
        scopesOrTransform: (header, payload) => {
          header.typ = 'JWT';
          for (const key of Object.keys(payload)) delete payload[key];
          Object.assign(payload, claims);
        },
      });
    },
  };
}
