import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decoratorsOf,
  evaluate,
  firstSyntaxProblem,
  INFRA_DIR,
  loadInfra,
  modules,
  outputReference,
  outputs,
  params,
  parseBicep,
  PROJECT_ROOT,
  prop,
  properties,
  resources,
  type Infra,
  type Node,
} from '../support/bicep.js';

/** No Bicep compiler runs here: the grammar checks syntax, these tests check what the compiler would link. */

let infra: Infra;
beforeAll(async () => {
  infra = await loadInfra();
});

function problemIn(name: string, root: Node): string | undefined {
  const problem = firstSyntaxProblem(root);
  if (!problem) return undefined;
  const extent = problem.endLine > problem.line ? ` (unbalanced through line ${problem.endLine})` : '';
  return `${name}:${problem.line}:${problem.column}: ${problem.kind}${problem.kind === 'MISSING' ? ` '${problem.text}'` : ` at '${problem.text}'`}${extent}`;
}

describe('Bicep syntax', () => {
  it('parses every .bicep file under infra/ without an error', () => {
    expect(infra.files.map((f) => f.name)).toContain('main.bicep');
    const problems = infra.files.map((f) => problemIn(`infra/${f.name}`, f.root)).filter(Boolean);
    expect(problems, 'syntax errors (file:line:column)').toEqual([]);
  });

  it('reports the file, line and column of a missing brace', async () => {
    const broken = await parseBicep(
      "param name string\n\nresource id 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {\n  name: name\n\noutput id string = id.id\n",
    );
    expect(problemIn('broken.bicep', broken.root)).toMatch(/^broken\.bicep:\d+:\d+: (ERROR|MISSING)/);
  });
});

