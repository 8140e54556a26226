import { randomBytes } from 'node:crypto';
import {
  badParameter,
  deletedButRecoverable,
  deletedSecretNotFound,
  secretNotFound,
  secretVersionNotFound,
} from './errors.js';

/** Key Vault's documented limits for secrets. */
export const SECRET_NAME_PATTERN = /^[0-9a-zA-Z-]{1,127}$/;
export const MAX_SECRET_VALUE_BYTES = 25 * 1024;
export const MAX_TAGS = 15;
export const MAX_CONTENT_TYPE_LENGTH = 255;
/** Soft-deleted secrets can be recovered for this many days (the vault's retention). */
export const RECOVERABLE_DAYS = 90;

export interface SecretAttributes {
  enabled: boolean;
  /** Epoch seconds, as the REST API writes them. */
  created: number;
  updated: number;
  notBefore?: number;
  expires?: number;
}

export interface StoredSecretVersion {
  /** The name as first written; Key Vault names are case-insensitive. */
  name: string;
  /** 32 lower-case hex digits, like Key Vault's version ids. */
  version: string;
  value: string;
  contentType?: string;
  tags?: Record<string, string>;
  attributes: SecretAttributes;
}

export interface DeletedSecret {
  latest: StoredSecretVersion;
  /** Epoch seconds. */
  deletedDate: number;
  scheduledPurgeDate: number;
}

export interface SetSecretOptions {
  contentType?: string;
  tags?: Record<string, string>;
  enabled?: boolean;
  notBefore?: number;
  expires?: number;
}

export interface SecretPropertiesUpdate {
  contentType?: string;
  tags?: Record<string, string>;
  enabled?: boolean;
  notBefore?: number;
  expires?: number;
}

interface SecretEntry {
  name: string;
  /** Oldest first; the last one is the current version. */
  versions: StoredSecretVersion[];
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Throws Key Vault's `BadParameter` unless the name is one Key Vault accepts. */
export function assertValidSecretName(name: string): void {
  if (!SECRET_NAME_PATTERN.test(name)) {
    throw badParameter(
      `The request URI contains an invalid name: ${name}. Secret names must be 1-127 characters long and contain only 0-9, a-z, A-Z and -.`,
    );
  }
}

function assertValidProperties(options: SecretPropertiesUpdate): void {
  if (options.contentType !== undefined && options.contentType.length > MAX_CONTENT_TYPE_LENGTH) {
    throw badParameter(`The content type is too long. The maximum length is ${MAX_CONTENT_TYPE_LENGTH} characters.`);
  }
  if (options.tags !== undefined && Object.keys(options.tags).length > MAX_TAGS) {
    throw badParameter(`Too many tags. A secret can have at most ${MAX_TAGS} tags.`);
  }
}

/**
 * The vault's secrets, in memory. The HTTP layer and the stack's seeding both go through here,
 * so the limits (name, size) hold whichever way a secret arrives.
 */
export class SecretStore {
  readonly #secrets = new Map<string, SecretEntry>();
  readonly #deleted = new Map<string, DeletedSecret>();
  /** The versions of soft-deleted secrets, kept for recovery. */
  readonly #deletedVersions = new Map<string, SecretEntry>();

  constructor(readonly vaultUrl: string) {}

  /** Adds a new version (creating the secret if needed); it becomes the current version. */
  setSecret(name: string, value: string, options: SetSecretOptions = {}): { version: string; id: string } {
    assertValidSecretName(name);
    if (typeof value !== 'string') throw badParameter('The secret value is required.');
    if (Buffer.byteLength(value, 'utf8') > MAX_SECRET_VALUE_BYTES) {
      throw badParameter(
        `The secret value is too large. The maximum size of a secret value is ${MAX_SECRET_VALUE_BYTES} bytes.`,
      );
    }
    assertValidProperties(options);
    const key = name.toLowerCase();
    const deleted = this.#deleted.get(key);
    if (deleted) throw deletedButRecoverable(deleted.latest.name);
    const entry = this.#secrets.get(key) ?? { name, versions: [] };
    const now = nowSeconds();
    const stored: StoredSecretVersion = {
      name: entry.name,
      version: randomBytes(16).toString('hex'),
      value,
      ...(options.contentType !== undefined ? { contentType: options.contentType } : {}),
      ...(options.tags !== undefined ? { tags: { ...options.tags } } : {}),
      attributes: {
        enabled: options.enabled ?? true,
        created: now,
        updated: now,
        ...(options.notBefore !== undefined ? { notBefore: options.notBefore } : {}),
        ...(options.expires !== undefined ? { expires: options.expires } : {}),
      },
    };
    entry.versions.push(stored);
    this.#secrets.set(key, entry);
    return { version: stored.version, id: this.versionId(stored) };
  }

