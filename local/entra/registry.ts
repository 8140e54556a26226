import { X509Certificate, randomUUID } from 'node:crypto';

/**
 * The Entra stand-in's directory: tenants, app registrations (with their credentials), service
 * principals (one per tenant that consented to an app), the permissions granted to them, and users.
 * In memory only; the stack seeds it at start and tests change it through the methods or `/_control/`.
 */

export interface Tenant {
  tenantId: string;
  displayName: string;
}

export interface RegisteredCertificate {
  pem: string;
  /** base64url SHA-1 of the DER certificate: the `x5t` header of a client assertion. */
  x5t: string;
  /** base64url SHA-256 of the DER certificate: the `x5t#S256` header. */
  x5tS256: string;
  notBefore: Date;
  notAfter: Date;
}

export interface AppRegistration {
  clientId: string;
  displayName: string;
  homeTenantId: string;
  multiTenant: boolean;
  secrets: Set<string>;
  certificates: RegisteredCertificate[];
  /** Public client ("allow public client flows"): may use ROPC without a client credential. */
  publicClient: boolean;
  identifierUri?: string;
  appRoles: string[];
  delegatedScopes: string[];
  /**
   * The access token version the app accepts as a resource: `accessTokenAcceptedVersion` in the app
   * manifest (`api.requestedAccessTokenVersion` in the Microsoft Graph manifest). Null there means 1,
   * whichever endpoint (v1 `/oauth2/token` or v2 `/oauth2/v2.0/token`) the client calls: the version
   * is the resource's choice, never the client's.
   * https://learn.microsoft.com/entra/identity-platform/reference-app-manifest#accesstokenacceptedversion-attribute
   * https://learn.microsoft.com/graph/api/resources/apiapplication (requestedAccessTokenVersion)
   * https://learn.microsoft.com/entra/identity-platform/access-tokens#token-formats
   */
  accessTokenVersion: AccessTokenVersion;
}

/** `ver` 1.0 or 2.0 of an access token. */
export type AccessTokenVersion = 1 | 2;

export interface AddAppOptions {
  clientId: string;
  displayName: string;
  homeTenantId: string;
  multiTenant: boolean;
  secrets?: string[];
  /** PEM certificates (public part only is read). */
  certificates?: string[];
  /** e.g. `api://defender-relay`: makes the app a resource API others can request tokens for. */
  identifierUri?: string;
  /** Application permissions the app exposes as an API. */
  appRoles?: string[];
  /** Delegated permissions the app exposes as an API, e.g. `access_as_user`. */
  delegatedScopes?: string[];
  /** Defaults to true for an app registered without any secret or certificate (a native/public app). */
  publicClient?: boolean;
  /** `accessTokenAcceptedVersion`: 1 (Microsoft's default, when the manifest leaves it null) or 2. */
  accessTokenVersion?: AccessTokenVersion;
}

export interface User {
  tenantId: string;
  userPrincipalName: string;
  password: string;
  displayName: string;
  objectId: string;
}

/** A resource API tokens can be requested for: a Microsoft first-party API or an app with an identifier URI. */
export interface ResourceApi {
  /** The key grants are stored under: the URI of a Microsoft resource, the client id of a custom API. */
  id: string;
  displayName: string;
  /** The resource's application (client) id: the `aud` of its v2 tokens, and of v1 tokens requested by it. */
  appId: string;
  /** Its App ID URI (a Microsoft resource's URI): the `aud` of v1 tokens requested by it. */
  identifierUri: string;
  /** The form scopes are written in (`<scopePrefix>/<scope>`). */
  scopePrefix: string;
  /** The version of the access tokens Entra issues for it (see `AppRegistration.accessTokenVersion`). */
  accessTokenVersion: AccessTokenVersion;
  appRoles: string[];
  delegatedScopes: string[];
  /** For a custom API: the app that exposes it (its service principal must exist in the token's tenant). */
  apiClientId?: string;
  /** Key Vault: app tokens need no grant, the vault applies its own RBAC. */
  rbacOnly?: boolean;
}

/**
 * A user-assigned managed identity (`Microsoft.ManagedIdentity/userAssignedIdentities`): a service
 * principal with no app registration and no credential anyone holds; only the managed-identity endpoint
 * of a resource it is assigned to can get tokens for it.
 * https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/overview
 */
export interface ManagedIdentity {
  name: string;
  tenantId: string;
  /** `properties.clientId`: `appid` of its v1 tokens, `client_id` of the endpoint's query and answer. */
  clientId: string;
  /** `properties.principalId`: the object id of its service principal, its tokens' `oid`, the principal of role assignments. */
  principalId: string;
  /** Its ARM resource id: the endpoint's `mi_res_id`, its tokens' `xms_mirid`. */
  resourceId: string;
}

