import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLocalCa, writeCaCert } from '../local/common/tls.js';

/**
 * `npm run bench` (node dist/bench/run.js [--quick] [--only ID,...] [--out FILE]; `-- --help` lists
 * the figure ids): creates a throwaway CA for the stand-ins, writes its certificate where Node can
 * trust it, and starts the measuring process (bench/main.ts) with NODE_EXTRA_CA_CERTS set, which Node
 * reads only at start-up. The server key travels over IPC and never touches the disk.
 */
const ca = createLocalCa('defender-relay benchmark CA');
const dir = mkdtempSync(join(tmpdir(), 'defender-relay-bench-ca-'));
const caCertPath = writeCaCert(ca, join(dir, 'ca.pem'));
const tls = ca.issueServerCert();

const child = fork(fileURLToPath(new URL('./main.js', import.meta.url)), process.argv.slice(2), {
  stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  env: { ...process.env, NODE_EXTRA_CA_CERTS: caCertPath },
});
child.send({ tls });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.once('exit', (code, signal) => {
  rmSync(dir, { recursive: true, force: true });
  process.exit(code ?? (signal ? 1 : 0));
});
