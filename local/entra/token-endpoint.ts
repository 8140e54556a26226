import { createLocalJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import { authenticateClient } from './client-auth.js';
import { EntraError, entraErrors } from './errors.js';
import {
  audienceFor,
  type AppRegistration,
  type EntraRegistry,
  type ResourceApi,
  type ServicePrincipal,
  type Tenant,
} from './registry.js';
import type { ClientAuthenticationMethod, TokenIssuer } from './token-issuer.js';

/**
 * `POST /{tenant}/oauth2/v2.0/token`: the grants the relay's credentials use. HTTP-free: takes the
 * tenant path segment and the form parameters, returns the JSON answer or throws an `EntraError`.
 * The access token's version is the resource's (`accessTokenAcceptedVersion`), whatever the endpoint:
 * "The Microsoft identity platform supports issuing any token version from any version endpoint."
 * https://learn.microsoft.com/entra/identity-platform/access-tokens#token-ownership
 */

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const OIDC_SCOPES = new Set(['openid', 'profile', 'offline_access', 'email']);
/** Tenant aliases that name no tenant: fine for metadata and ROPC (the user names the tenant), not for app flows. */
export const TENANT_ALIASES = new Set(['common', 'organizations', 'consumers']);

export type TokenParams = Record<string, string>;

export interface TokenResponse {
  token_type: 'Bearer';
  expires_in: number;
  ext_expires_in: number;
  access_token: string;
  scope?: string;
  id_token?: string;
  client_info?: string;
}

/** What the log line (never the token) says about an issued token. */
export interface IssuedSummary {
  grant: string;
  tenantId: string;
  clientId: string;
  audience: string;
  roles?: string[];
  scopes?: string[];
  /** The user's object id (never the UPN or anything secret: this goes to logs). */
  user?: string;
}

export interface TokenEndpointContext {
  registry: EntraRegistry;
  issuer: TokenIssuer;
  /** The stand-in's base URL (authority host). */
  url: string;
}

export async function handleTokenRequest(
  ctx: TokenEndpointContext,
  tenantSegment: string,
  params: TokenParams,
): Promise<{ body: TokenResponse; summary: IssuedSummary }> {
  const grantType = required(params, 'grant_type');
  switch (grantType) {
    case 'client_credentials':
      return clientCredentials(ctx, tenantSegment, params);
    case 'password':
      return resourceOwnerPassword(ctx, tenantSegment, params);
    case JWT_BEARER_GRANT:
      return onBehalfOf(ctx, tenantSegment, params);
    default:
      throw entraErrors.unsupportedGrantType(grantType);
  }
}

function required(params: TokenParams, name: string): string {
  const value = params[name];
  if (value === undefined || value.trim() === '') throw entraErrors.missingParameter(name);
  return value;
}

function specificTenant(ctx: TokenEndpointContext, segment: string): Tenant {
  if (TENANT_ALIASES.has(segment.toLowerCase())) throw entraErrors.noTenantInRequest();
  const tenant = ctx.registry.tenant(segment);
  if (!tenant) throw entraErrors.tenantNotFound(segment);
  return tenant;
}

/** The app and its service principal in the tenant: without consent there, the app does not exist for it. */
function appInTenant(
  ctx: TokenEndpointContext,
  clientId: string,
  tenant: Tenant,
): { app: AppRegistration; sp: ServicePrincipal } {
  const app = ctx.registry.app(clientId);
  const sp = ctx.registry.servicePrincipal(tenant.tenantId, clientId);
  if (!app || !sp) throw entraErrors.applicationNotFound(clientId, tenant.displayName);
  return { app, sp };
}

async function authenticate(
  ctx: TokenEndpointContext,
  app: AppRegistration,
  tenantSegment: string,
  tenant: Tenant,
  params: TokenParams,
  allowPublicClient: boolean,
): Promise<ClientAuthenticationMethod> {
  const base = ctx.url.replace(/\/$/, '');
  const tokenEndpoints = [...new Set([tenantSegment, tenant.tenantId])].map((t) =>
    `${base}/${t}/oauth2/v2.0/token`.toLowerCase(),
  );
  return authenticateClient(
    app,
    {
      clientSecret: params.client_secret,
      clientAssertion: params.client_assertion,
      clientAssertionType: params.client_assertion_type,
    },
    { tokenEndpoints, allowPublicClient },
  );
}

interface RequestedScopes {
  api: ResourceApi;
  /** The token's `aud`: for a v1 resource, the URI or app id the scopes named it by. */
  audience: string;
  /** The permission names requested; `.default` means "whatever was consented". */
  names: string[];
  oidc: string[];
}

/** Splits `<resource>/<permission>` scopes; all must name one resource. */
function parseScopes(ctx: TokenEndpointContext, scopeParam: string, tenant: Tenant): RequestedScopes {
  const all = scopeParam.split(/\s+/).filter(Boolean);
  const oidc = all.filter((s) => OIDC_SCOPES.has(s.toLowerCase()));
  const resourceScopes = all.filter((s) => !OIDC_SCOPES.has(s.toLowerCase()));
  if (resourceScopes.length === 0) throw entraErrors.invalidScope(scopeParam, 'The request names no resource scope.');
  const parsed = resourceScopes.map((scope) => {
    const slash = scope.lastIndexOf('/');
    if (slash <= 0 || slash === scope.length - 1)
      throw entraErrors.invalidScope(scope, 'A scope is written <resource>/<permission>.');
    return { resource: scope.slice(0, slash).replace(/\/+$/, ''), name: scope.slice(slash + 1) };
  });
  const resources = new Set(parsed.map((p) => p.resource.toLowerCase()));
  if (resources.size > 1) {
    throw new EntraError(
      400,
      'invalid_scope',
      28000,
      'Provided value for the input parameter scope is not valid because it contains more than one resource.',
    );
  }
  const resource = parsed[0]!.resource;
  const api = ctx.registry.resolveResource(resource, tenant.tenantId);
  if (!api) throw entraErrors.resourceNotFound(resource, tenant.displayName);
  return { api, audience: audienceFor(api, resource), names: parsed.map((p) => p.name), oidc };
}

/** Delegated permissions for the token: those consented to the client (all for `.default`, else the requested ones). */
function delegatedScopes(sp: ServicePrincipal, app: AppRegistration, requested: RequestedScopes): string[] {
  const granted = [...(sp.delegatedPermissions.get(requested.api.id) ?? [])];
  const wantsDefault = requested.names.includes('.default');
  const scopes = wantsDefault ? granted : requested.names;
  if (scopes.length === 0 || !scopes.every((s) => granted.includes(s)))
    throw entraErrors.consentRequired(app.clientId, app.displayName);
  return scopes;
}

async function clientCredentials(ctx: TokenEndpointContext, tenantSegment: string, params: TokenParams) {
  const tenant = specificTenant(ctx, tenantSegment);
  const clientId = required(params, 'client_id');
  const scopeParam = required(params, 'scope');
  const { app, sp } = appInTenant(ctx, clientId, tenant);
  const clientAuthentication = await authenticate(ctx, app, tenantSegment, tenant, params, false);
  const scopes = scopeParam.split(/\s+/).filter(Boolean);
  if (scopes.length !== 1 || !scopes[0]!.endsWith('/.default'))
    throw entraErrors.clientCredentialsNeedDefault(scopeParam);
  const { api, audience } = parseScopes(ctx, scopeParam, tenant);
  // Faithful to Entra: no application permission granted is not an error; the token simply has no roles.
  const roles = [...(sp.appPermissions.get(api.id) ?? [])];
  const { token, expiresIn } = await ctx.issuer.issueAccessToken({
    tenantId: tenant.tenantId,
    audience,
    clientId: app.clientId,
    objectId: sp.objectId,
    roles,
    version: api.accessTokenVersion,
    clientAuthentication,
  });
  return {
    body: { token_type: 'Bearer' as const, expires_in: expiresIn, ext_expires_in: expiresIn, access_token: token },
    summary: { grant: 'client_credentials', tenantId: tenant.tenantId, clientId: app.clientId, audience, roles },
  };
}

async function resourceOwnerPassword(ctx: TokenEndpointContext, tenantSegment: string, params: TokenParams) {
  const byAlias = TENANT_ALIASES.has(tenantSegment.toLowerCase());
  const pathTenant = byAlias ? undefined : ctx.registry.tenant(tenantSegment);
  if (!byAlias && !pathTenant) throw entraErrors.tenantNotFound(tenantSegment);
  const clientId = required(params, 'client_id');
  const username = required(params, 'username');
  const password = required(params, 'password');
  const scopeParam = required(params, 'scope');
  const user = ctx.registry.user(username, pathTenant?.tenantId);
  if (!user) throw entraErrors.userNotFound(pathTenant?.displayName ?? tenantSegment);
  const tenant = ctx.registry.tenant(user.tenantId)!;
  const { app, sp } = appInTenant(ctx, clientId, tenant);
  const clientAuthentication = await authenticate(ctx, app, tenantSegment, tenant, params, true);
  if (user.password !== password) throw entraErrors.wrongPassword();
  const requested = parseScopes(ctx, scopeParam, tenant);
  const scopes = delegatedScopes(sp, app, requested);
  const userClaims = { objectId: user.objectId, upn: user.userPrincipalName, name: user.displayName };
  return userTokenResponse(ctx, 'password', tenant, app, clientAuthentication, requested, scopes, userClaims);
}

async function onBehalfOf(ctx: TokenEndpointContext, tenantSegment: string, params: TokenParams) {
  const tenant = specificTenant(ctx, tenantSegment);
  const use = required(params, 'requested_token_use');
  if (use !== 'on_behalf_of')
    throw entraErrors.malformedRequest(`requested_token_use must be 'on_behalf_of', not '${use}'.`);
  const clientId = required(params, 'client_id');
  const assertion = required(params, 'assertion');
  const scopeParam = required(params, 'scope');
  const { app, sp } = appInTenant(ctx, clientId, tenant);
  const clientAuthentication = await authenticate(ctx, app, tenantSegment, tenant, params, false);
  const claims = await verifyUserAssertion(ctx, assertion, app, tenant);
  const requested = parseScopes(ctx, scopeParam, tenant);
  const scopes = delegatedScopes(sp, app, requested);
  // The user as the assertion's version names them: upn in v1, preferred_username in v2.
  const userClaims = {
    objectId: String(claims.oid),
    upn: String((claims.ver === '1.0' ? claims.upn : claims.preferred_username) ?? ''),
    name: String(claims.name ?? ''),
  };
  return userTokenResponse(ctx, 'on_behalf_of', tenant, app, clientAuthentication, requested, scopes, userClaims);
}

/** The incoming user token must be one of ours, still valid, for this app (the middle tier), from this tenant. */
async function verifyUserAssertion(
  ctx: TokenEndpointContext,
  assertion: string,
  app: AppRegistration,
  tenant: Tenant,
): Promise<JWTPayload> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(assertion, createLocalJWKSet(ctx.issuer.jwks()), { algorithms: ['RS256'] }));
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw entraErrors.oboAssertionExpired();
    throw entraErrors.oboAssertionInvalid(
      err instanceof errors.JWKSNoMatchingKey ? 'The key was not found.' : 'The signature or the token is invalid.',
    );
  }
  const tid = typeof payload.tid === 'string' ? payload.tid : '';
  const version = payload.ver === '1.0' ? 1 : payload.ver === '2.0' ? 2 : undefined;
  if (!version || payload.iss !== ctx.issuer.issuerFor(tid, version)) {
    throw entraErrors.oboAssertionInvalid('The issuer is not the issuer of the token tenant and version.');
  }
  if (tid.toLowerCase() !== tenant.tenantId) throw entraErrors.oboWrongTenant();
  if (payload.idtyp !== 'user' || typeof payload.oid !== 'string') throw entraErrors.oboNotAUserToken();
  const audience = String(payload.aud);
  const accepted = [app.clientId, app.identifierUri?.replace(/\/+$/, '').toLowerCase()].filter(Boolean);
  if (!accepted.includes(audience.replace(/\/+$/, '').toLowerCase()))
    throw entraErrors.oboAudienceMismatch(audience, app.clientId);
  return payload;
}

