import type { SecretClient } from '@azure/keyvault-secrets';
import { describe, expect, it } from 'vitest';
import {
  isTenantCredential,
  NOT_TENANT_CREDENTIAL,
  NotTenantCredentialError,
  relaySecretNamed,
  relaySecretNames,
  TENANT_CREDENTIAL_TAGS,
  vaultNameOf,
} from '../../../shared/auth/credential-fence.js';
import { loadRoutingRules } from '../../../shared/route/routing.js';
import { SecretCache, UNTAGGED_RECHECK_MS } from '../../../shared/auth/secrets.js';

/** A vault of name → { value, tags } that counts its reads, standing in for SecretClient. */
function fakeVault(secrets: Record<string, { value: string; tags?: Record<string, string> }>) {
  const vault = {
    reads: 0,
    vaultUrl: 'https://kv-relay-prod.vault.azure.net',
    async getSecret(name: string) {
      vault.reads += 1;
      const s = secrets[name];
      if (!s)
        throw Object.assign(new Error(`A secret with (name/id) ${name} was not found in this key vault.`), {
          code: 'SecretNotFound',
          statusCode: 404,
        });
      return {
        name,
        value: s.value,
        properties: { name, vaultUrl: vault.vaultUrl, tags: s.tags ? { ...s.tags } : undefined },
      };
    },
  };
  return vault;
}

describe('the tenant-credential fence', () => {
  it('recognises the tag exactly, and nothing else', () => {
    expect(TENANT_CREDENTIAL_TAGS).toEqual({ 'defender-relay': 'tenant-credential' });
    expect(isTenantCredential({ 'defender-relay': 'tenant-credential', owner: 'soc' })).toBe(true);
    expect(isTenantCredential(undefined)).toBe(false);
    expect(isTenantCredential({})).toBe(false);
    expect(isTenantCredential({ 'defender-relay': 'hmac-key' })).toBe(false);
    expect(isTenantCredential({ 'Defender-Relay': 'tenant-credential' })).toBe(false);
  });

  it("names the vault in the fix only when the URL is a vault's", () => {
    expect(vaultNameOf('https://kv-relay-prod.vault.azure.net')).toBe('kv-relay-prod');
    expect(vaultNameOf('https://kv-x.vault.azure.cn/')).toBe('kv-x');
    expect(vaultNameOf('https://localhost:8443')).toBe('<vault-name>');
    expect(vaultNameOf(undefined)).toBe('<vault-name>');
    // A vault's host is <name>.vault.<cloud>: with more in front, the first label is not the vault's name.
    expect(vaultNameOf('https://eu.kv-relay-prod.vault.azure.net')).toBe('<vault-name>');
  });

  it("lists the relay's own secrets from its settings and routing rules, matched case-insensitively", () => {
    const routes = loadRoutingRules(
      {
        destinations: {
          siem: { type: 'webhook', url: 'https://siem.example.com/in', hmacSecretName: 'siem-hmac-key' },
          teams: { type: 'teams', urlSecretName: 'teams-webhook-url' },
          out: { type: 'queue', queueName: 'routed' },
        },
        rules: [],
        defaultRoute: { destinations: ['siem', 'teams', 'out'] },
      },
      { allowedHosts: ['siem.example.com'] },
    );
    const own = relaySecretNames(
      { relayApi: { uri: 'api://defender-relay', secretName: 'relay-api-client-secret' }, webhook: {} as never },
      {
        routes,
        hmacKeys: {
          secretNames: ['webhook-hmac-key', 'fabrikam-siem-hmac'],
          namedBy: 'WEBHOOK_ACCESS_FILE (hmacKeys)',
        },
      },
    );
    expect(own.map((s) => s.name)).toEqual([
      'relay-api-client-secret',
      'webhook-hmac-key',
      'fabrikam-siem-hmac',
      'siem-hmac-key',
      'teams-webhook-url',
    ]);
    expect(relaySecretNamed('WEBHOOK-HMAC-KEY', own)).toMatchObject({ namedBy: 'WEBHOOK_ACCESS_FILE (hmacKeys)' });
    expect(relaySecretNamed('siem-hmac-key', own)?.namedBy).toMatch(
      /destination 'siem' in \(inline\) \(hmacSecretName\)/,
    );
    // Where each is named: what to look at when a tenant registration names one of them.
    expect(relaySecretNamed('relay-api-client-secret', own)?.namedBy).toBe('RELAY_API_SECRET_NAME');
    expect(relaySecretNamed('teams-webhook-url', own)?.namedBy).toBe("destination 'teams' in (inline) (urlSecretName)");
    expect(relaySecretNamed('partner-app-client-secret', own)).toBeUndefined();
    expect(relaySecretNames({ relayApi: { uri: 'api://x' }, webhook: {} as never })).toEqual([]);
  });
});

