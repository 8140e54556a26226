import * as z from 'zod';

/**
 * Every app setting the code reads, validated once. A bad or missing setting fails with a message
 * naming it. The Bicep sets exactly this set in Azure (a test compares the two).
 */

const KEY_VAULT_REFERENCE = '@Microsoft.KeyVault(';

const httpsUrl = z
  .string()
  .url('must be a URL')
  .refine((v) => v.startsWith('https://'), 'must be an https:// URL')
  .transform((v) => v.replace(/\/+$/, ''));

const booleanSetting = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'True', 'False'], { message: 'must be true or false' })
  .transform((v) => ['true', '1', 'yes'].includes(v.toLowerCase()));

/** A GUID in its usual text form, either case (tenant ids, client ids, instrumentation keys). */
export const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const guid = z.string().regex(GUID, 'must be a GUID');

// NCRONTAB with six fields (seconds first), as the Functions timer trigger reads it.
const ncrontab = z
  .string()
  .refine(
    (v) => v.trim().split(/\s+/).length === 6,
    'must be an NCRONTAB expression with six fields ({second} {minute} {hour} {day} {month} {day-of-week})',
  );

const positiveInt = z
  .string()
  .regex(/^\d+$/, 'must be a whole number')
  .transform(Number)
  .refine((n) => n > 0, 'must be greater than 0');

const secretName = z
  .string()
  .regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name (letters, digits and dashes)');

const commaList = (item: z.ZodString, what: string) =>
  z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    )
    .refine((items) => items.every((x) => item.safeParse(x).success), `must be a comma-separated list of ${what}`);

const guidList = commaList(guid, 'GUIDs').transform((ids) => ids.map((id) => id.toLowerCase()));
const hostList = commaList(z.string().regex(/^(\*\.)?[a-z0-9.-]+(:\d+)?$/i), 'host names').transform((hosts) =>
  hosts.map((h) => h.toLowerCase()),
);

export const settingsSchema = z.object({
  /** Storage for queues, tables and claim-check blobs: a connection string locally... */
  AzureWebJobsStorage: z.string().min(1).optional(),
  /** ...or, in Azure, identity-based service URIs (the managed identity's client id in __clientId). */
  AzureWebJobsStorage__queueServiceUri: httpsUrl.optional(),
  AzureWebJobsStorage__tableServiceUri: httpsUrl.optional(),
  AzureWebJobsStorage__blobServiceUri: httpsUrl.optional(),
  AzureWebJobsStorage__clientId: guid.optional(),
  AzureWebJobsStorage__credential: z.literal('managedidentity').optional(),

  /** The vault holding tenant client secrets and certificates. */
  KEY_VAULT_URL: httpsUrl,
  /** Local only: the local vault is not on *.vault.azure.net, so the SDK's challenge check must be relaxed. */
  KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: booleanSetting.default(false),

  /** Entra ID authority host; the stand-in's URL locally. */
  ENTRA_AUTHORITY_HOST: httpsUrl.default('https://login.microsoftonline.com'),
  /** Skip MSAL's instance discovery (required for any authority that is not a Microsoft cloud). */
  ENTRA_DISABLE_INSTANCE_DISCOVERY: booleanSetting.default(false),

  /** Base URL of the Defender XDR API. */
  DEFENDER_API_URL: httpsUrl.default('https://api.security.microsoft.com'),
  /** Base URL of Microsoft Graph, for tenants whose source is `graph` (a national cloud has its own). */
  GRAPH_API_URL: httpsUrl.default('https://graph.microsoft.com'),

  /** The app's own identity: the user-assigned managed identity in Azure... */
  AZURE_CLIENT_ID: guid.optional(),
  AZURE_TENANT_ID: guid.optional(),
  /** ...or, locally only, a client secret standing in for it. */
  AZURE_CLIENT_SECRET: z.string().min(1).optional(),

  /** When the poll timer fires (NCRONTAB; read by the timer binding as %POLL_SCHEDULE%). */
  POLL_SCHEDULE: ncrontab.default('0 */5 * * * *'),
  /** Pages of 100 incidents one poll run reads before handing over to a follow-up request. */
  POLL_MAX_PAGES_PER_RUN: positiveInt.default(20),

  /** The relay's own API registration: audience of webhook and analyst tokens, and the on-behalf-of client. */
  RELAY_API_CLIENT_ID: guid.optional(),
  RELAY_API_URI: z.string().min(1).default('api://defender-relay'),
  /** Key Vault secret holding the relay API's client secret (for on-behalf-of). */
  RELAY_API_SECRET_NAME: secretName.optional(),

  /** Tenants whose Entra tokens may push incidents to POST /api/incidents for themselves (comma-separated GUIDs). */
  WEBHOOK_ALLOWED_TENANT_IDS: guidList.optional(),
  /** Who may push for whom beyond that: callers granted other tenants, HMAC keys and their tenants (JSON; see webhook-access.ts). */
  WEBHOOK_ACCESS_FILE: z.string().min(1).optional(),
  /** App role a pushing caller's token must carry. */
  WEBHOOK_REQUIRED_ROLE: z.string().min(1).default('Incidents.Submit'),
  /** How old a signed request's timestamp may be (and how long its signature is remembered). */
  WEBHOOK_HMAC_TOLERANCE_SECONDS: positiveInt.default(300),
  WEBHOOK_MAX_BODY_BYTES: positiveInt.default(1_048_576),

  /** The routing rules file (JSON), relative to the app's directory or absolute. */
  ROUTES_FILE: z.string().min(1).default('routes.json'),
  /** Hosts that webhook destinations may point at (comma-separated; SSRF guard). */
  DESTINATION_ALLOWED_HOSTS: hostList.default([]),
  DESTINATION_TIMEOUT_MS: positiveInt.default(10_000),
  /** Local only: lets webhook destinations resolve to loopback (the demo's local receivers). Never in Azure. */
  DESTINATION_ALLOW_LOOPBACK: booleanSetting.default(false),
});

