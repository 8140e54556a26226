import { OAuth2Issuer } from 'oauth2-mock-server';
import type { JSONWebKeySet } from 'jose';

/**
 * Signs the Entra stand-in's tokens. The keys (RS256) and signing come from oauth2-mock-server;
 * this module only decides the claims, shaped as Entra shapes them:
 * - v1 tokens (Microsoft first-party resources such as Defender and Key Vault):
 *   `iss = https://sts.windows.net/{tid}/`, `ver: "1.0"`, `appid`;
 * - v2 tokens (the relay's own API): `iss = {authorityHost}/{tid}/v2.0`, `ver: "2.0"`, `azp`.
 */
export interface AccessTokenRequest {
  tenantId: string;
  /** The `aud` claim: the resource from the requested scope (e.g. https://api.security.microsoft.com). */
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
  version?: 1 | 2;
  lifetimeSeconds?: number;
}

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
  return version === 1 ? `https://sts.windows.net/${tenantId}/` : `${authorityHost.replace(/\/$/, '')}/${tenantId}/v2.0`;
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
          Object.assign(payload, {
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
          if (version === 1) payload.appid = req.clientId;
          else payload.azp = req.clientId;
          if (req.roles?.length) payload.roles = [...req.roles];
          if (req.scopes?.length) payload.scp = req.scopes.join(' ');
          if (req.user) {
            payload.upn = req.user.upn;
            payload.name = req.user.name;
            payload.preferred_username = req.user.upn;
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
  };
}
