import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { deadLetterQueueOf } from '../shared/messages/dead-letter.js';
import { DELIVERY_LOG_TABLE } from '../shared/route/delivery-log.js';
import { TenantStatusStore, TENANT_STATUS_TABLE } from '../shared/tenants/tenant-status.js';
import { telemetryHeadline } from './appinsights/headline.js';
import { sentinelHeadline } from './logs-ingestion/demo.js';
import { simulateSocActivity } from './demo-activity.js';
import { InstanceActivity } from './instance-activity.js';
import { MAX_INSTANCES, startStack, type RunningStack } from './stack.js';
import { stackTlsOrRerun } from './stack-tls.js';

/**
 * `npm start`: brings up Azurite, the Entra ID, Key Vault, Defender and Application Insights stand-ins and
 * the local Functions host running this app (N instances of it with --instances N), seeds the demo tenants,
 * writes `.local/stack.json` and shows what flows (and what telemetry the app sent), and with several
 * instances what each one did.
 */
const { values } = parsedOptions();

function parsedOptions() {
  try {
    return parseArgs({
      options: {
        port: { type: 'string', default: process.env.FUNCTIONS_PORT ?? '7071' },
        // Instances of the app, as Azure scales it out: separate hosts on consecutive ports, one Azurite, one set of stand-ins.
        instances: { type: 'string', default: '1' },
        'state-dir': { type: 'string' },
        quiet: { type: 'boolean', default: false },
        // Run only Azurite and the stand-ins, e.g. to host the app with `func start` instead.
        'no-host': { type: 'boolean', default: false },
        // No simulated SOC activity in the demo tenants after the first poll.
        'no-activity': { type: 'boolean', default: false },
        // Seconds between the simulated SOC's moves (a new incident, or work on one, in each demo tenant).
        'activity-every': { type: 'string', default: '20' },
        // Your routing rules instead of the demo's, used as they are (the host refuses rules that do not load).
        routes: { type: 'string' },
      },
    });
  } catch (err) {
    // Node's own words for a bad option (unknown, missing or ambiguous value), without its stack.
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}

const instances = Number(values.instances);
if (!/^\d+$/.test(values.instances!) || instances < 1 || instances > MAX_INSTANCES) {
  console.error(`--instances must be a whole number from 1 to ${MAX_INSTANCES}, not '${values.instances}'.`);
  process.exit(1);
}
const activityEverySeconds = Number(values['activity-every']);
if (!/^\d+(\.\d+)?$/.test(values['activity-every']!) || activityEverySeconds < 0.5 || activityEverySeconds > 3600) {
  console.error(`--activity-every is seconds from 0.5 to 3600, not '${values['activity-every']}'.`);
  process.exit(1);
}
if (values['no-host'] && instances > 1) {
  console.error('--instances runs several instances of the local host; --no-host runs none: choose one.');
  process.exit(1);
}
const activity = new InstanceActivity(instances);

const startedAt = Date.now();
// Before anything prints: this process may run itself again, trusting the stack's CA.
const tls = await stackTlsOrRerun();
const print = (line: string) => console.log(line);
print('defender-relay local stack: starting…');

let stack: RunningStack | undefined;
let stopping = false;

async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  print(`\n${signal}: stopping the host${instances > 1 ? ` instances` : ''}, the stand-ins and Azurite…`);
  await stack?.stop();
  print('Stopped.');
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));

