import { createHash } from 'node:crypto';
import type { AccessToken, OnBehalfOfCredential, OnBehalfOfCredentialOptions } from '@azure/identity';
import { decodeJwt } from 'jose';
import { CallBudget, type ApiCallBudget, type DefenderCallBudget } from '../sources/call-budget.js';
import type { AppConfig } from '../config/config.js';
import { aadstsCode } from './credentials.js';
import { DefenderClient, type DefenderClientOptions, type TokenSource } from '../sources/defender/client.js';
import { GRAPH_BUDGET, GraphClient, type GraphClientOptions } from '../sources/graph/client.js';
import {
  EntraTokenValidator,
  SIGNING_KEYS_UNAVAILABLE_MESSAGE,
  SigningKeysUnavailableError,
  TokenValidationError,
} from '../api/entra-token.js';
import { isRetryable, PermanentError, RetryableError } from '../errors.js';
import { loadIdentity } from './lazy-identity.js';
import { recordTokenRequest } from '../telemetry/metrics.js';
import type { SecretCache } from './secrets.js';
import { TenantNotFoundError, type Tenant, type TenantRegistry } from '../tenants/tenants.js';

/**
 * The user context: the relay acting for a signed-in analyst. The analyst's token for the relay API
 * is validated (audience, issuer, expiry, `access_as_user`, a registered tenant), exchanged
 * on-behalf-of the analyst for a token to the API the tenant is read through (Defender, or Microsoft
 * Graph for a tenant whose source is `graph`), and that token's delegated permissions (`scp`) are
 * checked before the API is called. The API then shows the analyst only what the analyst may see.
 */

export const USER_SCOPE = 'access_as_user';
export type IncidentAccess = 'read' | 'write';
/** The name it had before Graph. */
export type DefenderAccess = IncidentAccess;

/** The delegated Defender permissions that allow each kind of call (ReadWrite includes reading). */
export const DELEGATED_PERMISSIONS: Record<IncidentAccess, readonly string[]> = {
  read: ['Incident.Read', 'Incident.ReadWrite'],
  write: ['Incident.ReadWrite'],
};

/**
 * Graph's delegated permissions for incidents: list and get take SecurityIncident.Read.All or
 * SecurityIncident.ReadWrite.All, update and comment SecurityIncident.ReadWrite.All (the "Permissions" of
 * microsoftgraph/microsoft-graph-docs-contrib security-list-incidents.md, security-incident-update.md,
 * security-incident-post-comments.md; the same names as the application permissions).
 */
export const GRAPH_DELEGATED_PERMISSIONS: Record<IncidentAccess, readonly string[]> = {
  read: ['SecurityIncident.Read.All', 'SecurityIncident.ReadWrite.All'],
  write: ['SecurityIncident.ReadWrite.All'],
};

/** An API the relay calls on-behalf-of an analyst: its token's scope and the delegated permissions it checks. */
interface DelegatedApi {
  /** How messages name it. */
  name: string;
  scope: string;
  permissions: Record<IncidentAccess, readonly string[]>;
  /** What a message names as missing, per access. */
  needed: Record<IncidentAccess, string>;
}

/** A refusal with the HTTP status the endpoint answers; the message is safe to return (no token, no secret). */
export class UserContextError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 413 | 415 | 500 | 502 | 503,
    message: string,
    readonly retryAfterSeconds?: number,
    /** What the log line says, when it says more than the caller may learn. */
    readonly detail: string = message,
  ) {
    super(message);
    this.name = 'UserContextError';
  }
}

/** The signed-in analyst a request acts for. */
export interface Analyst {
  tenant: Tenant;
  tenantId: string;
  objectId?: string;
  userPrincipalName?: string;
  /** The caller's own token, the on-behalf-of assertion. Never log it. */
  token: string;
  /** When the caller's token expires (ms since the epoch). */
  expiresAt: number;
}

export interface UserContextOptions {
  config: Pick<AppConfig, 'relayApi' | 'entra' | 'defender' | 'graph'>;
  secrets: SecretCache;
  registry: TenantRegistry;
  /** The Defender call budget the pollers use: an analyst's calls count against the same tenant limits, in the analysts' share. */
  budget: DefenderCallBudget;
  /** The Microsoft Graph call budget the pollers use (GRAPH_BUDGET's limits), likewise; one of this context's own when not given. */
  graphBudget?: ApiCallBudget;
  /** Users whose on-behalf-of credentials are kept (least recently used dropped first). */
  maxCachedUsers?: number;
  /** Retry tuning for Defender calls; an analyst is waiting, so the defaults are shorter than the pollers'. */
  defender?: Partial<
    Pick<DefenderClientOptions, 'maxRetries' | 'baseDelayMs' | 'maxDelayMs' | 'maxWaitMs' | 'timeoutMs' | 'sleep'>
  >;
  /** The same for Microsoft Graph calls. */
  graph?: Partial<
    Pick<GraphClientOptions, 'maxRetries' | 'baseDelayMs' | 'maxDelayMs' | 'maxWaitMs' | 'timeoutMs' | 'sleep'>
  >;
  now?: () => number;
}

