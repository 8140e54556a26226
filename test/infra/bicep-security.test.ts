import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decoratorsOf,
  evaluate,
  loadInfra,
  modules,
  params,
  prop,
  properties,
  PROJECT_ROOT,
  resources,
  vars,
  type BicepFile,
  type Infra,
  type Node,
  type ResourceDecl,
} from '../support/bicep.js';

/** The security properties a reviewer checks first, read from the syntax tree. */

let infra: Infra;
beforeAll(async () => {
  infra = await loadInfra();
});

/** The one resource of a type that the deployment creates (not an `existing` reference). */
function created(type: string): { file: BicepFile; resource: ResourceDecl } {
  const found = infra.files.flatMap((file) =>
    resources(file)
      .filter((r) => r.type === type && !r.existing)
      .map((resource) => ({ file, resource })),
  );
  expect(
    found.map((f) => `${f.file.name}:${f.resource.symbol}`),
    `one ${type} created`,
  ).toHaveLength(1);
  return found[0]!;
}

/** The value at a path of a resource's body, evaluated; a param resolves to its default. */
function valueAt(type: string, path: string): unknown {
  const { file, resource } = created(type);
  const node = prop(resource.body, path);
  expect(node, `${file.name}: ${resource.symbol} sets ${path}`).toBeDefined();
  return evaluate(node!, file);
}

/** An assertion on that value, named by the resource type and path. */
function expectAt(type: string, path: string) {
  return expect(valueAt(type, path), `${type}: ${path}`);
}

describe('storage account', () => {
  it('has no shared-key access, requires TLS 1.2 and HTTPS, and no public blob access', () => {
    const type = 'Microsoft.Storage/storageAccounts';
    expectAt(type, 'properties.allowSharedKeyAccess').toBe(false);
    expectAt(type, 'properties.minimumTlsVersion').toBe('TLS1_2');
    expectAt(type, 'properties.allowBlobPublicAccess').toBe(false);
    expectAt(type, 'properties.supportsHttpsTrafficOnly').toBe(true);
    expectAt(type, 'properties.defaultToOAuthAuthentication').toBe(true);
  });

  it('creates private containers', () => {
    expectAt('Microsoft.Storage/storageAccounts/blobServices/containers', 'properties.publicAccess').toBe('None');
  });
});

describe('Key Vault', () => {
  const type = 'Microsoft.KeyVault/vaults';

  it('authorizes with Azure RBAC and keeps deleted secrets recoverable, protected from purge', () => {
    expectAt(type, 'properties.enableRbacAuthorization').toBe(true);
    expectAt(type, 'properties.enableSoftDelete').toBe(true);
    expectAt(type, 'properties.enablePurgeProtection').toBe(true);
    expectAt(type, 'properties.softDeleteRetentionInDays').toBeGreaterThanOrEqual(7);
  });

  it('is open to public networks only: the template creates no private endpoint, so a closed vault would lock the app out', () => {
    const { file, resource } = created(type);
    expect(prop(resource.body, 'properties.publicNetworkAccess')?.type).toBe('identifier');
    expectAt(type, 'properties.publicNetworkAccess').toBe('Enabled');
    expectAt(type, 'properties.networkAcls.defaultAction').toBe('Allow');
    for (const [where, name] of [
      [file, 'publicNetworkAccess'],
      [infra.main, 'keyVaultPublicNetworkAccess'],
    ] as const) {
      const param = params(where).find((p) => p.name === name)!;
      expect(
        decoratorsOf(param.node)
          .get('allowed')
          ?.map((n) => evaluate(n, where)),
        `${where.name}: ${name} @allowed`,
      ).toEqual([['Enabled']]);
    }
  });
});

describe('monitoring', () => {
  it('Application Insights accepts only Entra-authenticated telemetry and sits on a Log Analytics workspace', () => {
    const type = 'Microsoft.Insights/components';
    expectAt(type, 'properties.DisableLocalAuth').toBe(true);
    const { resource } = created(type);
    const workspace = created('Microsoft.OperationalInsights/workspaces').resource;
    expect(prop(resource.body, 'properties.WorkspaceResourceId')?.text).toBe(`${workspace.symbol}.id`);
  });
});

