import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The well-known Azurite development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface RunningAzurite {
  connectionString: string;
  blobUrl: string;
  queueUrl: string;
  tableUrl: string;
  ports: { blob: number; queue: number; table: number };
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface AzuriteOptions {
  /** 0 (default) lets the OS choose free ports. */
  blobPort?: number;
  queuePort?: number;
  tablePort?: number;
  /** Memory cap for in-memory blob/queue content, in MB. */
  extentMemoryLimitMb?: number;
  startTimeoutMs?: number;
  onLog?: (line: string) => void;
  /**
   * Serve HTTPS with this certificate (PEM files) and accept Entra bearer tokens (`--oauth basic`), as
   * an identity-based app reaches Storage in Azure. Azurite takes a bearer token only over HTTPS; its
   * basic check reads the token's lifetime, issuer (`https://sts.windows.net/…`) and audience
   * (`https://storage.azure.com` or the account's endpoint), not its signature or role assignments.
   * Source: Azurite README ("HTTPS setup", "OAuth configuration"); `src/queue/authentication/QueueTokenAuthenticator.ts`.
   */
  https?: { certPath: string; keyPath: string };
}

/** Azurite's arguments for HTTPS with Entra bearer tokens (see `AzuriteOptions.https`). */
export function azuriteHttpsArgs(https: { certPath: string; keyPath: string }): string[] {
  return ['--cert', https.certPath, '--key', https.keyPath, '--oauth', 'basic'];
}

/** The line Azurite prints once a service listens, with the service and its port. */
export const AZURITE_LISTENING =
  /Azurite (Blob|Queue|Table) service is successfully listening at https?:\/\/[^:]+:(\d+)/g;

function azuriteEntry(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'azurite.js');
}

export function azuriteConnectionString(blobUrl: string, queueUrl: string, tableUrl: string): string {
  return (
    [
      `DefaultEndpointsProtocol=${new URL(queueUrl).protocol.replace(':', '')}`,
      `AccountName=${AZURITE_ACCOUNT}`,
      `AccountKey=${AZURITE_KEY}`,
      `BlobEndpoint=${blobUrl}`,
      `QueueEndpoint=${queueUrl}`,
      `TableEndpoint=${tableUrl}`,
    ].join(';') + ';'
  );
}

/** How long Azurite keeps an idle keep-alive connection open, as Azure Storage does (see startAzurite). */
export const IDLE_CONNECTION_SECONDS = 300;

/** Starts Azurite from node_modules: queues, tables and blobs, in memory, on loopback. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<RunningAzurite> {
  const args = [
    azuriteEntry(),
    '--inMemoryPersistence',
    '--extentMemoryLimit',
    String(options.extentMemoryLimitMb ?? 1024),
    '--skipApiVersionCheck',
    '--disableTelemetry',
    // Azurite closes a connection idle for 5 s; a client that picks that pooled connection just as it
    // closes has its request reset and retried after the SDK's back-off, seconds later (Azurite's 5 s
    // against a pool's much longer idle life: Azure/azure-sdk-for-cpp#1716). Azure Storage keeps idle
    // connections for minutes (Azure/azure-storage-java#363: about 5 minutes), so Azurite does here too.
    ...['--blobKeepAliveTimeout', '--queueKeepAliveTimeout', '--tableKeepAliveTimeout'].flatMap((flag) => [
      flag,
      String(IDLE_CONNECTION_SECONDS),
    ]),
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(options.blobPort ?? 0),
    '--queueHost',
    '127.0.0.1',
    '--queuePort',
    String(options.queuePort ?? 0),
    '--tableHost',
    '127.0.0.1',
    '--tablePort',
    String(options.tablePort ?? 0),
    ...(options.https ? azuriteHttpsArgs(options.https) : []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ports: Partial<Record<'blob' | 'queue' | 'table', number>> = {};

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`Azurite did not start within ${options.startTimeoutMs ?? 30_000} ms`));
    }, options.startTimeoutMs ?? 30_000);
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        options.onLog?.(line);
        for (const m of line.matchAll(AZURITE_LISTENING))
          ports[m[1]!.toLowerCase() as 'blob' | 'queue' | 'table'] = Number(m[2]);
        if (ports.blob && ports.queue && ports.table) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => options.onLog?.(chunk.toString().trim()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Azurite exited during start-up (code ${code})`));
    });
  });
  child.removeAllListeners('exit');

  // Path-style URLs (the account in the path), as the SDKs read them for an IP host.
  const scheme = options.https ? 'https' : 'http';
  const blobUrl = `${scheme}://127.0.0.1:${ports.blob}/${AZURITE_ACCOUNT}`;
  const queueUrl = `${scheme}://127.0.0.1:${ports.queue}/${AZURITE_ACCOUNT}`;
  const tableUrl = `${scheme}://127.0.0.1:${ports.table}/${AZURITE_ACCOUNT}`;
  return {
    connectionString: azuriteConnectionString(blobUrl, queueUrl, tableUrl),
    blobUrl,
    queueUrl,
    tableUrl,
    ports: ports as RunningAzurite['ports'],
    process: child,
    stop: () => stopChild(child),
  };
}

/** Stops a child process: SIGTERM, then SIGKILL if it lingers. */
export function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
