import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config/config.js';
import { DefenderTokenProvider, TOKEN_REFRESH_MARGIN_MS } from '../../../shared/auth/credentials.js';
import { createServices, type Services } from '../../../shared/services.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { decodeJwt } from 'jose';
import { TENANT_CREDENTIAL_TAGS } from '../../../shared/auth/credential-fence.js';

describe('Defender tokens per (tenant, client, scope)', () => {
  let stack: TestStandIns;
  let services: Services;
  beforeAll(async () => {
    stack = await startTestStandIns();
    services = createServices(loadConfig(stack.appSettings));
  });
  afterAll(() => stack.close());

  const tenantRecord = (context: 'application' | 'partner') => {
    const t = stack.world.tenants.find((x) => x.context === context)!;
    return {
      tenantId: t.tenantId,
      displayName: t.displayName,
      context,
      clientId: t.clientId,
      credential: { kind: 'secret' as const, secretName: t.clientSecretName },
      enabled: true,
      source: 'defender' as const,
      firstRunLookbackHours: 24,
    };
  };

  it('reuses a token until shortly before it expires, then renews it', async () => {
    let now = Date.now();
    const provider = new DefenderTokenProvider({
      secrets: services.secretCache,
      entra: services.config.entra,
      appCredential: services.appCredential,
      scope: services.config.defender.scope,
      now: () => now,
    });
    const fabrikam = tenantRecord('application');
    const first = await provider.getToken(fabrikam);
    expect(await provider.getToken(fabrikam)).toBe(first);
    expect(provider.requests.get(fabrikam.tenantId)).toBe(1);
    expect(decodeJwt(first)).toMatchObject({ tid: fabrikam.tenantId, aud: 'https://api.security.microsoft.com' });

    const expiresAt = decodeJwt(first).exp! * 1000;
    const keyVaultReads = services.secretCache.reads;
    now = expiresAt - TOKEN_REFRESH_MARGIN_MS - 60_000; // a poll cycle before the margin: still the same token
    expect(await provider.getToken(fabrikam)).toBe(first);
    expect(provider.requests.get(fabrikam.tenantId)).toBe(1);
    now = expiresAt - TOKEN_REFRESH_MARGIN_MS + 10_000; // within the renewal margin
    await provider.getToken(fabrikam);
    expect(provider.requests.get(fabrikam.tenantId)).toBe(2);
    // The renewal reused the credential built from the secret: nothing was read from Key Vault.
    expect(services.secretCache.reads).toBe(keyVaultReads);
  });

  it("builds a new credential from Key Vault at renewal when the tenant's registration names another secret", async () => {
    let now = Date.now();
    const provider = new DefenderTokenProvider({
      secrets: services.secretCache,
      entra: services.config.entra,
      appCredential: services.appCredential,
      scope: services.config.defender.scope,
      now: () => now,
    });
    const fabrikam = tenantRecord('application');
    const first = await provider.getToken(fabrikam);
    const renamed = `${fabrikam.credential.secretName}-renamed`;
    stack.keyVault.store.setSecret(renamed, await services.secretCache.get(fabrikam.credential.secretName), {
      tags: TENANT_CREDENTIAL_TAGS,
    });
    const reads = services.secretCache.reads;
    now = decodeJwt(first).exp! * 1000 - TOKEN_REFRESH_MARGIN_MS + 10_000;
    await provider.getToken({ ...fabrikam, credential: { kind: 'secret', secretName: renamed } });
    expect(services.secretCache.reads).toBe(reads + 1);
  });

  it('keeps tenants apart: a partner token carries its customer tenant id', async () => {
    const provider = services.tokens;
    const northwind = tenantRecord('partner');
    const fabrikam = tenantRecord('application');
    const [a, b] = await Promise.all([provider.getToken(northwind), provider.getToken(fabrikam)]);
    expect(decodeJwt(a).tid).toBe(northwind.tenantId);
    expect(decodeJwt(b).tid).toBe(fabrikam.tenantId);
    expect(decodeJwt(a).roles).toEqual(expect.arrayContaining(['Incident.Read.All']));
  });
});

describe('the Defender client and a refused token', () => {
  let stack: TestStandIns;
  let services: Services;
  beforeAll(async () => {
    stack = await startTestStandIns();
    services = createServices(loadConfig(stack.appSettings));
  });
  afterAll(() => stack.close());

  it('renews the token once on 401 and carries on', async () => {
    const t = stack.world.tenants.find((x) => x.context === 'application')!;
    const tenant = {
      tenantId: t.tenantId,
      displayName: t.displayName,
      context: 'application' as const,
      clientId: t.clientId,
      credential: { kind: 'secret' as const, secretName: t.clientSecretName },
      enabled: true,
      source: 'defender' as const,
      firstRunLookbackHours: 24,
    };
    await services.defender.listIncidentsPage(tenant, { top: 1 });
    const requests = services.tokens.requests.get(t.tenantId);
    stack.faults.add('defender', { kind: 'status', status: 401 }, 1);
    expect(await services.defender.listIncidentsPage(tenant, { top: 1 })).toHaveLength(1);
    expect(services.tokens.requests.get(t.tenantId)).toBe(requests! + 1);
  });

  it('reports a token refused twice as a permanent failure naming the tenant and call', async () => {
    const t = stack.world.tenants.find((x) => x.context === 'partner')!;
    const tenant = {
      tenantId: t.tenantId,
      displayName: t.displayName,
      context: 'partner' as const,
      clientId: t.clientId,
      credential: { kind: 'secret' as const, secretName: t.clientSecretName },
      enabled: true,
      source: 'defender' as const,
      firstRunLookbackHours: 24,
    };
    stack.faults.add('defender', { kind: 'status', status: 401 }, 2);
    await expect(services.defender.listIncidentsPage(tenant, { top: 1 })).rejects.toThrow(
      new RegExp(`Defender refused the token \\(401\\).*tenant ${t.tenantId}, listIncidents`),
    );
  });
});