describe('Function App', () => {
  const site = 'Microsoft.Web/sites';

  it('runs on a Flex Consumption (FC1) Linux plan', () => {
    const plan = 'Microsoft.Web/serverfarms';
    expectAt(plan, 'sku.name').toBe('FC1');
    expectAt(plan, 'sku.tier').toBe('FlexConsumption');
    expectAt(plan, 'properties.reserved').toBe(true);
    expectAt(site, 'kind').toBe('functionapp,linux');
    expect(prop(created(site).resource.body, 'properties.serverFarmId')?.text).toBe(
      `${created(plan).resource.symbol}.id`,
    );
  });

  it('is HTTPS only with TLS 1.2, FTP and basic publishing credentials off through the policies (no ftpsState: Flex Consumption rejects it)', () => {
    expectAt(site, 'properties.httpsOnly').toBe(true);
    expectAt(site, 'properties.siteConfig.minTlsVersion').toBe('1.2');
    expect(
      prop(created(site).resource.body, 'properties.siteConfig.ftpsState'),
      'siteConfig.ftpsState (ARM error 51021 on Flex Consumption)',
    ).toBeUndefined();
    const policies = infra.files
      .flatMap((f) => resources(f))
      .filter((r) => r.type === `${site}/basicPublishingCredentialsPolicies`);
    expect(
      policies
        .map((p) => [
          evaluate(prop(p.body, 'name')!, infra.main),
          evaluate(prop(p.body, 'properties.allow')!, infra.main),
        ])
        .sort(),
    ).toEqual([
      ['ftp', false],
      ['scm', false],
    ]);
  });

  it('sets the Node runtime, scale and the identity-authenticated deployment container in functionAppConfig', () => {
    const { file, resource } = created(site);
    const config = prop(resource.body, 'properties.functionAppConfig')!;
    expect(evaluate(prop(config, 'runtime.name')!, file)).toBe('node');
    expect(prop(config, 'runtime.version')?.text).toBe('nodeVersion');
    expect(evaluate(prop(config, 'scaleAndConcurrency.maximumInstanceCount')!, file)).toBeGreaterThan(0);
    expect([512, 2048, 4096]).toContain(evaluate(prop(config, 'scaleAndConcurrency.instanceMemoryMB')!, file));

    const storage = prop(config, 'deployment.storage')!;
    expect(evaluate(prop(storage, 'type')!, file)).toBe('blobContainer');
    expect(prop(storage, 'value')?.text).toMatch(/primaryEndpoints\.blob\}\$\{deploymentStorageContainerName\}'$/);
    expect(evaluate(prop(storage, 'authentication.type')!, file)).toBe('UserAssignedIdentity');
    expect(prop(storage, 'authentication.userAssignedIdentityResourceId')?.text).toBe('identityResourceId');

    // The container it deploys from is one main.bicep creates.
    const api = infra.mainModule('app/api.bicep');
    expect(prop(api.body, 'params.deploymentStorageContainerName')?.text).toBe('deploymentStorageContainerName');
    expect(prop(infra.mainModule('core/storage.bicep').body, 'params.containerNames')?.text).toBe('containerNames');
    expect(
      vars(infra.main)
        .get('containerNames')
        ?.namedChildren.map((n) => n.text),
    ).toContain('deploymentStorageContainerName');
  });

  it('runs Node 22 unless told 24, and package.json engines admits it and the Node 20 these machines test on', () => {
    const { file } = created(site);
    const inAzure = evaluate(prop(infra.mainModule('app/api.bicep').body, 'params.nodeVersion')!, infra.main);
    expect(inAzure, "main.bicep's default").toBe('22');
    for (const [where, name] of [
      [file, 'nodeVersion'],
      [infra.main, 'nodeVersion'],
    ] as const) {
      const param = params(where).find((p) => p.name === name)!;
      expect(
        decoratorsOf(param.node)
          .get('allowed')
          ?.map((n) => evaluate(n, where)),
        `${where.name}: ${name} @allowed`,
      ).toEqual([['22', '24']]);
    }
    const engines = (
      JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }
    ).engines.node;
    const minimum = /^>=(\d+)\.(\d+)$/.exec(engines);
    expect(minimum, `engines.node is a plain minimum (${engines})`).not.toBeNull();
    const [major, minor] = [Number(minimum![1]), Number(minimum![2])];
    expect(major, 'engines admits the runtime Azure runs').toBeLessThanOrEqual(Number(inAzure));
    const [here, hereMinor] = process.versions.node.split('.').map(Number);
    expect(
      here! > major || (here === major && hereMinor! >= minor),
      `engines ${engines} admits this Node ${process.versions.node}`,
    ).toBe(true);
    expect(major, 'engines still admits Node 20, which these machines and CI run').toBeLessThanOrEqual(20);
  });

  it('runs as the user-assigned managed identity only', () => {
    const { resource } = created(site);
    expect(evaluate(prop(resource.body, 'identity.type')!, infra.main)).toBe('UserAssigned');
    const assigned = prop(resource.body, 'identity.userAssignedIdentities')!;
    expect(assigned.text).toMatch(/'\$\{identityResourceId\}': \{\}/);
    expect(prop(infra.mainModule('app/api.bicep').body, 'params.identityResourceId')?.text).toBe(
      'identity.outputs.resourceId',
    );
  });
});