export type Settings = z.infer<typeof settingsSchema>;

export interface StorageConfig {
  connectionString?: string;
  queueServiceUri?: string;
  tableServiceUri?: string;
  blobServiceUri?: string;
  managedIdentityClientId?: string;
}

export interface AppConfig {
  storage: StorageConfig;
  keyVault: { url: string; disableChallengeResourceVerification: boolean };
  entra: { authorityHost: string; disableInstanceDiscovery: boolean };
  defender: { apiUrl: string; resource: string; scope: string };
  graph: { apiUrl: string; resource: string; scope: string };
  appIdentity: { tenantId?: string; clientId?: string; clientSecret?: string };
  pollSchedule: string;
  pollMaxPagesPerRun: number;
  relayApi: { clientId?: string; uri: string; secretName?: string };
  webhook: {
    allowedTenantIds: string[];
    /** The webhook access file, when one is set (relative to the app's directory or absolute). */
    accessFile?: string;
    requiredRole: string;
    hmacToleranceSeconds: number;
    maxBodyBytes: number;
  };
  routing: { routesFile: string; allowedHosts: string[]; timeoutMs: number; allowLoopback: boolean };
}

/** The Defender API's resource id: tokens carry it as `aud` wherever the API is served from. */
export const DEFENDER_RESOURCE = 'https://api.security.microsoft.com';
/** Microsoft Graph's resource id (global service); `/.default` asks for the permissions consented to the app. */
export const GRAPH_RESOURCE = 'https://graph.microsoft.com';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Settings the app once read, and what replaced them: set, they fail the start rather than be ignored. */
const RETIRED_SETTINGS: Record<string, string> = {
  WEBHOOK_HMAC_SECRET_NAME:
    'an HMAC key now belongs to the tenants it may push for. List it in the webhook access file (WEBHOOK_ACCESS_FILE) as ' +
    'hmacKeys: [{ "name": "…", "secretName": "<this secret>", "mayPushFor": ["<tenant id>", …] }], and have its senders sign v2 (README, Pushing incidents)',
};

/** The names of every setting the app reads (the Bicep must set the same set). */
export const SETTING_NAMES = Object.keys(settingsSchema.shape) as (keyof Settings)[];

