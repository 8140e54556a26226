import { RestError, TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import type { StackInfo } from '../../local/stack.js';
import { DELIVERY_LOG_TABLE } from '../../shared/delivery-log.js';
import { TenantStatusStore, TENANT_STATUS_TABLE } from '../../shared/tenant-status.js';

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
