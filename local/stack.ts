import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { TENANT_CREDENTIAL_TAGS } from '../shared/auth/credential-fence.js';
import { pollRequest } from '../shared/ingest/ingest.js';
import { MessageSender, QUEUE_NAMES } from '../shared/storage/queues.js';
import { readJsonConfigFile } from '../shared/config/config-file.js';
import { loadRoutingRules, queueNamesOf, RoutingConfigError } from '../shared/route/routing.js';
import { TenantRegistry, TENANTS_TABLE } from '../shared/tenants/tenants.js';
import type { WebhookAccessFile } from '../shared/api/webhook-access.js';
import { startReceiver, withReceiverUrls, type RunningReceiver } from './receiver.js';
import { startAzurite, stopChild, type RunningAzurite } from './azurite.js';
import type { StackTls } from './stack-tls.js';
import { FaultBoard } from './common/faults.js';
import type { KeyAndCert } from './common/tls.js';
import { startDefender, type DefenderStandIn } from './defender/server.js';
import { generateIncidents } from './defender/generator.js';
import { generateGraphTenant, startGraph, type GraphStandIn } from './graph/server.js';
import {
  createDemoWorld,
  DEFENDER_APP_ROLES,
  DEFENDER_DELEGATED_SCOPES,
  DEFENDER_RESOURCE,
  GRAPH_APP_ROLES,
  GRAPH_RESOURCE,
  RELAY_API_SECRET_NAME,
  RELAY_SUBMIT_ROLE,
  RELAY_USER_SCOPE,
  type DemoWorld,
} from './demo.js';
import { startEntra, type EntraStandIn } from './entra/server.js';
import { startKeyVault, type KeyVaultStandIn } from './keyvault/server.js';
import { startAppInsights, type AppInsightsStandIn } from './appinsights/server.js';
import { addRelayRule, withLogsIngestion } from './logs-ingestion/demo.js';
import { startLogsIngestion, type LogsIngestionStandIn } from './logs-ingestion/server.js';

/** The queues the app uses; created up front so a person can watch them from the first second. */
export const QUEUES = { ...QUEUE_NAMES, routed: [] as string[] };

/** Where the demo's routing rules come from (a template whose webhook URLs point at the local receivers). */
export const DEMO_ROUTES_TEMPLATE = 'local/demo-routes.json';
export const SIEM_HMAC_SECRET_NAME = 'siem-hmac-key';

/** `.local/stack.json`: how any program (tests, scripts, people) finds the running stack. */
export interface StackInfo {
  /** The first instance of the local host (all of them are in `hosts`). */
  host: string;
  /** Every instance of the local host, in order: one app, N instances, as Azure scales it out. */
  hosts: string[];
  /**
   * The process id of each instance's host process, in the order of `hosts` (empty with --no-host). Each
   * host runs the app in a worker process of its own, which ends when its host does: tests kill an
   * instance by this pid (e.g. SIGKILL mid-batch) to see the others take over its messages.
   */
  hostPids: number[];
  caCertPath: string;
  storage: { connectionString: string; queueUrl: string; tableUrl: string; blobUrl: string };
  entra: { authorityHost: string; controlUrl: string };
  keyVault: { url: string; tenantId: string };
  defender: { url: string; controlUrl: string };
  /** The Microsoft Graph security API stand-in, where tenants whose source is `graph` are read. */
  graph: { url: string; controlUrl: string };
  /** The Application Insights component's ingestion stand-in; `controlUrl` serves what arrived (`/telemetry`, `/summary`). */
  appInsights: { ingestionEndpoint: string; connectionString: string; controlUrl: string };
  /**
   * The Logs Ingestion stand-in (a data collection endpoint) and its rule, which the demo routes' `sentinel`
   * destination sends to; `controlUrl` serves the rows (`/rows`, `/problems`, `/summary`).
   */
  logsIngestion: { endpoint: string; controlUrl: string; ruleId: string; streamName: string };
  tenants: {
    tenantId: string;
    displayName: string;
    context: 'application' | 'partner';
    source: 'defender' | 'graph';
    clientId: string;
    clientSecretName: string;
    /** The tenant's push key (HMAC): signs pushes for this tenant alone. */
    pushKey: string;
  }[];
  appIdentity: { tenantId: string; clientId: string; clientSecret: string };
  demoApps: {
    name: string;
    clientId: string;
    clientSecret: string;
    homeTenantId: string;
    multiTenant: boolean;
    consentedTenants: string[];
    roles: string[];
    graphRoles: string[];
  }[];
  webhookClient: { tenantId: string; clientId: string; clientSecret: string; scope: string };
  /** The HMAC key for signed webhook pushes (throwaway, like every value here). */
  webhookHmacKey: string;
  relayApi: { clientId: string; clientSecret: string; identifierUri: string; tenantId: string };
  users: {
    tenantId: string;
    userPrincipalName: string;
    password: string;
    displayName: string;
    clientId: string;
    scope: string;
  }[];
  queues: typeof QUEUES;
  /** The local HTTPS receivers the demo routes' webhook destinations point at. */
  receivers: { siem: string; teams: string; slack: string };
  appSettings: Record<string, string>;
}

