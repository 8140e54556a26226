import { randomBytes, randomUUID } from 'node:crypto';

/**
 * The demo world `npm start` seeds: an MSSP ("Contoso SOC") whose relay reads three customer tenants,
 * one in the application context (the customer's own app registration, secret in Key Vault) and two in
 * the partner context (the MSSP's multi-tenant app, consented by each customer's admin), one of which
 * grants only Microsoft Graph permissions and is read through the Graph security API. Every id and
 * secret is new on each start: these are throwaway local values.
 */
export type TenantContext = 'application' | 'partner';
/** The API a tenant's incidents are read through (the registry's `source`). */
export type TenantSource = 'defender' | 'graph';

export interface DemoTenant {
  tenantId: string;
  displayName: string;
  context: TenantContext;
  source: TenantSource;
  /** The app registration that reads this tenant's incidents. */
  clientId: string;
  /** The Key Vault secret holding that app's client secret. */
  clientSecretName: string;
  /** The HMAC key this tenant's own systems sign pushes with: granted this tenant alone. */
  pushKey: { secretName: string; key: string };
  incidentCount: number;
  seed: number;
}

export interface DemoApp {
  name: string;
  clientId: string;
  clientSecret: string;
  homeTenantId: string;
  multiTenant: boolean;
  consentedTenants: string[];
  /** Its Defender API roles, granted where a tenant read through the Defender API consented. */
  roles: string[];
  /** Its Microsoft Graph roles, granted where a tenant read through Graph consented. */
  graphRoles: string[];
}

export interface DemoUser {
  tenantId: string;
  userPrincipalName: string;
  password: string;
  displayName: string;
}

export interface DemoWorld {
  provider: { tenantId: string; displayName: string };
  tenants: DemoTenant[];
  /** The identity the app uses where Azure would give it a managed identity. */
  appIdentity: { tenantId: string; clientId: string; clientSecret: string };
  apps: DemoApp[];
  /** The relay's own API (audience of webhook and analyst tokens; also the on-behalf-of app). */
  relayApi: { clientId: string; clientSecret: string; identifierUri: string; homeTenantId: string };
  webhookClient: { tenantId: string; clientId: string; clientSecret: string; scope: string };
  /** A public client (no secret, like a CLI or SPA) the analyst signs in with to call the relay API. */
  analystClient: { clientId: string; homeTenantId: string };
  analyst: DemoUser;
  /** Fabrikam's push key (its `pushKey.key`), for callers that sign webhook pushes with HMAC instead of sending a token. */
  webhookHmacKey: string;
  /** The key the relay signs its deliveries to the demo SIEM webhook with. */
  siemHmacKey: string;
}

/** Key Vault secret names the demo stores (the app reads them by these names from its settings). */
export const RELAY_API_SECRET_NAME = 'relay-api-client-secret';
export const WEBHOOK_HMAC_SECRET_NAME = 'webhook-hmac-key';

export const DEFENDER_RESOURCE = 'https://api.security.microsoft.com';
export const DEFENDER_APP_ROLES = ['Incident.Read.All', 'Incident.ReadWrite.All', 'AdvancedHunting.Read.All'];
export const DEFENDER_DELEGATED_SCOPES = ['Incident.Read', 'Incident.ReadWrite', 'AdvancedHunting.Read'];
export const GRAPH_RESOURCE = 'https://graph.microsoft.com';
/**
 * Graph's application permissions the demo's Graph tenant grants: incidents (security-list-incidents.md),
 * ReadWrite for the write-back, and advanced hunting (security-security-runhuntingquery.md).
 */
export const GRAPH_APP_ROLES = ['SecurityIncident.ReadWrite.All', 'ThreatHunting.Read.All'];
export const RELAY_API_URI = 'api://defender-relay';
export const RELAY_SUBMIT_ROLE = 'Incidents.Submit';
export const RELAY_USER_SCOPE = 'access_as_user';

const secret = () => randomBytes(24).toString('base64url');

export function createDemoWorld(): DemoWorld {
  const provider = { tenantId: randomUUID(), displayName: 'Contoso SOC (MSSP)' };
  const fabrikam = { tenantId: randomUUID(), displayName: 'Fabrikam' };
  const northwind = { tenantId: randomUUID(), displayName: 'Northwind Traders' };
  const woodgrove = { tenantId: randomUUID(), displayName: 'Woodgrove Bank' };

  const fabrikamApp: DemoApp = {
    name: 'fabrikam-defender-reader',
    clientId: randomUUID(),
    clientSecret: secret(),
    homeTenantId: fabrikam.tenantId,
    multiTenant: false,
    consentedTenants: [fabrikam.tenantId],
    roles: DEFENDER_APP_ROLES,
    graphRoles: [],
  };
  const partnerApp: DemoApp = {
    name: 'contoso-mssp-relay',
    clientId: randomUUID(),
    clientSecret: secret(),
    homeTenantId: provider.tenantId,
    multiTenant: true,
    consentedTenants: [northwind.tenantId, woodgrove.tenantId],
    roles: DEFENDER_APP_ROLES,
    graphRoles: GRAPH_APP_ROLES,
  };
  const appIdentity = { tenantId: provider.tenantId, clientId: randomUUID(), clientSecret: secret() };
  const relayApi = {
    clientId: randomUUID(),
    clientSecret: secret(),
    identifierUri: RELAY_API_URI,
    homeTenantId: provider.tenantId,
  };
  const webhookClient = {
    tenantId: provider.tenantId,
    clientId: randomUUID(),
    clientSecret: secret(),
    scope: `${RELAY_API_URI}/.default`,
  };

  const webhookHmacKey = secret();
  return {
    provider,
    tenants: [
      {
        ...fabrikam,
        context: 'application',
        source: 'defender',
        clientId: fabrikamApp.clientId,
        clientSecretName: 'tenant-fabrikam-client-secret',
        pushKey: { secretName: WEBHOOK_HMAC_SECRET_NAME, key: webhookHmacKey },
        incidentCount: 60,
        seed: 1,
      },
      {
        ...northwind,
        context: 'partner',
        source: 'defender',
        clientId: partnerApp.clientId,
        clientSecretName: 'partner-app-client-secret',
        pushKey: { secretName: 'northwind-push-hmac-key', key: secret() },
        incidentCount: 40,
        seed: 2,
      },
      {
        ...woodgrove,
        context: 'partner',
        source: 'graph',
        clientId: partnerApp.clientId,
        clientSecretName: 'partner-app-client-secret',
        pushKey: { secretName: 'woodgrove-push-hmac-key', key: secret() },
        incidentCount: 30,
        seed: 3,
      },
    ],
    appIdentity,
    apps: [fabrikamApp, partnerApp],
    relayApi,
    webhookClient,
    analystClient: { clientId: randomUUID(), homeTenantId: provider.tenantId },
    webhookHmacKey,
    siemHmacKey: secret(),
    analyst: {
      tenantId: fabrikam.tenantId,
      userPrincipalName: 'analyst@fabrikam.example',
      password: secret(),
      displayName: 'Fabrikam SOC Analyst',
    },
  };
}