// ---- role assignments ------------------------------------------------------------------------

/** Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles). */
const BUILT_IN_ROLES: Record<string, string> = {
  'Key Vault Secrets User': '4633458b-17de-408a-b874-0445c86b69e6',
  'Key Vault Secrets Officer': 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7',
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb',
};

/** What the Function App's identity needs, and on which resource. */
const APP_ROLES: { role: string; scope: string }[] = [
  { role: 'Key Vault Secrets User', scope: 'Microsoft.KeyVault/vaults' },
  { role: 'Storage Queue Data Contributor', scope: 'Microsoft.Storage/storageAccounts' },
  { role: 'Storage Table Data Contributor', scope: 'Microsoft.Storage/storageAccounts' },
  { role: 'Storage Blob Data Owner', scope: 'Microsoft.Storage/storageAccounts' },
  { role: 'Monitoring Metrics Publisher', scope: 'Microsoft.Insights/components' },
];

/** Only with the optional Sentinel module (core/sentinel.bicep): ingestion through the Logs Ingestion API. */
const SENTINEL_ROLE = { role: 'Monitoring Metrics Publisher', scope: 'Microsoft.Insights/dataCollectionRules' };

interface Assignment {
  file: BicepFile;
  resource: ResourceDecl;
  roleId: string | undefined;
  principal: string | undefined;
  principalType: Node | undefined;
  scopeType: string | undefined;
}

function roleAssignments(): Assignment[] {
  return infra.files.flatMap((file) => {
    const all = resources(file);
    return all
      .filter((r) => r.type === 'Microsoft.Authorization/roleAssignments')
      .map((resource) => {
        const definition = prop(resource.body, 'properties.roleDefinitionId');
        // subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <map>.<key>)
        const key = definition?.text.match(
          /^subscriptionResourceId\('Microsoft\.Authorization\/roleDefinitions', (\w+)\.(\w+)\)$/,
        );
        const map = key ? vars(file).get(key[1]!) : undefined;
        const roleId = map ? evaluate(prop(map, key![2]!) ?? map, file) : undefined;
        const scope = prop(resource.body, 'scope')?.text;
        return {
          file,
          resource,
          roleId: typeof roleId === 'string' ? roleId : undefined,
          principal: prop(resource.body, 'properties.principalId')?.text,
          principalType: prop(resource.body, 'properties.principalType'),
          scopeType: all.find((r) => r.symbol === scope)?.type,
        };
      });
  });
}

