import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { QueueServiceClient } from '@azure/storage-queue';
import { startStack, type RunningStack } from './stack.js';

/**
 * `npm start`: brings up Azurite, the Entra ID, Key Vault and Defender stand-ins and the local Functions
 * host running this app, seeds the demo tenants, writes `.local/stack.json` and shows what flows.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.FUNCTIONS_PORT ?? '7071' },
    'state-dir': { type: 'string' },
    quiet: { type: 'boolean', default: false },
    // Run only Azurite and the stand-ins, e.g. to host the app with `func start` instead.
    'no-host': { type: 'boolean', default: false },
  },
});

const startedAt = Date.now();
const print = (line: string) => console.log(line);
print('defender-relay local stack: starting…');

let stack: RunningStack | undefined;
let stopping = false;

async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  print(`\n${signal}: stopping the host, the stand-ins and Azurite…`);
  await stack?.stop();
  print('Stopped.');
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));

try {
  stack = await startStack({
    hostPort: Number(values.port),
    stateDir: values['state-dir'],
    startHost: !values['no-host'],
    log: (line) => print(`  ${line}`),
    onHostLine: (line) => {
      if (!values.quiet) print(`  [functions] ${line}`);
    },
  });
} catch (err) {
  console.error(`Could not start the local stack: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}

const { info } = stack;
const stackFile = relative(process.cwd(), `${values['state-dir'] ?? '.local'}/stack.json`);
print('');
print('Demo tenants:');
for (const t of info.tenants) print(`  ${t.displayName.padEnd(20)} ${t.tenantId}  ${t.context}`);
print('');
print(`Health:      curl ${info.host}/api/health`);
print(`Stack file:  ${stackFile}  (endpoints, CA, demo credentials: throwaway local values)`);
print(`Ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s. Ctrl-C stops everything.`);

// Queue depths every few seconds, printed only when they change.
const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
const watched = [info.queues.pollRequests, info.queues.incidents, info.queues.poison, ...info.queues.routed];
let last = '';
setInterval(async () => {
  if (stopping) return;
  try {
    const depths = await Promise.all(
      watched.map(async (name) => `${name} ${(await queues.getQueueClient(name).getProperties()).approximateMessagesCount ?? 0}`),
    );
    const line = `queues: ${depths.join(' · ')}`;
    if (line !== last) print(`  ${line}`);
    last = line;
  } catch {
    // Azurite is stopping; the next tick or the shutdown will tell.
  }
}, 3_000).unref();