export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  const problems: string[] = [];
  const raw: Record<string, string> = {};
  const unresolved = new Set<string>();
  for (const [name, instead] of Object.entries(RETIRED_SETTINGS)) {
    if (env[name]) problems.push(`${name} is no longer read: ${instead}`);
  }
  for (const name of SETTING_NAMES) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (value.startsWith(KEY_VAULT_REFERENCE)) {
      problems.push(
        `${name} is an unresolved Key Vault reference (${value.slice(0, 120)}): the platform could not resolve it. ` +
          `Check that the Function App's identity may read that secret and that the reference is spelled right.`,
      );
      unresolved.add(name);
      continue;
    }
    raw[name] = value;
  }

  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? '(settings)');
      if (unresolved.has(name)) continue;
      const got = raw[name];
      problems.push(got === undefined ? `${name} is required but not set` : `${name}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const s = parsed.data;

  if (!s.AzureWebJobsStorage && !s.AzureWebJobsStorage__queueServiceUri) {
    problems.push(
      'AzureWebJobsStorage is required: a connection string, or AzureWebJobsStorage__queueServiceUri, __tableServiceUri and __blobServiceUri with a managed identity',
    );
  }
  if (
    !s.AzureWebJobsStorage &&
    s.AzureWebJobsStorage__queueServiceUri &&
    (!s.AzureWebJobsStorage__tableServiceUri || !s.AzureWebJobsStorage__blobServiceUri)
  ) {
    problems.push(
      'AzureWebJobsStorage__tableServiceUri and AzureWebJobsStorage__blobServiceUri are required with AzureWebJobsStorage__queueServiceUri',
    );
  }
  if (s.AZURE_CLIENT_SECRET && (!s.AZURE_TENANT_ID || !s.AZURE_CLIENT_ID)) {
    problems.push('AZURE_CLIENT_SECRET needs AZURE_TENANT_ID and AZURE_CLIENT_ID');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    storage: {
      connectionString: s.AzureWebJobsStorage,
      queueServiceUri: s.AzureWebJobsStorage__queueServiceUri,
      tableServiceUri: s.AzureWebJobsStorage__tableServiceUri,
      blobServiceUri: s.AzureWebJobsStorage__blobServiceUri,
      managedIdentityClientId: s.AzureWebJobsStorage__clientId ?? s.AZURE_CLIENT_ID,
    },
    keyVault: {
      url: s.KEY_VAULT_URL,
      disableChallengeResourceVerification: s.KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION,
    },
    entra: { authorityHost: s.ENTRA_AUTHORITY_HOST, disableInstanceDiscovery: s.ENTRA_DISABLE_INSTANCE_DISCOVERY },
    defender: { apiUrl: s.DEFENDER_API_URL, resource: DEFENDER_RESOURCE, scope: `${DEFENDER_RESOURCE}/.default` },
    graph: { apiUrl: s.GRAPH_API_URL, resource: GRAPH_RESOURCE, scope: `${GRAPH_RESOURCE}/.default` },
    appIdentity: { tenantId: s.AZURE_TENANT_ID, clientId: s.AZURE_CLIENT_ID, clientSecret: s.AZURE_CLIENT_SECRET },
    pollSchedule: s.POLL_SCHEDULE,
    pollMaxPagesPerRun: s.POLL_MAX_PAGES_PER_RUN,
    relayApi: { clientId: s.RELAY_API_CLIENT_ID, uri: s.RELAY_API_URI, secretName: s.RELAY_API_SECRET_NAME },
    webhook: {
      allowedTenantIds: s.WEBHOOK_ALLOWED_TENANT_IDS ?? [],
      accessFile: s.WEBHOOK_ACCESS_FILE,
      requiredRole: s.WEBHOOK_REQUIRED_ROLE,
      hmacToleranceSeconds: s.WEBHOOK_HMAC_TOLERANCE_SECONDS,
      maxBodyBytes: s.WEBHOOK_MAX_BODY_BYTES,
    },
    routing: {
      routesFile: s.ROUTES_FILE,
      allowedHosts: s.DESTINATION_ALLOWED_HOSTS,
      timeoutMs: s.DESTINATION_TIMEOUT_MS,
      allowLoopback: s.DESTINATION_ALLOW_LOOPBACK,
    },
  };
}

let cached: AppConfig | undefined;

/** The configuration of this process, read once. */
export function getConfig(): AppConfig {
  cached ??= loadConfig();
  return cached;
}