describe('SecretCache: tenant credentials', () => {
  const secrets = {
    'tenant-a-secret': { value: 'tenant-a-value', tags: { ...TENANT_CREDENTIAL_TAGS } },
    'webhook-hmac-key': { value: 'hmac-key-value' },
  };

  it('reads a tagged tenant credential once per TTL: no Key Vault read after warm-up', async () => {
    let now = 0;
    const vault = fakeVault(secrets);
    const cache = new SecretCache(vault as unknown as SecretClient, 600_000, () => now);
    expect(await cache.getTenantCredential('tenant-a-secret')).toBe('tenant-a-value');
    for (let cycle = 1; cycle <= 9; cycle++) {
      now = cycle * 60_000;
      expect(await cache.getTenantCredential('tenant-a-secret')).toBe('tenant-a-value');
    }
    expect(vault.reads).toBe(1);
  });

  it("refuses a secret without the tag as a tenant credential, naming it and the command that tags it, and still serves the relay's own reads", async () => {
    const vault = fakeVault(secrets);
    const cache = new SecretCache(vault as unknown as SecretClient, 600_000, () => 0);
    expect(await cache.get('webhook-hmac-key')).toBe('hmac-key-value');
    const err = await cache.getTenantCredential('webhook-hmac-key', { tenantId: 'a1b2' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotTenantCredentialError);
    expect(err).toMatchObject({ retryable: false, code: NOT_TENANT_CREDENTIAL, tenantId: 'a1b2' });
    const message = (err as Error).message;
    expect(message).toContain("Key Vault secret 'webhook-hmac-key' is not tagged as a tenant credential");
    expect(message).toContain(
      'az keyvault secret set-attributes --vault-name kv-relay-prod --name webhook-hmac-key --tags defender-relay=tenant-credential',
    );
    // Tagging holds for one version only, and the secret may simply be the wrong one: both are said.
    expect(message).toContain(
      "(a new version written with az keyvault secret set needs --tags again); otherwise correct the tenant's secret name",
    );
    expect(message).not.toContain('hmac-key-value');
    // The check used the cached read: the tag came with the value.
    expect(vault.reads).toBe(1);
    await expect(cache.refreshTenantCredential('webhook-hmac-key')).rejects.toBeInstanceOf(NotTenantCredentialError);
    expect(vault.reads).toBe(2);
  });

  it('looks at an untagged secret again after a minute, so tagging it takes effect without waiting for the TTL', async () => {
    let now = 0;
    const stored: Record<string, { value: string; tags?: Record<string, string> }> = {
      'tenant-b-secret': { value: 'tenant-b-value' },
    };
    const vault = fakeVault(stored);
    const cache = new SecretCache(vault as unknown as SecretClient, 600_000, () => now);
    await expect(cache.getTenantCredential('tenant-b-secret')).rejects.toBeInstanceOf(NotTenantCredentialError);
    stored['tenant-b-secret']!.tags = { ...TENANT_CREDENTIAL_TAGS }; // az keyvault secret set-attributes … --tags defender-relay=tenant-credential
    now = UNTAGGED_RECHECK_MS - 1;
    await expect(cache.getTenantCredential('tenant-b-secret')).rejects.toBeInstanceOf(NotTenantCredentialError);
    expect(vault.reads).toBe(1);
    now = UNTAGGED_RECHECK_MS;
    expect(await cache.getTenantCredential('tenant-b-secret')).toBe('tenant-b-value');
    expect(vault.reads).toBe(2);
    // Tagged now: trusted for the whole TTL again.
    now = UNTAGGED_RECHECK_MS + 500_000;
    expect(await cache.getTenantCredential('tenant-b-secret')).toBe('tenant-b-value');
    expect(vault.reads).toBe(2);
  });
});
