import type { TableClient } from '@azure/data-tables';
import * as z from 'zod';
import { LazyTable } from '../storage/table.js';

/**
 * The tenant registry: which Defender tenants the relay reads, through which API, in which context and
 * with which credential. Kept in Azure Table storage (partition `tenant`, row key = tenant id).
 */
export const TENANTS_TABLE = 'tenants';
const PARTITION = 'tenant';

const guid = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a GUID');
const secretName = z
  .string()
  .regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name (letters, digits and dashes, at most 127)');

export const credentialSchema = z.discriminatedUnion('kind', [
  /** A client secret kept in Key Vault. */
  z.object({ kind: z.literal('secret'), secretName }),
  /** A PEM certificate with its private key, kept in Key Vault as a secret. */
  z.object({ kind: z.literal('certificate'), secretName }),
  /** The Function App's managed identity itself (application context in the relay's own tenant). */
  z.object({ kind: z.literal('managedIdentity') }),
]);

/**
 * Which API a tenant's incidents are read through: the Defender XDR API (`https://api.security.microsoft.com`,
 * permission Incident.Read.All) or the Microsoft Graph security API (`/v1.0/security/incidents`,
 * SecurityIncident.Read.All). The same incidents either way (Graph's id is Defender's incident id).
 */
export const INCIDENT_SOURCES = ['defender', 'graph'] as const;
export type IncidentSource = (typeof INCIDENT_SOURCES)[number];

export const tenantSchema = z.object({
  tenantId: guid,
  displayName: z.string().trim().min(1, 'must not be empty').max(128),
  context: z.enum(['application', 'partner']),
  source: z.enum(INCIDENT_SOURCES).default('defender'),
  clientId: guid,
  credential: credentialSchema,
  enabled: z.boolean().default(true),
  /** How far back the first poll of a new tenant looks. */
  firstRunLookbackHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 30)
    .default(24 * 7),
});

export type Tenant = z.infer<typeof tenantSchema>;
export type TenantInput = z.input<typeof tenantSchema>;
export type TenantCredential = z.infer<typeof credentialSchema>;

interface TenantEntity {
  partitionKey: string;
  rowKey: string;
  displayName: string;
  context: string;
  /** Absent in rows written before Graph could be chosen: those tenants read the Defender API. */
  source?: string;
  clientId: string;
  credentialKind: string;
  credentialSecretName?: string;
  enabled: boolean;
  firstRunLookbackHours: number;
}

export class TenantValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid tenant: ${problems.join('; ')}`);
    this.name = 'TenantValidationError';
  }
}

export class TenantNotFoundError extends Error {
  constructor(readonly tenantId: string) {
    super(`Tenant ${tenantId.length > 80 ? `${tenantId.slice(0, 80)}…` : tenantId} is not registered`);
    this.name = 'TenantNotFoundError';
  }
}

/** Validates registry input; problems name the field (`credential.secretName: must be …`). */
export function parseTenant(input: unknown): Tenant {
  const parsed = tenantSchema.safeParse(input);
  if (!parsed.success) {
    throw new TenantValidationError(parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`));
  }
  return parsed.data;
}

function toEntity(t: Tenant): TenantEntity {
  return {
    partitionKey: PARTITION,
    rowKey: t.tenantId,
    displayName: t.displayName,
    context: t.context,
    source: t.source,
    clientId: t.clientId,
    credentialKind: t.credential.kind,
    ...('secretName' in t.credential ? { credentialSecretName: t.credential.secretName } : {}),
    enabled: t.enabled,
    firstRunLookbackHours: t.firstRunLookbackHours,
  };
}

function fromEntity(e: TenantEntity): Tenant {
  return parseTenant({
    tenantId: e.rowKey,
    displayName: e.displayName,
    context: e.context,
    source: e.source,
    clientId: e.clientId,
    credential:
      e.credentialKind === 'managedIdentity'
        ? { kind: 'managedIdentity' }
        : { kind: e.credentialKind, secretName: e.credentialSecretName },
    enabled: e.enabled,
    firstRunLookbackHours: e.firstRunLookbackHours,
  });
}

export class TenantRegistry {
  readonly #table: LazyTable;

  constructor(table: TableClient) {
    this.#table = new LazyTable(table);
  }

  /** Adds or replaces a tenant. */
  async put(input: unknown): Promise<Tenant> {
    const tenant = parseTenant(input);
    await (await this.#table.ready()).upsertEntity(toEntity(tenant), 'Replace');
    return tenant;
  }

  async get(tenantId: string): Promise<Tenant> {
    const entity = await this.#table.find<TenantEntity>(PARTITION, tenantId.toLowerCase());
    if (!entity) throw new TenantNotFoundError(tenantId);
    return fromEntity(entity);
  }

  async list(options: { enabledOnly?: boolean } = {}): Promise<Tenant[]> {
    const table = await this.#table.ready();
    const tenants: Tenant[] = [];
    for await (const entity of table.listEntities<TenantEntity>({
      queryOptions: { filter: `PartitionKey eq '${PARTITION}'` },
    })) {
      const tenant = fromEntity(entity);
      if (!options.enabledOnly || tenant.enabled) tenants.push(tenant);
    }
    return tenants.sort((a, b) => a.displayName.localeCompare(b.displayName));
  }

  async setEnabled(tenantId: string, enabled: boolean): Promise<Tenant> {
    const tenant = await this.get(tenantId);
    return this.put({ ...tenant, enabled });
  }

  async remove(tenantId: string): Promise<void> {
    await this.get(tenantId);
    await (await this.#table.ready()).deleteEntity(PARTITION, tenantId.toLowerCase());
  }
}

/**
 * Tenant lookups on the enricher's hot path, kept for `ttlMs`: a change made through the admin API
 * (disable, rename) reaches it within that time, and a batch of one tenant's events costs one read.
 */
export class CachedTenantLookup {
  readonly #entries = new Map<string, { tenant: Promise<Tenant>; at: number }>();

  constructor(
    private readonly registry: Pick<TenantRegistry, 'get'>,
    private readonly ttlMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(tenantId: string): Promise<Tenant> {
    const key = tenantId.toLowerCase();
    const entry = this.#entries.get(key);
    if (entry && this.now() - entry.at < this.ttlMs) return entry.tenant;
    // Concurrent lookups share one read; a failed one is not kept.
    const tenant = this.registry.get(tenantId);
    this.#entries.set(key, { tenant, at: this.now() });
    tenant.catch(() => {
      if (this.#entries.get(key)?.tenant === tenant) this.#entries.delete(key);
    });
    return tenant;
  }
}

/** The partner admin-consent link a customer's Global Administrator opens to consent to the multi-tenant app. */
export function adminConsentLink(clientId: string, authorityHost = 'https://login.microsoftonline.com'): string {
  const url = new URL('/common/oauth2/authorize', authorityHost);
  url.searchParams.set('prompt', 'consent');
  url.searchParams.set('client_id', clientId);
  url.searchParams.set('response_type', 'code');
  return url.toString();
}
