import { randomUUID } from 'node:crypto';
import { ClientSecretCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { startKeyVault, type KeyVaultStandIn } from '../../../local/keyvault/server.js';

/**
 * The whole chain as the app runs it: the real ClientSecretCredential gets its token from the Entra
 * stand-in (tenant and scope taken from the vault's challenge), the real SecretClient reads the secret.
 * The only local settings: the credential's authorityHost and disableInstanceDiscovery, and the client's
 * disableChallengeResourceVerification.
 */
describe('Key Vault stand-in with the Entra stand-in and ClientSecretCredential', () => {
  let entra: EntraStandIn;
  let vault: KeyVaultStandIn;
  const tenantId = randomUUID();
  const app = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
  const vaultLog: string[] = [];

  beforeAll(async () => {
    entra = await startEntra({ tls: inject('tls') });
    vault = await startKeyVault({
      tls: inject('tls'),
      verifier: entra.verifier,
      tenantId,
      authorityHost: entra.url,
      log: (l) => vaultLog.push(l),
    });
    entra.registry.addTenant({ tenantId, displayName: 'Vault tenant' });
    entra.registry.addApp({
      clientId: app.clientId,
      displayName: 'relay',
      homeTenantId: tenantId,
      multiTenant: false,
      secrets: [app.secret],
    });
  });
  afterAll(async () => {
    await vault?.close();
    await entra?.close();
  });

  const clientFor = (secret: string) =>
    new SecretClient(
      vault.url,
      new ClientSecretCredential(tenantId, app.clientId, secret, {
        authorityHost: entra.url,
        disableInstanceDiscovery: true,
      }),
      { disableChallengeResourceVerification: true },
    );

  it("reads a secret with a token Entra issued for the vault, once the app's service principal has a role", async () => {
    vault.store.setSecret('tenant-a-client-secret', 'value-from-vault');
    const client = clientFor(app.secret);
    await expect(client.getSecret('tenant-a-client-secret')).rejects.toMatchObject({
      statusCode: 403,
      code: 'Forbidden',
    });

    const servicePrincipalId = entra.registry.servicePrincipalId(tenantId, app.clientId);
    expect(servicePrincipalId).toBeDefined();
    vault.grant(servicePrincipalId as string, 'Key Vault Secrets User');
    expect((await client.getSecret('tenant-a-client-secret')).value).toBe('value-from-vault');
  });

  it('never reaches the vault with a wrong client secret: the credential fails at Entra', async () => {
    vaultLog.length = 0;
    // @azure/identity wraps MSAL's invalid_client ServerError as AuthenticationRequiredError, as it does against Azure.
    await expect(clientFor('not-the-secret').getSecret('tenant-a-client-secret')).rejects.toThrow(/invalid_client/);
    expect(vaultLog).toEqual([
      expect.stringMatching(/^keyvault GET \/secrets\/tenant-a-client-secret\/ 401 Unauthorized$/),
    ]);
  });
});
