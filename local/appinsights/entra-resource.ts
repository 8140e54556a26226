import type { EntraRegistry } from '../entra/registry.js';
import { AZURE_MONITOR_RESOURCE } from './auth.js';

/**
 * Makes the Entra stand-in issue tokens for Azure Monitor (`https://monitor.azure.com/.default`), which its
 * list of Microsoft first-party resources lacks (it knows Defender, Key Vault and Storage): without it a
 * credential asking for an ingestion token gets AADSTS500011 (resource not found).
 *
 * A stop-gap, from outside the Entra stand-in: Azure Monitor is registered as a multi-tenant API app
 * (identifier URI `https://monitor.azure.com`, v1 tokens as first-party resources issue, no app roles: access
 * is Azure RBAC on the component) with a service principal in each tenant that asks for tokens. Its proper
 * home is the first-party list in `local/entra/registry.ts` (like Key Vault: `rbacOnly`); once it is there,
 * this does nothing. The app id is the stand-in's own, not Azure Monitor's.
 */
export const AZURE_MONITOR_STAND_IN_APP_ID = '5a0e5c5e-a11d-4c7e-9b7e-0a2e1c5ab0e1';

export function registerAzureMonitor(registry: EntraRegistry, tenantIds: string[]): void {
  const [home] = tenantIds;
  if (!home) return;
  const known = (tenantId: string) => registry.resolveResource(AZURE_MONITOR_RESOURCE, tenantId) !== undefined;
  if (tenantIds.every(known)) return;
  if (!registry.app(AZURE_MONITOR_STAND_IN_APP_ID)) {
    registry.addApp({
      clientId: AZURE_MONITOR_STAND_IN_APP_ID,
      displayName: 'Azure Monitor (stand-in registration)',
      homeTenantId: home,
      multiTenant: true,
      identifierUri: AZURE_MONITOR_RESOURCE,
      accessTokenVersion: 1,
    });
  }
  for (const tenantId of tenantIds) registry.consent(tenantId, AZURE_MONITOR_STAND_IN_APP_ID);
}