export interface StackOptions {
  /** The CA and server certificate every HTTPS part of the stack serves (this process must trust the CA). */
  tls: StackTls;
  /** Port of the local Functions host (7071 like `func start`; 0 for any free port); further instances take the next ports. */
  hostPort?: number;
  /** How many instances of the app to run: separate host processes, same settings and host id (default 1). */
  instances?: number;
  /** Where stack.json, the CA certificate and local.settings.json are written. */
  stateDir?: string;
  /** Directory of the Functions app (its package.json `main` lists the functions). */
  appDir?: string;
  /** Start the Functions host (false: only Azurite and the stand-ins). */
  startHost?: boolean;
  log?: (line: string) => void;
  /** Receives every line a host prints (its function logs), with the instance's index (0 for the first). */
  onHostLine?: (line: string, instance: number) => void;
  /** Routing rules to run with instead of the demo's (used as they are; the host's start-up check judges them). */
  routesFile?: string;
}

export interface RunningStack {
  info: StackInfo;
  world: DemoWorld;
  entra: EntraStandIn;
  keyVault: KeyVaultStandIn;
  defender: DefenderStandIn;
  graph: GraphStandIn;
  appInsights: AppInsightsStandIn;
  logsIngestion: LogsIngestionStandIn;
  faults: FaultBoard;
  azurite: RunningAzurite;
  receivers: StandIns['receivers'];
  /** The first instance's process (all of them are in `hostProcesses`). */
  hostProcess?: ChildProcess;
  hostProcesses: ChildProcess[];
  stop(): Promise<void>;
}

/**
 * Identity-based storage, as `infra/app/api.bicep` configures the app in Azure: service URIs and the
 * app's user-assigned managed identity, no connection string and no client secret.
 */
export interface IdentityBasedStorage {
  blobUrl: string;
  queueUrl: string;
  tableUrl: string;
  managedIdentityClientId: string;
}

/** In-process tests: a connection string, and a client secret standing in for the managed identity. */
function sharedKeySettings(world: DemoWorld, connectionString: string): Record<string, string> {
  return {
    AzureWebJobsStorage: connectionString,
    AZURE_TENANT_ID: world.appIdentity.tenantId,
    AZURE_CLIENT_ID: world.appIdentity.clientId,
    AZURE_CLIENT_SECRET: world.appIdentity.clientSecret,
  };
}

/** The names and meaning of `platformSettings` in infra/app/api.bicep (a test holds them equal). */
function identitySettings(world: DemoWorld, storage: IdentityBasedStorage): Record<string, string> {
  return {
    AzureWebJobsStorage__credential: 'managedidentity',
    AzureWebJobsStorage__clientId: storage.managedIdentityClientId,
    AzureWebJobsStorage__blobServiceUri: storage.blobUrl,
    AzureWebJobsStorage__queueServiceUri: storage.queueUrl,
    AzureWebJobsStorage__tableServiceUri: storage.tableUrl,
    AZURE_TENANT_ID: world.provider.tenantId,
    AZURE_CLIENT_ID: storage.managedIdentityClientId,
  };
}

/**
 * Telemetry to the component's stand-in, as `infra/app/api.bicep` sets it (the connection string, and Entra
 * authentication with the user-assigned identity: `ClientId=…;Authorization=AAD`; without that identity,
 * `Authorization=AAD`), and statsbeat off, so that nothing goes to Microsoft's own statsbeat components
 * (the documented Node.js switch: local/appinsights/README.md). Not set in Azure.
 */
function telemetrySettings(appInsights: AppInsightsStandIn, managedIdentityClientId?: string): Record<string, string> {
  return {
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.connectionString,
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: managedIdentityClientId
      ? `ClientId=${managedIdentityClientId};Authorization=AAD`
      : 'Authorization=AAD',
    APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
  };
}

/** The app settings the Functions app reads, pointing it at the local stack. */
export function appSettingsFor(
  world: DemoWorld,
  storage: string | IdentityBasedStorage,
  {
    entra,
    keyVault,
    defender,
    graph,
    routesFile,
    webhookAccessFile,
    appInsights,
  }: Pick<StandIns, 'entra' | 'keyVault' | 'defender' | 'routesFile'> &
    Partial<Pick<StandIns, 'graph' | 'webhookAccessFile' | 'appInsights'>>,
): Record<string, string> {
  return {
    FUNCTIONS_WORKER_RUNTIME: 'node',
    ...(typeof storage === 'string' ? sharedKeySettings(world, storage) : identitySettings(world, storage)),
    KEY_VAULT_URL: keyVault.url,
    KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
    ENTRA_AUTHORITY_HOST: entra.url,
    ENTRA_DISABLE_INSTANCE_DISCOVERY: 'true',
    DEFENDER_API_URL: defender.url,
    ...(graph ? { GRAPH_API_URL: graph.url } : {}),
    POLL_SCHEDULE: '0 */1 * * * *',
    RELAY_API_CLIENT_ID: world.relayApi.clientId,
    RELAY_API_URI: world.relayApi.identifierUri,
    RELAY_API_SECRET_NAME,
    WEBHOOK_ALLOWED_TENANT_IDS: world.webhookClient.tenantId,
    ...(webhookAccessFile ? { WEBHOOK_ACCESS_FILE: webhookAccessFile } : {}),
    ROUTES_FILE: routesFile,
    DESTINATION_ALLOWED_HOSTS: 'localhost',
    DESTINATION_ALLOW_LOOPBACK: 'true',
    ...(appInsights
      ? telemetrySettings(appInsights, typeof storage === 'string' ? undefined : storage.managedIdentityClientId)
      : {}),
  };
}

