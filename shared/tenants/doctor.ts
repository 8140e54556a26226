import { decodeJwt } from 'jose';
import type { AppConfig } from '../config/config.js';
import type { DefenderTokenProvider } from '../auth/credentials.js';
import { DefenderClient } from '../sources/defender/client.js';
import { GraphClient } from '../sources/graph/client.js';
import { NotTenantCredentialError } from '../auth/credential-fence.js';
import { RelayError } from '../errors.js';
import { describeError, redact } from '../telemetry/redact.js';
import type { SecretCache } from '../auth/secrets.js';
import type { Services } from '../services.js';
import { adminConsentLink, type Tenant, type TenantCredential } from './tenants.js';

/**
 * `doctor`: for each tenant, what the onboarding documents tell a person to check by hand — read the
 * credential from Key Vault, get a token for the tenant's source (the Defender API or Microsoft Graph),
 * decode it (tid is the tenant, roles hold the permissions the relay needs), call the API once. One row per tenant; each failed step carries a
 * one-line cause that says what to do. Never a secret or a token: the token is summarised by its claims.
 */

export type StepName = 'secret' | 'token' | 'permissions' | 'api';
export type StepStatus = 'ok' | 'failed' | 'skipped';

export interface DoctorStep {
  name: StepName;
  status: StepStatus;
  /** What was found, or for a failure: what went wrong and what to do. */
  detail: string;
}

export interface TokenSummary {
  tid?: string;
  appid?: string;
  roles: string[];
  expiresAt?: string;
}

export interface TenantCheck {
  tenantId: string;
  displayName: string;
  context: Tenant['context'];
  source: Tenant['source'];
  clientId: string;
  credential: string;
  enabled: boolean;
  ok: boolean;
  steps: DoctorStep[];
  /** The first failure's cause, for one-line displays. */
  cause?: string;
  /** Optional permissions that are missing: the relay works, with a feature off. */
  warnings: string[];
  token?: TokenSummary;
}

export interface DoctorDependencies {
  config: Pick<AppConfig, 'entra' | 'defender'>;
  secretCache: SecretCache;
  tokens: DefenderTokenProvider;
  defender: DefenderClient;
  /** For tenants whose source is `graph`. */
  graphTokens?: DefenderTokenProvider;
  graph?: GraphClient;
}

/**
 * The dependencies from the app's services. The API call goes through a Defender client of its own
 * that retries once and waits at most a few seconds: a person is waiting for the answer, and a
 * failing API is itself the finding. It shares the app's call budget, so checks count against the limits.
 */
export function doctorDependencies(
  services: Pick<Services, 'config' | 'secretCache' | 'tokens' | 'defender' | 'graphTokens' | 'graph'>,
): DoctorDependencies {
  const { config, secretCache, tokens, defender, graphTokens, graph } = services;
  const impatient = { maxRetries: 1, baseDelayMs: 500, maxWaitMs: 5_000, timeoutMs: 15_000 };
  return {
    config,
    secretCache,
    tokens,
    defender: new DefenderClient({ apiUrl: config.defender.apiUrl, tokens, budget: defender.budget, ...impatient }),
    graphTokens,
    graph: new GraphClient({ apiUrl: config.graph.apiUrl, tokens: graphTokens, budget: graph.budget, ...impatient }),
  };
}

export interface DoctorOptions {
  /** Tenants checked at once. */
  concurrency?: number;
}

export const READ_PERMISSIONS = ['Incident.Read.All', 'Incident.ReadWrite.All'];
const OPTIONAL_PERMISSIONS: [permission: string, withoutIt: string][] = [
  [
    'Incident.ReadWrite.All',
    'no Incident.ReadWrite.All: write-back (status, assignment, classification) will be refused',
  ],
  ['AdvancedHunting.Read.All', 'no AdvancedHunting.Read.All: hunting enrichment is off for this tenant'],
];

/** Microsoft Graph's permissions for security incidents (security-list-incidents.md, "Permissions"). */
export const GRAPH_READ_PERMISSIONS = ['SecurityIncident.Read.All', 'SecurityIncident.ReadWrite.All'];
const GRAPH_OPTIONAL_PERMISSIONS: [permission: string, withoutIt: string][] = [
  ['SecurityIncident.ReadWrite.All', 'no SecurityIncident.ReadWrite.All: write-back (tags, comments) will be refused'],
  // security-security-runhuntingquery.md, "Permissions".
  ['ThreatHunting.Read.All', 'no ThreatHunting.Read.All: hunting enrichment is off for this tenant'],
];

