import type { TokenCredential } from '@azure/identity';
import type { AppConfig } from '../config/config.js';
import { lazyCredential } from './lazy-identity.js';

/**
 * The credential the app itself uses (Key Vault, Storage): the Function App's user-assigned managed
 * identity in Azure; locally a client secret stands in for it (the Entra stand-in issues its tokens).
 */
export function createAppCredential(config: AppConfig, options: { developerSignIn?: boolean } = {}): TokenCredential {
  const { tenantId, clientId, clientSecret } = config.appIdentity;
  if (clientSecret && tenantId && clientId) {
    return lazyCredential(
      ({ ClientSecretCredential }) =>
        new ClientSecretCredential(tenantId, clientId, clientSecret, {
          authorityHost: config.entra.authorityHost,
          disableInstanceDiscovery: config.entra.disableInstanceDiscovery,
        }),
    );
  }
  // The CLI on a workstation has no managed identity: it acts as the signed-in operator (az or azd login),
  // unless a managed-identity endpoint is at hand (the local stack's settings name one).
  if (options.developerSignIn && !process.env.IDENTITY_ENDPOINT)
    return lazyCredential(
      ({ ChainedTokenCredential, AzureCliCredential, AzureDeveloperCliCredential }) =>
        new ChainedTokenCredential(new AzureCliCredential({ tenantId }), new AzureDeveloperCliCredential({ tenantId })),
    );
  return managedIdentityCredential(clientId);
}

/**
 * The Function App's managed identity: user-assigned when a client id is given, else system-assigned.
 * Locally the stack's managed-identity stand-in answers (IDENTITY_ENDPOINT), as App Service does in Azure.
 */
export function managedIdentityCredential(clientId?: string): TokenCredential {
  return lazyCredential(({ ManagedIdentityCredential }) =>
    clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential(),
  );
}
