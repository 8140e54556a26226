import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { createLocalCa } from '../../../local/common/tls.js';
import { RELAY_API_SECRET_NAME, WEBHOOK_HMAC_SECRET_NAME } from '../../../local/demo.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import type { TenantCheck } from '../../../shared/tenants/doctor.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * The compiled command-line tools (`dist/cli/*.js`, built by `npm run build`), run as a person runs
 * them, against a settings file pointing at the stand-ins and an Azurite of this file's own.
 */
const CLI_DIR = resolve('dist/cli');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('command-line tools: tenants and doctor', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let dir: string;
  let settingsFile: string;
  const outputs: string[] = [];

  beforeAll(async () => {
    if (!existsSync(join(CLI_DIR, 'tenants.js')))
      throw new Error(`${CLI_DIR}/tenants.js is missing: run npm run build (tsconfig.json must include cli/**/*.ts)`);
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 64 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    dir = mkdtempSync(join(tmpdir(), 'relay-cli-'));
    settingsFile = join(dir, 'settings.json');
    writeFileSync(
      settingsFile,
      JSON.stringify({ IsEncrypted: false, Values: appSettingsFor(stack.world, azurite.connectionString, stack) }),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a tool without blocking this process: the stand-ins it talks to run here. */
  function run(
    tool: 'tenants' | 'doctor',
    args: string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ): Promise<Run> {
    return new Promise((done) => {
      const env = options.env ?? { ...process.env, NODE_EXTRA_CA_CERTS: inject('tls').caCertPath };
      execFile(
        process.execPath,
        [join(CLI_DIR, `${tool}.js`), ...args],
        { cwd: options.cwd ?? dir, env, timeout: 25_000 },
        (error, stdout, stderr) => {
          outputs.push(stdout, stderr);
          done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
        },
      );
    });
  }
  const withSettings = (...args: string[]) => [...args, '--settings', settingsFile];
  const partner = () => stack.world.tenants.find((t) => t.context === 'partner')!;
  const addArgs = (tenantId: string) => [
    'add',
    '--tenant-id',
    tenantId,
    '--name',
    'Adatum',
    '--context',
    'partner',
    '--client-id',
    partner().clientId,
    '--secret-name',
    partner().clientSecretName,
    '--lookback-hours',
    '48',
  ];

  it('refuses a bad tenant id before touching anything, naming --tenant-id', async () => {
    const result = await run('tenants', withSettings(...addArgs('adatum.onmicrosoft.com')));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("error: --tenant-id: must be a GUID (got 'adatum.onmicrosoft.com')");
    expect(result.stdout).toBe('');
  });

  it(
    'adds a partner tenant, lists it, prints its consent link, and doctor names the missing consent',
    { timeout: 60_000 },
    async () => {
      const adatum = randomUUID();
      stack.entra.registry.addTenant({ tenantId: adatum, displayName: 'Adatum' });
      stack.defender.store.provisionTenant(adatum, 'Adatum');

      const added = await run('tenants', withSettings(...addArgs(adatum)));
      expect(added.code).toBe(0);
      expect(added.stderr).toContain('Settings: ./settings.json (--settings)');
      expect(added.stdout).toContain(
        `Registered Adatum (${adatum}): partner context, read through the Defender API, client ${partner().clientId}, secret '${partner().clientSecretName}', enabled, first poll looks back 48 h.`,
      );
      expect(added.stdout).toContain(`npm run tenants -- consent-link ${adatum}`);
      expect((await run('tenants', withSettings(...addArgs(adatum)))).stdout).toMatch(/^Replaced Adatum/);

      const listed = await run('tenants', withSettings('list'));
      expect(listed.code).toBe(0);
      const header = listed.stdout.split('\n')[0]!;
      expect(header.split(/\s{2,}/)).toEqual([
        'NAME',
        'TENANT ID',
        'CONTEXT',
        'SOURCE',
        'CLIENT ID',
        'CREDENTIAL',
        'ENABLED',
        'LAST POLL',
        'EVENTS',
      ]);
      const row = listed.stdout.split('\n').find((l) => l.includes(adatum))!;
      expect(row.split(/\s{2,}/)).toEqual([
        'Adatum',
        adatum,
        'partner',
        'defender',
        partner().clientId,
        `secret '${partner().clientSecretName}'`,
        'yes',
        'never',
        '0',
      ]);
      for (const t of stack.world.tenants) expect(listed.stdout).toContain(t.tenantId);

      const link = await run('tenants', withSettings('consent-link', adatum));
      expect(link.code).toBe(0);
      expect(link.stdout).toContain(
        `${stack.entra.url}/common/oauth2/authorize?prompt=consent&client_id=${partner().clientId}&response_type=code`,
      );
      expect(link.stdout).toMatch(/1\. Send the link to a Global Administrator/);
      expect(link.stdout).toContain(`npm run doctor -- --tenant ${adatum}`);

      const doctor = await run('doctor', withSettings('--json'));
      expect(doctor.code).toBe(1);
      const report = JSON.parse(doctor.stdout) as { ok: boolean; tenants: TenantCheck[] };
      expect(report.ok).toBe(false);
      const rows = new Map(report.tenants.map((r) => [r.tenantId, r]));
      for (const t of stack.world.tenants) expect(rows.get(t.tenantId)).toMatchObject({ ok: true });
      expect(rows.get(adatum)!.cause).toMatch(
        /^AADSTS700016: the app .* is not consented in this tenant — send the admin-consent link/,
      );

      // The table: one row per tenant, the cause on the failing one.
      const table = await run('doctor', withSettings());
      expect(table.code).toBe(1);
      expect(table.stdout.split('\n').find((l) => l.startsWith('Adatum'))).toMatch(/FAILED .*AADSTS700016/);
      expect(table.stdout).toContain(`${stack.world.tenants.length} tenant(s) ok, 1 failed`);

      // Disabled while waiting for consent: the default run passes, an explicit --tenant still checks it.
      expect((await run('tenants', withSettings('disable', adatum))).code).toBe(0);
      expect((await run('doctor', withSettings())).code).toBe(0);
      expect((await run('doctor', withSettings('--tenant', adatum))).code).toBe(1);

      const removed = await run('tenants', withSettings('remove', adatum));
      expect(removed).toMatchObject({ code: 0, stdout: expect.stringContaining(`Removed Adatum (${adatum})`) });
      const gone = await run('tenants', withSettings('enable', adatum));
      expect(gone).toMatchObject({ code: 1, stderr: expect.stringContaining(`Tenant ${adatum} is not registered`) });
    },
  );

  it(
    'onboards a tenant read through Microsoft Graph: --source graph, the consent link and doctor name Graph permissions',
    { timeout: 60_000 },
    async () => {
      const litware = randomUUID();
      stack.entra.registry.addTenant({ tenantId: litware, displayName: 'Litware' });
      stack.graph.store.provisionTenant(litware, 'Litware');
      const args = addArgs(litware).map((a) => (a === 'Adatum' ? 'Litware' : a));

      const wrong = await run('tenants', withSettings(...args, '--source', 'sentinel'));
      expect(wrong).toMatchObject({ code: 2, stdout: '' });
      expect(wrong.stderr).toContain(
        'error: --source: Invalid option: expected one of "defender"|"graph" (got \'sentinel\')',
      );

      const added = await run('tenants', withSettings(...args, '--source', 'graph'));
      expect(added.code).toBe(0);
      expect(added.stdout).toContain(`Registered Litware (${litware}): partner context, read through Microsoft Graph,`);
      const link = await run('tenants', withSettings('consent-link', litware));
      expect(link.stdout).toContain('Microsoft Graph SecurityIncident.Read.All');
      expect(link.stdout).toContain('ThreatHunting.Read.All for hunting');

      // Before the customer's admin consents: doctor says so, and which link to send.
      const before = JSON.parse((await run('doctor', withSettings('--json', '--tenant', litware))).stdout) as {
        tenants: TenantCheck[];
      };
      expect(before.tenants[0]).toMatchObject({
        ok: false,
        source: 'graph',
        cause: expect.stringMatching(/^AADSTS700016/),
      });

      // Consented to the Defender API only: the token is for Graph and lacks its permission.
      stack.entra.registry.grantAppPermissions(litware, partner().clientId, 'https://api.security.microsoft.com', [
        'Incident.Read.All',
      ]);
      const defenderOnly = JSON.parse((await run('doctor', withSettings('--json', '--tenant', litware))).stdout) as {
        tenants: TenantCheck[];
      };
      expect(defenderOnly.tenants[0]!.ok).toBe(false);
      expect(defenderOnly.tenants[0]!.cause).toMatch(
        /^token lacks SecurityIncident\.Read\.All \(no roles\) — add the Microsoft Graph application permission SecurityIncident\.Read\.All to app .* and re-consent/,
      );

      // Consented to Graph's read permission: every step passes, with write-back's permission missing as a warning.
      stack.entra.registry.grantAppPermissions(litware, partner().clientId, 'https://graph.microsoft.com', [
        'SecurityIncident.Read.All',
      ]);
      const ok = await run('doctor', withSettings('--tenant', litware));
      expect(ok.code).toBe(0);
      expect(ok.stdout.split('\n').find((l) => l.startsWith('Litware'))).toMatch(
        /^Litware +\S+ +partner +graph +ok +ok +ok +ok +roles SecurityIncident\.Read\.All$/,
      );
      expect(ok.stdout).toContain(
        'warning: Litware: no SecurityIncident.ReadWrite.All: write-back (tags, comments) will be refused',
      );
      expect(ok.stdout).toContain(
        'warning: Litware: no ThreatHunting.Read.All: hunting enrichment is off for this tenant',
      );
      expect((await run('tenants', withSettings('remove', litware))).code).toBe(0);
    },
  );

  it("refuses to add a tenant whose credential is one of the relay's own secrets or a secret not tagged as a tenant credential, naming the flag and the fix", async () => {
    const tenantId = randomUUID();
    const args = (flag: string, secretName: string, ...more: string[]) => [
      'add',
      '--tenant-id',
      tenantId,
      '--name',
      'Adatum',
      '--context',
      'partner',
      '--client-id',
      partner().clientId,
      flag,
      secretName,
      ...more,
    ];
    const hmac = await run('tenants', withSettings(...args('--secret-name', WEBHOOK_HMAC_SECRET_NAME)));
    expect(hmac).toMatchObject({ code: 2, stdout: '' });
    expect(hmac.stderr).toContain(
      `error: --secret-name: '${WEBHOOK_HMAC_SECRET_NAME}' is the relay's own secret (named by WEBHOOK_ACCESS_FILE (hmacKeys)`,
    );
    const relayApi = await run('tenants', withSettings(...args('--certificate-secret-name', RELAY_API_SECRET_NAME)));
    expect(relayApi).toMatchObject({ code: 2, stdout: '' });
    expect(relayApi.stderr).toContain(
      `error: --certificate-secret-name: '${RELAY_API_SECRET_NAME}' is the relay's own secret (named by RELAY_API_SECRET_NAME)`,
    );

    const untagged = `adatum-untagged-${tenantId.slice(0, 8)}`;
    stack.keyVault.store.setSecret(untagged, 'adatum-untagged-value');
    const refused = await run('tenants', withSettings(...args('--secret-name', untagged)));
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toContain(
      `error: --secret-name: Key Vault secret '${untagged}' is not tagged as a tenant credential`,
    );
    expect(refused.stderr).toContain(
      `az keyvault secret set-attributes --vault-name <vault-name> --name ${untagged} --tags defender-relay=tenant-credential`,
    );
    expect(refused.stderr).not.toContain('adatum-untagged-value');
    expect((await run('tenants', withSettings('list'))).stdout).not.toContain(tenantId);

    // A secret not stored yet: registered (disabled, as onboarding does), with what to do about it.
    const later = await run(
      'tenants',
      withSettings(...args('--secret-name', `adatum-later-${tenantId.slice(0, 8)}`, '--disabled')),
    );
    expect(later.code, later.stderr).toBe(0);
    expect(later.stdout).toMatch(
      /^Warning: Key Vault has no secret 'adatum-later-[0-9a-f]{8}' yet: store the tenant's client secret under that name with --tags defender-relay=tenant-credential/,
    );
    expect(later.stdout).toContain(`Registered Adatum (${tenantId})`);
    expect((await run('tenants', withSettings('remove', tenantId))).code).toBe(0);
  });

  it('finds the stack npm start left (./.local, or --state-dir anywhere) and trusts the CA its settings name', async () => {
    const project = mkdtempSync(join(dir, 'project-'));
    const settingsIn = (stateDir: string) => {
      mkdirSync(join(project, stateDir), { recursive: true });
      // As npm start writes them: the CA named in the Values, here relative to the settings file.
      writeFileSync(
        join(project, stateDir, 'local.settings.json'),
        JSON.stringify({
          IsEncrypted: false,
          Values: { ...appSettingsFor(stack.world, azurite.connectionString, stack), NODE_EXTRA_CA_CERTS: 'ca.pem' },
        }),
      );
      writeFileSync(join(project, stateDir, 'ca.pem'), inject('tls').caCertPem);
    };
    settingsIn('.local');
    settingsIn('stacks/demo');
    // Without NODE_EXTRA_CA_CERTS, or with it naming another bundle (a machine's or a company's CAs),
    // the tool must re-run itself with the CA the settings name, or every HTTPS call fails.
    const otherBundle = join(project, 'corporate-ca.pem');
    writeFileSync(otherBundle, createLocalCa('Some corporate CA').caCertPem);
    for (const [extraCa, args, source] of [
      [undefined, [], './.local/local.settings.json'],
      [otherBundle, [], './.local/local.settings.json'],
      [undefined, ['--state-dir', 'stacks/demo'], join(project, 'stacks', 'demo', 'local.settings.json')],
    ] as const) {
      const env = { ...process.env, NODE_EXTRA_CA_CERTS: extraCa };
      if (!extraCa) delete env.NODE_EXTRA_CA_CERTS;
      const doctor = await run('doctor', ['--json', '--tenant', partner().tenantId, ...args], { cwd: project, env });
      expect(doctor.stderr).toContain(
        `Settings: ${source.startsWith('/') ? `./${source.slice(project.length + 1)}` : source}`,
      );
      expect(doctor.code, doctor.stderr).toBe(0);
      expect(JSON.parse(doctor.stdout)).toMatchObject({
        ok: true,
        tenants: [{ tenantId: partner().tenantId, ok: true }],
      });
    }
    const nowhere = await run('tenants', ['list', '--state-dir', 'no-such-stack'], { cwd: project });
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toBe(
      `error: --state-dir: no local stack's settings in ${join(project, 'no-such-stack')} (no local.settings.json): start the stack there with npm start -- --state-dir no-such-stack, or name the folder it uses\n`,
    );
    const both = await run('tenants', ['list', '--state-dir', 'stacks/demo', '--settings', 'x.json'], { cwd: project });
    expect(both).toMatchObject({ code: 2, stderr: 'error: --settings and --state-dir do not go together: give one\n' });
  });

  it('prints no secret and no token in any output', () => {
    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    for (const secret of [stack.world.appIdentity.clientSecret, ...stack.world.apps.map((a) => a.clientSecret)])
      expect(all).not.toContain(secret);
    expect(all).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
    expect(all).not.toContain('AccountKey=');
  });
});
