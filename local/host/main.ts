import { parseArgs } from 'node:util';
import { startHost } from './host.js';

/**
 * CLI: node dist/local/host/main.js [--app <dir>] [--port <n>]
 * Prints 'Host ready: http://localhost:PORT' once everything listens, then one line per function.
 */
function timestamped(line: string): void {
  console.log(`[${new Date().toISOString()}] ${line}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { app: { type: 'string', default: process.cwd() }, port: { type: 'string', default: '7071' } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--port must be 0–65535, not '${values.port}'.`);

  const host = await startHost({ appDir: values.app!, port, log: timestamped });
  console.log(`Host ready: ${host.url}`);
  for (const fn of host.functions) console.log(`  ${fn.name}: ${fn.trigger} ${fn.detail}`);
  for (const error of host.errors) console.log(`  ${error.name}: in error: ${error.message}`);

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    timestamped(`${signal} received: stopping (waiting for running invocations).`);
    host.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`Shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  // The host stopped itself (StopApplication in Azure, which then starts a fresh host).
  void host.fatal.then((reason) => {
    if (stopping) return;
    stopping = true;
    console.error(`Host stopped: ${reason}.`);
    void host.close().finally(() => process.exit(1));
  });
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((error: unknown) => {
  console.error(`Host failed to start: ${(error as Error).message}`);
  process.exit(1);
});