async function userTokenResponse(
  ctx: TokenEndpointContext,
  grant: string,
  tenant: Tenant,
  app: AppRegistration,
  clientAuthentication: ClientAuthenticationMethod,
  requested: RequestedScopes,
  scopes: string[],
  user: { objectId: string; upn: string; name: string },
) {
  const { token, expiresIn } = await ctx.issuer.issueAccessToken({
    tenantId: tenant.tenantId,
    audience: requested.audience,
    clientId: app.clientId,
    objectId: user.objectId,
    scopes,
    user: { upn: user.upn, name: user.name },
    version: requested.api.accessTokenVersion,
    clientAuthentication,
  });
  const body: TokenResponse = {
    token_type: 'Bearer',
    scope: [
      ...scopes.map((s) => `${requested.api.scopePrefix}/${s}`),
      ...requested.oidc.filter((s) => s !== 'offline_access'),
    ].join(' '),
    expires_in: expiresIn,
    ext_expires_in: expiresIn,
    access_token: token,
  };
  // MSAL builds the signed-in account from the id token and client_info (uid.utid = its home account id).
  if (requested.oidc.includes('openid')) {
    body.id_token = await ctx.issuer.issueIdToken({ tenantId: tenant.tenantId, clientId: app.clientId, user });
    body.client_info = Buffer.from(JSON.stringify({ uid: user.objectId, utid: tenant.tenantId })).toString('base64url');
  }
  return {
    body,
    summary: {
      grant,
      tenantId: tenant.tenantId,
      clientId: app.clientId,
      audience: requested.audience,
      scopes,
      user: user.objectId,
    },
  };
}
