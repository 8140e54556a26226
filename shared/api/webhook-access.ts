import * as z from 'zod';
import {
  fieldProblemsError,
  formatFieldPath,
  readJsonConfigFile,
  zodFieldProblems,
  type FieldProblem,
} from '../config/config-file.js';

/**
 * Who may push incidents for which tenant (POST /api/incidents). By default an Entra token may push
 * only for its own tenant, and only when that tenant is on WEBHOOK_ALLOWED_TENANT_IDS. The webhook
 * access file (WEBHOOK_ACCESS_FILE) grants more, explicitly:
 *
 *   { "callers":  [ { "name": "contoso-soc-automation", "tenantId": "<caller's tenant>", "appId": "<client id>",
 *                     "mayPushFor": ["<customer tenant>", …] } ],
 *     "hmacKeys": [ { "name": "fabrikam-siem", "secretName": "<Key Vault secret>", "mayPushFor": ["<tenant>", …] } ] }
 *
 * A caller is one identity (tenant + app id and/or object id), never a whole tenant; an HMAC key
 * belongs to the tenants it lists and to no other.
 */
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const guid = z.string().trim().toLowerCase().regex(GUID, 'must be a GUID');
const name = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,80}$/, 'must be 1-80 letters, digits, dots, dashes, colons or underscores');
const tenantList = z.array(guid).min(1, 'must list at least one tenant GUID').max(10_000);

const callerSchema = z
  .strictObject({
    name,
    /** The tenant that issued the caller's token (`tid`). */
    tenantId: guid,
    /** The calling application (`azp`/`appid`). */
    appId: guid.optional(),
    /** The calling service principal or managed identity (`oid`). */
    objectId: guid.optional(),
    mayPushFor: tenantList,
  })
  .refine((c) => c.appId !== undefined || c.objectId !== undefined, {
    message: 'give appId or objectId (or both): a grant names one identity, not a whole tenant',
    path: ['appId'],
  });

const hmacKeySchema = z.strictObject({
  name,
  secretName: z.string().regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name (letters, digits and dashes)'),
  mayPushFor: tenantList,
});

export const webhookAccessSchema = z.strictObject({
  $schema: z.string().optional(),
  description: z.string().optional(),
  callers: z.array(callerSchema).max(1_000).default([]),
  hmacKeys: z.array(hmacKeySchema).max(100).default([]),
});

export type WebhookAccessFile = z.infer<typeof webhookAccessSchema>;
export type HmacKeyGrant = WebhookAccessFile['hmacKeys'][number];

/** The setting that names the webhook access file. */
export const WEBHOOK_ACCESS_SETTING = 'WEBHOOK_ACCESS_FILE';

/** Validates the file's content; every problem is listed, with the path of its field (`callers.0.mayPushFor.2`). */
export function parseWebhookAccess(
  raw: unknown,
): { ok: true; access: WebhookAccessFile } | { ok: false; problems: FieldProblem[] } {
  const parsed = webhookAccessSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, problems: zodFieldProblems(parsed.error) };
  const problems: FieldProblem[] = [];
  const seen = new Map<string, string>();
  const unique = (kind: string, value: string, path: (string | number)[]) => {
    const key = `${kind}:${value}`;
    // Fields are named as everywhere else in the file's problems: callers[1].name.
    if (seen.has(key)) problems.push({ path, message: `the same ${kind} as ${seen.get(key)}` });
    else seen.set(key, formatFieldPath(path));
  };
  parsed.data.callers.forEach((c, i) => {
    unique('name', c.name, ['callers', i, 'name']);
    unique('identity', `${c.tenantId}/${c.appId ?? ''}/${c.objectId ?? ''}`, ['callers', i]);
  });
  parsed.data.hmacKeys.forEach((k, i) => {
    unique('name', k.name, ['hmacKeys', i, 'name']);
    // One secret under two names would let one key push for the union of both lists.
    unique('secretName', k.secretName, ['hmacKeys', i, 'secretName']);
  });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, access: parsed.data };
}

/** The identity a verified token names. */
export interface TokenIdentity {
  tenantId: string;
  clientId?: string;
  objectId?: string;
}

export class WebhookAccess {
  readonly #ownTenantIds: Set<string>;

  constructor(
    readonly file: WebhookAccessFile,
    /** WEBHOOK_ALLOWED_TENANT_IDS: tenants whose tokens may push for themselves. */
    ownTenantIds: readonly string[],
  ) {
    this.#ownTenantIds = new Set(ownTenantIds.map((t) => t.toLowerCase()));
  }

  static none(ownTenantIds: readonly string[]): WebhookAccess {
    return new WebhookAccess({ callers: [], hmacKeys: [] }, ownTenantIds);
  }

  /** Tenants whose tokens are verified at all; a token from any other is refused before its signature is checked. */
  tokenTenantIds(): string[] {
    return [...new Set([...this.#ownTenantIds, ...this.file.callers.map((c) => c.tenantId)])];
  }

  /** Whether a verified token may push incidents for `tenantId`. */
  tokenMayPushFor(identity: TokenIdentity, tenantId: string): boolean {
    const caller = identity.tenantId.toLowerCase();
    const target = tenantId.toLowerCase();
    if (caller === target && this.#ownTenantIds.has(caller)) return true;
    const clientId = identity.clientId?.toLowerCase();
    const objectId = identity.objectId?.toLowerCase();
    return this.file.callers.some(
      (c) =>
        c.tenantId === caller &&
        (c.appId === undefined || c.appId === clientId) &&
        (c.objectId === undefined || c.objectId === objectId) &&
        c.mayPushFor.includes(target),
    );
  }

  /** The HMAC keys that may sign a push for `tenantId` (usually one). */
  hmacKeysFor(tenantId: string): HmacKeyGrant[] {
    const target = tenantId.toLowerCase();
    return this.file.hmacKeys.filter((k) => k.mayPushFor.includes(target));
  }

  /** Key Vault secrets the relay holds as HMAC keys: never a tenant's credential. */
  hmacSecretNames(): string[] {
    return this.file.hmacKeys.map((k) => k.secretName);
  }
}

/**
 * The access the configuration gives: the file when WEBHOOK_ACCESS_FILE is set (it must load; every
 * problem names file, line and field), else own-tenant tokens only and no HMAC key.
 */
export function loadWebhookAccess(webhook: {
  accessFile?: string;
  allowedTenantIds: readonly string[];
}): WebhookAccess {
  if (!webhook.accessFile) return WebhookAccess.none(webhook.allowedTenantIds);
  const file = readJsonConfigFile(webhook.accessFile, WEBHOOK_ACCESS_SETTING);
  const parsed = parseWebhookAccess(file.value);
  if (!parsed.ok) throw fieldProblemsError(file, parsed.problems);
  return new WebhookAccess(parsed.access, webhook.allowedTenantIds);
}