describe('role assignments', () => {
  it('keeps the built-in role definition ids in one map, each the documented GUID', () => {
    const maps = infra.files.filter((f) => /roleDefinitionIds = \{/.test(f.text));
    expect(maps.map((f) => f.name)).toEqual(['app/rbac.bicep']);
    const assignments = roleAssignments();
    expect(assignments.length).toBeGreaterThan(0);
    const known = new Set(Object.values(BUILT_IN_ROLES));
    for (const a of assignments) {
      expect(a.roleId, `${a.file.name}: ${a.resource.symbol} names its role through the map`).toBeDefined();
      expect(
        known.has(a.roleId!),
        `${a.file.name}: ${a.resource.symbol} uses role ${a.roleId}, not a known built-in role`,
      ).toBe(true);
    }
  });

  it.each(APP_ROLES)("gives the Function App's identity $role on its $scope", ({ role, scope }) => {
    const found = roleAssignments().filter(
      (a) => a.roleId === BUILT_IN_ROLES[role] && a.principal === 'identityPrincipalId' && a.scopeType === scope,
    );
    expect(
      found.map((a) => a.resource.symbol),
      `a ${role} assignment to identityPrincipalId`,
    ).toHaveLength(1);
    const [assignment] = found;
    expect(assignment!.scopeType, `${assignment!.resource.symbol} is scoped to the ${scope}`).toBe(scope);
    expect(evaluate(assignment!.principalType!, assignment!.file)).toBe('ServicePrincipal');
    expect(assignment!.resource.condition, "the app's roles are unconditional").toBeUndefined();
    expect(prop(assignment!.resource.body, 'name')?.text).toMatch(
      /^guid\(\w+\.id, identityPrincipalId, roleDefinitionIds\.\w+\)$/,
    );
  });

  it('gives the identity Monitoring Metrics Publisher on the Sentinel data collection rule, only when it is deployed', () => {
    const [assignment, ...more] = roleAssignments().filter(
      (a) => a.principal === 'identityPrincipalId' && a.scopeType === SENTINEL_ROLE.scope,
    );
    expect(more).toEqual([]);
    expect(assignment?.roleId).toBe(BUILT_IN_ROLES[SENTINEL_ROLE.role]);
    expect(assignment!.resource.condition?.text).toBe('(!empty(dataCollectionRuleName))');
    expect(evaluate(assignment!.principalType!, assignment!.file)).toBe('ServicePrincipal');
    expect(prop(assignment!.resource.body, 'name')?.text).toBe(
      'guid(dataCollectionRule.id, identityPrincipalId, roleDefinitionIds.monitoringMetricsPublisher)',
    );
    const rbac = modules(infra.main).find((m) => m.source === 'app/rbac.bicep')!;
    expect(properties(prop(rbac.body, 'params')!).get('dataCollectionRuleName')?.text).toBe(
      "deploySentinel ? dataCollectionRuleName : ''",
    );
  });

  it("grants the identity nothing beyond those roles, and passes it the managed identity's principal", () => {
    const appRoleIds = [...APP_ROLES, SENTINEL_ROLE].map((r) => BUILT_IN_ROLES[r.role]).sort();
    expect(
      roleAssignments()
        .filter((a) => a.principal === 'identityPrincipalId')
        .map((a) => a.roleId)
        .sort(),
      "role ids assigned to the app's identity",
    ).toEqual(appRoleIds);
    const rbac = modules(infra.main).find((m) => m.source === 'app/rbac.bicep')!;
    expect(properties(prop(rbac.body, 'params')!).get('identityPrincipalId')?.text).toBe(
      'identity.outputs.principalId',
    );
    const identityModule = infra.mainModule('core/identity.bicep');
    expect(identityModule.symbol).toBe('identity');
  });

  it('gives the deploying user only Key Vault Secrets Officer and Table Data Contributor, and only when a principal id is given', () => {
    const user = roleAssignments().filter((a) => a.principal === 'userPrincipalId');
    expect(user.map((a) => a.roleId).sort()).toEqual(
      [BUILT_IN_ROLES['Key Vault Secrets Officer'], BUILT_IN_ROLES['Storage Table Data Contributor']].sort(),
    );
    for (const a of user) expect(a.resource.condition?.text).toBe('(!empty(userPrincipalId))');
  });
});
