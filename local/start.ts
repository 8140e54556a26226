import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { TenantStatusStore, TENANT_STATUS_TABLE } from '../shared/tenant-status.js';
import { simulateSocActivity } from './demo-activity.js';
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
    // No simulated SOC activity in the demo tenants after the first poll.
    'no-activity': { type: 'boolean', default: false },
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
if (!values['no-activity']) simulateSocActivity(stack.defender.store, info.tenants.map((t) => t.tenantId));
const stackFile = relative(process.cwd(), `${values['state-dir'] ?? '.local'}/stack.json`);
print('');
print('Demo tenants:');
for (const t of info.tenants) print(`  ${t.displayName.padEnd(20)} ${t.tenantId}  ${t.context}`);
print('');
print(`Health:      curl ${info.host}/api/health`);
print(`Stack file:  ${stackFile}  (endpoints, CA, demo credentials: throwaway local values)`);
print(`Ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s. Ctrl-C stops everything.`);

// Per-tenant event counts and queue depths every few seconds, printed when they change.
const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
const tenantStatus = new TenantStatusStore(TableClient.fromConnectionString(info.storage.connectionString, TENANT_STATUS_TABLE, { allowInsecureConnection: true }));
const watched = [info.queues.pollRequests, info.queues.incidents, info.queues.poison, ...info.queues.routed];
let last = '';
setInterval(async () => {
  if (stopping) return;
  try {
    const statuses = new Map((await tenantStatus.list()).map((s) => [s.tenantId, s]));
    const perTenant = info.tenants.map((t) => {
      const s = statuses.get(t.tenantId);
      const problem = s?.lastOutcome === 'failed' || s?.lastOutcome === 'retrying' ? ` [${s.lastOutcome}: ${s.lastError}]` : '';
      return `${t.displayName} ${s?.eventsEnqueued ?? 0}${problem}`;
    });
    const depths = await Promise.all(
      watched.map(async (name) => `${name} ${(await queues.getQueueClient(name).getProperties()).approximateMessagesCount ?? 0}`),
    );
    const line = `events in: ${perTenant.join(' · ')}  |  queues: ${depths.join(' · ')}`;
    if (line !== last) print(`  ${new Date().toISOString().slice(11, 19)} ${line}`);
    last = line;
  } catch {
    // Azurite is stopping; the next tick or the shutdown will tell.
  }
}, 3_000).unref();