interface OboEntry {
  /** The scope this entry's tokens are for: it is part of the entry's key, and the only scope it is ever asked for. */
  scope: string;
  credential: OnBehalfOfCredential;
  /** The relay API secret the credential was built with, to tell whether a re-read found a new one. */
  secret: string;
  /** The caller's token expiry: the entry is worthless after it. */
  expiresAt: number;
  token?: AccessToken;
  pending?: Promise<AccessToken>;
}

/** Renew a cached on-behalf-of token this long before it expires. */
const TOKEN_MARGIN_MS = 2 * 60_000;
/** AADSTS codes meaning the relay API's own secret was refused: it may have been rotated. */
const SECRET_REFUSED = new Set([7000215, 7000222]);
/** AADSTS codes about the caller's token (the assertion) rather than the relay. */
const ASSERTION_REFUSED = new Set([50013, 500133, 50132, 50173, 700082]);

export class UserContext {
  /** On-behalf-of token requests sent to Entra ID (cache misses); tests and the benchmark count them. */
  exchanges = 0;
  /** Keyed by the scope and the caller's token together: a token for one API is never handed out for another. */
  readonly #cache = new Map<string, OboEntry>();
  #validator: EntraTokenValidator | undefined;
  readonly #now: () => number;
  readonly #graphBudget: ApiCallBudget;
  readonly #defenderApi: DelegatedApi;
  readonly #graphApi: DelegatedApi;

