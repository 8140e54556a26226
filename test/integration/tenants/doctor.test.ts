import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFENDER_RESOURCE } from '../../../local/demo.js';
import { loadConfig } from '../../../shared/config/config.js';
import {
  doctorDependencies,
  runDoctor,
  type DoctorDependencies,
  type TenantCheck,
} from '../../../shared/tenants/doctor.js';
import { createServices } from '../../../shared/services.js';
import { parseTenant, type Tenant } from '../../../shared/tenants/tenants.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { TENANT_CREDENTIAL_TAGS } from '../../../shared/auth/credential-fence.js';

/**
 * `doctor` against the stand-ins with the real SDK clients: each onboarding mistake a person makes is
 * reported on its own tenant's row with the cause and what to do, and the other tenants stay ok.
 */
describe('doctor: the per-tenant onboarding check', () => {
  let stack: TestStandIns;
  let deps: DoctorDependencies;
  const secrets: string[] = [];

  beforeAll(async () => {
    stack = await startTestStandIns();
    deps = doctorDependencies(createServices(loadConfig(stack.appSettings)));
    secrets.push(stack.world.appIdentity.clientSecret, ...stack.world.apps.map((a) => a.clientSecret));
  });
  afterAll(() => stack?.close());

  const demoTenant = (context: 'application' | 'partner'): Tenant => {
    const t = stack.world.tenants.find((x) => x.context === context)!;
    return parseTenant({ ...t, credential: { kind: 'secret', secretName: t.clientSecretName } });
  };

  /** A customer tenant with its own app registration, set up as the options say. */
  async function customer(
    name: string,
    options: { roles?: string[]; vaultValue?: string | null; defender?: boolean } = {},
  ): Promise<Tenant> {
    const tenantId = randomUUID();
    const clientId = randomUUID();
    const secret = randomBytes(24).toString('base64url');
    secrets.push(secret);
    const secretName = `tenant-${name.toLowerCase().replace(/\W+/g, '-')}-${tenantId.slice(0, 8)}`;
    stack.entra.registry.addTenant({ tenantId, displayName: name });
    stack.entra.registry.addApp({
      clientId,
      displayName: `${name} reader`,
      homeTenantId: tenantId,
      multiTenant: false,
      secrets: [secret],
    });
    const roles = options.roles ?? ['Incident.Read.All', 'Incident.ReadWrite.All', 'AdvancedHunting.Read.All'];
    if (roles.length) stack.entra.registry.grantAppPermissions(tenantId, clientId, DEFENDER_RESOURCE, roles);
    if (options.vaultValue !== null)
      await stack.keyVault.store.setSecret(secretName, options.vaultValue ?? secret, { tags: TENANT_CREDENTIAL_TAGS });
    if (options.defender !== false) stack.defender.store.provisionTenant(tenantId, name);
    return parseTenant({
      tenantId,
      displayName: name,
      context: 'application',
      clientId,
      credential: { kind: 'secret', secretName },
    });
  }

  const statuses = (row: TenantCheck) => Object.fromEntries(row.steps.map((s) => [s.name, s.status]));
  const expectNoSecrets = (rows: TenantCheck[]) => {
    const text = JSON.stringify(rows);
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
  };

  it('passes every demo tenant: secret read, tid verified, roles listed, one API call', async () => {
    const rows = await runDoctor([demoTenant('application'), demoTenant('partner')], deps);
    for (const [row, context] of [
      [rows[0]!, 'application'],
      [rows[1]!, 'partner'],
    ] as const) {
      const tenant = demoTenant(context);
      expect(row).toMatchObject({
        tenantId: tenant.tenantId,
        ok: true,
        warnings: [],
        credential: `secret '${tenant.credential.kind === 'secret' ? tenant.credential.secretName : ''}'`,
      });
      expect(statuses(row)).toEqual({ secret: 'ok', token: 'ok', permissions: 'ok', api: 'ok' });
      expect(row.token).toMatchObject({
        tid: tenant.tenantId,
        appid: tenant.clientId,
        roles: expect.arrayContaining(['Incident.Read.All', 'AdvancedHunting.Read.All']),
      });
      expect(Date.parse(row.token!.expiresAt!)).toBeGreaterThan(Date.now());
      expect(row.steps.find((s) => s.name === 'api')!.detail).toMatch(/Defender answered 200/);
    }
    expectNoSecrets(rows);
  });

  it('names each onboarding mistake on its own row while the other tenants stay ok', async () => {
    const wrongSecret = await customer('Wrong Secret Ltd', { vaultValue: 'not-the-current-secret' });
    const missingSecret = await customer('Missing Secret Inc', { vaultValue: null });
    const northwind = demoTenant('partner');
    const unconsentedId = randomUUID();
    stack.entra.registry.addTenant({ tenantId: unconsentedId, displayName: 'Adatum' });
    stack.defender.store.provisionTenant(unconsentedId, 'Adatum');
    const unconsented = parseTenant({ ...northwind, tenantId: unconsentedId, displayName: 'Adatum' });
    const huntingOnly = await customer('Hunting Only Corp', { roles: ['AdvancedHunting.Read.All'] });
    const noDefender = await customer('No Defender GmbH', { defender: false });
    const readOnly = await customer('Read Only Co', { roles: ['Incident.Read.All'] });
    // A certificate credential pointing at a secret that holds a client secret, not a PEM with its key.
    const fabrikamSecretName = stack.world.tenants.find((t) => t.context === 'application')!.clientSecretName;
    const notAPem = parseTenant({
      ...demoTenant('application'),
      tenantId: randomUUID(),
      displayName: 'Cert Mixup',
      credential: { kind: 'certificate', secretName: fabrikamSecretName },
    });
    // A tenant id Entra does not know (a typo): MSAL says only that endpoints cannot be resolved.
    const typo = parseTenant({ ...northwind, tenantId: randomUUID(), displayName: 'Typo Tenant' });

    const rows = await runDoctor(
      [
        wrongSecret,
        demoTenant('application'),
        missingSecret,
        unconsented,
        huntingOnly,
        noDefender,
        readOnly,
        northwind,
        notAPem,
        typo,
      ],
      deps,
      { concurrency: 3 },
    );
    const [wrong, fabrikam, missing, adatum, hunting, forbidden, reader, partner, mixup, mistyped] = rows;

    expect(statuses(wrong!)).toEqual({ secret: 'ok', token: 'failed', permissions: 'skipped', api: 'skipped' });
    expect(wrong!.cause).toMatch(
      /^AADSTS7000215: Entra ID refused the client secret in Key Vault secret 'tenant-wrong-secret-ltd-/,
    );

    expect(statuses(missing!)).toEqual({ secret: 'failed', token: 'skipped', permissions: 'skipped', api: 'skipped' });
    expect(missing!.cause).toMatch(
      /^Key Vault has no secret named 'tenant-missing-secret-inc-[0-9a-f]+' — store the app's client secret under that name/,
    );

    expect(statuses(adatum!)).toMatchObject({ secret: 'ok', token: 'failed' });
    expect(adatum!.cause).toContain('AADSTS700016: the app');
    expect(adatum!.cause).toContain('is not consented in this tenant — send the admin-consent link');
    expect(adatum!.cause).toContain(
      `${stack.entra.url}/common/oauth2/authorize?prompt=consent&client_id=${northwind.clientId}&response_type=code`,
    );

    expect(statuses(hunting!)).toEqual({ secret: 'ok', token: 'ok', permissions: 'failed', api: 'skipped' });
    expect(hunting!.cause).toMatch(
      /^token lacks Incident.Read.All \(roles: AdvancedHunting.Read.All\) — add the application permission Incident.Read.All/,
    );
    expect(hunting!.token?.roles).toEqual(['AdvancedHunting.Read.All']);

    expect(statuses(forbidden!)).toEqual({ secret: 'ok', token: 'ok', permissions: 'ok', api: 'failed' });
    expect(forbidden!.cause).toMatch(
      /^Defender answered 403 Forbidden: Tenant [0-9a-f-]+ has no Microsoft Defender XDR data: the service is not provisioned for this tenant. — is Microsoft Defender XDR enabled in this tenant\?$/,
    );

    // Optional permissions missing: the tenant works, with warnings naming what is off.
    expect(reader!.ok).toBe(true);
    expect(reader!.warnings).toEqual([
      expect.stringMatching(/^no Incident.ReadWrite.All: write-back/),
      expect.stringMatching(/^no AdvancedHunting.Read.All: hunting enrichment is off/),
    ]);

    expect(statuses(mixup!)).toEqual({ secret: 'failed', token: 'skipped', permissions: 'skipped', api: 'skipped' });
    expect(mixup!.cause).toMatch(
      /^Key Vault secret 'tenant-fabrikam-client-secret' holds no PEM private key — store the certificate as PEM with its private key/,
    );

    expect(statuses(mistyped!)).toMatchObject({ secret: 'ok', token: 'failed' });
    expect(mistyped!.cause).toBe(`AADSTS90002: Entra ID knows no tenant ${typo.tenantId} — check the tenant id`);

    for (const ok of [fabrikam!, partner!]) expect([ok.ok, ok.cause]).toEqual([true, undefined]);
    expect(rows.filter((r) => !r.ok).map((r) => r.displayName)).toEqual([
      'Wrong Secret Ltd',
      'Missing Secret Inc',
      'Adatum',
      'Hunting Only Corp',
      'No Defender GmbH',
      'Cert Mixup',
      'Typo Tenant',
    ]);
    expectNoSecrets(rows);
  });

  it('reports a failing Defender API (5xx) on the tenant it hit; the next tenant is checked normally', async () => {
    // The check retries once: two 503s exhaust it for the first tenant (checked first at concurrency 1).
    stack.faults.add('defender', { kind: 'status', status: 503 }, 2);
    try {
      const [failing, next] = await runDoctor([demoTenant('application'), demoTenant('partner')], deps, {
        concurrency: 1,
      });
      expect(statuses(failing!)).toEqual({ secret: 'ok', token: 'ok', permissions: 'ok', api: 'failed' });
      expect(failing!.cause).toMatch(
        /^Defender answered 503 ServiceUnavailable — the API is failing; try again later$/,
      );
      expect(next!.ok).toBe(true);
    } finally {
      stack.faults.clear();
    }
  });

  it('checks a managed-identity tenant without reading Key Vault', async () => {
    const { appIdentity, provider } = stack.world;
    stack.entra.registry.grantAppPermissions(provider.tenantId, appIdentity.clientId, DEFENDER_RESOURCE, [
      'Incident.Read.All',
    ]);
    stack.defender.store.provisionTenant(provider.tenantId, provider.displayName);
    const own = parseTenant({
      tenantId: provider.tenantId,
      displayName: provider.displayName,
      context: 'application',
      clientId: appIdentity.clientId,
      credential: { kind: 'managedIdentity' },
    });
    const [row] = await runDoctor([own], deps);
    expect(statuses(row!)).toEqual({ secret: 'skipped', token: 'ok', permissions: 'ok', api: 'ok' });
    expect(row).toMatchObject({ ok: true, credential: 'managed identity' });
  });
});