/** Registers the demo world in Entra, Key Vault, Defender and Graph (each tenant's incidents where its source reads them). */
export async function seedWorld(
  world: DemoWorld,
  entra: EntraStandIn,
  keyVault: KeyVaultStandIn,
  defender: DefenderStandIn,
  graph?: GraphStandIn,
): Promise<void> {
  const { registry } = entra;
  registry.addTenant(world.provider);
  for (const tenant of world.tenants)
    registry.addTenant({ tenantId: tenant.tenantId, displayName: tenant.displayName });

  registry.addApp({
    clientId: world.appIdentity.clientId,
    displayName: 'defender-relay (app identity)',
    homeTenantId: world.appIdentity.tenantId,
    multiTenant: false,
    secrets: [world.appIdentity.clientSecret],
  });
  keyVault.grant(
    registry.servicePrincipalId(world.appIdentity.tenantId, world.appIdentity.clientId)!,
    'Key Vault Secrets User',
  );

  for (const app of world.apps) {
    registry.addApp({
      clientId: app.clientId,
      displayName: app.name,
      homeTenantId: app.homeTenantId,
      multiTenant: app.multiTenant,
      secrets: [app.clientSecret],
    });
    // A customer consents to what the tenant's source needs: Defender API roles, or Graph's alone.
    for (const tenantId of app.consentedTenants) {
      const graphOnly = world.tenants.find((t) => t.tenantId === tenantId)?.source === 'graph';
      if (graphOnly) registry.grantAppPermissions(tenantId, app.clientId, GRAPH_RESOURCE, app.graphRoles);
      else registry.grantAppPermissions(tenantId, app.clientId, DEFENDER_RESOURCE, app.roles);
    }
  }
  for (const tenant of world.tenants) {
    const app = world.apps.find((a) => a.clientId === tenant.clientId)!;
    // Tagged as a tenant credential, as the onboarding steps store them (one secret per app); the relay's own secrets below are not.
    await keyVault.store.setSecret(tenant.clientSecretName, app.clientSecret, {
      contentType: 'client-secret',
      tags: { ...TENANT_CREDENTIAL_TAGS },
    });
  }
  await keyVault.store.setSecret(RELAY_API_SECRET_NAME, world.relayApi.clientSecret, { contentType: 'client-secret' });
  // Push keys are the relay's own secrets: never tagged as tenant credentials.
  for (const tenant of world.tenants)
    await keyVault.store.setSecret(tenant.pushKey.secretName, tenant.pushKey.key, { contentType: 'hmac-key' });

  // The relay's own API: webhook callers get app tokens for it; analysts sign in to it and it acts for them (OBO).
  const { relayApi, webhookClient, analyst, analystClient } = world;
  registry.addApp({
    clientId: relayApi.clientId,
    displayName: 'defender-relay API',
    homeTenantId: relayApi.homeTenantId,
    multiTenant: true,
    secrets: [relayApi.clientSecret],
    identifierUri: relayApi.identifierUri,
    appRoles: [RELAY_SUBMIT_ROLE],
    delegatedScopes: [RELAY_USER_SCOPE],
    // Neither infra/ nor the README sets accessTokenAcceptedVersion, so the registration keeps Entra's default:
    // v1.0 tokens (the README's "Token versions" says how to set 2).
    accessTokenVersion: 1,
  });
  registry.addApp({
    clientId: webhookClient.clientId,
    displayName: 'demo webhook sender',
    homeTenantId: webhookClient.tenantId,
    multiTenant: false,
    secrets: [webhookClient.clientSecret],
  });
  registry.grantAppPermissions(webhookClient.tenantId, webhookClient.clientId, relayApi.identifierUri, [
    RELAY_SUBMIT_ROLE,
  ]);
  registry.addUser(analyst);
  registry.addApp({
    clientId: analystClient.clientId,
    displayName: 'defender-relay analyst client',
    homeTenantId: analystClient.homeTenantId,
    multiTenant: true,
  });
  registry.grantDelegatedPermissions(analyst.tenantId, analystClient.clientId, relayApi.identifierUri, [
    RELAY_USER_SCOPE,
  ]);
  registry.grantDelegatedPermissions(analyst.tenantId, relayApi.clientId, DEFENDER_RESOURCE, DEFENDER_DELEGATED_SCOPES);

  for (const tenant of world.tenants) {
    const generate = { tenantId: tenant.tenantId, count: tenant.incidentCount, seed: tenant.seed };
    if (tenant.source === 'graph') {
      if (!graph)
        throw new Error(`${tenant.displayName} is read through Microsoft Graph: seedWorld needs the Graph stand-in`);
      graph.store.provisionTenant(tenant.tenantId, tenant.displayName);
      graph.store.seed(tenant.tenantId, generateGraphTenant(generate));
    } else {
      defender.store.provisionTenant(tenant.tenantId, tenant.displayName);
      defender.store.upsert(tenant.tenantId, generateIncidents(generate));
    }
  }
}

