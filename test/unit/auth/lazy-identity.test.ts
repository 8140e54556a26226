import * as identity from '@azure/identity';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';
import { describe, expect, it } from 'vitest';
import { lazyCredential, loadIdentity } from '../../../shared/auth/lazy-identity.js';

describe('lazyCredential (the Identity SDK loads on the first token request)', () => {
  it('builds the credential once, on the first request, and passes every request through to it', async () => {
    const builds: unknown[] = [];
    const requests: [string | string[], GetTokenOptions | undefined][] = [];
    const credential = lazyCredential((sdk) => {
      builds.push(sdk.ManagedIdentityCredential);
      return {
        getToken: async (scopes, options): Promise<AccessToken> => {
          requests.push([scopes, options]);
          return { token: `token-${requests.length}`, expiresOnTimestamp: 0 };
        },
      } satisfies TokenCredential;
    });
    expect(builds).toEqual([]);
    const [a, b] = await Promise.all([
      credential.getToken('https://api.security.microsoft.com/.default', { tenantId: 't1' }),
      credential.getToken(['https://storage.azure.com/.default']),
    ]);
    expect(builds).toEqual([identity.ManagedIdentityCredential]);
    expect([a?.token, b?.token]).toEqual(['token-1', 'token-2']);
    expect(requests).toEqual([
      ['https://api.security.microsoft.com/.default', { tenantId: 't1' }],
      [['https://storage.azure.com/.default'], undefined],
    ]);
    await credential.getToken('x');
    expect(builds).toHaveLength(1);
  });

  it("passes the credential's failures on unchanged", async () => {
    const refused = new identity.CredentialUnavailableError('no managed identity endpoint');
    const credential = lazyCredential(() => ({
      getToken: () => Promise.reject(refused),
    }));
    await expect(credential.getToken('x')).rejects.toBe(refused);
  });

  it('loads the SDK once', async () => {
    expect(await loadIdentity()).toBe(await loadIdentity());
    expect((await loadIdentity()).ClientSecretCredential).toBe(identity.ClientSecretCredential);
  });
});