try {
  stack = await startStack({
    tls,
    hostPort: Number(values.port),
    instances,
    stateDir: values['state-dir'],
    startHost: !values['no-host'],
    routesFile: values.routes,
    log: (line) => print(`  ${line}`),
    onHostLine: (line, instance) => {
      activity.record(line, instance);
      if (!values.quiet) print(`  [functions${instances > 1 ? ` #${instance + 1}` : ''}] ${line}`);
    },
  });
} catch (err) {
  console.error(`Could not start the local stack: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}

const { info } = stack;
if (!values['no-activity'])
  simulateSocActivity(
    { defender: stack.defender.store, graph: stack.graph.store },
    info.tenants.map(({ tenantId, source }) => ({ tenantId, source })),
    activityEverySeconds * 1000,
  );
const stackPath = resolve(values['state-dir'] ?? '.local', 'stack.json');
const stackFile = relative(process.cwd(), stackPath).startsWith('..') ? stackPath : relative(process.cwd(), stackPath);
print('');
print('Demo tenants:');
for (const t of info.tenants)
  print(
    `  ${t.displayName.padEnd(20)} ${t.tenantId}  ${t.context}, ${t.source === 'graph' ? 'Microsoft Graph' : 'Defender API'}`,
  );
print('');
const stateDir = resolve(values['state-dir'] ?? '.local');
const settingsFile =
  relative(process.cwd(), resolve(stateDir, 'local.settings.json')) || resolve(stateDir, 'local.settings.json');
if (values['no-host']) {
  // No host here: say how to run the app against these stand-ins, not a health URL nothing serves.
  print(
    `Functions:   not started (--no-host). Run the app against these stand-ins with func start and ${settingsFile}`,
  );
  print(
    `             (copy it to local.settings.json; its Values.NODE_EXTRA_CA_CERTS makes the worker trust the stand-ins' CA).`,
  );
} else {
  print(`Health:      curl ${info.host}/api/health`);
  print(`Status page: ${info.host}/api/status  (tenants, queues, dead letters and replay, in a browser)`);
  if (instances > 1)
    print(
      `Instances:   ${info.hosts.join('  ')}  (one app: same settings and host id; each timer runs on one at a time)`,
    );
}
print(
  `Settings:    ${settingsFile}  (the CLI: npm run tenants -- list${values['state-dir'] ? ` --state-dir ${values['state-dir']}` : ''})`,
);
print(`Stack file:  ${stackFile}  (endpoints, CA, demo credentials: throwaway local values)`);
print(`Telemetry:   curl ${info.appInsights.controlUrl}/summary  (what the app sent to Application Insights)`);
print(
  `Sentinel:    curl '${info.logsIngestion.controlUrl}/rows?limit=5'  (rows of DefenderRelayIncidents_CL the app sent through the Logs Ingestion API)`,
);
print(`Ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s. Ctrl-C stops everything.`);

// Events in per tenant, events out per route, and queue depths every few seconds, printed when they change.
const storage = info.storage.connectionString;
const queues = QueueServiceClient.fromConnectionString(storage);
const tenantStatus = new TenantStatusStore(
  TableClient.fromConnectionString(storage, TENANT_STATUS_TABLE, { allowInsecureConnection: true }),
);
const deliveries = TableClient.fromConnectionString(storage, DELIVERY_LOG_TABLE, { allowInsecureConnection: true });
const watched = [
  info.queues.incidents,
  info.queues.poison,
  deadLetterQueueOf(info.queues.incidents),
  ...info.queues.routed,
];
let last = '';

/** Events routed, and how many each route took (fan-out rules add to several). Echoes of write-back have no route. */
async function routedCounts(): Promise<{ events: number; byRoute: Map<string, number> }> {
  const byRoute = new Map<string, number>();
  let events = 0;
  try {
    for await (const row of deliveries.listEntities<{ routes?: string }>({
      queryOptions: { filter: "routes gt ''", select: ['routes'] },
    })) {
      events += 1;
      for (const route of (row.routes ?? '').split(',').filter(Boolean))
        byRoute.set(route, (byRoute.get(route) ?? 0) + 1);
    }
  } catch {
    // The table appears with the first routed event.
  }
  return { events, byRoute };
}

async function depthOf(queue: string): Promise<number> {
  try {
    return (await queues.getQueueClient(queue).getProperties()).approximateMessagesCount ?? 0;
  } catch {
    return 0; // not created yet
  }
}

setInterval(async () => {
  if (stopping) return;
  try {
    const statuses = new Map((await tenantStatus.list()).map((s) => [s.tenantId, s]));
    const eventsIn = info.tenants.map((t) => {
      const s = statuses.get(t.tenantId);
      const problem =
        s?.lastOutcome === 'failed' || s?.lastOutcome === 'retrying' ? ` [${s.lastOutcome}: ${s.lastError}]` : '';
      return `${t.displayName} ${s?.eventsEnqueued ?? 0}${problem}`;
    });
    const counts = await routedCounts();
    const byRoute = [...counts.byRoute].sort(([a], [b]) => a.localeCompare(b)).map(([route, n]) => `${route} ${n}`);
    const depths = await Promise.all(watched.map(async (name) => `${name} ${await depthOf(name)}`));
    const webhooks = Object.entries(stack!.receivers).map(([name, r]) => `${name} ${r.accepted().length}`);
    const summary = [
      `in: ${eventsIn.join(' · ')}`,
      `routed: ${counts.events} (${byRoute.join(' · ') || 'none yet'})`,
      `webhooks: ${webhooks.join(' · ')}`,
      `sentinel: ${sentinelHeadline(stack!.logsIngestion, info.logsIngestion.ruleId)}`,
      `queues: ${depths.join(' · ')}`,
      `telemetry: ${telemetryHeadline(stack!.appInsights.telemetry.summary())}`,
    ].join('  |  ');
    // With several instances, what each did: invocations per function, under the summary.
    const perInstance =
      instances > 1
        ? activity
            .describe(info.hosts)
            .map((l) => `\n           ${l}`)
            .join('')
        : '';
    const line = summary + perInstance;
    if (line !== last) print(`  ${new Date().toISOString().slice(11, 19)} ${line}`);
    last = line;
  } catch (err) {
    if (!stopping)
      print(`  (progress unavailable: ${err instanceof Error ? err.message.split('\n')[0] : String(err)})`);
  }
}, 3_000).unref();
