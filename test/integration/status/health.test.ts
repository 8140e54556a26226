import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppCredential } from '../../../shared/auth/app-identity.js';
import { loadConfig } from '../../../shared/config/config.js';
import { checkHealth, type HealthReport } from '../../../shared/status/health.js';
import { createSecretClient } from '../../../shared/auth/keyvault.js';
import { createStorageClients } from '../../../shared/storage/storage.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/** The health check against Azurite and the stand-ins, with the real SDK clients the app uses. */
describe('health check', () => {
  let stack: TestStandIns;
  beforeAll(async () => {
    stack = await startTestStandIns();
  });
  afterAll(() => stack.close());

  async function healthWith(overrides: Record<string, string> = {}, timeoutMs = 5_000): Promise<HealthReport> {
    const config = loadConfig({ ...stack.appSettings, ...overrides });
    const appCredential = createAppCredential(config);
    return checkHealth(
      {
        queues: createStorageClients(config.storage, appCredential).queues,
        secrets: createSecretClient(config, appCredential),
        appCredential,
      },
      timeoutMs,
    );
  }
  const check = (report: HealthReport, name: string) => report.checks.find((c) => c.name === name)!;
  const secretsOf = () => [stack.world.appIdentity.clientSecret, ...stack.world.apps.map((a) => a.clientSecret)];

  it('is healthy when storage, the app identity and Key Vault all work, and shows no secret', async () => {
    const report = await healthWith();
    expect(report.status).toBe('healthy');
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ['storage', true],
      ['token', true],
      ['keyVault', true],
    ]);
    expect(check(report, 'keyVault').detail).toMatch(/secret name\(s\) listed \(values not read\)/);
    const text = JSON.stringify(report);
    for (const secret of secretsOf()) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]+\./);
  });

  it('reports a Key Vault outage on the Key Vault check alone', async () => {
    stack.faults.add('keyvault', { kind: 'outage' });
    try {
      const report = await healthWith({}, 3_000);
      expect(report.status).toBe('unhealthy');
      expect(check(report, 'keyVault').ok).toBe(false);
      expect(check(report, 'storage').ok).toBe(true);
      expect(check(report, 'token').ok).toBe(true);
    } finally {
      stack.faults.clear();
    }
  });

  it('reports a vault role the app identity lacks as 403 Forbidden', async () => {
    const oid = stack.entra.registry.servicePrincipalId(
      stack.world.appIdentity.tenantId,
      stack.world.appIdentity.clientId,
    )!;
    stack.keyVault.revoke(oid);
    try {
      const report = await healthWith();
      expect(check(report, 'keyVault')).toMatchObject({ ok: false, detail: expect.stringMatching(/403|Forbidden/) });
    } finally {
      stack.keyVault.grant(oid, 'Key Vault Secrets User');
    }
  });

  it('reports a wrong app secret with the Entra error code, without the secret', async () => {
    const report = await healthWith({ AZURE_CLIENT_SECRET: 'wrong-secret-value-123' });
    expect(check(report, 'token')).toMatchObject({ ok: false, detail: expect.stringContaining('AADSTS7000215') });
    expect(JSON.stringify(report)).not.toContain('wrong-secret-value-123');
  });

  it('reports unreachable storage within its time limit', async () => {
    const started = Date.now();
    const report = await healthWith(
      {
        AzureWebJobsStorage: stack.appSettings.AzureWebJobsStorage!.replace(
          /QueueEndpoint=http:\/\/127\.0\.0\.1:\d+/,
          'QueueEndpoint=http://127.0.0.1:9',
        ),
      },
      1_500,
    );
    expect(check(report, 'storage').ok).toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