  constructor(private readonly options: UserContextOptions) {
    this.#now = options.now ?? Date.now;
    // One for the whole context when none is given: a budget per request would count nothing.
    this.#graphBudget = options.graphBudget ?? new CallBudget(GRAPH_BUDGET);
    this.#defenderApi = {
      name: 'Microsoft Defender',
      scope: options.config.defender.scope,
      permissions: DELEGATED_PERMISSIONS,
      needed: { read: 'Incident.Read (or Incident.ReadWrite)', write: 'Incident.ReadWrite' },
    };
    this.#graphApi = {
      name: 'Microsoft Graph',
      scope: options.config.graph.scope,
      permissions: GRAPH_DELEGATED_PERMISSIONS,
      needed: {
        read: 'SecurityIncident.Read.All (or SecurityIncident.ReadWrite.All)',
        write: 'SecurityIncident.ReadWrite.All',
      },
    };
  }

  /**
   * The analyst behind an `Authorization` header: 401 when the token is not a valid relay API token,
   * 403 when it is an app's token, lacks `access_as_user`, or comes from a tenant the relay does not serve;
   * 503 (retry) when Entra ID's signing keys could not be fetched to check it.
   */
  async authenticate(authorization: string | null | undefined): Promise<Analyst> {
    const { clientId, uri } = this.#relayApi();
    this.#validator ??= new EntraTokenValidator({
      authorityHost: this.options.config.entra.authorityHost,
      audiences: [clientId, uri],
    });
    let principal;
    try {
      principal = await this.#validator.validate(authorization);
    } catch (err) {
      if (err instanceof TokenValidationError) throw new UserContextError(err.status, err.message);
      // Not a bad token: Entra could not give the keys to check it with (503, as for the exchange).
      if (err instanceof SigningKeysUnavailableError)
        throw new UserContextError(
          503,
          SIGNING_KEYS_UNAVAILABLE_MESSAGE,
          10,
          `the token could not be verified: ${err.message}`,
        );
      throw err;
    }
    if (principal.scopes.length === 0) {
      throw new UserContextError(
        403,
        'This endpoint acts for a signed-in user: an application token (without scp) cannot call it. Sign in as a user.',
      );
    }
    if (!principal.scopes.includes(USER_SCOPE)) {
      throw new UserContextError(
        403,
        `The token lacks the delegated permission ${USER_SCOPE} of the relay API (scp has ${principal.scopes.join(' ')}).`,
      );
    }
    const tenant = await this.#registeredTenant(principal.tenantId);
    return {
      tenant,
      tenantId: principal.tenantId,
      objectId: principal.objectId,
      userPrincipalName: principal.userPrincipalName,
      token: principal.token,
      expiresAt: typeof principal.claims.exp === 'number' ? principal.claims.exp * 1000 : this.#now() + 60_000,
    };
  }

  /**
   * A Defender client acting as the analyst, after checking that the on-behalf-of token carries a
   * delegated permission for the access asked for (403 naming it otherwise).
   */
  async defenderFor(analyst: Analyst, access: IncidentAccess): Promise<DefenderClient> {
    const tokens = await this.#delegatedTokens(analyst, this.#defenderApi, access);
    return new DefenderClient({
      apiUrl: this.options.config.defender.apiUrl,
      tokens,
      budget: this.options.budget,
      budgetClass: 'analyst',
      maxRetries: 2,
      maxWaitMs: 10_000,
      timeoutMs: 20_000,
      ...this.options.defender,
    });
  }

  /**
   * A Microsoft Graph client acting as the analyst (for a tenant read through Graph), with a token
   * exchanged for Graph's scope alone and checked for Graph's delegated permission for the access asked
   * for (403 naming it otherwise); its calls spend the analysts' share of the tenant's Graph budget.
   */
  async graphFor(analyst: Analyst, access: IncidentAccess): Promise<GraphClient> {
    const tokens = await this.#delegatedTokens(analyst, this.#graphApi, access);
    return new GraphClient({
      apiUrl: this.options.config.graph.apiUrl,
      tokens,
      budget: this.#graphBudget,
      budgetClass: 'analyst',
      maxRetries: 2,
      maxWaitMs: 10_000,
      timeoutMs: 20_000,
      ...this.options.graph,
    });
  }

  /** The token source for `api` as the analyst, once its token is known to carry a permission for `access`. */
  async #delegatedTokens(analyst: Analyst, api: DelegatedApi, access: IncidentAccess): Promise<TokenSource> {
    const scopes = scopesOf((await this.#oboToken(analyst, api)).token);
    if (!scopes.some((s) => api.permissions[access].includes(s))) {
      const needed = api.needed[access];
      throw new UserContextError(
        403,
        `The delegated permission ${needed} to ${api.name} is missing: your on-behalf-of token has ${scopes.join(' ') || 'no scopes'}. ` +
          `A tenant administrator must grant ${needed} to the relay API (client ${this.#relayApi().clientId}) in tenant ${analyst.tenantId}.`,
      );
    }
    return {
      getToken: async () => (await this.#oboToken(analyst, api)).token,
      // The API refused the token (401): forget the credential too, so the next exchange is a fresh one.
      invalidate: () => this.#cache.delete(cacheKey(api.scope, analyst.token)),
    };
  }

  #relayApi(): { clientId: string; uri: string; secretName: string } {
    const { clientId, uri, secretName } = this.options.config.relayApi;
    if (!clientId || !secretName) {
      throw new UserContextError(
        500,
        'The analyst endpoints are not configured: set RELAY_API_CLIENT_ID and RELAY_API_SECRET_NAME.',
      );
    }
    return { clientId, uri, secretName };
  }

  async #registeredTenant(tenantId: string): Promise<Tenant> {
    let tenant: Tenant;
    try {
      tenant = await this.options.registry.get(tenantId);
    } catch (err) {
      if (err instanceof TenantNotFoundError)
        throw new UserContextError(
          403,
          `Tenant ${tenantId} is not registered with the relay: its analysts cannot use it.`,
        );
      if (isRetryable(err)) throw new UserContextError(503, 'The tenant registry is not reachable; try again shortly.');
      throw err;
    }
    if (!tenant.enabled)
      throw new UserContextError(403, `Tenant ${tenantId} (${tenant.displayName}) is disabled in the relay.`);
    return tenant;
  }

  /** The cached entry, dropped once the caller's token has expired; a hit makes it the most recently used. */
  #entry(key: string): OboEntry | undefined {
    const entry = this.#cache.get(key);
    if (!entry) return undefined;
    this.#cache.delete(key);
    if (entry.expiresAt <= this.#now()) return undefined;
    this.#cache.set(key, entry);
    return entry;
  }

  #remember(key: string, entry: OboEntry): void {
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    const now = this.#now();
    for (const [k, e] of this.#cache) if (e.expiresAt <= now) this.#cache.delete(k);
    const max = this.options.maxCachedUsers ?? 1000;
    for (const k of this.#cache.keys()) {
      if (this.#cache.size <= max) break;
      this.#cache.delete(k);
    }
  }

  async #oboToken(analyst: Analyst, api: DelegatedApi): Promise<AccessToken> {
    const key = cacheKey(api.scope, analyst.token);
    let entry = this.#entry(key);
    if (entry?.token && entry.token.expiresOnTimestamp - this.#now() > TOKEN_MARGIN_MS) return entry.token;
    if (entry?.pending) return entry.pending;
    entry ??= await this.#newEntry(analyst, api.scope, false);
    this.#remember(key, entry);
    const pending = this.#exchange(analyst, api, entry);
    entry.pending = pending;
    try {
      return await pending;
    } finally {
      entry.pending = undefined;
    }
  }

  async #newEntry(analyst: Analyst, scope: string, refreshSecret: boolean): Promise<OboEntry> {
    const { clientId, secretName } = this.#relayApi();
    const secret = await this.#relaySecret(secretName, refreshSecret);
    // The constructor's overloads leave out AuthorityValidationOptions, which it passes on to MSAL all the same.
    const options = {
      tenantId: analyst.tenantId,
      clientId,
      clientSecret: secret,
      userAssertionToken: analyst.token,
      authorityHost: this.options.config.entra.authorityHost,
      disableInstanceDiscovery: this.options.config.entra.disableInstanceDiscovery,
    } satisfies OnBehalfOfCredentialOptions;
    const { OnBehalfOfCredential } = await loadIdentity();
    const credential = new OnBehalfOfCredential(options);
    return { scope, credential, secret, expiresAt: analyst.expiresAt };
  }

  async #relaySecret(secretName: string, refresh: boolean): Promise<string> {
    try {
      return refresh ? await this.options.secrets.refresh(secretName) : await this.options.secrets.get(secretName);
    } catch (err) {
      if (err instanceof RetryableError)
        throw new UserContextError(503, 'Key Vault is not reachable for the relay API secret; try again shortly.');
      if (err instanceof PermanentError) {
        throw new UserContextError(
          500,
          `The relay API secret cannot be read (Key Vault secret '${secretName}', setting RELAY_API_SECRET_NAME): ${err.message}`,
        );
      }
      throw err;
    }
  }

  async #exchange(
    analyst: Analyst,
    api: DelegatedApi,
    entry: OboEntry,
    afterSecretRefresh = false,
  ): Promise<AccessToken> {
    this.exchanges += 1;
    try {
      const token = await entry.credential.getToken(entry.scope);
      if (!token) throw new UserContextError(502, 'Entra ID returned no on-behalf-of token');
      recordTokenRequest(analyst.tenantId, true);
      entry.token = token;
      return token;
    } catch (err) {
      recordTokenRequest(analyst.tenantId, false);
      if (err instanceof UserContextError) throw err;
      const code = aadstsCode(err);
      if (code !== undefined && SECRET_REFUSED.has(code) && !afterSecretRefresh) {
        const fresh = await this.#newEntry(analyst, entry.scope, true);
        if (fresh.secret !== entry.secret) {
          entry.credential = fresh.credential;
          entry.secret = fresh.secret;
          return this.#exchange(analyst, api, entry, true);
        }
      }
      this.#cache.delete(cacheKey(entry.scope, analyst.token));
      throw this.#exchangeError(err, code, analyst, api);
    }
  }

  #exchangeError(err: unknown, code: number | undefined, analyst: Analyst, api: DelegatedApi): UserContextError {
    const { clientId, secretName } = this.#relayApi();
    const tenant = `tenant ${analyst.tenantId}`;
    if (code === 65001 || code === 700016) {
      return new UserContextError(
        403,
        `The relay API (client ${clientId}) has no delegated consent to ${api.name} in ${tenant} (AADSTS${code}): ` +
          `a tenant administrator must consent to its delegated permissions ${api.permissions.read.join(' and ')} before analysts can use it.`,
      );
    }
    if (code !== undefined && SECRET_REFUSED.has(code)) {
      return new UserContextError(
        500,
        `Entra ID refused the relay API's client secret (AADSTS${code}): check Key Vault secret '${secretName}' (setting RELAY_API_SECRET_NAME).`,
      );
    }
    if (code !== undefined && ASSERTION_REFUSED.has(code)) {
      return new UserContextError(
        401,
        `Entra ID did not accept your token for an on-behalf-of exchange (AADSTS${code}); sign in again.`,
      );
    }
    if (code !== undefined) {
      return new UserContextError(502, `Entra ID refused the on-behalf-of exchange in ${tenant} (AADSTS${code}).`);
    }
    const status = (err as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return new UserContextError(502, `Entra ID refused the on-behalf-of exchange in ${tenant} (HTTP ${status}).`);
    }
    return new UserContextError(503, 'Entra ID could not be reached for the on-behalf-of exchange; try again shortly.');
  }
}

/**
 * The cache key of a caller's token for a scope: a hash, so no token is kept as a key (or shown in a heap
 * dump's key list). The scope is in it, so a Defender token is never found for Graph, nor the reverse.
 */
function cacheKey(scope: string, token: string): string {
  return createHash('sha256').update(scope).update('\n').update(token).digest('base64url');
}

function scopesOf(token: string): string[] {
  try {
    const scp = decodeJwt(token).scp;
    return typeof scp === 'string' ? scp.split(' ').filter(Boolean) : [];
  } catch {
    return [];
  }
}