export interface AddManagedIdentityOptions {
  name: string;
  tenantId: string;
  clientId?: string;
  principalId?: string;
  /** Defaults to `/subscriptions/00000000-…/resourcegroups/local/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`. */
  resourceId?: string;
}

export const LOCAL_SUBSCRIPTION_ID = '00000000-0000-0000-0000-000000000000';

export interface ServicePrincipal {
  objectId: string;
  tenantId: string;
  clientId: string;
  /** resource id → application permissions (`roles`). */
  appPermissions: Map<string, Set<string>>;
  /** resource id → delegated permissions (`scp`). */
  delegatedPermissions: Map<string, Set<string>>;
}

/**
 * Microsoft first-party resources the stack knows. Their manifests leave the accepted token version
 * at its default, so their tokens are v1, with `aud` = the URI (or the app id) the scope named.
 */
export const DEFENDER_RESOURCE = 'https://api.security.microsoft.com';
export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';
export const STORAGE_RESOURCE = 'https://storage.azure.com';
export const AZURE_MONITOR_RESOURCE = 'https://monitor.azure.com';
export const GRAPH_RESOURCE = 'https://graph.microsoft.com';

const MICROSOFT_RESOURCES: readonly ResourceApi[] = [
  {
    id: DEFENDER_RESOURCE,
    displayName: 'Microsoft Threat Protection',
    // The app id of "Microsoft Threat Protection"; scopes may name a resource by its app id.
    appId: '8ee8fdad-f234-4243-8f3b-15c294843740',
    identifierUri: DEFENDER_RESOURCE,
    scopePrefix: DEFENDER_RESOURCE,
    accessTokenVersion: 1,
    appRoles: ['Incident.Read.All', 'Incident.ReadWrite.All', 'AdvancedHunting.Read.All'],
    delegatedScopes: ['Incident.Read', 'Incident.ReadWrite', 'AdvancedHunting.Read'],
  },
  {
    id: KEY_VAULT_RESOURCE,
    displayName: 'Azure Key Vault',
    appId: 'cfa8b339-82a2-471a-a3c9-0fc0be7a4093',
    identifierUri: KEY_VAULT_RESOURCE,
    scopePrefix: KEY_VAULT_RESOURCE,
    accessTokenVersion: 1,
    appRoles: [],
    delegatedScopes: ['user_impersonation'],
    rbacOnly: true,
  },
  {
    // Blob, Queue and Table storage: data access is by Azure RBAC on the account, as for Key Vault.
    // https://learn.microsoft.com/azure/storage/common/authorize-data-access (resource https://storage.azure.com/)
    id: STORAGE_RESOURCE,
    displayName: 'Azure Storage',
    appId: 'e406a681-f3d4-42a8-90b6-c2b029497af1',
    identifierUri: STORAGE_RESOURCE,
    scopePrefix: STORAGE_RESOURCE,
    accessTokenVersion: 1,
    appRoles: [],
    delegatedScopes: ['user_impersonation'],
    rbacOnly: true,
  },
  {
    // Application Insights ingestion and the Logs Ingestion API: access is Azure RBAC (Monitoring Metrics
    // Publisher) on the component or data collection rule. The exporter and LogsIngestionClient ask for
    // https://monitor.azure.com/.default; the v1 token's aud is that URI. (The app id is this stand-in's:
    // Azure Monitor's own is not in any document read here, and nothing checks it.)
    id: AZURE_MONITOR_RESOURCE,
    displayName: 'Azure Monitor',
    appId: '5a0e5c5e-a11d-4c7e-9b7e-0a2e1c5ab0e1',
    identifierUri: AZURE_MONITOR_RESOURCE,
    scopePrefix: AZURE_MONITOR_RESOURCE,
    accessTokenVersion: 1,
    appRoles: [],
    delegatedScopes: [],
    rbacOnly: true,
  },
  {
    // Microsoft Graph, for the security incidents API and advanced hunting only (the stack needs no other Graph
    // permission). Its well-known app id; its manifest accepts v1 tokens, whose aud is the URI or the app id the
    // scope named. The permissions are the ones those pages name, each both an application permission (roles)
    // and a delegated one (scp): microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
    // security-list-incidents.md, security-incident-get.md, security-incident-update.md,
    // security-incident-post-comments.md ("Permissions"), and ThreatHunting.Read.All for runHuntingQuery
    // (api-reference/v1.0/includes/permissions/security-security-runhuntingquery-permissions.md).
    id: GRAPH_RESOURCE,
    displayName: 'Microsoft Graph',
    appId: '00000003-0000-0000-c000-000000000000',
    identifierUri: GRAPH_RESOURCE,
    scopePrefix: GRAPH_RESOURCE,
    accessTokenVersion: 1,
    appRoles: ['SecurityIncident.Read.All', 'SecurityIncident.ReadWrite.All', 'ThreatHunting.Read.All'],
    delegatedScopes: ['SecurityIncident.Read.All', 'SecurityIncident.ReadWrite.All', 'ThreatHunting.Read.All'],
  },
];

