import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createDemoWorld } from '../../local/demo.js';
import { appSettingsFor } from '../../local/stack.js';
import { CHECKPOINTS_TABLE } from '../../shared/ingest/checkpoints.js';
import { settingsSchema, SETTING_NAMES } from '../../shared/config/config.js';
import { deadLetterQueueOf, poisonQueueOf } from '../../shared/messages/dead-letter.js';
import { DELIVERY_LOG_TABLE } from '../../shared/route/delivery-log.js';
import { ROUTED_PAYLOADS_CONTAINER } from '../../shared/route/destinations/queue.js';
import { CLAIM_CHECK_CONTAINER, QUEUE_NAMES } from '../../shared/storage/queues.js';
import { WEBHOOK_REPLAY_TABLE } from '../../shared/api/replay-guard.js';
import { QUEUE_NAME } from '../../shared/route/routing.js';
import { TENANT_STATUS_TABLE } from '../../shared/tenants/tenant-status.js';
import { TENANTS_TABLE } from '../../shared/tenants/tenants.js';
import {
  evaluate,
  loadInfra,
  params,
  prop,
  properties,
  PROJECT_ROOT,
  resources,
  UNKNOWN,
  vars,
  type BicepFile,
  type Infra,
  type Node,
} from '../support/bicep.js';

/**
 * The Bicep and the code agree: the queues, tables and containers the code uses are created, and
 * the app settings are exactly the ones shared/config/config.ts reads (the expectations come from the code).
 */

let infra: Infra;
beforeAll(async () => {
  infra = await loadInfra();
});

/** The names main.bicep passes to the storage module for one kind of child, evaluated. */
function createdNames(param: 'queueNames' | 'tableNames' | 'containerNames', childType: string): unknown[] {
  const storageFile = infra.file('core/storage.bicep');
  const child = resources(storageFile).find((r) => r.type === childType);
  expect(child?.loop?.collection.text, `core/storage.bicep creates one ${childType} per ${param}`).toBe(param);
  expect(prop(child!.body, 'name')?.text).toBe(child!.loop!.item);
  const value = evaluate(prop(infra.mainModule('core/storage.bicep').body, `params.${param}`)!, infra.main);
  expect(Array.isArray(value), `main.bicep's ${param} can be evaluated offline`).toBe(true);
  return value as unknown[];
}

/** Every `export const X_TABLE|X_CONTAINER = '…'` in shared/: a new one must be created too. */
function namedConstants(suffix: 'TABLE' | 'CONTAINER'): Map<string, string> {
  const found = new Map<string, string>();
  const dir = join(PROJECT_ROOT, 'shared');
  for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
    for (const m of readFileSync(join(dir, file), 'utf8').matchAll(
      new RegExp(`export const (\\w+_${suffix}) = '([^']+)'`, 'g'),
    )) {
      found.set(`shared/${file}: ${m[1]}`, m[2]!);
    }
  }
  return found;
}

describe('storage the code uses', () => {
  it('creates every work queue with its dead-letter and poison queue, and the routed queues', () => {
    const workQueues = Object.values(QUEUE_NAMES).filter(
      (q) => !Object.values(QUEUE_NAMES).some((other) => poisonQueueOf(other) === q),
    );
    const expected = workQueues.flatMap((q) => [q, deadLetterQueueOf(q), poisonQueueOf(q)]);
    const created = createdNames('queueNames', 'Microsoft.Storage/storageAccounts/queueServices/queues');
    expect(
      expected.filter((q) => !created.includes(q)),
      'queues the code uses that the Bicep does not create',
    ).toEqual([]);
    expect(created).toEqual(expect.arrayContaining(['routed-high', 'routed-archive']));
    for (const name of created) expect(String(name), 'a valid queue name').toMatch(QUEUE_NAME);
  });

  it('every queue-triggered function listens on a queue the code names in QUEUE_NAMES', () => {
    const dir = join(PROJECT_ROOT, 'functions');
    const triggers = readdirSync(dir)
      .filter((f) => f.endsWith('.ts'))
      .flatMap((f) =>
        [
          ...readFileSync(join(dir, f), 'utf8').matchAll(/app\.storageQueue\('(\w+)', \{[^}]*?queueName: ([^,}]+)/g),
        ].map((m) => ({ file: f, queue: m[2]!.trim() })),
      );
    expect(triggers.length).toBeGreaterThan(0);
    for (const t of triggers)
      expect(t.queue, `${t.file}: a queue trigger names its queue through QUEUE_NAMES`).toMatch(/^QUEUE_NAMES\.\w+$/);
  });

  it('creates every table the code uses', () => {
    const expected = [TENANTS_TABLE, CHECKPOINTS_TABLE, TENANT_STATUS_TABLE, DELIVERY_LOG_TABLE, WEBHOOK_REPLAY_TABLE];
    const created = createdNames('tableNames', 'Microsoft.Storage/storageAccounts/tableServices/tables');
    expect(expected.filter((t) => !created.includes(t))).toEqual([]);
    const missing = [...namedConstants('TABLE')]
      .filter(([, table]) => !created.includes(table))
      .map(([where, table]) => `${where} = '${table}'`);
    expect(missing, 'tables named in shared/ that the Bicep does not create').toEqual([]);
  });

  it('creates the claim-check containers and the deployment package container', () => {
    const created = createdNames('containerNames', 'Microsoft.Storage/storageAccounts/blobServices/containers');
    expect(created).toEqual(expect.arrayContaining([CLAIM_CHECK_CONTAINER, ROUTED_PAYLOADS_CONTAINER]));
    const missing = [...namedConstants('CONTAINER')]
      .filter(([, c]) => !created.includes(c))
      .map(([where, c]) => `${where} = '${c}'`);
    expect(missing, 'containers named in shared/ that the Bicep does not create').toEqual([]);
    expect(
      created.filter((c) => c === UNKNOWN),
      'the deployment container (its name is computed at deploy time)',
    ).toHaveLength(1);
  });
});