function describeStack(
  world: DemoWorld,
  appSettings: Record<string, string>,
  parts: {
    hosts: string[];
    hostPids: number[];
    caCertPath: string;
    azurite: RunningAzurite;
    entra: EntraStandIn;
    keyVault: KeyVaultStandIn;
    defender: DefenderStandIn;
    graph: GraphStandIn;
    appInsights: AppInsightsStandIn;
    logsIngestion: StandIns['logsIngestion'];
    sentinelRule: StandIns['sentinelRule'];
    queues: StackInfo['queues'];
    receivers: StandIns['receivers'];
  },
): StackInfo {
  return {
    host: parts.hosts[0]!,
    hosts: parts.hosts,
    hostPids: parts.hostPids,
    caCertPath: parts.caCertPath,
    storage: {
      connectionString: parts.azurite.connectionString,
      queueUrl: parts.azurite.queueUrl,
      tableUrl: parts.azurite.tableUrl,
      blobUrl: parts.azurite.blobUrl,
    },
    entra: { authorityHost: parts.entra.url, controlUrl: `${parts.entra.url}/_control` },
    keyVault: { url: parts.keyVault.url, tenantId: parts.keyVault.tenantId },
    defender: { url: parts.defender.url, controlUrl: parts.defender.controlUrl },
    graph: { url: parts.graph.url, controlUrl: parts.graph.controlUrl },
    appInsights: {
      ingestionEndpoint: parts.appInsights.url,
      connectionString: parts.appInsights.connectionString,
      controlUrl: parts.appInsights.controlUrl,
    },
    logsIngestion: {
      endpoint: parts.logsIngestion.url,
      controlUrl: parts.logsIngestion.controlUrl,
      ...parts.sentinelRule,
    },
    tenants: world.tenants.map(({ tenantId, displayName, context, source, clientId, clientSecretName, pushKey }) => ({
      tenantId,
      displayName,
      context,
      source,
      clientId,
      clientSecretName,
      pushKey: pushKey.key,
    })),
    appIdentity: world.appIdentity,
    demoApps: world.apps,
    webhookClient: world.webhookClient,
    webhookHmacKey: world.webhookHmacKey,
    relayApi: {
      clientId: world.relayApi.clientId,
      clientSecret: world.relayApi.clientSecret,
      identifierUri: world.relayApi.identifierUri,
      tenantId: world.relayApi.homeTenantId,
    },
    users: [
      {
        ...world.analyst,
        clientId: world.analystClient.clientId,
        scope: `${world.relayApi.identifierUri}/${RELAY_USER_SCOPE}`,
      },
    ],
    queues: parts.queues,
    receivers: { siem: parts.receivers.siem.url, teams: parts.receivers.teams.url, slack: parts.receivers.slack.url },
    appSettings,
  };
}

export interface StandIns {
  entra: EntraStandIn;
  keyVault: KeyVaultStandIn;
  defender: DefenderStandIn;
  graph: GraphStandIn;
  /** The Application Insights component the app sends its telemetry to (Entra tokens of the provider's tenant). */
  appInsights: AppInsightsStandIn;
  /** The Logs Ingestion API (a data collection endpoint) the demo routes' Sentinel destination sends rows to. */
  logsIngestion: LogsIngestionStandIn;
  /** Its data collection rule, declaring the relay's row (infra/core/sentinel.bicep's). */
  sentinelRule: { ruleId: string; streamName: string };
  /** Local HTTPS receivers standing in for the SIEM, Teams and Slack webhooks of the demo routes. */
  receivers: { siem: RunningReceiver; teams: RunningReceiver; slack: RunningReceiver };
  /** The demo routing file, written with the receivers' URLs. */
  routesFile: string;
  /** The demo's webhook access file: who may push for which demo tenant. */
  webhookAccessFile: string;
  /** The queues the routes send to in the app's own account. */
  routedQueues: string[];
  close(): Promise<void>;
}

