import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalCa, type KeyAndCert } from './common/tls.js';

/**
 * The local stack's TLS: a CA and one server certificate for localhost and 127.0.0.1, as files, because
 * Azurite reads its certificate from files. Every process that talks to the stack trusts the CA through
 * NODE_EXTRA_CA_CERTS, which Node reads only at start-up, so `npm start` makes the files first and then
 * runs itself again trusting them (as the CLI does with the settings' CA). A caller that already has a
 * CA (the tests) hands its folder over in RELAY_STACK_TLS_DIR with NODE_EXTRA_CA_CERTS naming its ca.pem.
 */
export const STACK_TLS_DIR_ENV = 'RELAY_STACK_TLS_DIR';

export interface StackTls extends KeyAndCert {
  caCertPem: string;
  /** The files, for Azurite's `--cert` and `--key`. */
  certPath: string;
  keyPath: string;
}

const FILES = { ca: 'ca.pem', cert: 'server.pem', key: 'server-key.pem' };

/** Writes a CA's certificate and a server certificate with its key (readable by this user only) into `dir`. */
export function writeStackTls(dir: string, tls: { caCertPem: string } & KeyAndCert): void {
  writeFileSync(join(dir, FILES.ca), tls.caCertPem);
  writeFileSync(join(dir, FILES.cert), tls.cert);
  writeFileSync(join(dir, FILES.key), tls.key, { mode: 0o600 });
}

/** The environment that hands a stack these TLS files: a process started with it runs the stack with them. */
export function stackTlsEnv(dir: string): Record<string, string> {
  return { [STACK_TLS_DIR_ENV]: dir, NODE_EXTRA_CA_CERTS: join(dir, FILES.ca) };
}

export function readStackTls(dir: string): StackTls {
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  return {
    caCertPem: read(FILES.ca),
    cert: read(FILES.cert),
    key: read(FILES.key),
    certPath: join(dir, FILES.cert),
    keyPath: join(dir, FILES.key),
  };
}

/**
 * The TLS files this process runs the stack with. When Node does not trust their CA yet, the process
 * runs itself again trusting it, passes Ctrl-C on, removes the folder it made and exits with that run's code.
 */
export async function stackTlsOrRerun(): Promise<StackTls> {
  const given = process.env[STACK_TLS_DIR_ENV];
  if (given && process.env.NODE_EXTRA_CA_CERTS === join(given, FILES.ca)) return readStackTls(given);
  const dir = given ?? mkdtempSync(join(tmpdir(), 'defender-relay-tls-'));
  if (!given) {
    const ca = createLocalCa();
    writeStackTls(dir, { caCertPem: ca.caCertPem, ...ca.issueServerCert() });
  }
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, ...stackTlsEnv(dir) },
  });
  // Ctrl-C in a terminal reaches both processes; a signal sent to this one alone is passed on.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  const code = await new Promise<number>((done) =>
    child.once('exit', (exitCode, signal) => done(exitCode ?? (signal ? 1 : 0))),
  );
  if (!given) rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