/** What differs between checking a Defender tenant and a Graph tenant. */
interface SourceProfile {
  /** The API, as messages name it. */
  api: string;
  urlSetting: string;
  read: string[];
  optional: [permission: string, withoutIt: string][];
  /** Where the read permission is added on the app registration. */
  grant: string;
  tokens: DefenderTokenProvider;
  /** One cheap call that needs the read permission. */
  call(tenant: Tenant): Promise<string>;
}

function profileOf(tenant: Tenant, deps: DoctorDependencies): SourceProfile {
  if (tenant.source === 'graph') {
    const { graph, graphTokens } = deps;
    if (!graph || !graphTokens)
      throw new Error('doctor was given no Microsoft Graph client to check a Graph tenant with');
    return {
      api: 'Microsoft Graph',
      urlSetting: 'GRAPH_API_URL',
      read: GRAPH_READ_PERMISSIONS,
      optional: GRAPH_OPTIONAL_PERMISSIONS,
      grant: 'the Microsoft Graph application permission SecurityIncident.Read.All',
      tokens: graphTokens,
      call: async (t) => {
        // Incidents updated from now on: one page, usually empty, that still needs the permission.
        const pages = graph.incidentPagesSince(t, new Date().toISOString(), { maxPages: 1 });
        const first = await pages.next();
        const listed = first.done ? 0 : first.value.incidents.length;
        return `Microsoft Graph answered 200 (${listed === 0 ? 'no incident changed just now' : 'incidents readable'})`;
      },
    };
  }
  return {
    api: 'Defender',
    urlSetting: 'DEFENDER_API_URL',
    read: READ_PERMISSIONS,
    optional: OPTIONAL_PERMISSIONS,
    grant: 'the application permission Incident.Read.All (Microsoft Threat Protection)',
    tokens: deps.tokens,
    call: async (t) => {
      const page = await deps.defender.listIncidentsPage(t, { top: 1 });
      return `Defender answered 200 (${page.length === 0 ? 'no incidents yet' : 'incidents readable'})`;
    },
  };
}

/** Checks every tenant given, a few at a time; one tenant's failure never hides another's result. */
export async function runDoctor(
  tenants: Tenant[],
  deps: DoctorDependencies,
  options: DoctorOptions = {},
): Promise<TenantCheck[]> {
  const results: TenantCheck[] = new Array(tenants.length);
  let next = 0;
  const worker = async () => {
    while (next < tenants.length) {
      const index = next++;
      results[index] = await checkTenant(tenants[index]!, deps);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 4, tenants.length)) }, worker));
  return results;
}

/** Checks one tenant, step by step; never throws. */
export async function checkTenant(tenant: Tenant, deps: DoctorDependencies): Promise<TenantCheck> {
  const steps: DoctorStep[] = [];
  const warnings: string[] = [];
  let token: TokenSummary | undefined;
  let failed = false;

  const step = async (name: StepName, run: () => Promise<string | undefined>, explain: (err: unknown) => string) => {
    if (failed) return steps.push({ name, status: 'skipped', detail: 'skipped: an earlier step failed' });
    try {
      const detail = await run();
      steps.push(
        detail === undefined
          ? { name, status: 'skipped', detail: 'not needed for this credential' }
          : { name, status: 'ok', detail: redact(detail) },
      );
    } catch (err) {
      failed = true;
      steps.push({ name, status: 'failed', detail: redact(explain(err)) });
    }
  };

  await step(
    'secret',
    () => readCredentialSecret(tenant, deps),
    (err) => secretCause(err, tenant),
  );

  const profile = profileOf(tenant, deps);
  let accessToken = '';
  await step(
    'token',
    async () => {
      // A fresh token, so the check reflects what Entra says now rather than an hour ago.
      profile.tokens.invalidate(tenant);
      accessToken = await profile.tokens.getToken(tenant);
      return `${profile.api} token issued by Entra ID (not shown)`;
    },
    (err) => tokenCause(err, tenant, deps.config),
  );

  await step(
    'permissions',
    async () => {
      token = summariseToken(accessToken);
      const problems = permissionProblems(token, tenant, profile);
      if (problems) throw new CheckFailure(problems);
      for (const [permission, withoutIt] of profile.optional)
        if (!token.roles.includes(permission)) warnings.push(withoutIt);
      return `tid matches; appid ${token.appid ?? '?'}; roles ${token.roles.join(', ')}; expires ${token.expiresAt ?? '?'}`;
    },
    (err) => (err instanceof CheckFailure ? err.message : `the token could not be decoded: ${describeError(err)}`),
  );

  await step(
    'api',
    () => profile.call(tenant),
    (err) => apiCause(err, profile),
  );

  const firstFailure = steps.find((s) => s.status === 'failed');
  return {
    tenantId: tenant.tenantId,
    displayName: tenant.displayName,
    context: tenant.context,
    source: tenant.source,
    clientId: tenant.clientId,
    credential: describeCredential(tenant.credential),
    enabled: tenant.enabled,
    ok: !firstFailure,
    steps,
    ...(firstFailure ? { cause: firstFailure.detail } : {}),
    warnings,
    ...(token ? { token } : {}),
  };
}

