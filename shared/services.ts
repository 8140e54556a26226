import type { TokenCredential } from '@azure/identity';
import type { SecretClient } from '@azure/keyvault-secrets';
import { createAppCredential } from './auth/app-identity.js';
import { CheckpointStore, CHECKPOINTS_TABLE } from './ingest/checkpoints.js';
import { getConfig, type AppConfig } from './config/config.js';
import { DefenderTokenProvider } from './auth/credentials.js';
import { DefenderClient } from './sources/defender/client.js';
import { GRAPH_BUDGET, GraphClient } from './sources/graph/client.js';
import { GraphIncidentApi } from './sources/graph/incident-api.js';
import { createSecretClient } from './auth/keyvault.js';
import { MessageSender } from './storage/queues.js';
import { SecretCache } from './auth/secrets.js';
import { createStorageClients, type StorageClients } from './storage/storage.js';
import { TenantStatusStore, TENANT_STATUS_TABLE } from './tenants/tenant-status.js';
import { TenantRegistry, TENANTS_TABLE } from './tenants/tenants.js';
import { createWebhookAuthenticator, type WebhookAuthenticator } from './api/webhook-auth.js';
import { ReplayGuard, WEBHOOK_REPLAY_TABLE } from './api/replay-guard.js';
import { loadWebhookAccess, type WebhookAccess } from './api/webhook-access.js';
import { UserContext } from './auth/user-context.js';
import { DeliveryLog, DELIVERY_LOG_TABLE } from './route/delivery-log.js';
import { CALL_BUDGET_TABLE, SharedCallBudget } from './sources/shared-budget.js';

/** The process-wide clients, built once from configuration (the composition root of the app). */
export interface Services {
  config: AppConfig;
  appCredential: TokenCredential;
  storage: StorageClients;
  secrets: SecretClient;
  secretCache: SecretCache;
  tokens: DefenderTokenProvider;
  defender: DefenderClient;
  /** Tokens for Microsoft Graph, for tenants whose source is `graph`. */
  graphTokens: DefenderTokenProvider;
  graph: GraphClient;
  /** The enricher's and write-back's calls for Graph tenants, in the Defender client's terms. */
  graphIncidents: GraphIncidentApi;
  registry: TenantRegistry;
  checkpoints: CheckpointStore;
  tenantStatus: TenantStatusStore;
  sender: MessageSender;
  /** What the enricher has delivered, per event and destination. */
  deliveryLog: DeliveryLog;
  /** Who may push incidents for which tenant (WEBHOOK_ALLOWED_TENANT_IDS and the webhook access file), read once. */
  webhookAccess: () => WebhookAccess;
  /** Who may push incidents to POST /api/incidents (Entra token with the app role, or HMAC signature). */
  webhookAuth: WebhookAuthenticator;
  /** Signed pushes already accepted, across instances. */
  replayGuard: ReplayGuard;
  /** Acts for signed-in analysts (on-behalf-of); holds their Defender credentials between calls. */
  userContext: UserContext;
}

let services: Services | undefined;

/** `appCredential` overrides the app's own identity (the CLI signs in as the operator). */
export function createServices(config: AppConfig, overrides: { appCredential?: TokenCredential } = {}): Services {
  const appCredential = overrides.appCredential ?? createAppCredential(config);
  const storage = createStorageClients(config.storage, appCredential);
  const secrets = createSecretClient(config, appCredential);
  const secretCache = new SecretCache(secrets);
  const tokens = new DefenderTokenProvider({
    secrets: secretCache,
    entra: config.entra,
    appCredential,
    scope: config.defender.scope,
  });
  // One budget per tenant across every instance of the app (Flex Consumption scales out).
  const defender = new DefenderClient({
    apiUrl: config.defender.apiUrl,
    tokens,
    budget: new SharedCallBudget(storage.table(CALL_BUDGET_TABLE)),
  });
  const graphTokens = new DefenderTokenProvider({
    secrets: secretCache,
    entra: config.entra,
    appCredential,
    scope: config.graph.scope,
    apiName: 'Microsoft Graph',
  });
  // Graph's limits are its own (150 requests a minute per app per tenant): a budget of its own, shared the same way.
  const graph = new GraphClient({
    apiUrl: config.graph.apiUrl,
    tokens: graphTokens,
    budget: new SharedCallBudget(storage.table(CALL_BUDGET_TABLE), { limits: GRAPH_BUDGET }),
  });
  const registry = new TenantRegistry(storage.table(TENANTS_TABLE));
  let access: WebhookAccess | undefined;
  // Read when a push first needs it: a broken file fails pushes (and the start-up check), not the pollers.
  const webhookAccess = () => (access ??= loadWebhookAccess(config.webhook));
  return {
    config,
    appCredential,
    storage,
    secrets,
    secretCache,
    tokens,
    defender,
    graphTokens,
    graph,
    graphIncidents: new GraphIncidentApi(graph),
    registry,
    checkpoints: new CheckpointStore(storage.table(CHECKPOINTS_TABLE)),
    tenantStatus: new TenantStatusStore(storage.table(TENANT_STATUS_TABLE)),
    sender: new MessageSender(storage.queues, storage.blobs),
    deliveryLog: new DeliveryLog(storage.table(DELIVERY_LOG_TABLE)),
    webhookAccess,
    webhookAuth: createWebhookAuthenticator(config, secretCache, webhookAccess),
    replayGuard: new ReplayGuard(storage.table(WEBHOOK_REPLAY_TABLE), {
      windowSeconds: config.webhook.hmacToleranceSeconds,
    }),
    userContext: new UserContext({
      config,
      secrets: secretCache,
      registry,
      budget: defender.budget,
      graphBudget: graph.budget,
    }),
  };
}

export function getServices(): Services {
  services ??= createServices(getConfig());
  return services;
}