/**
 * The `aud` of an access token for `api`, requested with a scope naming it `requestedAs` (its App ID
 * URI or its app id): "In v2.0 tokens, this value is always the client ID of the API. In v1.0 tokens,
 * it can be the client ID or the resource URI used in the request."
 * https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference#payload-claims
 */
export function audienceFor(api: ResourceApi, requestedAs: string): string {
  if (api.accessTokenVersion === 2) return api.appId;
  return normalizeResourceName(requestedAs) === api.appId ? api.appId : api.identifierUri.replace(/\/+$/, '');
}

function normalizeResourceName(name: string): string {
  return name.trim().replace(/\/+$/, '').toLowerCase();
}

function thumbprints(pem: string): RegisteredCertificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    throw new Error('The certificate is not a valid PEM X.509 certificate.');
  }
  const fingerprintToBase64Url = (hex: string) => Buffer.from(hex.replaceAll(':', ''), 'hex').toString('base64url');
  return {
    pem: cert.toString(),
    x5t: fingerprintToBase64Url(cert.fingerprint),
    x5tS256: fingerprintToBase64Url(cert.fingerprint256),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
  };
}

export class EntraRegistry {
  readonly #tenants = new Map<string, Tenant>();
  readonly #apps = new Map<string, AppRegistration>();
  /** `${tenantId}|${clientId}` → service principal. */
  readonly #servicePrincipals = new Map<string, ServicePrincipal>();
  /** `${tenantId}|${upn lower-case}` → user. */
  readonly #users = new Map<string, User>();
  /** client id → user-assigned managed identity. */
  readonly #managedIdentities = new Map<string, ManagedIdentity>();

  addTenant(tenant: Tenant): Tenant {
    const entry = { tenantId: tenant.tenantId.toLowerCase(), displayName: tenant.displayName };
    this.#tenants.set(entry.tenantId, entry);
    return { ...entry };
  }

  tenant(tenantId: string): Tenant | undefined {
    return this.#tenants.get(tenantId.toLowerCase());
  }

