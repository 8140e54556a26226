import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  AZURITE_ACCOUNT,
  AZURITE_LISTENING,
  azuriteConnectionString,
  azuriteHttpsArgs,
  stopChild,
} from '../../local/azurite.js';
import type { KeyAndCert } from '../../local/common/tls.js';
import { readStackTls, writeStackTls } from '../../local/stack-tls.js';

/**
 * An Azurite that keeps its data on disk, so it can be stopped and started again on the same ports
 * with its queues, tables and blobs intact — what a storage service restart looks like to the app.
 * (`local/azurite.ts` runs in memory: restarting that one would be a wiped account, not a restart.)
 */
export interface DurableAzurite {
  /** The account key's connection string: the test's own view of the account. */
  connectionString: string;
  queueUrl: string;
  tableUrl: string;
  blobUrl: string;
  /** Stops the service (SIGTERM: Azurite saves its data and closes its listeners). */
  stop(): Promise<void>;
  /** Starts it again on the same ports over the same data. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  dispose(): Promise<void>;
}

type Ports = { blob: number; queue: number; table: number };

function azuriteEntry(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'azurite.js');
}

/** HTTPS with bearer tokens, as the app reaches Storage in Azure (see local/azurite.ts `https`). */
function spawnAzurite(
  location: string,
  ports: Ports,
  tls: { certPath: string; keyPath: string },
): Promise<{ child: ChildProcess; ports: Ports }> {
  const args = [
    azuriteEntry(),
    '--location',
    location,
    ...azuriteHttpsArgs(tls),
    '--skipApiVersionCheck',
    '--disableTelemetry',
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(ports.blob),
    '--queueHost',
    '127.0.0.1',
    '--queuePort',
    String(ports.queue),
    '--tableHost',
    '127.0.0.1',
    '--tablePort',
    String(ports.table),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const seen: Partial<Ports> = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('Azurite (on disk) did not start within 30 s'));
    }, 30_000);
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const m of buffered.matchAll(AZURITE_LISTENING)) {
        seen[m[1]!.toLowerCase() as keyof Ports] = Number(m[2]);
      }
      if (seen.blob && seen.queue && seen.table) {
        clearTimeout(timer);
        child.stdout!.removeAllListeners('data');
        child.stdout!.resume();
        child.removeAllListeners('exit');
        resolve({ child, ports: seen as Ports });
      }
    });
    child.stderr!.resume();
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Azurite (on disk) exited during start-up (code ${code})`));
    });
  });
}

/** `tls`: a server certificate for 127.0.0.1 whose CA this process trusts. */
export async function startDurableAzurite(tls: { caCertPem: string } & KeyAndCert): Promise<DurableAzurite> {
  const location = mkdtempSync(join(tmpdir(), 'defender-relay-faults-azurite-'));
  const tlsDir = join(location, 'tls');
  mkdirSync(tlsDir);
  writeStackTls(tlsDir, tls);
  const files = readStackTls(tlsDir);
  let { child, ports } = await spawnAzurite(location, { blob: 0, queue: 0, table: 0 }, files);
  const url = (port: number) => `https://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const [blobUrl, queueUrl, tableUrl] = [url(ports.blob), url(ports.queue), url(ports.table)];
  const stop = () => stopChild(child, 10_000);
  return {
    connectionString: azuriteConnectionString(blobUrl, queueUrl, tableUrl),
    queueUrl,
    tableUrl,
    blobUrl,
    stop,
    async start() {
      ({ child, ports } = await spawnAzurite(location, ports, files));
    },
    async dispose() {
      await stop();
      rmSync(location, { recursive: true, force: true });
    },
  };
}
