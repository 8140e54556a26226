import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { beforeEach, describe, expect, inject, it } from 'vitest';
import {
  adminConsentLink,
  TenantNotFoundError,
  TenantRegistry,
  TenantValidationError,
} from '../../../shared/tenants/tenants.js';

describe('tenant registry (Table storage on Azurite)', () => {
  let registry: TenantRegistry;
  let table: TableClient;
  beforeEach(() => {
    table = TableClient.fromConnectionString(
      inject('storage').connectionString,
      `tenants${randomUUID().replace(/-/g, '').slice(0, 12)}`,
      {
        allowInsecureConnection: true,
      },
    );
    registry = new TenantRegistry(table);
  });

  const fabrikam = () => ({
    tenantId: randomUUID(),
    displayName: 'Fabrikam',
    context: 'application' as const,
    clientId: randomUUID(),
    credential: { kind: 'secret' as const, secretName: 'tenant-fabrikam-client-secret' },
  });

  it('stores a tenant with defaults and reads it back', async () => {
    const input = fabrikam();
    const stored = await registry.put(input);
    expect(stored).toEqual({ ...input, source: 'defender', enabled: true, firstRunLookbackHours: 168 });
    expect(await registry.get(input.tenantId)).toEqual(stored);
    const entity = await table.getEntity('tenant', input.tenantId);
    expect(entity).toMatchObject({ credentialKind: 'secret', credentialSecretName: 'tenant-fabrikam-client-secret' });
  });

  it('reads a tenant stored before sources existed as a Defender tenant, and keeps a Graph one', async () => {
    const legacy = fabrikam();
    await registry.put(legacy);
    // A row as versions before Graph wrote it: no source column.
    const { source: _source, ...row } = await table.getEntity<Record<string, unknown>>('tenant', legacy.tenantId);
    await table.upsertEntity({ ...row, partitionKey: 'tenant', rowKey: legacy.tenantId }, 'Replace');
    expect(await registry.get(legacy.tenantId)).toMatchObject({ source: 'defender' });

    const graph = await registry.put({ ...fabrikam(), source: 'graph' });
    expect(await registry.get(graph.tenantId)).toMatchObject({ source: 'graph' });
    await expect(registry.put({ ...fabrikam(), source: 'sentinel' })).rejects.toThrow(/source:/);
  });

  it('lists tenants by name and filters disabled ones', async () => {
    const a = await registry.put({ ...fabrikam(), displayName: 'Zeta' });
    const b = await registry.put({
      ...fabrikam(),
      displayName: 'Alpha',
      context: 'partner',
      credential: { kind: 'certificate', secretName: 'partner-cert' },
    });
    await registry.setEnabled(a.tenantId, false);
    expect((await registry.list()).map((t) => t.displayName)).toEqual(['Alpha', 'Zeta']);
    expect((await registry.list({ enabledOnly: true })).map((t) => t.tenantId)).toEqual([b.tenantId]);
  });

  it('names every invalid field', async () => {
    const error = await registry
      .put({
        tenantId: 'contoso',
        displayName: '',
        context: 'user',
        clientId: randomUUID(),
        credential: { kind: 'secret', secretName: 'bad name!' },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TenantValidationError);
    const problems = (error as TenantValidationError).problems.join('\n');
    expect(problems).toMatch(/tenantId: must be a GUID/);
    expect(problems).toMatch(/displayName: must not be empty/);
    expect(problems).toMatch(/context:/);
    expect(problems).toMatch(/credential.secretName: must be a Key Vault secret name/);
  });

  it('says which tenant is unknown', async () => {
    const id = randomUUID();
    await expect(registry.get(id)).rejects.toBeInstanceOf(TenantNotFoundError);
    await expect(registry.remove(id)).rejects.toThrow(`Tenant ${id} is not registered`);
  });

  it('removes a tenant', async () => {
    const t = await registry.put(fabrikam());
    await registry.remove(t.tenantId);
    expect(await registry.list()).toEqual([]);
  });

  it('builds the partner admin-consent link', () => {
    expect(adminConsentLink('3f2504e0-4f89-11d3-9a0c-0305e82c3301')).toBe(
      'https://login.microsoftonline.com/common/oauth2/authorize?prompt=consent&client_id=3f2504e0-4f89-11d3-9a0c-0305e82c3301&response_type=code',
    );
  });
});
