import type { TokenCredential } from '@azure/identity';
import type { SecretClient } from '@azure/keyvault-secrets';
import { createAppCredential } from './app-identity.js';
import { getConfig, type AppConfig } from './config.js';
import { createSecretClient } from './keyvault.js';
import { createStorageClients, type StorageClients } from './storage.js';

/** The process-wide clients, built once from configuration (the composition root of the app). */
export interface Services {
  config: AppConfig;
  appCredential: TokenCredential;
  storage: StorageClients;
  secrets: SecretClient;
}

let services: Services | undefined;

export function getServices(): Services {
  if (!services) {
    const config = getConfig();
    const appCredential = createAppCredential(config);
    services = {
      config,
      appCredential,
      storage: createStorageClients(config.storage),
      secrets: createSecretClient(config, appCredential),
    };
  }
  return services;
}
