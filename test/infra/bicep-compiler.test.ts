import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse as parseJsonc } from 'jsonc-parser';
import { beforeAll, describe, expect, it } from 'vitest';
import { BICEP_VERSION, findBicep, PROJECT_ROOT } from '../../scripts/bicep.js';

/**
 * infra/ through the real Bicep compiler and linter (scripts/bicep.ts finds one; `npm run bicep:install`
 * fetches it): zero errors and zero warnings under bicepconfig.json, and the compiled ARM JSON holds
 * the security properties. Without a compiler these tests are skipped, loudly; in CI they fail.
 */

const INFRA = join(PROJECT_ROOT, 'infra');
const { found: bicep, passedOver } = findBicep();
const inCi = process.env.CI === 'true';

if (!bicep) {
  console.warn(
    [
      '',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      `!!! No Bicep CLI ${BICEP_VERSION} or newer: infra/ is NOT compiled or linted (tests skipped).`,
      '!!! Run `npm run bicep:install` (needs dotnet), `az bicep install`, or set BICEP_BIN.',
      ...passedOver.map((line) => `!!! passed over: ${line}`),
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
    ].join('\n'),
  );
}

function runBicep(args: string[], cwd = PROJECT_ROOT): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(bicep!.path, args, { cwd, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (run.error) throw run.error;
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Every diagnostic line (`file(line,col) : Warning CODE: message`), paths relative to the project. */
function diagnostics(output: string, root = PROJECT_ROOT): string[] {
  return output
    .split('\n')
    .filter((line) => / : (Error|Warning|Info) /.test(line))
    .map((line) => line.replaceAll(`${root}/`, ''));
}

describe('the Bicep CLI', () => {
  it(`is available, ${BICEP_VERSION} or newer (required in CI)`, ({ skip }) => {
    if (!bicep && !inCi) skip('no Bicep CLI: npm run bicep:install');
    expect(bicep, `no Bicep CLI found; run npm run bicep:install. ${passedOver.join('; ')}`).toBeDefined();
    console.log(`bicep ${bicep!.version}: ${bicep!.path} (from ${bicep!.source})`);
  });
});

// ---- build and lint ------------------------------------------------------------------------------

describe.skipIf(!bicep)('bicep build and lint', () => {
  it('builds infra/main.bicep with no error and no warning', () => {
    const build = runBicep(['build', 'infra/main.bicep', '--stdout']);
    expect(diagnostics(build.stderr), 'bicep build infra/main.bicep').toEqual([]);
    expect(build.status).toBe(0);
    expect(build.stderr.trim()).toBe('');
  });

  it('lints every .bicep file under infra/ with no error and no warning', () => {
    const lint = runBicep(['lint', '--pattern', 'infra/**/*.bicep']);
    expect(diagnostics(lint.stdout + lint.stderr), 'bicep lint infra/**/*.bicep').toEqual([]);
    expect(lint.status).toBe(0);
  });

  it('bicepconfig.json turns the stricter rules on, and the linter applies them', () => {
    const config = parseJsonc(readFileSync(join(PROJECT_ROOT, 'bicepconfig.json'), 'utf8')) as {
      analyzers: { core: { rules: Record<string, { level: string }> } };
    };
    const rules = config.analyzers.core.rules;
    for (const rule of [
      'use-recent-api-versions',
      'use-description-outputs',
      'use-description-params',
      'what-if-short-circuiting',
      'outputs-should-not-contain-secrets',
      'use-secure-value-for-secure-inputs',
      'secure-parameter-default',
      'no-hardcoded-location',
    ]) {
      expect(['warning', 'error'], `${rule}'s level`).toContain(rules[rule]?.level);
    }
    // A file breaking three of them, linted with this config: each rule reports.
    const dir = mkdtempSync(join(tmpdir(), 'bicep-rules-'));
    try {
      writeFileSync(
        join(dir, 'probe.bicep'),
        "param location string = resourceGroup().location\n\nresource id 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {\n  name: 'probe'\n  location: location\n}\n\noutput id string = id.id\n",
      );
      const lint = runBicep(['lint', 'probe.bicep', '--config', join(PROJECT_ROOT, 'bicepconfig.json')], dir);
      const found = diagnostics(lint.stdout + lint.stderr, dir).map((d) =>
        /(Error|Warning) ([\w-]+):/.exec(d)?.slice(1, 3).join(' '),
      );
      expect(found.sort()).toEqual([
        'Error use-recent-api-versions',
        'Warning use-description-outputs',
        'Warning use-description-params',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A property each file sets, to misspell (one letter dropped), as a slip in review would. */
  const PROPERTY_TO_MISSPELL: Record<string, string> = {
    'main.bicep': 'tags',
    'app/api.bicep': 'httpsOnly',
    'app/rbac.bicep': 'principalType',
    'core/alerts.bicep': 'autoMitigate',
    'core/identity.bicep': 'tags',
    'core/key-vault.bicep': 'enablePurgeProtection',
    'core/monitoring.bicep': 'DisableLocalAuth',
    'core/sentinel.bicep': 'dataCollectionEndpointId',
    'core/sentinel-table.bicep': 'plan',
    'core/storage.bicep': 'allowSharedKeyAccess',
    'core/workbook.bicep': 'sourceId',
  };

  it('reports a misspelled property name in any module, which the build test above fails on', () => {
    const files = readdirSync(INFRA, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.bicep'));
    expect(Object.keys(PROPERTY_TO_MISSPELL).sort(), 'one property to misspell per file under infra/').toEqual(
      files.sort(),
    );
    const dir = mkdtempSync(join(tmpdir(), 'bicep-typo-'));
    try {
      cpSync(INFRA, dir, { recursive: true });
      for (const [file, property] of Object.entries(PROPERTY_TO_MISSPELL)) {
        const text = readFileSync(join(dir, file), 'utf8');
        const broken = text.replace(new RegExp(`^(\\s+)${property}:`, 'm'), `$1${property.slice(0, -1)}:`);
        expect(broken, `${file} sets ${property}`).not.toBe(text);
        writeFileSync(join(dir, file), broken);
      }
      const build = runBicep(
        ['build', 'main.bicep', '--stdout', '--config', join(PROJECT_ROOT, 'bicepconfig.json')],
        dir,
      );
      const found = diagnostics(build.stderr, dir);
      for (const [file, property] of Object.entries(PROPERTY_TO_MISSPELL)) {
        const misspelled = property.slice(0, -1);
        expect(
          found.filter((d) => d.startsWith(`${file}(`) && /BCP0(37|89)/.test(d) && d.includes(`"${misspelled}"`)),
          `${file}: ${misspelled} reported`,
        ).toHaveLength(1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a region without Flex Consumption, a vault closed to public networks and Node 20; takes what azd passes for a pipeline', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bicep-params-'));
    const using = `using '${relative(dir, join(INFRA, 'main.bicep'))}'\n`;
    try {
      // azd signed in as a service principal: AZURE_PRINCIPAL_TYPE is ServicePrincipal.
      writeFileSync(
        join(dir, 'pipeline.bicepparam'),
        `${using}param environmentName = 'ci'\nparam location = 'westeurope'\nparam principalId = '00000000-0000-0000-0000-000000000001'\nparam principalType = 'ServicePrincipal'\nparam nodeVersion = '24'\n`,
      );
      const pipeline = runBicep(['build-params', 'pipeline.bicepparam', '--stdout'], dir);
      expect(diagnostics(pipeline.stderr, dir)).toEqual([]);
      expect(pipeline.status).toBe(0);

      writeFileSync(
        join(dir, 'refused.bicepparam'),
        `${using}param environmentName = 'ci'\nparam location = 'japanwest'\nparam keyVaultPublicNetworkAccess = 'Disabled'\nparam nodeVersion = '20'\n`,
      );
      const refused = runBicep(['build-params', 'refused.bicepparam', '--stdout'], dir);
      expect(refused.status).not.toBe(0);
      const errors = diagnostics(refused.stderr, dir);
      for (const [line, value] of [
        [3, 'japanwest'],
        [4, 'Disabled'],
        [5, '20'],
      ] as const) {
        expect(
          errors.filter(
            (e) =>
              e.startsWith(`refused.bicepparam(${line},`) && e.includes('Error BCP033') && e.includes(`'${value}'`),
          ),
          `'${value}' refused`,
        ).toHaveLength(1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- the compiled ARM JSON -----------------------------------------------------------------------

interface ArmTemplate {
  parameters?: Record<string, { type: string; defaultValue?: unknown; allowedValues?: unknown[] }>;
  resources: ArmResource[] | Record<string, ArmResource>;
  outputs?: Record<string, { type: string; value: unknown }>;
}

interface ArmResource {
  type: string;
  name: unknown;
  existing?: boolean;
  tags?: unknown;
  properties?: Record<string, unknown> & { template?: ArmTemplate };
}

/** The template and every module's nested template. */
function templates(template: ArmTemplate): ArmTemplate[] {
  const resources = Array.isArray(template.resources) ? template.resources : Object.values(template.resources);
  const nested = resources
    .filter((r) => r.type === 'Microsoft.Resources/deployments')
    .map((r) => r.properties!.template!);
  return [template, ...nested.flatMap(templates)];
}

function resourcesOf(template: ArmTemplate): ArmResource[] {
  return templates(template).flatMap((t) => (Array.isArray(t.resources) ? t.resources : Object.values(t.resources)));
}

describe.skipIf(!bicep)('the compiled ARM template', () => {
  let main: ArmTemplate;
  let all: ArmResource[];
  beforeAll(() => {
    const build = runBicep(['build', 'infra/main.bicep', '--stdout']);
    expect(build.status, build.stderr).toBe(0);
    main = JSON.parse(build.stdout) as ArmTemplate;
    all = resourcesOf(main);
  });

  /** The properties of the one resource of a type the deployment creates. */
  function propertiesOf(type: string): Record<string, unknown> {
    const found = all.filter((r) => r.type === type && !r.existing);
    expect(found, `one ${type}`).toHaveLength(1);
    return found[0]!.properties!;
  }

  it('storage: no shared keys, TLS 1.2, HTTPS only, no public blob access', () => {
    expect(propertiesOf('Microsoft.Storage/storageAccounts')).toMatchObject({
      allowSharedKeyAccess: false,
      minimumTlsVersion: 'TLS1_2',
      supportsHttpsTrafficOnly: true,
      allowBlobPublicAccess: false,
    });
  });

  it('Key Vault: Azure RBAC, soft delete and purge protection, open only to public networks (no private endpoint is created)', () => {
    expect(propertiesOf('Microsoft.KeyVault/vaults')).toMatchObject({
      enableRbacAuthorization: true,
      enableSoftDelete: true,
      enablePurgeProtection: true,
    });
    expect(main.parameters?.keyVaultPublicNetworkAccess).toMatchObject({
      defaultValue: 'Enabled',
      allowedValues: ['Enabled'],
    });
  });

  it('monitoring: Application Insights and Log Analytics take Entra-authenticated callers only', () => {
    expect(propertiesOf('Microsoft.Insights/components')).toMatchObject({ DisableLocalAuth: true });
    expect(propertiesOf('Microsoft.OperationalInsights/workspaces')).toMatchObject({
      features: { disableLocalAuth: true },
    });
  });

  it('Function App: HTTPS only, TLS 1.2, no ftpsState (Flex Consumption rejects it), FTP and SCM basic auth off', () => {
    const site = propertiesOf('Microsoft.Web/sites');
    expect(site).toMatchObject({ httpsOnly: true, siteConfig: { minTlsVersion: '1.2', scmMinTlsVersion: '1.2' } });
    expect(Object.keys(site.siteConfig as object)).not.toContain('ftpsState');
    const policies = all.filter((r) => r.type === 'Microsoft.Web/sites/basicPublishingCredentialsPolicies');
    expect(policies.map((p) => [JSON.stringify(p.name).match(/'(ftp|scm)'/)?.[1], p.properties?.allow]).sort()).toEqual(
      [
        ['ftp', false],
        ['scm', false],
      ],
    );
  });

  it('Function App: Node 22 by default, 24 allowed, 20 no longer', () => {
    const runtime = (propertiesOf('Microsoft.Web/sites').functionAppConfig as { runtime: unknown }).runtime;
    expect(runtime).toEqual({ name: 'node', version: "[parameters('nodeVersion')]" });
    expect(main.parameters?.nodeVersion).toMatchObject({ defaultValue: '22', allowedValues: ['22', '24'] });
  });

  it('only the Function App carries the azd-service-name tag (not its plan)', () => {
    const tagged = all.filter((r) => JSON.stringify(r.tags ?? {}).includes('azd-service-name'));
    expect(tagged.map((r) => r.type)).toEqual(['Microsoft.Web/sites']);
    // Nor do the tags main.bicep hands every module carry it: the tag is written in one place.
    const withoutDescriptions = JSON.stringify(main, (key, value: unknown) => (key === 'metadata' ? undefined : value));
    expect(withoutDescriptions.match(/azd-service-name/g)).toHaveLength(1);
  });

  it("the deploying principal's type is a parameter that takes both kinds azd signs in as", () => {
    expect(main.parameters?.principalType?.allowedValues).toEqual(expect.arrayContaining(['User', 'ServicePrincipal']));
  });

  it("location is limited to Flex Consumption regions, among them the README's example", () => {
    const regions = main.parameters?.location?.allowedValues as string[];
    expect(regions.length).toBeGreaterThan(20);
    for (const region of regions)
      expect(region, 'a public-cloud region name, not a canary (EUAP) one').toMatch(/^[a-z]+[0-9]?$/);
    expect(regions).toContain('westeurope');
  });

  it('no output is a secret, and nothing anywhere lists keys or secrets', () => {
    for (const template of templates(main)) {
      for (const [name, output] of Object.entries(template.outputs ?? {})) {
        expect(output.type.toLowerCase(), `output ${name}`).not.toMatch(/^secure/);
      }
    }
    expect(JSON.stringify(main).match(/\blist[A-Z]\w*\(/g), 'list*() calls (listKeys, listSecrets…)').toBeNull();
  });
});
