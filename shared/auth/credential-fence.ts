import type { AppConfig } from '../config/config.js';
import { PermanentError, type FailureContext } from '../errors.js';
import type { RoutingTable } from '../route/routing.js';

/**
 * Which Key Vault secrets may serve as a tenant's credential. The relay reads its own secrets (HMAC
 * keys, its API's client secret, destination URLs and keys) from the same vault as the tenants'
 * client secrets, and a tenant registration names its secret by name: without a fence, whoever may
 * register a tenant (a function key) could name the webhook HMAC key and have the relay send it to
 * Entra ID as a client secret. So a tenant's credential must carry a tag that only someone who may
 * write the vault can set (Key Vault Secrets Officer), and the relay's own secret names are refused
 * outright when a tenant is registered.
 *
 * Key Vault keeps tags per secret version (Set Secret writes a new version with the tags of that
 * request only), so a rotated tenant secret needs the tag again.
 */
export const TENANT_CREDENTIAL_TAG = { name: 'defender-relay', value: 'tenant-credential' } as const;

/** The tags to write on a tenant's credential (`setSecret(name, value, { tags: TENANT_CREDENTIAL_TAGS })`). */
export const TENANT_CREDENTIAL_TAGS: Readonly<Record<string, string>> = Object.freeze({
  [TENANT_CREDENTIAL_TAG.name]: TENANT_CREDENTIAL_TAG.value,
});

/** The tag as the Azure CLI's `--tags` writes it. */
export const TENANT_CREDENTIAL_TAG_ARGUMENT = `${TENANT_CREDENTIAL_TAG.name}=${TENANT_CREDENTIAL_TAG.value}`;

/** The error code a secret without the tag is refused with (doctor and the admin answers look for it). */
export const NOT_TENANT_CREDENTIAL = 'SecretNotTenantCredential';

/** Whether a secret version's tags mark it as a tenant credential. */
export function isTenantCredential(tags: Readonly<Record<string, string>> | undefined): boolean {
  return tags?.[TENANT_CREDENTIAL_TAG.name] === TENANT_CREDENTIAL_TAG.value;
}

/** The vault's name from its URL (`https://kv-abc.vault.azure.net` → `kv-abc`), for commands to copy; a placeholder when the URL is not a vault's. */
export function vaultNameOf(vaultUrl: string | undefined): string {
  try {
    // Stryker disable next-line StringLiteral: any stand-in for a missing URL that is not a URL throws, and the placeholder follows as for ''
    const host = new URL(vaultUrl ?? '').hostname;
    if (/^[a-z0-9-]+\.vault\./i.test(host)) return host.split('.')[0]!;
  } catch {
    // not a URL: fall through to the placeholder
  }
  return '<vault-name>';
}

/** The command that marks a secret as a tenant credential. */
export function tagCommand(secretName: string, vaultUrl?: string): string {
  return `az keyvault secret set-attributes --vault-name ${vaultNameOf(vaultUrl)} --name ${secretName} --tags ${TENANT_CREDENTIAL_TAG_ARGUMENT}`;
}

/** What is wrong with an untagged secret named as a tenant's credential, and how to fix it. */
export function untaggedMessage(secretName: string, vaultUrl?: string): string {
  return (
    `Key Vault secret '${secretName}' is not tagged as a tenant credential (${TENANT_CREDENTIAL_TAG_ARGUMENT}), so the relay will not use it as one. ` +
    `If it holds this tenant's client secret or certificate, tag it: ${tagCommand(secretName, vaultUrl)} ` +
    `(a new version written with az keyvault secret set needs --tags again); otherwise correct the tenant's secret name`
  );
}

/** A tenant's credential names a secret without the tag: permanent until someone tags it or changes the tenant. */
export class NotTenantCredentialError extends PermanentError {
  /** The cause and its fix, without the tenant and operation the message adds. */
  readonly reason: string;
  constructor(
    readonly secretName: string,
    vaultUrl: string | undefined,
    context: Omit<FailureContext, 'code'> = {},
  ) {
    const reason = untaggedMessage(secretName, vaultUrl);
    super(reason, { ...context, code: NOT_TENANT_CREDENTIAL });
    this.reason = reason;
  }
}

export interface RelaySecret {
  name: string;
  /** Where the relay's configuration names it (a setting, or a destination of the routing rules). */
  namedBy: string;
}

/** Where else the relay's configuration names secrets of its own. */
export interface RelaySecretSources {
  /** The routing rules: destinations' `urlSecretName` and `hmacSecretName`. */
  routes?: Pick<RoutingTable, 'destinations' | 'source'>;
  /** HMAC keys for signed pushes named outside the settings (e.g. a webhook access file), with where they are named. */
  hmacKeys?: { secretNames: readonly string[]; namedBy: string };
}

/**
 * The Key Vault secrets the relay uses for itself, each with where its configuration names it: never
 * a tenant's credential. Every setting or file that names a relay secret belongs in this list.
 */
export function relaySecretNames(
  config: Pick<AppConfig, 'relayApi' | 'webhook'>,
  sources: RelaySecretSources = {},
): RelaySecret[] {
  const secrets: RelaySecret[] = [];
  if (config.relayApi.secretName) secrets.push({ name: config.relayApi.secretName, namedBy: 'RELAY_API_SECRET_NAME' });
  for (const name of sources.hmacKeys?.secretNames ?? []) secrets.push({ name, namedBy: sources.hmacKeys!.namedBy });
  const { routes } = sources;
  for (const destination of routes?.destinations.values() ?? []) {
    const where = `destination '${destination.name}' in ${routes!.source}`;
    if ('urlSecretName' in destination && destination.urlSecretName)
      secrets.push({ name: destination.urlSecretName, namedBy: `${where} (urlSecretName)` });
    if ('hmacSecretName' in destination && destination.hmacSecretName)
      secrets.push({ name: destination.hmacSecretName, namedBy: `${where} (hmacSecretName)` });
  }
  return secrets;
}

/** The relay secret a name refers to (Key Vault names are case-insensitive), if it is one. */
export function relaySecretNamed(name: string, secrets: readonly RelaySecret[]): RelaySecret | undefined {
  return secrets.find((s) => s.name.toLowerCase() === name.toLowerCase());
}