  tenants(): Tenant[] {
    return [...this.#tenants.values()].map((t) => ({ ...t }));
  }

  addApp(options: AddAppOptions): AppRegistration {
    this.#requireTenant(options.homeTenantId);
    const clientId = options.clientId.toLowerCase();
    if (this.#apps.has(clientId)) throw new Error(`An app with client id ${clientId} is already registered.`);
    if (this.#managedIdentities.has(clientId))
      throw new Error(`The client id ${clientId} belongs to a managed identity.`);
    if (options.identifierUri) {
      const taken = this.#resolveGlobal(options.identifierUri);
      if (taken)
        throw new Error(`The identifier URI ${options.identifierUri} is already used by ${taken.displayName}.`);
    }
    const secrets = options.secrets ?? [];
    const certificates = (options.certificates ?? []).map(thumbprints);
    const app: AppRegistration = {
      clientId,
      displayName: options.displayName,
      homeTenantId: options.homeTenantId.toLowerCase(),
      multiTenant: options.multiTenant,
      secrets: new Set(secrets),
      certificates,
      publicClient: options.publicClient ?? (secrets.length === 0 && certificates.length === 0),
      identifierUri: options.identifierUri,
      appRoles: [...(options.appRoles ?? [])],
      delegatedScopes: [...(options.delegatedScopes ?? [])],
      accessTokenVersion: options.accessTokenVersion ?? 1,
    };
    this.#apps.set(clientId, app);
    this.consent(app.homeTenantId, clientId);
    return app;
  }

  app(clientId: string): AppRegistration | undefined {
    return this.#apps.get(clientId.toLowerCase());
  }

  apps(): AppRegistration[] {
    return [...this.#apps.values()];
  }

  /** Edits the manifest's `accessTokenAcceptedVersion`: tokens issued from now on for the app's API have this version. */
  setAccessTokenVersion(clientId: string, version: AccessTokenVersion): void {
    if (version !== 1 && version !== 2)
      throw new Error(`accessTokenAcceptedVersion is 1 or 2, not ${String(version)}.`);
    this.#requireApp(clientId).accessTokenVersion = version;
  }

  addSecret(clientId: string, secret: string): void {
    if (!secret) throw new Error('A client secret cannot be empty.');
    this.#requireApp(clientId).secrets.add(secret);
  }

  removeSecret(clientId: string, secret: string): void {
    const app = this.#requireApp(clientId);
    if (!app.secrets.delete(secret)) throw new Error(`The app ${app.clientId} has no such secret.`);
  }

  addCertificate(clientId: string, pem: string): RegisteredCertificate {
    const certificate = thumbprints(pem);
    this.#requireApp(clientId).certificates.push(certificate);
    return certificate;
  }

  /** Admin consent: creates the app's service principal in the tenant (idempotent). */
  consent(tenantId: string, clientId: string): ServicePrincipal {
    const tenant = this.#requireTenant(tenantId);
    const app = this.#requireApp(clientId);
    if (!app.multiTenant && app.homeTenantId !== tenant.tenantId) {
      throw new Error(
        `The app ${app.displayName} (${app.clientId}) is single-tenant: it cannot be consented to in tenant ${tenant.tenantId}.`,
      );
    }
    const key = `${tenant.tenantId}|${app.clientId}`;
    let sp = this.#servicePrincipals.get(key);
    if (!sp) {
      sp = {
        objectId: randomUUID(),
        tenantId: tenant.tenantId,
        clientId: app.clientId,
        appPermissions: new Map(),
        delegatedPermissions: new Map(),
      };
      this.#servicePrincipals.set(key, sp);
    }
    return sp;
  }

  /** Deletes the service principal (and with it every grant) from the tenant. */
  revokeConsent(tenantId: string, clientId: string): void {
    if (!this.#servicePrincipals.delete(`${tenantId.toLowerCase()}|${clientId.toLowerCase()}`)) {
      throw new Error(`The app ${clientId} has no service principal in tenant ${tenantId}.`);
    }
  }

  servicePrincipal(tenantId: string, clientId: string): ServicePrincipal | undefined {
    return this.#servicePrincipals.get(`${tenantId.toLowerCase()}|${clientId.toLowerCase()}`);
  }

  servicePrincipalId(tenantId: string, clientId: string): string | undefined {
    return this.servicePrincipal(tenantId, clientId)?.objectId;
  }

  servicePrincipals(): ServicePrincipal[] {
    return [...this.#servicePrincipals.values()];
  }

  /** Grants application permissions (`roles`) and consents; refuses a role the resource does not expose. */
  grantAppPermissions(tenantId: string, clientId: string, resource: string, roles: string[]): void {
    const api = this.#requireResource(resource);
    const unknown = roles.filter((role) => !api.appRoles.includes(role));
    if (unknown.length) {
      throw new Error(
        `${api.displayName} (${api.id}) exposes no application permission ${unknown.map((r) => `'${r}'`).join(', ')}; ` +
          `it exposes: ${api.appRoles.join(', ') || 'none'}.`,
      );
    }
    const sp = this.consent(tenantId, clientId);
    const granted = sp.appPermissions.get(api.id) ?? new Set<string>();
    roles.forEach((role) => granted.add(role));
    sp.appPermissions.set(api.id, granted);
  }

  /** Grants delegated permissions (`scp`) and consents; refuses a scope the resource does not expose. */
  grantDelegatedPermissions(tenantId: string, clientId: string, resource: string, scopes: string[]): void {
    const api = this.#requireResource(resource);
    const unknown = scopes.filter((scope) => !api.delegatedScopes.includes(scope));
    if (unknown.length) {
      throw new Error(
        `${api.displayName} (${api.id}) exposes no delegated permission ${unknown.map((s) => `'${s}'`).join(', ')}; ` +
          `it exposes: ${api.delegatedScopes.join(', ') || 'none'}.`,
      );
    }
    const sp = this.consent(tenantId, clientId);
    const granted = sp.delegatedPermissions.get(api.id) ?? new Set<string>();
    scopes.forEach((scope) => granted.add(scope));
    sp.delegatedPermissions.set(api.id, granted);
  }

  addUser(options: {
    tenantId: string;
    userPrincipalName: string;
    password: string;
    displayName: string;
    objectId?: string;
  }): User {
    const tenant = this.#requireTenant(options.tenantId);
    const user: User = {
      tenantId: tenant.tenantId,
      userPrincipalName: options.userPrincipalName,
      password: options.password,
      displayName: options.displayName,
      objectId: options.objectId ?? randomUUID(),
    };
    this.#users.set(`${tenant.tenantId}|${user.userPrincipalName.toLowerCase()}`, user);
    return { ...user };
  }

  /** The user with this UPN; in `tenantId` when given, else in whichever tenant holds it. */
  user(userPrincipalName: string, tenantId?: string): User | undefined {
    const upn = userPrincipalName.toLowerCase();
    if (tenantId) return this.#users.get(`${tenantId.toLowerCase()}|${upn}`);
    return [...this.#users.values()].find((u) => u.userPrincipalName.toLowerCase() === upn);
  }

  users(): User[] {
    return [...this.#users.values()];
  }

  /** Creates a user-assigned managed identity (as `az identity create` does): ids are generated unless given. */
  addManagedIdentity(options: AddManagedIdentityOptions): ManagedIdentity {
    const tenant = this.#requireTenant(options.tenantId);
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$/.test(options.name)) {
      throw new Error(
        `'${options.name}' is not a valid managed identity name (3-128 letters, digits, '-' or '_', starting with a letter or digit).`,
      );
    }
    const identity: ManagedIdentity = {
      name: options.name,
      tenantId: tenant.tenantId,
      clientId: (options.clientId ?? randomUUID()).toLowerCase(),
      principalId: (options.principalId ?? randomUUID()).toLowerCase(),
      resourceId:
        options.resourceId ??
        `/subscriptions/${LOCAL_SUBSCRIPTION_ID}/resourcegroups/local/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${options.name}`,
    };
    const clash = [...this.#managedIdentities.values()].find(
      (m) =>
        m.clientId === identity.clientId ||
        m.principalId === identity.principalId ||
        m.resourceId.toLowerCase() === identity.resourceId.toLowerCase(),
    );
    if (clash)
      throw new Error(`The managed identity ${clash.name} already has that client id, principal id or resource id.`);
    if (this.#apps.has(identity.clientId))
      throw new Error(`The client id ${identity.clientId} belongs to an app registration.`);
    this.#managedIdentities.set(identity.clientId, identity);
    return { ...identity };
  }

  /** The managed identity with this client id, principal (object) id or resource id (case-insensitive). */
  managedIdentity(
    by: { clientId: string } | { principalId: string } | { resourceId: string },
  ): ManagedIdentity | undefined {
    const all = [...this.#managedIdentities.values()];
    const found =
      'clientId' in by
        ? this.#managedIdentities.get(by.clientId.trim().toLowerCase())
        : 'principalId' in by
          ? all.find((m) => m.principalId === by.principalId.trim().toLowerCase())
          : all.find((m) => m.resourceId.toLowerCase() === by.resourceId.trim().toLowerCase());
    return found ? { ...found } : undefined;
  }

  managedIdentities(): ManagedIdentity[] {
    return [...this.#managedIdentities.values()].map((m) => ({ ...m }));
  }

  /**
   * The resource a scope names (`https://api.security.microsoft.com`, `api://defender-relay`, or an app id),
   * as seen from a tenant: a custom API exists there only where its service principal does.
   */
  resolveResource(name: string, tenantId: string): ResourceApi | undefined {
    const api = this.#resolveGlobal(name);
    if (api?.apiClientId && !this.servicePrincipal(tenantId, api.apiClientId)) return undefined;
    return api;
  }

  #resolveGlobal(name: string): ResourceApi | undefined {
    const wanted = normalizeResourceName(name);
    const microsoft = MICROSOFT_RESOURCES.find((r) => normalizeResourceName(r.id) === wanted || r.appId === wanted);
    if (microsoft) return { ...microsoft };
    const app = [...this.#apps.values()].find(
      (a) => a.identifierUri && (normalizeResourceName(a.identifierUri) === wanted || a.clientId === wanted),
    );
    if (!app?.identifierUri) return undefined;
    return {
      id: app.clientId,
      displayName: app.displayName,
      appId: app.clientId,
      identifierUri: app.identifierUri,
      scopePrefix: app.identifierUri,
      accessTokenVersion: app.accessTokenVersion,
      appRoles: app.appRoles,
      delegatedScopes: app.delegatedScopes,
      apiClientId: app.clientId,
    };
  }

  #requireResource(name: string): ResourceApi {
    const api = this.#resolveGlobal(name);
    if (!api) throw new Error(`No resource API is named ${name}.`);
    return api;
  }

  #requireTenant(tenantId: string): Tenant {
    const tenant = this.tenant(tenantId);
    if (!tenant) throw new Error(`No tenant ${tenantId} is registered.`);
    return tenant;
  }

  #requireApp(clientId: string): AppRegistration {
    const app = this.app(clientId);
    if (!app) throw new Error(`No app with client id ${clientId} is registered.`);
    return app;
  }
}
