import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';

/**
 * `@azure/identity` loads on the first token request, not when the app is imported: with MSAL it is
 * about a third of the deployed bundle, and a cold start on Flex Consumption imports every function
 * file before the first invocation (`npm run bench`, figure 6). The bundle keeps it in a chunk of its
 * own (scripts/bundle.ts splits at dynamic imports).
 */
export type IdentitySdk = typeof import('@azure/identity');

let sdk: Promise<IdentitySdk> | undefined;

export function loadIdentity(): Promise<IdentitySdk> {
  return (sdk ??= import('@azure/identity'));
}

/** A credential built from the SDK when it is first asked for a token, then kept (with its token cache). */
export function lazyCredential(build: (identity: IdentitySdk) => TokenCredential): TokenCredential {
  let credential: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
      credential ??= loadIdentity().then(build);
      return (await credential).getToken(scopes, options);
    },
  };
}