/** Starts the Entra ID, Key Vault, Defender and Application Insights stand-ins in this process and seeds the demo world. */
export async function startStandIns(options: {
  tls: KeyAndCert;
  faults: FaultBoard;
  world: DemoWorld;
  appDir?: string;
  stateDir?: string;
  routesFile?: string;
}): Promise<StandIns> {
  const { tls, faults, world } = options;
  const appDir = resolve(options.appDir ?? process.cwd());
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'defender-relay-routes-'));
  const started: { close(): Promise<void> }[] = [];
  const close = async () => {
    await Promise.all(started.map((s) => s.close().catch(() => undefined)));
  };
  try {
    const entra = await startEntra({ tls, faults });
    started.push(entra);
    const keyVault = await startKeyVault({
      tls,
      verifier: entra.verifier,
      tenantId: world.provider.tenantId,
      authorityHost: entra.url,
      faults,
    });
    started.push(keyVault);
    const defender = await startDefender({ tls, verifier: entra.verifier, faults });
    started.push(defender);
    const graph = await startGraph({ tls, verifier: entra.verifier, faults, authorityHost: entra.url });
    started.push(graph);
    const appInsights = await startAppInsights({ tls, verifier: entra.verifier, tenantId: world.provider.tenantId });
    started.push(appInsights);
    const logsIngestion = await startLogsIngestion({
      tls,
      verifier: entra.verifier,
      tenantId: world.provider.tenantId,
    });
    started.push(logsIngestion);
    const sentinelRule = addRelayRule(logsIngestion);
    const receivers = {
      siem: await startReceiver({ tls, hmacKey: world.siemHmacKey }),
      teams: await startReceiver({ tls }),
      slack: await startReceiver({ tls }),
    };
    started.push(...Object.values(receivers));
    await seedWorld(world, entra, keyVault, defender, graph);
    await keyVault.store.setSecret(SIEM_HMAC_SECRET_NAME, world.siemHmacKey, { contentType: 'hmac-key' });
    // The app's identity publishes telemetry, as infra/app/rbac.bicep grants.
    appInsights.grant(entra.registry.servicePrincipalId(world.appIdentity.tenantId, world.appIdentity.clientId)!);
    // And Sentinel rows, with Monitoring Metrics Publisher on the data collection rule (infra/app/rbac.bicep).
    logsIngestion.grant(
      entra.registry.servicePrincipalId(world.appIdentity.tenantId, world.appIdentity.clientId)!,
      sentinelRule.ruleId,
    );

    const { routesFile, routedQueues } = options.routesFile
      ? givenRoutes(options.routesFile)
      : demoRoutes(appDir, stateDir, receivers, { endpoint: logsIngestion.url, ruleId: sentinelRule.ruleId });
    const webhookAccessFile = join(stateDir, 'webhook-access.json');
    writeFileSync(webhookAccessFile, JSON.stringify(demoWebhookAccess(world), null, 2));
    return {
      entra,
      keyVault,
      defender,
      graph,
      appInsights,
      logsIngestion,
      sentinelRule,
      receivers,
      routesFile,
      webhookAccessFile,
      routedQueues,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Who may push for whom in the demo: the MSSP's automation app (in the provider's tenant) for every
 * customer, and each customer's own push key (its SIEM signing its own incidents) for that customer alone.
 */
export function demoWebhookAccess(world: DemoWorld): WebhookAccessFile {
  return {
    description: 'The local demo: generated by npm start',
    callers: [
      {
        name: 'contoso-soc-automation',
        tenantId: world.webhookClient.tenantId,
        appId: world.webhookClient.clientId,
        mayPushFor: world.tenants.map((t) => t.tenantId),
      },
    ],
    hmacKeys: world.tenants.map((t) => ({
      name: `${t.displayName.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-siem`,
      secretName: t.pushKey.secretName,
      mayPushFor: [t.tenantId],
    })),
  };
}

const LOCAL_DESTINATIONS = { allowedHosts: ['localhost'], allowLoopback: true };

/**
 * The demo routes, written with the receivers' URLs and the Logs Ingestion stand-in's endpoint and rule.
 * The template is checked first, so that a mistake in it is reported at its own line (the written copy is
 * laid out differently).
 */
function demoRoutes(
  appDir: string,
  stateDir: string,
  receivers: StandIns['receivers'],
  sentinel: { endpoint: string; ruleId: string },
): { routesFile: string; routedQueues: string[] } {
  const templateFile = join(appDir, DEMO_ROUTES_TEMPLATE);
  loadRoutingRules(templateFile, LOCAL_DESTINATIONS);
  const template = readJsonConfigFile(templateFile, 'ROUTES_FILE').value as Parameters<typeof withReceiverUrls>[0];
  const routesFile = join(stateDir, 'routes.json');
  writeFileSync(
    routesFile,
    JSON.stringify(
      withLogsIngestion(
        withReceiverUrls(template, {
          siem: receivers.siem.url,
          teams: receivers.teams.url,
          slack: receivers.slack.url,
        }),
        sentinel,
      ),
      null,
      2,
    ),
  );
  return { routesFile, routedQueues: queueNamesOf(loadRoutingRules(routesFile, LOCAL_DESTINATIONS)) };
}

/** Routes the user gave (`npm start -- --routes FILE`): used as they are. Rules that do not load are the host's to refuse. */
function givenRoutes(file: string): { routesFile: string; routedQueues: string[] } {
  const routesFile = resolve(file);
  try {
    return { routesFile, routedQueues: queueNamesOf(loadRoutingRules(routesFile, LOCAL_DESTINATIONS)) };
  } catch (err) {
    if (!(err instanceof RoutingConfigError)) throw err;
    return { routesFile, routedQueues: [] };
  }
}

/** Adds the demo tenants to the app's tenant registry, as `npm run tenants -- add` would. */
export async function registerDemoTenants(world: DemoWorld, storageConnectionString: string): Promise<void> {
  const registry = new TenantRegistry(
    TableClient.fromConnectionString(storageConnectionString, TENANTS_TABLE, { allowInsecureConnection: true }),
  );
  for (const t of world.tenants) {
    await registry.put({
      tenantId: t.tenantId,
      displayName: t.displayName,
      context: t.context,
      source: t.source,
      clientId: t.clientId,
      credential: { kind: 'secret', secretName: t.clientSecretName },
      // The generated incidents span the last 30 days: read them all on the first poll.
      firstRunLookbackHours: 24 * 30,
    });
  }
}

/** Where a partner-context tenant is onboarded: the stand-ins, the relay's tenant registry, and the MSSP's app. */
export interface PartnerTenantTargets {
  entra: EntraStandIn;
  defender: DefenderStandIn;
  /** Where tenants read through Microsoft Graph are provisioned. */
  graph?: GraphStandIn;
  registry: TenantRegistry;
  /** The multi-tenant app the customer consents to (partner context). */
  partnerApp: { clientId: string };
  /** The Key Vault secret holding that app's client secret (already stored). */
  partnerSecretName: string;
}

/**
 * A customer tenant read in the partner context, as the onboarding steps make one: known to Entra,
 * consented to the partner app, provisioned in the Defender stand-in, or with `source: 'graph'` the Graph
 * one (with `incidents` updated in the last 12 hours), and registered in the relay (reading back 24 hours
 * on its first poll). The benchmarks and the fault suite onboard many such tenants.
 */
export async function addPartnerTenant(
  targets: PartnerTenantTargets,
  options: {
    tenantId: string;
    displayName: string;
    incidents: number;
    seed: string;
    now?: number;
    redirectedShare?: number;
    /** The API the relay reads the tenant through (default `defender`). */
    source?: 'defender' | 'graph';
  },
): Promise<void> {
  const { entra, defender, graph } = targets;
  const source = options.source ?? 'defender';
  const now = options.now ?? Date.now();
  entra.registry.addTenant({ tenantId: options.tenantId, displayName: options.displayName });
  const generate = {
    tenantId: options.tenantId,
    count: options.incidents,
    seed: options.seed,
    since: new Date(now - 12 * 3_600_000),
    until: new Date(now - 60_000),
    redirectedShare: options.redirectedShare ?? 0,
  };
  if (source === 'graph') {
    if (!graph) throw new Error(`${options.displayName} is read through Microsoft Graph: give the Graph stand-in`);
    entra.registry.grantAppPermissions(options.tenantId, targets.partnerApp.clientId, GRAPH_RESOURCE, GRAPH_APP_ROLES);
    graph.store.provisionTenant(options.tenantId, options.displayName);
    if (options.incidents > 0) graph.store.seed(options.tenantId, generateGraphTenant(generate));
  } else {
    entra.registry.grantAppPermissions(
      options.tenantId,
      targets.partnerApp.clientId,
      DEFENDER_RESOURCE,
      DEFENDER_APP_ROLES,
    );
    defender.store.provisionTenant(options.tenantId, options.displayName);
    if (options.incidents > 0) defender.store.upsert(options.tenantId, generateIncidents(generate));
  }
  await targets.registry.put({
    tenantId: options.tenantId,
    displayName: options.displayName,
    context: 'partner',
    source,
    clientId: targets.partnerApp.clientId,
    credential: { kind: 'secret', secretName: targets.partnerSecretName },
    firstRunLookbackHours: 24,
  });
}

/** Starts the Functions host as a child process and waits for its ready line. */
function startHostProcess(
  appDir: string,
  port: number,
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
): Promise<{ child: ChildProcess; url: string }> {
  const entry = resolve(appDir, 'dist', 'local', 'host', 'main.js');
  const child = spawn(process.execPath, [entry, '--app', appDir, '--port', String(port)], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error('The local Functions host did not become ready within 60 s')),
      60_000,
    );
    let ready = false;
    // What the host said last: why it stopped, when it stops before it is ready.
    const said: string[] = [];
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        onLine(line);
        if (!ready) said.splice(0, Math.max(0, said.push(line) - 40));
        const m = /Host ready: (http:\/\/\S+)/.exec(line);
        if (m && !ready) {
          ready = true;
          clearTimeout(timer);
          resolvePromise({ child, url: m[1]! });
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (ready) return;
      const failed = said.findIndex((line) => line.startsWith('Host failed to start:'));
      const why = failed >= 0 ? said.slice(failed) : said.slice(-10);
      reject(
        new Error(
          `The local Functions host exited during start-up (code ${code})${why.length > 0 ? `:\n${why.join('\n')}` : ''}`,
        ),
      );
    });
  });
}

