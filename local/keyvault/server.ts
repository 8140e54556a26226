import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TokenVerifier } from '../common/bearer.js';
import type { FaultBoard } from '../common/faults.js';
import { startHttpsServer } from '../common/https-server.js';
import type { KeyAndCert } from '../common/tls.js';
import { authenticate, challengeHeader, RoleAssignments, type Caller, type VaultRole } from './auth.js';
import { badParameter, faultError, KeyVaultError } from './errors.js';
import { handleSecretsRequest, type ApiResponse } from './secrets-api.js';
import { SecretStore } from './store.js';

export type { VaultRole } from './auth.js';
export { SecretStore } from './store.js';

export interface KeyVaultStandIn {
  /** The vault URL, `https://localhost:PORT`. */
  url: string;
  /** The vault's tenant: only tokens issued by this tenant are accepted. */
  tenantId: string;
  store: SecretStore;
  /** Assigns an RBAC role on the vault to a principal, identified as tokens identify it (`oid`). */
  grant(principalObjectId: string, role: VaultRole): void;
  revoke(principalObjectId: string): void;
  close(): Promise<void>;
}

export interface KeyVaultOptions {
  tls: KeyAndCert;
  verifier: TokenVerifier;
  tenantId: string;
  /** The Entra authority the challenge points the SDK to (`{authorityHost}/{tenantId}`). */
  authorityHost: string;
  faults?: FaultBoard;
  port?: number;
  /** Receives one line per request: method, path, status and caller oid. Never values or tokens. */
  log?: (line: string) => void;
  /** The vault's name as it appears in 403 answers. */
  vaultName?: string;
}

/** Request bodies beyond this are refused before parsing (a secret value is at most 25 KB). */
const MAX_BODY_BYTES = 256 * 1024;

/** Key Vault answers these on every response; the SDK logs some of them. */
const SERVICE_HEADERS = {
  'x-ms-keyvault-service-version': '1.9.2000.1',
  'x-ms-keyvault-region': 'local',
  'cache-control': 'no-cache',
};

class BodyTooLargeError extends Error {}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLargeError();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...SERVICE_HEADERS,
    'x-ms-request-id': randomUUID(),
    ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}),
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Splits and decodes the path; a malformed percent-escape is the caller's error, not ours. */
function pathSegments(pathname: string): string[] {
  try {
    return pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw badParameter('The request URI is malformed.');
  }
}

/**
 * Starts an HTTPS Key Vault (secrets) that the real `SecretClient` talks to unchanged, apart from the
 * vault URL and `disableChallengeResourceVerification: true` (the vault is not under vault.azure.net).
 */
export async function startKeyVault(options: KeyVaultOptions): Promise<KeyVaultStandIn> {
  const roles = new RoleAssignments();
  const vaultName = options.vaultName ?? 'kv-defender-relay-local';
  const challenge = challengeHeader(options.authorityHost, options.tenantId);
  // The store needs the vault URL, known only once the server listens.
  const vault: { store?: SecretStore } = {};

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    // Prefixed rather than resolved against a base, so `//secrets/x` stays a path (Key Vault accepts it).
    const rawUrl = `https://localhost${req.url ?? '/'}`;
    if (!URL.canParse(rawUrl)) {
      send(res, 400, badParameter('The request URI is malformed.').body());
      options.log?.(`keyvault ${method} (unparseable URI) 400 BadParameter`);
      return;
    }
    const url = new URL(rawUrl);
    let caller: Caller | undefined;
    const logLine = (status: number | string) =>
      options.log?.(`keyvault ${method} ${url.pathname} ${status}${caller ? ` oid=${caller.oid}` : ''}`);

    const fault = options.faults?.take('keyvault', url.pathname);
    if (fault?.kind === 'outage') {
      logLine('connection reset (injected outage)');
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'delay') await sleep(fault.ms);

    try {
      let body: string;
      try {
        body = await readBody(req);
      } catch (err) {
        if (err instanceof BodyTooLargeError) {
          // The rest of the body is never read, so the connection cannot carry another request.
          throw new KeyVaultError(400, 'BadParameter', 'The request body is too large.', undefined, {
            connection: 'close',
          });
        }
        throw err;
      }
      if (fault?.kind === 'status') throw faultError(fault.status, fault.retryAfterSeconds);
      if (fault?.kind === 'malformed') {
        res.writeHead(200, { ...SERVICE_HEADERS, 'content-type': 'application/json; charset=utf-8' });
        res.end('{"value":"truncated');
        logLine('200 (injected malformed body)');
        return;
      }
      const store = vault.store;
      if (!store) throw faultError(503);
      caller = await authenticate(req.headers.authorization, options);
      const apiVersion = url.searchParams.get('api-version');
      if (!apiVersion)
        throw badParameter('The request URI contains an invalid or missing api-version query parameter.');
      const response: ApiResponse = handleSecretsRequest(
        { store, roles, vaultName },
        { method, segments: pathSegments(url.pathname), query: url.searchParams, apiVersion, body, caller },
      );
      send(res, response.status, response.body);
      logLine(response.status);
    } catch (err) {
      if (!(err instanceof KeyVaultError)) {
        options.log?.(`keyvault ${method} ${url.pathname} 500 (${err instanceof Error ? err.name : 'error'})`);
        send(res, 500, new KeyVaultError(500, 'InternalServerError', 'An unexpected error occurred.').body());
        return;
      }
      // Key Vault repeats its challenge on every 401, so the SDK can (re)acquire a token for the right tenant.
      const headers = err.status === 401 ? { ...err.headers, 'www-authenticate': challenge } : err.headers;
      send(res, err.status, err.body(), headers);
      logLine(`${err.status} ${err.code}`);
    }
  }

  const server = await startHttpsServer(
    options.tls,
    (req, res) => {
      // Last resort (e.g. the client went away mid-request): drop the connection rather than crash.
      handle(req, res).catch(() => res.destroy());
    },
    options.port ?? 0,
  );
  const store = new SecretStore(server.url);
  vault.store = store;

  return {
    url: server.url,
    tenantId: options.tenantId,
    store,
    grant: (principalObjectId, role) => roles.grant(principalObjectId, role),
    revoke: (principalObjectId) => roles.revoke(principalObjectId),
    close: () => server.close(),
  };
}
