import { describe, expect, it } from 'vitest';
import { CachedTenantLookup, TenantNotFoundError, type Tenant } from '../../../shared/tenants/tenants.js';

const tenant = (tenantId: string, displayName: string): Tenant => ({
  tenantId,
  displayName,
  context: 'application',
  clientId: '00000000-0000-0000-0000-000000000001',
  credential: { kind: 'secret', secretName: 'x' },
  enabled: true,
  source: 'defender',
  firstRunLookbackHours: 24,
});

describe('tenant lookups on the enricher hot path', () => {
  it('reads a tenant once for concurrent lookups, keeps it for the TTL, then reads it again', async () => {
    let now = 0;
    let reads = 0;
    let name = 'Fabrikam';
    const lookup = new CachedTenantLookup({ get: async (id) => (reads++, tenant(id, name)) }, 30_000, () => now);
    const id = 'A0A0A0A0-0000-0000-0000-000000000000';
    const batch = await Promise.all(Array.from({ length: 16 }, (_, i) => lookup.get(i % 2 ? id : id.toLowerCase())));
    expect(reads).toBe(1);
    expect(new Set(batch.map((t) => t.displayName))).toEqual(new Set(['Fabrikam']));
    name = 'Fabrikam (renamed)';
    now = 29_999;
    expect((await lookup.get(id)).displayName).toBe('Fabrikam');
    now = 30_000;
    expect((await lookup.get(id)).displayName).toBe('Fabrikam (renamed)');
    expect(reads).toBe(2);
  });

  it('does not keep a failed lookup: an unknown tenant is looked up again next time', async () => {
    let known = false;
    let reads = 0;
    const lookup = new CachedTenantLookup({
      get: async (id) => {
        reads++;
        if (!known) throw new TenantNotFoundError(id);
        return tenant(id, 'Northwind');
      },
    });
    await expect(lookup.get('t')).rejects.toBeInstanceOf(TenantNotFoundError);
    known = true;
    expect((await lookup.get('t')).displayName).toBe('Northwind');
    expect(reads).toBe(2);
  });
});