/**
 * One stack per state directory: a second `npm start` there would overwrite the running stack's CA,
 * settings and stack file. The lock names the process holding it; a lock left by a process that is
 * gone is taken over. Returns the release.
 */
export function lockStateDir(stateDir: string): () => void {
  const lock = join(stateDir, 'stack.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }), { flag: 'wx' });
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      let holder: { pid?: number; startedAt?: string } = {};
      try {
        holder = JSON.parse(readFileSync(lock, 'utf8')) as typeof holder;
      } catch {
        // Unreadable: treat as stale.
      }
      if (typeof holder.pid === 'number' && isAlive(holder.pid)) {
        throw new Error(
          `A local stack is already running from ${stateDir} (process ${holder.pid}, started ${holder.startedAt ?? 'at an unknown time'}): ` +
            'stop it first (Ctrl-C where it runs), or start another one with --state-dir <another folder> (and --port <another port>).',
        );
      }
      rmSync(lock, { force: true });
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Fails before anything starts when the host's port is taken, naming the port and how to choose another. */
export async function ensurePortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((done, fail) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      fail(
        err.code === 'EADDRINUSE'
          ? new Error(
              `Port ${port} is in use (another npm start, func start or app?): stop what holds it, or choose another port with npm start -- --port <port> (or FUNCTIONS_PORT).`,
            )
          : err,
      );
    });
    probe.listen(port, '127.0.0.1', () => probe.close(() => done()));
  });
}