/** How a tenant's credential is obtained, for tables and answers (names only, never a value). */
export function describeCredential(credential: TenantCredential): string {
  switch (credential.kind) {
    case 'secret':
      return `secret '${credential.secretName}'`;
    case 'certificate':
      return `certificate '${credential.secretName}'`;
    case 'managedIdentity':
      return 'managed identity';
  }
}

class CheckFailure extends Error {}

async function readCredentialSecret(tenant: Tenant, deps: DoctorDependencies): Promise<string | undefined> {
  const credential = tenant.credential;
  if (credential.kind === 'managedIdentity') return undefined;
  // Read from Key Vault now, not from the cache: the check is about what the vault holds.
  const value = await deps.secretCache.refreshTenantCredential(credential.secretName, { tenantId: tenant.tenantId });
  if (credential.kind === 'certificate' && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value)) {
    throw new CheckFailure(
      `Key Vault secret '${credential.secretName}' holds no PEM private key — store the certificate as PEM with its private key (certificate and key in one secret)`,
    );
  }
  return `Key Vault secret '${credential.secretName}' read (value not shown)`;
}

function secretCause(err: unknown, tenant: Tenant): string {
  if (err instanceof CheckFailure) return err.message;
  const name = tenant.credential.kind === 'managedIdentity' ? '' : tenant.credential.secretName;
  const e = err as RelayError;
  if (e.code === 'SecretNotFound') {
    return `Key Vault has no secret named '${name}' — store the app's ${tenant.credential.kind === 'certificate' ? 'certificate (PEM)' : 'client secret'} under that name, or correct the tenant's secret name`;
  }
  // The message names the tag and the command that sets it.
  if (err instanceof NotTenantCredentialError) return err.reason;
  if (e.status === 403)
    return `the app's identity may not read Key Vault secret '${name}' (403) — give it the 'Key Vault Secrets User' role on the vault`;
  if (e instanceof RelayError && e.retryable)
    return `Key Vault did not answer (${e.status ?? e.code ?? 'network error'}) — try again; if it persists check KEY_VAULT_URL and the vault's network rules`;
  return `Key Vault refused to return secret '${name}': ${stripContext(err)}`;
}

