import { resolve } from 'node:path';
import * as z from 'zod';
import {
  NotTenantCredentialError,
  relaySecretNamed,
  relaySecretNames,
  TENANT_CREDENTIAL_TAG_ARGUMENT,
  type RelaySecretSources,
} from '../auth/credential-fence.js';
import { checkTenant, doctorDependencies, type TenantCheck } from './doctor.js';
import { RelayError } from '../errors.js';
import { describeError } from '../telemetry/redact.js';
import { loadRoutingRules, type RoutingTable } from '../route/routing.js';
import type { Logger } from '../telemetry/logging.js';
import type { Services } from '../services.js';
import type { TenantStatus } from './tenant-status.js';
import {
  adminConsentLink,
  parseTenant,
  tenantSchema,
  TenantNotFoundError,
  TenantValidationError,
  type Tenant,
} from './tenants.js';

/**
 * Tenant administration behind the HTTP admin endpoints (and shared with the command-line tool):
 * views of the registry with each tenant's last poll, validated changes, the partner consent
 * instructions, and the mapping of every known failure to a 4xx answer that names the problem.
 */

export type AdminServices = Pick<
  Services,
  'config' | 'registry' | 'tenantStatus' | 'secretCache' | 'tokens' | 'defender' | 'graphTokens' | 'graph'
>;

export interface LastPoll {
  at?: string;
  outcome?: string;
  error?: string;
  eventsEnqueued: number;
}

export type TenantView = Tenant & { lastPoll: LastPoll };

function lastPollOf(status: TenantStatus | undefined): LastPoll {
  return {
    ...(status?.lastPollAt ? { at: status.lastPollAt } : {}),
    ...(status?.lastOutcome ? { outcome: status.lastOutcome } : {}),
    ...(status?.lastError ? { error: status.lastError } : {}),
    eventsEnqueued: status?.eventsEnqueued ?? 0,
  };
}

/** Every registered tenant, by name, with its last poll. */
export async function listTenantViews(services: Pick<Services, 'registry' | 'tenantStatus'>): Promise<TenantView[]> {
  const [tenants, statuses] = await Promise.all([services.registry.list(), services.tenantStatus.list()]);
  const byTenant = new Map(statuses.map((s) => [s.tenantId, s]));
  return tenants.map((t) => ({ ...t, lastPoll: lastPollOf(byTenant.get(t.tenantId)) }));
}

export async function getTenantView(
  tenantId: string,
  services: Pick<Services, 'registry' | 'tenantStatus'>,
): Promise<TenantView> {
  const tenant = await services.registry.get(tenantId);
  return { ...tenant, lastPoll: lastPollOf(await services.tenantStatus.get(tenant.tenantId)) };
}

/** Long input is cut in messages: an answer should not echo a 200 KB route parameter back. */
function shorten(value: string, max = 80): string {
  return value.length > max ? `${value.slice(0, max)}… (${value.length} characters)` : value;
}

export class InvalidTenantIdError extends Error {
  constructor(readonly value: string) {
    super(`'${shorten(value)}' is not a tenant id: a tenant id is a GUID (the directory's Tenant ID in Entra ID)`);
    this.name = 'InvalidTenantIdError';
  }
}

/** A tenant id from a route or a flag, lower-cased; throws `InvalidTenantIdError` when it is not a GUID. */
export function parseTenantId(value: string | undefined): string {
  const parsed = tenantSchema.shape.tenantId.safeParse(value ?? '');
  if (!parsed.success) throw new InvalidTenantIdError(value ?? '');
  return parsed.data;
}

/** What PATCH may change; everything else about a tenant is replaced with POST. */
const tenantPatchSchema = z
  // `source` moves a tenant between the Defender API and Graph: event ids are the same through both, so nothing is routed twice.
  .object({ enabled: z.boolean(), displayName: z.string(), firstRunLookbackHours: z.number(), source: z.string() })
  .partial()
  .strict();
const PATCHABLE = Object.keys(tenantPatchSchema.shape).join(', ');

export type TenantPatch = z.infer<typeof tenantPatchSchema>;