// ---- app settings ----------------------------------------------------------------------------

/** Settings the platform reads, not shared/config/config.ts. */
const PLATFORM_SETTINGS = ['APPLICATIONINSIGHTS_CONNECTION_STRING', 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'];

/** Settings the code reads only when it runs locally; never set in Azure. */
const LOCAL_ONLY_SETTINGS = [
  'AzureWebJobsStorage',
  'AZURE_CLIENT_SECRET',
  'KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION',
  'DESTINATION_ALLOW_LOOPBACK',
  'ENTRA_DISABLE_INSTANCE_DISCOVERY',
];

/** Settings an SDK (not shared/config/config.ts) reads that only the local stack sets: nothing about the SDK leaves the machine. */
const LOCAL_SDK_SETTINGS = ['APPLICATION_INSIGHTS_NO_STATSBEAT'];

/** Settings Azure sets that the demo leaves at their defaults (each has one in shared/config/config.ts). */
const OPTIONAL_SETTINGS_LEFT_UNSET_LOCALLY = [
  'POLL_MAX_PAGES_PER_RUN',
  'WEBHOOK_REQUIRED_ROLE',
  'WEBHOOK_HMAC_TOLERANCE_SECONDS',
  'WEBHOOK_MAX_BODY_BYTES',
  'DESTINATION_TIMEOUT_MS',
];

/** Flex Consumption rejects these: the runtime is in functionAppConfig. */
const REJECTED_ON_FLEX = [
  'FUNCTIONS_WORKER_RUNTIME',
  'WEBSITE_NODE_DEFAULT_VERSION',
  'FUNCTIONS_EXTENSION_VERSION',
  'WEBSITE_RUN_FROM_PACKAGE',
  'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING',
  'WEBSITE_CONTENTSHARE',
];

interface Setting {
  name: string;
  value: Node;
  file: BicepFile;
}

/**
 * The settings an object expression sets: object literals, vars, union(...), and a module parameter,
 * followed to what main.bicep passes for it.
 */
function settingsOf(node: Node, file: BicepFile): Setting[] {
  if (node.type === 'object') return [...properties(node)].map(([name, value]) => ({ name, value, file }));
  if (node.type === 'call_expression' && node.childForFieldName('function')?.text === 'union') {
    return (node.childForFieldName('arguments')?.namedChildren ?? []).flatMap((arg) => settingsOf(arg, file));
  }
  if (node.type === 'identifier') {
    const variable = vars(file).get(node.text);
    if (variable) return settingsOf(variable, file);
    if (params(file).some((p) => p.name === node.text)) {
      const caller = infra.mainModule(file.name);
      const passed = prop(caller.body, `params.${node.text}`);
      if (passed) return settingsOf(passed, infra.main);
    }
  }
  throw new Error(
    `${file.name} line ${node.startPosition.row + 1}: cannot tell which settings '${node.text.slice(0, 60)}' sets`,
  );
}

function appSettings(): Setting[] {
  const file = infra.file('app/api.bicep');
  const config = resources(file).filter(
    (r) => r.type === 'Microsoft.Web/sites/config' && evaluate(prop(r.body, 'name')!, file) === 'appsettings',
  );
  expect(config, 'one appsettings resource').toHaveLength(1);
  return settingsOf(prop(config[0]!.body, 'properties')!, file);
}

describe('app settings', () => {
  it("are exactly the settings shared/config/config.ts reads (minus local-only ones) plus the platform's", () => {
    const set = appSettings().map((s) => s.name);
    const expected = [...SETTING_NAMES.filter((n) => !LOCAL_ONLY_SETTINGS.includes(n)), ...PLATFORM_SETTINGS];
    expect(new Set(set).size, 'no setting is set twice').toBe(set.length);
    expect(
      expected.filter((n) => !set.includes(n)),
      'settings the code reads that the Bicep does not set',
    ).toEqual([]);
    expect(
      set.filter((n) => !expected.includes(n)),
      'settings the Bicep sets that the code does not read',
    ).toEqual([]);
  });

  it('never sets a local-only setting or one Flex Consumption rejects', () => {
    const set = appSettings().map((s) => s.name);
    expect(
      set.filter((n) => LOCAL_ONLY_SETTINGS.includes(n) || REJECTED_ON_FLEX.includes(n)),
      'local-only or Flex-rejected settings set in Azure',
    ).toEqual([]);
    expect(
      LOCAL_ONLY_SETTINGS.filter((n) => !(SETTING_NAMES as string[]).includes(n)),
      'local-only settings the code no longer reads (drop them from this list)',
    ).toEqual([]);
  });

  it('connects host storage and telemetry through the managed identity', () => {
    const byName = new Map(appSettings().map((s) => [s.name, s]));
    expect(
      evaluate(
        byName.get('AzureWebJobsStorage__credential')!.value,
        byName.get('AzureWebJobsStorage__credential')!.file,
      ),
    ).toBe('managedidentity');
    expect(byName.get('AzureWebJobsStorage__clientId')?.value.text).toBe('identityClientId');
    expect(byName.get('AZURE_CLIENT_ID')?.value.text).toBe('identityClientId');
    for (const service of ['blob', 'queue', 'table']) {
      expect(byName.get(`AzureWebJobsStorage__${service}ServiceUri`)?.value.text).toBe(
        `storageAccount.properties.primaryEndpoints.${service}`,
      );
    }
    expect(byName.get('APPLICATIONINSIGHTS_AUTHENTICATION_STRING')?.value.text).toBe(
      "'ClientId=${identityClientId};Authorization=AAD'",
    );
    expect(byName.get('KEY_VAULT_URL')?.value.text).toBe('keyVault.outputs.uri');
    expect(prop(infra.mainModule('app/api.bicep').body, 'params.identityClientId')?.text).toBe(
      'identity.outputs.clientId',
    );
  });

  it('are the settings the local stack runs the app with (npm start): identity-based storage, no secret', () => {
    const local = appSettingsFor(
      createDemoWorld(),
      {
        blobUrl: 'https://127.0.0.1:1/devstoreaccount1',
        queueUrl: 'https://127.0.0.1:2/devstoreaccount1',
        tableUrl: 'https://127.0.0.1:3/devstoreaccount1',
        managedIdentityClientId: randomUUID(),
      },
      {
        entra: { url: 'https://localhost:4' },
        keyVault: { url: 'https://localhost:5' },
        defender: { url: 'https://localhost:6' },
        graph: { url: 'https://localhost:8' },
        routesFile: 'routes.json',
        webhookAccessFile: 'webhook-access.json',
        appInsights: { connectionString: 'InstrumentationKey=x;IngestionEndpoint=https://localhost:7/' },
      } as unknown as Parameters<typeof appSettingsFor>[2],
    );
    const inAzure = appSettings().map((s) => s.name);
    const runsLocally = Object.keys(local);
    expect(
      inAzure.filter((n) => !runsLocally.includes(n) && !OPTIONAL_SETTINGS_LEFT_UNSET_LOCALLY.includes(n)),
      'settings Azure gives the app that npm start does not',
    ).toEqual([]);
    expect(
      runsLocally.filter(
        (n) =>
          !inAzure.includes(n) &&
          !LOCAL_ONLY_SETTINGS.includes(n) &&
          !LOCAL_SDK_SETTINGS.includes(n) &&
          !REJECTED_ON_FLEX.includes(n),
      ),
      'settings npm start gives the app that Azure does not',
    ).toEqual([]);
    expect(
      runsLocally.filter((n) => ['AzureWebJobsStorage', 'AZURE_CLIENT_SECRET'].includes(n)),
      'a connection string or secret npm start should not need',
    ).toEqual([]);
    expect(local.AzureWebJobsStorage__clientId).toBe(local.AZURE_CLIENT_ID);
    // Telemetry as in Azure: to the component, with the app's managed identity (infra/app/api.bicep).
    expect(local.APPLICATIONINSIGHTS_AUTHENTICATION_STRING).toBe(`ClientId=${local.AZURE_CLIENT_ID};Authorization=AAD`);
  });

  it("every value known before deployment passes the code's own validation of that setting", () => {
    const problems: string[] = [];
    for (const setting of appSettings()) {
      const value = evaluate(setting.value, setting.file);
      const schema = settingsSchema.shape[setting.name as keyof typeof settingsSchema.shape];
      if (value === UNKNOWN || !schema || value === '') continue; // '' is unset for loadConfig
      const result = schema.safeParse(value);
      if (!result.success)
        problems.push(`${setting.name} = ${JSON.stringify(value)}: ${result.error.issues[0]?.message}`);
    }
    expect(problems).toEqual([]);
  });
});
