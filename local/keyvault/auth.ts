import { decodeJwt } from 'jose';
import { TokenRejectedError, type TokenVerifier } from '../common/bearer.js';
import { issuerFor } from '../entra/token-issuer.js';
import { KeyVaultError } from './errors.js';

/** The resource Key Vault tokens are issued for; the SDK turns it into the scope `https://vault.azure.net/.default`. */
export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';
const ACCEPTED_AUDIENCES = [KEY_VAULT_RESOURCE, `${KEY_VAULT_RESOURCE}/`];

export type VaultRole = 'Key Vault Secrets User' | 'Key Vault Secrets Officer';

/** The RBAC data actions the stand-in checks, named as Azure names them in its 403 answers. */
export type SecretAction =
  | 'Microsoft.KeyVault/vaults/secrets/getSecret/action'
  | 'Microsoft.KeyVault/vaults/secrets/readMetadata/action'
  | 'Microsoft.KeyVault/vaults/secrets/setSecret/action'
  | 'Microsoft.KeyVault/vaults/secrets/update/action'
  | 'Microsoft.KeyVault/vaults/secrets/delete'
  | 'Microsoft.KeyVault/vaults/deletedSecrets/read'
  | 'Microsoft.KeyVault/vaults/deletedSecrets/delete'
  | 'Microsoft.KeyVault/vaults/deletedSecrets/recover/action';

/** What each built-in role may do: User reads secrets; Officer may do anything with them. */
const ROLE_ACTIONS: Record<VaultRole, ReadonlySet<SecretAction> | 'all'> = {
  'Key Vault Secrets User': new Set<SecretAction>([
    'Microsoft.KeyVault/vaults/secrets/getSecret/action',
    'Microsoft.KeyVault/vaults/secrets/readMetadata/action',
  ]),
  'Key Vault Secrets Officer': 'all',
};

export interface Caller {
  oid: string;
  appid: string;
  tid: string;
  iss: string;
}

/** `WWW-Authenticate` as Key Vault sends it: the SDK takes the tenant from the authorization URL's path. */
export function challengeHeader(authorityHost: string, tenantId: string): string {
  return `Bearer authorization="${authorityHost.replace(/\/$/, '')}/${tenantId}", resource="${KEY_VAULT_RESOURCE}"`;
}

function unauthorized(message: string): KeyVaultError {
  return new KeyVaultError(401, 'Unauthorized', message);
}

/** Reads a claim from a token whose signature was already refused or not yet checked; only for error text. */
function unverifiedClaim(header: string, claim: 'aud' | 'iss'): string {
  try {
    const value = decodeJwt(header.replace(/^Bearer\s+/i, '').trim())[claim];
    return Array.isArray(value) ? value.join(', ') : String(value ?? '');
  } catch {
    return '';
  }
}

/**
 * Checks the bearer token as Key Vault does: signature, lifetime, audience, and that it was issued by
 * the vault's own tenant. Throws a 401 `KeyVaultError` with Key Vault's AKV message otherwise.
 */
export async function authenticate(
  header: string | undefined,
  options: { verifier: TokenVerifier; tenantId: string; authorityHost: string },
): Promise<Caller> {
  const expectedIssuers = [
    issuerFor(options.authorityHost, options.tenantId, 1),
    issuerFor(options.authorityHost, options.tenantId, 2),
  ];
  const invalidIssuer = (found: string) =>
    unauthorized(`AKV10032: Invalid issuer. Expected one of ${expectedIssuers.join(', ')}, found ${found}.`);
  if (!header) throw unauthorized('AKV10000: Request is missing a Bearer or PoP token.');
  try {
    const { claims, clientId } = await options.verifier.verifyAuthorization(header, { audience: ACCEPTED_AUDIENCES });
    if (claims.tid !== options.tenantId) throw invalidIssuer(String(claims.iss));
    return { oid: claims.oid ?? '', appid: clientId, tid: claims.tid, iss: String(claims.iss) };
  } catch (err) {
    if (!(err instanceof TokenRejectedError)) throw err;
    switch (err.reason) {
      case 'missing':
      case 'malformed':
        if (!/^Bearer\s/i.test(header)) throw unauthorized('AKV10000: Request is missing a Bearer or PoP token.');
        throw unauthorized('AKV10013: Token validation failed: the token is malformed.');
      case 'expired':
        throw unauthorized('AKV10013: Token validation failed: the token is expired.');
      case 'invalid_signature':
        throw unauthorized('AKV10046: Unable to resolve the key used for signature validation.');
      case 'wrong_audience':
        throw unauthorized(
          `AKV10022: Invalid audience. Expected ${KEY_VAULT_RESOURCE}, found: ${unverifiedClaim(header, 'aud')}.`,
        );
      case 'wrong_issuer':
        throw invalidIssuer(unverifiedClaim(header, 'iss'));
    }
  }
}

/** Role assignments on the vault, by principal object id (the token's `oid`). */
export class RoleAssignments {
  readonly #roles = new Map<string, VaultRole>();

  grant(principalObjectId: string, role: VaultRole): void {
    this.#roles.set(principalObjectId, role);
  }

  revoke(principalObjectId: string): void {
    this.#roles.delete(principalObjectId);
  }

  /** Throws Key Vault's 403 `ForbiddenByRbac` unless the caller's role allows the action. */
  authorize(caller: Caller, action: SecretAction, resource: string, vaultName: string): void {
    const role = this.#roles.get(caller.oid);
    const allowed = role ? ROLE_ACTIONS[role] : undefined;
    if (allowed === 'all' || allowed?.has(action)) return;
    throw new KeyVaultError(
      403,
      'Forbidden',
      'Caller is not authorized to perform action on resource.\r\n' +
        'If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n' +
        `Caller: appid=${caller.appid};oid=${caller.oid};iss=${caller.iss}\r\n` +
        `Action: '${action}'\r\n` +
        `Resource: '${resource}'\r\n` +
        'Assignment: (not found)\r\n' +
        'DenyAssignmentId: null\r\n' +
        'DecisionReason: null \r\n' +
        `Vault: ${vaultName};location=local\r\n`,
      'ForbiddenByRbac',
    );
  }
}
