import * as z from 'zod';
import type { Caller, RoleAssignments, SecretAction } from './auth.js';
import { badParameter, deletedSecretNotFound, KeyVaultError, secretDisabled, secretNotFound } from './errors.js';
import {
  assertValidSecretName,
  RECOVERABLE_DAYS,
  type DeletedSecret,
  type SecretStore,
  type StoredSecretVersion,
} from './store.js';

/** Key Vault pages lists 25 items at a time at most. */
export const MAX_PAGE_SIZE = 25;

export interface ApiRequest {
  method: string;
  /** Decoded path segments, empty ones dropped (`/secrets/name/` and `//secrets/name` both give ['secrets', 'name']). */
  segments: string[];
  query: URLSearchParams;
  apiVersion: string;
  body: string;
  caller: Caller;
}

export interface ApiResponse {
  status: number;
  body?: unknown;
}

export interface SecretsApiContext {
  store: SecretStore;
  roles: RoleAssignments;
  vaultName: string;
}

const attributesSchema = z.object({
  enabled: z.boolean().optional(),
  nbf: z.number().int().optional(),
  exp: z.number().int().optional(),
});
const tagsSchema = z.record(z.string(), z.string());
const setSecretSchema = z.object({
  value: z.string({ error: "The parameter 'value' is required and must be a string." }),
  contentType: z.string().optional(),
  attributes: attributesSchema.optional(),
  tags: tagsSchema.optional(),
});
const updateSecretSchema = z.object({
  contentType: z.string().optional(),
  attributes: attributesSchema.optional(),
  tags: tagsSchema.optional(),
});

function parseBody<T>(body: string, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw badParameter('The request body is not valid JSON.');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? ` (at '${issue.path.join('.')}')` : '';
    throw badParameter(`Invalid request body${where}: ${issue?.message ?? 'unexpected shape'}`);
  }
  return parsed.data;
}

/** The `attributes` object as the REST API writes it. */
function attributesOf(stored: StoredSecretVersion): Record<string, unknown> {
  const a = stored.attributes;
  return {
    enabled: a.enabled,
    ...(a.notBefore !== undefined ? { nbf: a.notBefore } : {}),
    ...(a.expires !== undefined ? { exp: a.expires } : {}),
    created: a.created,
    updated: a.updated,
    recoveryLevel: 'Recoverable+Purgeable',
    recoverableDays: RECOVERABLE_DAYS,
  };
}

function propertiesOf(stored: StoredSecretVersion): Record<string, unknown> {
  return {
    ...(stored.contentType !== undefined ? { contentType: stored.contentType } : {}),
    attributes: attributesOf(stored),
    ...(stored.tags !== undefined ? { tags: stored.tags } : {}),
  };
}

/** A SecretBundle: the value, its versioned id and properties. */
function secretBundle(store: SecretStore, stored: StoredSecretVersion): Record<string, unknown> {
  return { value: stored.value, id: store.versionId(stored), ...propertiesOf(stored) };
}

/** A DeletedSecretBundle, which never carries the value. */
function deletedBundle(store: SecretStore, deleted: DeletedSecret): Record<string, unknown> {
  return {
    recoveryId: store.recoveryId(deleted.latest.name),
    deletedDate: deleted.deletedDate,
    scheduledPurgeDate: deleted.scheduledPurgeDate,
    id: store.versionId(deleted.latest),
    ...propertiesOf(deleted.latest),
  };
}

/** One page of a list, with Key Vault's `nextLink` (an opaque `$skiptoken`) when more remain. */
function page<T>(items: T[], request: ApiRequest, store: SecretStore): { value: T[]; nextLink: string | null } {
  const rawMax = request.query.get('maxresults');
  const maxResults = rawMax === null ? MAX_PAGE_SIZE : Number(rawMax);
  if (!Number.isInteger(maxResults) || maxResults < 1 || maxResults > MAX_PAGE_SIZE) {
    throw badParameter(
      `Invalid value for the maxresults parameter: ${rawMax}. It must be an integer between 1 and ${MAX_PAGE_SIZE}.`,
    );
  }
  const token = request.query.get('$skiptoken');
  let offset = 0;
  if (token !== null) {
    try {
      const marker = (JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { NextMarker?: unknown })
        .NextMarker;
      if (typeof marker !== 'number' || !Number.isInteger(marker) || marker < 0) throw new Error('bad marker');
      offset = marker;
    } catch {
      throw badParameter('The $skiptoken parameter is invalid.');
    }
  }
  const value = items.slice(offset, offset + maxResults);
  const next = offset + maxResults;
  if (next >= items.length) return { value, nextLink: null };
  const nextToken = Buffer.from(JSON.stringify({ NextMarker: next })).toString('base64url');
  const path = `/${request.segments.map(encodeURIComponent).join('/')}`;
  const query = `api-version=${encodeURIComponent(request.apiVersion)}&$skiptoken=${nextToken}&maxresults=${maxResults}`;
  return { value, nextLink: `${store.vaultUrl}${path}?${query}` };
}

function methodNotAllowed(method: string): KeyVaultError {
  return new KeyVaultError(405, 'MethodNotAllowed', `The HTTP method '${method}' is not supported for this resource.`);
}