/**
 * The Function App's user-assigned managed identity, assigned to the local app as `infra/` assigns it,
 * with the vault role and (given the component, and the Logs Ingestion stand-in's rules) the Monitoring
 * Metrics Publisher roles `infra/` grants it.
 * Storage roles are not checked locally (Azurite's OAuth check reads the token's issuer, audience and
 * lifetime only).
 */
export function assignAppIdentity(
  world: DemoWorld,
  entra: EntraStandIn,
  keyVault: KeyVaultStandIn,
  appInsights?: AppInsightsStandIn,
  logsIngestion?: LogsIngestionStandIn,
): { clientId: string; principalId: string } {
  const identity = entra.registry.addManagedIdentity({ name: 'id-defender-relay', tenantId: world.provider.tenantId });
  entra.msi.assign(identity.clientId);
  keyVault.grant(identity.principalId, 'Key Vault Secrets User');
  appInsights?.grant(identity.principalId, 'Monitoring Metrics Publisher');
  for (const rule of logsIngestion?.rules() ?? []) logsIngestion!.grant(identity.principalId, rule.immutableId);
  return { clientId: identity.clientId, principalId: identity.principalId };
}

/** The most instances `npm start` runs: each is a host and a worker process on a small machine. */
export const MAX_INSTANCES = 8;

/** The instances' ports: consecutive from hostPort (default 7071), or all 0 (any free port). */
export function hostPorts(options: Pick<StackOptions, 'hostPort' | 'instances'>): number[] {
  const instances = options.instances ?? 1;
  if (!Number.isInteger(instances) || instances < 1 || instances > MAX_INSTANCES)
    throw new Error(`instances must be a whole number from 1 to ${MAX_INSTANCES}, not ${instances}.`);
  const first = options.hostPort ?? 7071;
  if (first + instances - 1 > 65535)
    throw new Error(`${instances} instances from port ${first} would need ports beyond 65535.`);
  return Array.from({ length: instances }, (_, i) => (first === 0 ? 0 : first + i));
}

