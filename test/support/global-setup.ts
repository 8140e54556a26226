import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  project.provide('tls', testTls());

  azurite = await startAzurite({ extentMemoryLimitMb: 512 });
  project.provide('storage', {
    connectionString: azurite.connectionString,
    queueUrl: azurite.queueUrl,
    tableUrl: azurite.tableUrl,
    blobUrl: azurite.blobUrl,
  });
}

/**
 * The run's CA and the stand-ins' server certificate. Node reads NODE_EXTRA_CA_CERTS once, at start:
 * forked test workers inherit the CA written here; test workers that are threads of a process already
 * running (the mutation run's) cannot, so that process is started trusting a CA made beforehand and
 * handed over in RELAY_TEST_TLS_DIR (test/mutation/run.ts).
 */
function testTls(): { caCertPem: string; caCertPath: string; key: string; cert: string } {
  const handedOver = process.env.RELAY_TEST_TLS_DIR;
  if (handedOver) {
    const read = (name: string) => readFileSync(join(handedOver, name), 'utf8');
    return {
      caCertPem: read('ca.pem'),
      caCertPath: join(handedOver, 'ca.pem'),
      key: read('server-key.pem'),
      cert: read('server.pem'),
    };
  }
  tmp = mkdtempSync(join(tmpdir(), 'defender-relay-test-'));
  const ca = createLocalCa('defender-relay test CA');
  const caCertPath = join(tmp, 'ca.pem');
  writeFileSync(caCertPath, ca.caCertPem);
  process.env.NODE_EXTRA_CA_CERTS = caCertPath;
  const server = ca.issueServerCert();
  return { caCertPem: ca.caCertPem, caCertPath, key: server.key, cert: server.cert };
}

export async function teardown(): Promise<void> {
  await azurite?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