describe('modules', () => {
  it('every module reference resolves to a file under infra/', () => {
    const unresolved = infra.files.flatMap((file) =>
      modules(file)
        .filter((m) => !m.path || !existsSync(m.path))
        .map(
          (m) =>
            `${file.name}: module ${m.symbol} '${m.source}' ${m.path ? 'does not exist' : 'is a registry module (not checkable offline; use a local module)'}`,
        ),
    );
    expect(unresolved).toEqual([]);
  });

  it('every parameter a module requires is passed, and no unknown parameter is', () => {
    const problems: string[] = [];
    for (const file of infra.files) {
      for (const module of modules(file)) {
        const target = infra.moduleFile(module);
        if (!target) continue;
        const declared = params(target);
        const passed = properties(module.body).get('params');
        const given = passed ? [...properties(passed).keys()] : [];
        for (const p of declared.filter((d) => !d.optional && !given.includes(d.name))) {
          problems.push(`${file.name}: module ${module.symbol} does not pass ${p.name}, which ${target.name} requires`);
        }
        for (const name of given.filter((g) => !declared.some((d) => d.name === g))) {
          problems.push(`${file.name}: module ${module.symbol} passes ${name}, which ${target.name} does not declare`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('every module output used exists in that module', () => {
    const problems: string[] = [];
    for (const file of infra.files) {
      const bySymbol = new Map(modules(file).map((m) => [m.symbol, m]));
      for (const node of file.root.descendantsOfType('member_expression')) {
        const ref = outputReference(node);
        const module = ref && bySymbol.get(ref.symbol);
        const target = module && infra.moduleFile(module);
        if (ref && target && !outputs(target).has(ref.output)) {
          problems.push(
            `${file.name} line ${node.startPosition.row + 1}: ${ref.symbol}.outputs.${ref.output} is not an output of ${target.name}`,
          );
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('every module of main.bicep has a deployment name and deploys into the resource group', () => {
    for (const module of modules(infra.main)) {
      const body = properties(module.body);
      expect(body.has('name'), `module ${module.symbol} needs a name`).toBe(true);
      expect(body.get('scope')?.text, `module ${module.symbol} must deploy into the resource group`).toBe('rg');
    }
  });
});

describe('parameters (Azure Verified Modules style)', () => {
  it("every parameter is described 'Required. …' exactly when it has no default, 'Optional. …' otherwise", () => {
    const problems: string[] = [];
    for (const file of infra.files) {
      for (const p of params(file)) {
        const expected = p.optional ? 'Optional. ' : 'Required. ';
        if (!p.description?.startsWith(expected)) {
          problems.push(
            `${file.name}: param ${p.name} needs @description('${expected}…') (has ${p.description === undefined ? 'none' : `'${p.description.slice(0, 20)}…'`})`,
          );
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('names resources from a resource token of subscription, environment and location', () => {
    const token = infra.main.text.match(/var resourceToken = (.+)/)?.[1]?.trim();
    expect(token).toBe('toLower(uniqueString(subscription().id, environmentName, location))');
  });

  it("main.parameters.json gives azd's values to main.bicep's required parameters, and names only declared ones", () => {
    const file = JSON.parse(readFileSync(join(INFRA_DIR, 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: unknown }>;
    };
    const declared = params(infra.main);
    const names = Object.keys(file.parameters);
    expect(
      names.filter((n) => !declared.some((d) => d.name === n)),
      'parameters main.bicep does not declare',
    ).toEqual([]);
    expect(
      declared.filter((d) => !d.optional && !names.includes(d.name)).map((d) => d.name),
      'required parameters without a value',
    ).toEqual([]);
    expect(file.parameters.environmentName?.value).toBe('${AZURE_ENV_NAME}');
    expect(file.parameters.location?.value).toBe('${AZURE_LOCATION}');
    expect(file.parameters.principalId?.value).toBe('${AZURE_PRINCIPAL_ID}');
  });

  it("passes azd's principal type, so a pipeline signed in as a service principal gets its roles (no UnmatchedPrincipalType)", () => {
    const file = JSON.parse(readFileSync(join(INFRA_DIR, 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: unknown }>;
    };
    expect(file.parameters.principalType?.value).toBe('${AZURE_PRINCIPAL_TYPE}');
    const param = params(infra.main).find((p) => p.name === 'principalType')!;
    // azd substitutes 'User' or 'ServicePrincipal' (Azure/azure-dev, pkg/infra/provisioning/current_principal_id_provider.go).
    expect(
      decoratorsOf(param.node)
        .get('allowed')
        ?.map((n) => evaluate(n, infra.main))[0],
    ).toEqual(expect.arrayContaining(['User', 'ServicePrincipal']));
    expect(prop(infra.mainModule('app/rbac.bicep').body, 'params.userPrincipalType')?.text).toBe('principalType');
  });

  it('outputs what azd and the README use', () => {
    const names = [...outputs(infra.main).keys()];
    expect(names).toEqual(
      expect.arrayContaining([
        'AZURE_LOCATION',
        'AZURE_TENANT_ID',
        'AZURE_RESOURCE_GROUP',
        'AZURE_FUNCTION_APP_NAME',
        'AZURE_FUNCTION_APP_URL',
        'AZURE_KEY_VAULT_NAME',
        'AZURE_KEY_VAULT_URL',
        'AZURE_STORAGE_ACCOUNT_NAME',
        'AZURE_MANAGED_IDENTITY_PRINCIPAL_ID',
      ]),
    );
  });
});

describe('azure.yaml', () => {
  const yaml = readFileSync(join(PROJECT_ROOT, 'azure.yaml'), 'utf8');

  it('deploys the project root as a TypeScript Function App service with infra/main.bicep', () => {
    expect(yaml).toMatch(/^name: defender-relay$/m);
    expect(yaml).toMatch(/^infra:\n {2}provider: bicep\n {2}path: infra\n {2}module: main$/m);
    expect(yaml).toMatch(/^services:\n {2}api:\n {4}project: \.\n {4}language: ts\n {4}host: function$/m);
  });

  it("tags the Function App, and only it, with the service's name, so azd deploy finds one resource", () => {
    const service = yaml.match(/^services:\n {2}([\w-]+):$/m)?.[1];
    const api = infra.mainModule('app/api.bicep');
    expect(evaluate(prop(api.body, 'params.serviceName')!, infra.main)).toBe(service);
    expect(evaluate(prop(api.body, 'params.tags')!, infra.main), 'the tags every resource gets').not.toHaveProperty(
      'azd-service-name',
    );
    const apiResources = resources(infra.file('app/api.bicep'));
    const site = apiResources.find((r) => r.type === 'Microsoft.Web/sites')!;
    expect(prop(site.body, 'tags')?.text).toBe("union(tags, { 'azd-service-name': serviceName })");
    // azd before 1.23.4 fails deploy when the plan carries the tag too ("expecting only '1' resource tagged").
    const plan = apiResources.find((r) => r.type === 'Microsoft.Web/serverfarms')!;
    expect(prop(plan.body, 'tags')?.text).toBe('tags');
    expect(infra.files.filter((f) => f.text.includes("'azd-service-name'")).map((f) => f.name)).toEqual([
      'app/api.bicep',
    ]);
  });
});