function notFoundPath(): KeyVaultError {
  return new KeyVaultError(404, 'NotFound', 'The requested URI does not represent any resource on the server.');
}

/**
 * The secrets part of Key Vault's data-plane REST API. Authentication already happened; each operation
 * checks the caller's role for its RBAC action, then the request, then answers as Key Vault does.
 */
export function handleSecretsRequest(ctx: SecretsApiContext, request: ApiRequest): ApiResponse {
  const { store } = ctx;
  const [collection, name, third, fourth, ...rest] = request.segments;
  const method = request.method;
  const authorize = (action: SecretAction, secretName?: string) =>
    ctx.roles.authorize(
      request.caller,
      action,
      `/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/local/providers/microsoft.keyvault/vaults/${ctx.vaultName}` +
        (secretName ? `/secrets/${secretName}` : ''),
      ctx.vaultName,
    );
  if (rest.length > 0) throw notFoundPath();

  if (collection === 'secrets') {
    if (name === undefined) {
      if (method !== 'GET') throw methodNotAllowed(method);
      authorize('Microsoft.KeyVault/vaults/secrets/readMetadata/action');
      const items = store.listSecrets().map((s) => ({ id: store.secretId(s.name), ...propertiesOf(s) }));
      return { status: 200, body: page(items, request, store) };
    }
    if (fourth !== undefined) throw notFoundPath();
    if (third === 'versions') {
      if (method !== 'GET') throw methodNotAllowed(method);
      authorize('Microsoft.KeyVault/vaults/secrets/readMetadata/action', name);
      assertValidSecretName(name);
      const items = store.listVersions(name).map((s) => ({ id: store.versionId(s), ...propertiesOf(s) }));
      return { status: 200, body: page(items, request, store) };
    }
    switch (method) {
      case 'GET': {
        authorize('Microsoft.KeyVault/vaults/secrets/getSecret/action', name);
        assertValidSecretName(name);
        const stored = store.requireSecret(name, third);
        if (!stored.attributes.enabled) throw secretDisabled();
        return { status: 200, body: secretBundle(store, stored) };
      }
      case 'PUT': {
        if (third !== undefined) throw methodNotAllowed(method);
        authorize('Microsoft.KeyVault/vaults/secrets/setSecret/action', name);
        assertValidSecretName(name);
        const body = parseBody(request.body, setSecretSchema);
        const { version } = store.setSecret(name, body.value, {
          contentType: body.contentType,
          tags: body.tags,
          enabled: body.attributes?.enabled,
          notBefore: body.attributes?.nbf,
          expires: body.attributes?.exp,
        });
        return { status: 200, body: secretBundle(store, store.requireSecret(name, version)) };
      }
      case 'PATCH': {
        authorize('Microsoft.KeyVault/vaults/secrets/update/action', name);
        assertValidSecretName(name);
        const body = parseBody(request.body, updateSecretSchema);
        const stored = store.updateProperties(name, third, {
          contentType: body.contentType,
          tags: body.tags,
          enabled: body.attributes?.enabled,
          notBefore: body.attributes?.nbf,
          expires: body.attributes?.exp,
        });
        // An update answers with the properties only: the value is not sent back.
        return { status: 200, body: { id: store.versionId(stored), ...propertiesOf(stored) } };
      }
      case 'DELETE': {
        if (third !== undefined) throw methodNotAllowed(method);
        authorize('Microsoft.KeyVault/vaults/secrets/delete', name);
        assertValidSecretName(name);
        const deleted = store.delete(name);
        if (!deleted) throw secretNotFound(name);
        return { status: 200, body: deletedBundle(store, deleted) };
      }
      default:
        throw methodNotAllowed(method);
    }
  }

  if (collection === 'deletedsecrets') {
    if (name === undefined) {
      if (method !== 'GET') throw methodNotAllowed(method);
      authorize('Microsoft.KeyVault/vaults/deletedSecrets/read');
      const items = store.listDeleted().map((d) => ({ ...deletedBundle(store, d), id: store.secretId(d.latest.name) }));
      return { status: 200, body: page(items, request, store) };
    }
    if (fourth !== undefined) throw notFoundPath();
    if (third === 'recover') {
      if (method !== 'POST') throw methodNotAllowed(method);
      authorize('Microsoft.KeyVault/vaults/deletedSecrets/recover/action', name);
      assertValidSecretName(name);
      const recovered = store.recover(name);
      return { status: 200, body: { id: store.versionId(recovered), ...propertiesOf(recovered) } };
    }
    if (third !== undefined) throw notFoundPath();
    switch (method) {
      case 'GET': {
        authorize('Microsoft.KeyVault/vaults/deletedSecrets/read', name);
        assertValidSecretName(name);
        const deleted = store.getDeleted(name);
        if (!deleted) throw deletedSecretNotFound(name);
        return { status: 200, body: deletedBundle(store, deleted) };
      }
      case 'DELETE':
        authorize('Microsoft.KeyVault/vaults/deletedSecrets/delete', name);
        assertValidSecretName(name);
        store.purge(name);
        return { status: 204 };
      default:
        throw methodNotAllowed(method);
    }
  }

  throw notFoundPath();
}