  /** The given version, or the current one; undefined if there is no such secret or version. */
  getSecret(name: string, version?: string): StoredSecretVersion | undefined {
    const entry = this.#secrets.get(name.toLowerCase());
    if (!entry) return undefined;
    if (!version) return entry.versions.at(-1);
    return entry.versions.find((v) => v.version === version.toLowerCase());
  }

  /** Like getSecret, but answers Key Vault's 404 when the secret or version does not exist. */
  requireSecret(name: string, version?: string): StoredSecretVersion {
    const found = this.getSecret(name, version);
    if (found) return found;
    throw version && this.getSecret(name) ? secretVersionNotFound(name, version) : secretNotFound(name);
  }

  /** Every version of a secret, oldest first (empty if the secret does not exist). */
  listVersions(name: string): StoredSecretVersion[] {
    return [...(this.#secrets.get(name.toLowerCase())?.versions ?? [])];
  }

  /** The current version of every secret that is not deleted. */
  listSecrets(): StoredSecretVersion[] {
    return [...this.#secrets.values()].flatMap((e) => e.versions.slice(-1));
  }

  /** Changes the properties (never the value) of one version. */
  updateProperties(name: string, version: string | undefined, update: SecretPropertiesUpdate): StoredSecretVersion {
    const stored = this.requireSecret(name, version);
    assertValidProperties(update);
    if (update.contentType !== undefined) stored.contentType = update.contentType;
    if (update.tags !== undefined) stored.tags = { ...update.tags };
    if (update.enabled !== undefined) stored.attributes.enabled = update.enabled;
    if (update.notBefore !== undefined) stored.attributes.notBefore = update.notBefore;
    if (update.expires !== undefined) stored.attributes.expires = update.expires;
    stored.attributes.updated = nowSeconds();
    return stored;
  }

  /** Soft-deletes a secret (all versions); it stays recoverable until purged. Undefined if it does not exist. */
  delete(name: string): DeletedSecret | undefined {
    const key = name.toLowerCase();
    const entry = this.#secrets.get(key);
    const latest = entry?.versions.at(-1);
    if (!entry || !latest) return undefined;
    const deletedDate = nowSeconds();
    const deleted: DeletedSecret = { latest, deletedDate, scheduledPurgeDate: deletedDate + RECOVERABLE_DAYS * 86_400 };
    this.#secrets.delete(key);
    this.#deleted.set(key, deleted);
    this.#deletedVersions.set(key, entry);
    return deleted;
  }

  getDeleted(name: string): DeletedSecret | undefined {
    return this.#deleted.get(name.toLowerCase());
  }

  listDeleted(): DeletedSecret[] {
    return [...this.#deleted.values()];
  }

  /** Removes a soft-deleted secret for good. */
  purge(name: string): void {
    const key = name.toLowerCase();
    if (!this.#deleted.has(key)) throw deletedSecretNotFound(name);
    this.#deleted.delete(key);
    this.#deletedVersions.delete(key);
  }

  /** Brings a soft-deleted secret back with all its versions. */
  recover(name: string): StoredSecretVersion {
    const key = name.toLowerCase();
    const entry = this.#deletedVersions.get(key);
    if (!entry || !this.#deleted.has(key)) throw deletedSecretNotFound(name);
    this.#deleted.delete(key);
    this.#deletedVersions.delete(key);
    this.#secrets.set(key, entry);
    return entry.versions.at(-1) as StoredSecretVersion;
  }

  /** `{vaultUrl}/secrets/{name}/{version}` */
  versionId(stored: StoredSecretVersion): string {
    return `${this.secretId(stored.name)}/${stored.version}`;
  }

  /** `{vaultUrl}/secrets/{name}` */
  secretId(name: string): string {
    return `${this.vaultUrl}/secrets/${name}`;
  }

  /** `{vaultUrl}/deletedsecrets/{name}` */
  recoveryId(name: string): string {
    return `${this.vaultUrl}/deletedsecrets/${name}`;
  }
}