function tokenCause(err: unknown, tenant: Tenant, config: DoctorDependencies['config']): string {
  const code = err instanceof RelayError ? err.code : undefined;
  const secretName = tenant.credential.kind === 'managedIdentity' ? undefined : tenant.credential.secretName;
  switch (code) {
    case 'AADSTS700016':
      return tenant.context === 'partner'
        ? `AADSTS700016: the app ${tenant.clientId} is not consented in this tenant — send the admin-consent link to the tenant's Global Administrator: ${adminConsentLink(tenant.clientId, config.entra.authorityHost)} (then run doctor again)`
        : `AADSTS700016: no app ${tenant.clientId} in this tenant — check the client id (the app registration's Application (client) ID in this tenant) and that an admin granted consent`;
    case 'AADSTS7000215':
      return `AADSTS7000215: Entra ID refused the client secret in Key Vault secret '${secretName}' — create a new client secret on app ${tenant.clientId} and store its value in that Key Vault secret`;
    case 'AADSTS7000222':
      return `AADSTS7000222: the client secret in Key Vault secret '${secretName}' has expired — create a new client secret on app ${tenant.clientId} and store it in that secret`;
    case 'AADSTS700027':
    case 'AADSTS700024':
      return `${code}: Entra ID did not accept the certificate in Key Vault secret '${secretName}' — upload its public certificate to app ${tenant.clientId} (Certificates & secrets)`;
    case 'AADSTS90002':
      return `AADSTS90002: Entra ID knows no tenant ${tenant.tenantId} — check the tenant id`;
    case 'AADSTS65001':
      return `AADSTS65001: consent is missing for the requested permissions — ${tenant.context === 'partner' ? `send the admin-consent link again: ${adminConsentLink(tenant.clientId, config.entra.authorityHost)}` : 'grant admin consent on the app registration'}`;
  }
  if (tenant.credential.kind === 'managedIdentity')
    return `the Function App's managed identity got no token: ${stripContext(err)}`;
  if (err instanceof RelayError && err.retryable)
    return `Entra ID could not be reached (${err.status ?? 'network error'}) — try again; if it persists check ENTRA_AUTHORITY_HOST`;
  return stripContext(err);
}

function summariseToken(token: string): TokenSummary {
  const claims = decodeJwt(token);
  const roles = Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
  return {
    tid: typeof claims.tid === 'string' ? claims.tid : undefined,
    appid: typeof claims.appid === 'string' ? claims.appid : typeof claims.azp === 'string' ? claims.azp : undefined,
    roles,
    expiresAt: typeof claims.exp === 'number' ? new Date(claims.exp * 1000).toISOString() : undefined,
  };
}

function permissionProblems(token: TokenSummary, tenant: Tenant, profile: SourceProfile): string | undefined {
  if (token.tid?.toLowerCase() !== tenant.tenantId) {
    return `the token is for tenant ${token.tid ?? '(no tid)'}, not ${tenant.tenantId} — check the tenant id and the app's sign-in audience`;
  }
  if (!token.roles.some((r) => profile.read.includes(r))) {
    const has = token.roles.length ? `roles: ${token.roles.join(', ')}` : 'no roles';
    const reconsent =
      tenant.context === 'partner' ? 're-consent (send the admin-consent link again)' : 'grant admin consent';
    return `token lacks ${profile.read[0]} (${has}) — add ${profile.grant} to app ${tenant.clientId} and ${reconsent}`;
  }
  return undefined;
}

function apiCause(err: unknown, profile: SourceProfile): string {
  const e = err instanceof RelayError ? err : undefined;
  const status = e?.status;
  const { api, urlSetting } = profile;
  const answered = `${api} answered ${status}${e?.code ? ` ${e.code}` : ''}`;
  // The client's message is "<what the client concluded>: <code> <the API's message>"; keep the API's words.
  const said = stripContext(err)
    .replace(new RegExp(`^${api} [^:]*: `), '')
    .replace(e?.code ? new RegExp(`^${e.code} `) : /^$/, '');
  if (status === 401)
    return `${answered} even with a fresh token: ${said} — check ${urlSetting} and that the token's audience is the ${api} API`;
  if (status === 403) {
    return /not provisioned|no Microsoft Defender XDR data/i.test(said)
      ? `${answered}: ${said} — is Microsoft Defender XDR enabled in this tenant?`
      : `${answered}: ${said} — grant ${profile.read[0]} and re-consent`;
  }
  if (status === 429) return `${answered} (throttled): ${said} — try again in a minute`;
  if (status !== undefined && status >= 500) return `${answered} — the API is failing; try again later`;
  if (e?.retryable) return `${api} could not be reached: ${said} — check ${urlSetting} and the network`;
  return `${api} call failed: ${said}`;
}

/** The message without the "(tenant …, operation)" suffix the app's errors carry: the row already names the tenant. */
function stripContext(err: unknown): string {
  const text = describeError(err).replace(/^[A-Za-z]*Error[^:]*: /, '');
  return text.replace(/ \(tenant [0-9a-f-]{36}[^)]*\)$/, '');
}