export async function startStack(options: StackOptions): Promise<RunningStack> {
  const log = options.log ?? (() => undefined);
  const appDir = resolve(options.appDir ?? process.cwd());
  const stateDir = resolve(options.stateDir ?? join(appDir, '.local'));
  mkdirSync(stateDir, { recursive: true });
  const unlock = lockStateDir(stateDir);
  try {
    if (options.startHost !== false) for (const port of hostPorts(options)) await ensurePortFree(port);
  } catch (err) {
    unlock();
    throw err;
  }

  const { tls } = options;
  const caCertPath = join(stateDir, 'ca.pem');
  writeFileSync(caCertPath, tls.caCertPem);
  const faults = new FaultBoard();
  const world = createDemoWorld();

  const cleanups: (() => Promise<void>)[] = [async () => unlock()];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    // The local host runs the configuration Azure runs: Storage over HTTPS with the managed identity's
    // tokens (the stack itself and tools use the account key). Without it (--no-host, for func start),
    // the .NET host, which trusts only the system's CAs, gets Azurite on HTTP and a connection string,
    // the local configuration of Core Tools' own templates.
    const asInAzure = options.startHost !== false;
    const azurite = await startAzurite({
      onLog: () => undefined,
      ...(asInAzure ? { https: { certPath: tls.certPath, keyPath: tls.keyPath } } : {}),
    });
    cleanups.push(() => azurite.stop());
    log(`Azurite       queues ${azurite.queueUrl}  tables ${azurite.tableUrl}  blobs ${azurite.blobUrl}`);

    const standIns = await startStandIns({ tls, faults, world, appDir, stateDir, routesFile: options.routesFile });
    cleanups.push(() => standIns.close());
    const { entra, keyVault, defender, graph, appInsights, logsIngestion } = standIns;
    log(`Entra ID      ${entra.url}  (authority host)`);
    log(`Key Vault     ${keyVault.url}`);
    log(`Defender API  ${defender.url}  (control ${defender.controlUrl})`);
    log(`Graph API     ${graph.url}  (security incidents; control ${graph.controlUrl})`);
    log(`App Insights  ${appInsights.url}  (ingestion and live endpoint; control ${appInsights.controlUrl})`);
    log(
      `Sentinel      ${logsIngestion.url}  (Logs Ingestion: rule ${standIns.sentinelRule.ruleId}, ${standIns.sentinelRule.streamName}; control ${logsIngestion.controlUrl})`,
    );
    const queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
    const queueNames = { ...QUEUES, routed: standIns.routedQueues };
    for (const name of [queueNames.pollRequests, queueNames.incidents, queueNames.poison, ...queueNames.routed])
      await queues.getQueueClient(name).createIfNotExists();

    await registerDemoTenants(world, azurite.connectionString);
    const identity = assignAppIdentity(world, entra, keyVault, appInsights, logsIngestion);
    const storage = asInAzure
      ? {
          blobUrl: azurite.blobUrl,
          queueUrl: azurite.queueUrl,
          tableUrl: azurite.tableUrl,
          managedIdentityClientId: identity.clientId,
        }
      : azurite.connectionString;
    const appSettings = appSettingsFor(world, storage, standIns);
    log(
      asInAzure
        ? `App identity  managed identity ${identity.clientId} (identity endpoint ${entra.msi.endpoint}); Storage identity-based, as in Azure`
        : `App identity  client secret of app registration ${world.appIdentity.clientId}; Storage by connection string (for func start)`,
    );
    // What App Service puts in the app's environment for its managed identity (not app settings).
    const platform: Record<string, string> = asInAzure
      ? { IDENTITY_ENDPOINT: entra.msi.endpoint, IDENTITY_HEADER: entra.msi.header }
      : {};
    // The settings name the CA that signs the stand-ins' HTTPS and the identity endpoint: func start passes
    // Values to the worker as its environment, and the CLI uses both.
    writeFileSync(
      join(stateDir, 'local.settings.json'),
      JSON.stringify(
        { IsEncrypted: false, Values: { ...appSettings, ...platform, NODE_EXTRA_CA_CERTS: caCertPath } },
        null,
        2,
      ),
    );

    let hosts = hostPorts(options).map((port) => `http://localhost:${port}`);
    const hostProcesses: ChildProcess[] = [];
    if (options.startHost !== false) {
      const env = { ...process.env, ...appSettings, ...platform, NODE_EXTRA_CA_CERTS: caCertPath };
      const onLine = options.onHostLine ?? (() => undefined);
      // Every instance at once, as Azure starts them; one that fails to start stops the stack.
      const started = await Promise.allSettled(
        hostPorts(options).map((port, i) => startHostProcess(appDir, port, env, (line) => onLine(line, i))),
      );
      const running = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
      for (const { child } of running) cleanups.push(() => stopChild(child, 10_000));
      const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed) throw failed.reason;
      hostProcesses.push(...running.map(({ child }) => child));
      hosts = running.map(({ url }) => url);
      for (const [i, url] of hosts.entries())
        log(`Functions     ${url}/api${hosts.length > 1 ? `  (instance ${i + 1})` : ''}`);
    }

    // Poll every demo tenant now rather than at the next timer tick, so incidents flow from the first seconds.
    const sender = new MessageSender(queues, async () =>
      BlobServiceClient.fromConnectionString(azurite.connectionString),
    );
    for (const tenant of world.tenants) await sender.send(QUEUES.pollRequests, pollRequest(tenant.tenantId, 'manual'));

    const info = describeStack(world, appSettings, {
      hosts,
      hostPids: hostProcesses.flatMap(({ pid }) => (pid === undefined ? [] : [pid])),
      caCertPath,
      azurite,
      entra,
      keyVault,
      defender,
      graph,
      appInsights,
      logsIngestion,
      sentinelRule: standIns.sentinelRule,
      queues: queueNames,
      receivers: standIns.receivers,
    });
    writeFileSync(join(stateDir, 'stack.json'), JSON.stringify(info, null, 2));
    return {
      info,
      world,
      entra,
      keyVault,
      defender,
      graph,
      appInsights,
      logsIngestion,
      faults,
      azurite,
      receivers: standIns.receivers,
      hostProcess: hostProcesses[0],
      hostProcesses,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
