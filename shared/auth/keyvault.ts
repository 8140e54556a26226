import type { TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import type { AppConfig } from '../config/config.js';

export function createSecretClient(config: AppConfig, credential: TokenCredential): SecretClient {
  return new SecretClient(config.keyVault.url, credential, {
    // Only ever true locally, where the vault is not on *.vault.azure.net.
    disableChallengeResourceVerification: config.keyVault.disableChallengeResourceVerification,
  });
}
