import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startAzurite, type RunningAzurite } from '../../local/azurite.js';
import { createLocalCa } from '../../local/common/tls.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A server certificate for localhost signed by the run's CA; test workers trust the CA. */
    tls: { caCertPem: string; caCertPath: string; key: string; cert: string };
    /** One Azurite for the whole run; tests use their own queue, table and container names. */
    storage: { connectionString: string; queueUrl: string; tableUrl: string; blobUrl: string };
  }
}

let azurite: RunningAzurite | undefined;
let tmp: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  tmp = mkdtempSync(join(tmpdir(), 'defender-relay-test-'));
  const ca = createLocalCa('defender-relay test CA');
  const caCertPath = join(tmp, 'ca.pem');
  writeFileSync(caCertPath, ca.caCertPem);
  // Read by Node at start-up: the forked test workers inherit it, so the real SDKs trust the stand-ins.
  process.env.NODE_EXTRA_CA_CERTS = caCertPath;
  const server = ca.issueServerCert();
  project.provide('tls', { caCertPem: ca.caCertPem, caCertPath, key: server.key, cert: server.cert });

  azurite = await startAzurite({ extentMemoryLimitMb: 512 });
  project.provide('storage', {
    connectionString: azurite.connectionString,
    queueUrl: azurite.queueUrl,
    tableUrl: azurite.tableUrl,
    blobUrl: azurite.blobUrl,
  });
}

export async function teardown(): Promise<void> {
  await azurite?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