/** Applies a change to a registered tenant; the result is validated like a new tenant. */
export async function updateTenant(
  tenantId: string,
  patch: unknown,
  services: Pick<Services, 'registry'>,
): Promise<Tenant> {
  const parsed = tenantPatchSchema.safeParse(patch);
  if (!parsed.success) {
    throw new TenantValidationError(
      parsed.error.issues.flatMap((i) =>
        i.code === 'unrecognized_keys'
          ? i.keys.map(
              (key) =>
                `${key}: cannot be changed with PATCH, only ${PATCHABLE} can (POST /api/tenants replaces a whole tenant)`,
            )
          : [`${i.path.join('.') || '(body)'}: ${i.message}`],
      ),
    );
  }
  if (Object.keys(parsed.data).length === 0)
    throw new TenantValidationError([`(body): give at least one of ${PATCHABLE}`]);
  const tenant = await services.registry.get(tenantId);
  return services.registry.put({ ...tenant, ...parsed.data });
}

export class NotPartnerTenantError extends Error {
  constructor(readonly tenant: Tenant) {
    super(
      `Tenant ${tenant.tenantId} (${tenant.displayName}) uses the application context: it is read with its own app registration ` +
        `${tenant.clientId}, which has no partner consent link. An admin of that tenant grants consent on the app registration ` +
        `(API permissions → Grant admin consent).`,
    );
    this.name = 'NotPartnerTenantError';
  }
}

export interface ConsentInstructions {
  tenantId: string;
  displayName: string;
  clientId: string;
  consentLink: string;
  steps: string[];
}

/** The admin-consent link of a partner tenant and what to do with it. */
export function consentInstructions(tenant: Tenant, authorityHost: string): ConsentInstructions {
  if (tenant.context !== 'partner') throw new NotPartnerTenantError(tenant);
  const consentLink = adminConsentLink(tenant.clientId, authorityHost);
  return {
    tenantId: tenant.tenantId,
    displayName: tenant.displayName,
    clientId: tenant.clientId,
    consentLink,
    steps: [
      `Send the link to a Global Administrator (or Privileged Role Administrator) of ${tenant.displayName} (${tenant.tenantId}).`,
      `They open it, sign in with their own account and accept the permissions the app asks for (${
        tenant.source === 'graph'
          ? 'Microsoft Graph SecurityIncident.Read.All, or SecurityIncident.ReadWrite.All for write-back, and ThreatHunting.Read.All for hunting'
          : 'Incident.Read.All'
      } and the others granted on the app).`,
      `Then check the tenant: npm run doctor -- --tenant ${tenant.tenantId} (or GET /api/tenants/${tenant.tenantId}/check).`,
    ],
  };
}

/** The doctor's row for one registered tenant. */
export async function checkRegisteredTenant(tenantId: string, services: AdminServices): Promise<TenantCheck> {
  return checkTenant(await services.registry.get(tenantId), doctorDependencies(services));
}

// ---- HTTP answers ----------------------------------------------------------------------------

/** A plain HTTP answer (the shape `HttpResponseInit` accepts). */
export interface AdminResponse {
  status: number;
  jsonBody?: unknown;
  headers?: Record<string, string>;
}

export class InvalidBodyError extends Error {}

/** The request body as JSON; an empty or malformed body is a 400, not a 500. */
export function parseJsonBody(text: string): unknown {
  if (!text.trim()) throw new InvalidBodyError('The request body is empty: send the tenant as a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidBodyError(`The request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Runs an admin operation: known failures become the 4xx answer that names the problem; anything
 * else is logged (redacted) and rethrown, so the host answers 500 and records the failure.
 */
export async function answerAdmin(
  log: Logger,
  operation: string,
  run: () => Promise<AdminResponse>,
): Promise<AdminResponse> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof TenantValidationError)
      return { status: 400, jsonBody: { error: 'The tenant is not valid', problems: err.problems } };
    if (err instanceof InvalidTenantIdError || err instanceof InvalidBodyError)
      return { status: 400, jsonBody: { error: err.message } };
    if (err instanceof TenantNotFoundError) return { status: 404, jsonBody: { error: err.message } };
    if (err instanceof NotPartnerTenantError) return { status: 409, jsonBody: { error: err.message } };
    log.error(`${operation} failed: ${describeError(err)}`);
    throw err;
  }
}

