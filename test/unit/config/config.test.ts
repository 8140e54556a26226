import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, SETTING_NAMES } from '../../../shared/config/config.js';

const TENANT = '11111111-2222-3333-4444-555555555555';
const CLIENT = '66666666-7777-8888-9999-000000000000';
const valid = {
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  KEY_VAULT_URL: 'https://relay-kv.vault.azure.net/',
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('applies documented defaults and normalises URLs', () => {
    const config = loadConfig(valid);
    expect(config.keyVault).toEqual({
      url: 'https://relay-kv.vault.azure.net',
      disableChallengeResourceVerification: false,
    });
    expect(config.entra).toEqual({
      authorityHost: 'https://login.microsoftonline.com',
      disableInstanceDiscovery: false,
    });
    expect(config.defender.apiUrl).toBe('https://api.security.microsoft.com');
    expect(config.defender.scope).toBe('https://api.security.microsoft.com/.default');
    expect(config.pollSchedule).toBe('0 */5 * * * *');
  });

  it('keeps the Defender token audience when the API is served elsewhere (the local stand-in)', () => {
    const config = loadConfig({ ...valid, DEFENDER_API_URL: 'https://localhost:4443' });
    expect(config.defender.apiUrl).toBe('https://localhost:4443');
    expect(config.defender.resource).toBe('https://api.security.microsoft.com');
  });

  it('names a missing required setting', () => {
    expect(problemsOf({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' })).toEqual([
      'KEY_VAULT_URL is required but not set',
    ]);
  });

  it('names each bad setting and says what is wrong', () => {
    const problems = problemsOf({
      ...valid,
      KEY_VAULT_URL: 'http://relay-kv.vault.azure.net',
      AZURE_CLIENT_ID: 'not-a-guid',
      POLL_SCHEDULE: '*/5 * * * *',
      ENTRA_DISABLE_INSTANCE_DISCOVERY: 'maybe',
    });
    expect(problems).toHaveLength(4);
    expect(problems).toContain('KEY_VAULT_URL: must be an https:// URL');
    expect(problems).toContain('AZURE_CLIENT_ID: must be a GUID');
    expect(problems.find((p) => p.startsWith('POLL_SCHEDULE:'))).toMatch(/six fields/);
    expect(problems).toContain('ENTRA_DISABLE_INSTANCE_DISCOVERY: must be true or false');
  });

  it('refuses a retired setting rather than ignore it, saying what replaced it', () => {
    const problems = problemsOf({ ...valid, WEBHOOK_HMAC_SECRET_NAME: 'webhook-hmac-key' });
    expect(problems).toEqual([
      expect.stringMatching(
        /^WEBHOOK_HMAC_SECRET_NAME is no longer read: an HMAC key now belongs to the tenants it may push for\. List it in the webhook access file \(WEBHOOK_ACCESS_FILE\)/,
      ),
    ]);
    expect(problems[0]).not.toContain('webhook-hmac-key');
  });

  it('reports an unresolved Key Vault reference as such', () => {
    const problems = problemsOf({
      ...valid,
      KEY_VAULT_URL: '@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/url/)',
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^KEY_VAULT_URL is an unresolved Key Vault reference/);
  });

  it('requires storage, by connection string or by identity-based service URIs', () => {
    expect(problemsOf({ KEY_VAULT_URL: valid.KEY_VAULT_URL })[0]).toMatch(/^AzureWebJobsStorage is required/);
    expect(
      problemsOf({
        KEY_VAULT_URL: valid.KEY_VAULT_URL,
        AzureWebJobsStorage__queueServiceUri: 'https://a.queue.core.windows.net',
      })[0],
    ).toMatch(/__tableServiceUri and AzureWebJobsStorage__blobServiceUri are required/);
    const config = loadConfig({
      KEY_VAULT_URL: valid.KEY_VAULT_URL,
      AzureWebJobsStorage__queueServiceUri: 'https://a.queue.core.windows.net',
      AzureWebJobsStorage__tableServiceUri: 'https://a.table.core.windows.net',
      AzureWebJobsStorage__blobServiceUri: 'https://a.blob.core.windows.net',
      AzureWebJobsStorage__clientId: CLIENT,
      AzureWebJobsStorage__credential: 'managedidentity',
    });
    expect(config.storage).toMatchObject({ connectionString: undefined, managedIdentityClientId: CLIENT });
  });

  it('accepts a local client secret only together with the tenant and client it belongs to', () => {
    expect(problemsOf({ ...valid, AZURE_CLIENT_SECRET: 's3cret-value' })).toEqual([
      'AZURE_CLIENT_SECRET needs AZURE_TENANT_ID and AZURE_CLIENT_ID',
    ]);
    const config = loadConfig({
      ...valid,
      AZURE_CLIENT_SECRET: 's3cret-value',
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: CLIENT,
    });
    expect(config.appIdentity).toEqual({ tenantId: TENANT, clientId: CLIENT, clientSecret: 's3cret-value' });
  });

  it('never echoes a setting value in its problems', () => {
    const problems = problemsOf({ ...valid, AZURE_CLIENT_SECRET: 'do-not-print-me', AZURE_TENANT_ID: 'nope' });
    expect(problems.join('\n')).not.toContain('do-not-print-me');
  });

  it('documents every setting in local.settings.example.json, and nothing it does not read', () => {
    const example = JSON.parse(
      readFileSync(new URL('../../../local.settings.example.json', import.meta.url), 'utf8'),
    ) as {
      Values: Record<string, string>;
    };
    const documented = Object.keys(example.Values).filter((k) => k !== 'FUNCTIONS_WORKER_RUNTIME');
    // Identity-based storage settings are for Azure; locally the connection string stands for them.
    const expected = SETTING_NAMES.filter((name) => !name.startsWith('AzureWebJobsStorage__'));
    expect(documented.sort()).toEqual([...expected].sort());
  });

  it('lists every setting it reads', () => {
    expect(SETTING_NAMES).toEqual(
      expect.arrayContaining(['AzureWebJobsStorage', 'KEY_VAULT_URL', 'DEFENDER_API_URL', 'POLL_SCHEDULE']),
    );
  });
});
