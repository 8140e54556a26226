import { RestError, TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import type { StackInfo } from '../../local/stack.js';
import { DELIVERY_LOG_TABLE } from '../../shared/route/delivery-log.js';
import { DEFAULT_ROUTE_NAME, loadRoutingRules } from '../../shared/route/routing.js';
import { TenantStatusStore, TENANT_STATUS_TABLE } from '../../shared/tenants/tenant-status.js';
import { drainQueue } from './queues.js';
import { schemaProblems } from './published-schemas.js';

/** What the running stack has done with the demo tenants' events so far. */
export interface FlowTally {
  /** Events the polls enqueued for the stack's tenants. */
  eventsIn: number;
  /** Events the enricher finished (routed, whatever the routes). */
  processed: number;
  deadLettered: number;
  /** Still on the `incidents` queue. */
  pending: number;
}

/** Messages on a queue (0 when it does not exist). */
export function queueDepth(info: StackInfo): (queue: string) => Promise<number> {
  const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
  return async (queue) =>
    (await queues.getQueueClient(queue).exists())
      ? ((await queues.getQueueClient(queue).getProperties()).approximateMessagesCount ?? 0)
      : 0;
}

/**
 * Waits (at most `timeoutMs`) until at least `minimumIn` events came in and every one of them is
 * routed or dead-lettered with nothing pending; answers the last tally either way.
 */
export async function waitForFlowSettled(info: StackInfo, minimumIn: number, timeoutMs: number): Promise<FlowTally> {
  const cs = info.storage.connectionString;
  const status = new TenantStatusStore(
    TableClient.fromConnectionString(cs, TENANT_STATUS_TABLE, { allowInsecureConnection: true }),
  );
  const deliveries = TableClient.fromConnectionString(cs, DELIVERY_LOG_TABLE, { allowInsecureConnection: true });
  const depth = queueDepth(info);
  // The app creates its tables on first use: until then there is nothing to count.
  const tableNotFound = (err: unknown) => err instanceof RestError && err.statusCode === 404;
  let tally: FlowTally = { eventsIn: 0, processed: 0, deadLettered: 0, pending: -1 };
  for (const started = Date.now(); Date.now() - started < timeoutMs; await new Promise((r) => setTimeout(r, 1_000))) {
    let eventsIn = 0;
    let processed = 0;
    try {
      eventsIn = (await status.list())
        .filter((s) => info.tenants.some((t) => t.tenantId === s.tenantId))
        .reduce((n, s) => n + s.eventsEnqueued, 0);
      for await (const _row of deliveries.listEntities({
        queryOptions: { filter: "routes ge ''", select: ['routes'] },
      }))
        processed += 1;
    } catch (err) {
      if (!tableNotFound(err)) throw err;
    }
    tally = {
      eventsIn,
      processed,
      deadLettered: await depth('incidents-deadletter'),
      pending: await depth('incidents'),
    };
    if (eventsIn >= minimumIn && tally.pending === 0 && eventsIn === processed + tally.deadLettered) break;
  }
  return tally;
}

/** The last progress block on npm start's screen: the summary line and one line per instance. */
export function lastScreen(output: string, instances: number): { summary: string; perInstance: string[] } | undefined {
  const lines = output.split('\n');
  const at = lines.findLastIndex((l) => /^ {2}\d\d:\d\d:\d\d in: /.test(l));
  if (at < 0) return undefined;
  return { summary: lines[at]!, perInstance: lines.slice(at + 1, at + 1 + instances).map((l) => l.trim()) };
}

/**
 * The webhook receivers' accepted requests and the Sentinel rows, as npm start's screen last counted them
 * ("webhooks: siem 12 · teams 3 · slack 1  |  sentinel: 9 rows").
 */
export function webhookCounts(output: string, instances: number): Record<string, number> {
  return Object.fromEntries(
    [
      ...(lastScreen(output, instances)?.summary ?? '').matchAll(/(siem|teams|slack) (\d+)|(sentinel): (\d+) rows/g),
    ].map(([, name, n, sentinel, rows]) => [(name ?? sentinel)!, Number(n ?? rows)]),
  );
}

/** What the destinations of the stack's routes got, against what they should have got. */
export interface DestinationTally {
  /** Every event the delivery log holds as routed, with the names of the routes that took it. */
  routed: Map<string, string[]>;
  /** Per destination, the events it should have got: every routed event once per destination of its routes. */
  expected: Map<string, string[]>;
  /** Per queue destination, the eventIds of the messages it held (drained: read once, at the end). */
  queued: Map<string, string[]>;
  /** Per webhook destination (webhook, Teams, Slack), how many events it should have got. */
  webhooksExpected: Record<string, number>;
  /** What the published routed-message schema (schema/) refuses in the queued messages: queue, and why. */
  schemaProblems: string[];
}

/**
 * The delivery log's routed events (with the routes that took each) and, from the routes file, the
 * events each destination should have got: every routed event once per destination of its routes.
 */
export async function expectedDeliveries(info: StackInfo, routesFile: string) {
  const deliveries = TableClient.fromConnectionString(info.storage.connectionString, DELIVERY_LOG_TABLE, {
    allowInsecureConnection: true,
  });
  const routed = new Map<string, string[]>();
  for await (const row of deliveries.listEntities<{ routes?: string }>({
    queryOptions: { filter: "routes gt ''", select: ['RowKey', 'routes'] },
  })) {
    routed.set(decodeURIComponent(row.rowKey!.replace(/~/g, '%')), (row.routes ?? '').split(','));
  }
  const table = loadRoutingRules(routesFile, { allowedHosts: ['localhost'], allowLoopback: true });
  const expected = new Map<string, string[]>();
  for (const [eventId, routeNames] of routed) {
    const destinations = new Set(
      routeNames.flatMap(
        (name) =>
          (name === DEFAULT_ROUTE_NAME ? table.defaultRoute : table.rules.find((r) => r.name === name))?.destinations ??
          [],
      ),
    );
    for (const name of destinations) expected.set(name, [...(expected.get(name) ?? []), eventId]);
  }
  return { routed, expected, table };
}

/**
 * Reads the delivery log's routed events, works out from the routes file what each destination should
 * have got, and drains the queue destinations. The webhook receivers run inside `npm start`: their
 * counts are on its screen (`webhookCounts`), to compare with `webhooksExpected`.
 */
export async function tallyDestinations(info: StackInfo, routesFile: string): Promise<DestinationTally> {
  const cs = info.storage.connectionString;
  const { routed, expected, table } = await expectedDeliveries(info, routesFile);
  const queues = QueueServiceClient.fromConnectionString(cs);
  const queued = new Map<string, string[]>();
  const webhooksExpected: Record<string, number> = {};
  const problems: string[] = [];
  for (const destination of table.destinations.values()) {
    if (destination.type === 'queue') {
      const messages = (await drainQueue(queues, destination.queueName)) as { eventId: string }[];
      for (const message of messages)
        problems.push(...schemaProblems('routed-message', message).map((p) => `${destination.queueName}: ${p}`));
      queued.set(
        destination.name,
        messages.map((m) => m.eventId),
      );
    } else if (destination.type !== 'drop') {
      webhooksExpected[destination.name] = expected.get(destination.name)?.length ?? 0;
    }
  }
  return { routed, expected, queued, webhooksExpected, schemaProblems: problems };
}