/** What `putTenant` needs: the registry, and the settings and Key Vault to check the credential against. */
export type PutTenantServices = Pick<Services, 'registry' | 'config' | 'secretCache' | 'webhookAccess'>;

/**
 * Adds a tenant or replaces the registered one with that id; says which it was, with warnings about
 * its credential that do not stop the registration (a secret not stored yet).
 */
export async function putTenant(
  input: unknown,
  services: PutTenantServices,
): Promise<{ tenant: Tenant; created: boolean; warnings: string[] }> {
  const tenant = parseTenant(input);
  const warnings = await checkTenantCredential(tenant, services);
  const existed = await services.registry.get(tenant.tenantId).then(
    () => true,
    (err: unknown) => {
      if (err instanceof TenantNotFoundError) return false;
      throw err;
    },
  );
  return { tenant: await services.registry.put(tenant), created: !existed, warnings };
}

/**
 * A tenant's credential must name a tenant credential (credential-fence.ts): never one of the
 * relay's own secrets (by the names its settings and routing rules give them), and, when the secret
 * is in Key Vault, one tagged as a tenant credential; either is a `TenantValidationError` (400).
 * A secret not stored yet is accepted with a warning, since onboarding may register a tenant
 * (disabled) before its secret exists: the poll and doctor refuse it until it is stored with the tag.
 */
export async function checkTenantCredential(
  tenant: Tenant,
  services: Pick<Services, 'config' | 'secretCache' | 'webhookAccess'>,
): Promise<string[]> {
  const credential = tenant.credential;
  if (credential.kind === 'managedIdentity') return [];
  const name = credential.secretName;
  const own = relaySecretNamed(
    name,
    relaySecretNames(services.config, {
      routes: routingTableIfItLoads(services.config),
      hmacKeys: accessFileHmacKeys(services),
    }),
  );
  if (own) {
    throw new TenantValidationError([
      `credential.secretName: '${name}' is the relay's own secret (named by ${own.namedBy}), not a tenant credential: ` +
        `store the tenant's ${credential.kind === 'certificate' ? 'certificate' : 'client secret'} under a name of its own, tagged ${TENANT_CREDENTIAL_TAG_ARGUMENT}`,
    ]);
  }
  try {
    // Read now, not from the cache: the operator may have just stored or tagged it.
    await services.secretCache.refreshTenantCredential(name, { tenantId: tenant.tenantId });
    return [];
  } catch (err) {
    if (err instanceof NotTenantCredentialError)
      throw new TenantValidationError([`credential.secretName: ${err.reason}`]);
    const what = credential.kind === 'certificate' ? 'certificate (PEM with its private key)' : 'client secret';
    if (err instanceof RelayError && err.code === 'SecretNotFound') {
      return [
        `Key Vault has no secret '${name}' yet: store the tenant's ${what} under that name with --tags ${TENANT_CREDENTIAL_TAG_ARGUMENT} ` +
          `before the tenant is polled (npm run doctor -- --tenant ${tenant.tenantId} checks it)`,
      ];
    }
    return [
      `the tag of Key Vault secret '${name}' could not be checked (${describeError(err)}): the tenant is polled only once it is tagged ${TENANT_CREDENTIAL_TAG_ARGUMENT}; npm run doctor -- --tenant ${tenant.tenantId} checks it`,
    ];
  }
}

/** The HMAC keys the webhook access file names; none when it does not load (pushes report that). */
function accessFileHmacKeys(services: Pick<Services, 'config' | 'webhookAccess'>): RelaySecretSources['hmacKeys'] {
  try {
    return {
      secretNames: services.webhookAccess().hmacSecretNames(),
      namedBy: `WEBHOOK_ACCESS_FILE (hmacKeys) ${services.config.webhook.accessFile ?? ''}`.trim(),
    };
  } catch {
    return undefined;
  }
}

/** The routing rules, for the secret names their destinations use; none when the file does not load (the enricher reports that). */
function routingTableIfItLoads(config: Services['config']): RoutingTable | undefined {
  try {
    return loadRoutingRules(resolve(config.routing.routesFile), config.routing);
  } catch {
    return undefined;
  }
}
