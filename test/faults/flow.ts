import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient, type DequeuedMessageItem, type QueueClient } from '@azure/storage-queue';
import { inject } from 'vitest';
import { AZURITE_KEY } from '../../local/azurite.js';
import { FaultBoard } from '../../local/common/faults.js';
import { createDemoWorld, type DemoApp, type DemoWorld } from '../../local/demo.js';
import {
  addPartnerTenant,
  appSettingsFor,
  assignAppIdentity,
  registerDemoTenants,
  startStandIns,
  type StandIns,
} from '../../local/stack.js';
import { loadConfig } from '../../shared/config/config.js';
import type { DeadLetter } from '../../shared/messages/dead-letter.js';
import { EVENT_ID_HEADER } from '../../shared/route/destinations/index.js';
import type { PublishedSchemaName } from '../../shared/messages/message-schemas.js';
import {
  enrichDependencies,
  handleIncidentEvent,
  type EnrichDependencies,
  type EnrichOutcome,
} from '../../shared/enrich/enrich-handler.js';
import { eventIdOf } from '../../shared/messages/events.js';
import { handlePollRequest, handlePollSchedule } from '../../shared/ingest/ingest-handlers.js';
import type { Logger } from '../../shared/telemetry/logging.js';
import { QUEUE_NAMES } from '../../shared/storage/queues.js';
import { createServices, type Services } from '../../shared/services.js';
import { TenantRegistry, TENANTS_TABLE } from '../../shared/tenants/tenants.js';
import { useIdentityEndpoint } from '../support/identity-endpoint.js';
import { schemaProblems } from '../support/published-schemas.js';
import { startDurableAzurite, type DurableAzurite } from './durable-azurite.js';

/**
 * The whole flow in one process with the real SDKs, for the fault suite: the stand-ins with the demo
 * world, an Azurite of its own (on disk, so it can be restarted), the app's services, and a small
 * queue host with the Storage Queues extension's semantics (batches of 16 processed concurrently, a
 * lease while a message runs, a failed message made visible again after a short back-off, and
 * `<queue>-poison` once it has failed maxDequeueCount times). The timer is a `tick()`.
 *
 * The accounting at the end is from outside the app: the incident versions Defender and Graph held when
 * the run started (the demo world has a tenant read through each), against what reached the destinations (routed queues and webhook receivers, counted
 * per eventId), the dead letters with their reasons, and the poisoned messages.
 */

/** Thrown by a test's wrapper to play a process that died mid-message: the message is neither deleted nor released, its lease runs out. */
export class SimulatedCrash extends Error {}

export interface FlowOptions {
  /** App instances sharing the queues (two = two pollers and two enrichers racing). */
  instances?: number;
  /** How long a received message stays invisible (a crashed instance's messages come back after it). */
  leaseSeconds?: number;
  /** The back-off before a failed message is visible again. */
  retryDelaySeconds?: number;
  maxDequeueCount?: number;
  batchSize?: number;
  /**
   * Partner-context tenants onboarded besides the demo's two (each consented to the demo's partner app,
   * its incidents in the Defender stand-in, registered in the relay): many tenants polled at once.
   */
  extraTenants?: number;
  /** Incidents each extra tenant holds (more than 100, a page, make its first poll read more than one page). */
  incidentsPerExtraTenant?: number;
  /** App settings on top of the stack's, for every instance (e.g. `POLL_MAX_PAGES_PER_RUN`). */
  appSettings?: Record<string, string>;
  /**
   * Routing rules to run with instead of the demo's. The report reads the demo's destination names
   * (`soc-queue` → routed-high, `archive` → routed-archive, the siem, teams and slack receivers, `sentinel`
   * the Logs Ingestion stand-in's rows, `nowhere` drops).
   */
  routes?: Record<string, unknown>;
  /**
   * The poll timer fires on the first instance only, as in Azure, where a timer runs on the instance
   * holding its singleton lock. By default it fires on every instance (pollers racing).
   */
  singletonTimer?: boolean;
  /** How long `runUntilQuiet` (and each tick of `settle`) may take before the run fails (default 90 s). */
  quietTimeoutMs?: number;
}

export interface AppInstance {
  services: Services;
  deps: EnrichDependencies;
}

export interface FlowReport {
  incidents: number;
  routed: number;
  deadLettered: number;
  poisoned: number;
  /** Deliveries of an event to a destination beyond the first. */
  duplicates: number;
  lost: number;
  /** Every dead letter's reason (all non-empty). */
  reasons: string[];
  /** Routed events whose outcome named a destination that holds no delivery of them. */
  missingDeliveries: string[];
  lostIds: string[];
  duplicateIds: string[];
  /** Messages the relay wrote that the published JSON Schemas (schema/) refuse: where, and why. */
  schemaProblems: string[];
}

/** Where the demo routes' destinations can be read back: the routed queues, the three receivers and the Sentinel rows. */
const QUEUE_DESTINATIONS: Record<string, string> = { 'soc-queue': 'routed-high', archive: 'routed-archive' };
const RECEIVER_DESTINATIONS = ['siem', 'teams', 'slack'] as const;
const DROP_DESTINATIONS = new Set(['nowhere']);

const decode = (text: string): unknown => {
  try {
    return JSON.parse(Buffer.from(text, 'base64').toString('utf8')) as unknown;
  } catch {
    return text;
  }
};

type FlowSettings = Required<Omit<FlowOptions, 'routes'>> & Pick<FlowOptions, 'routes'>;

export class Flow {
  readonly instances: AppInstance[] = [];
  /** The extra partner-context tenants (`extraTenants`), by id. */
  readonly extraTenantIds: string[] = [];
  /** The incident versions Defender held when the run started: eventId → tenant. */
  readonly seeded = new Map<string, string>();
  /** Every outcome the enricher returned, by eventId. */
  readonly outcomes = new Map<string, EnrichOutcome[]>();
  /** Messages the relay wrote that its published schemas refuse (checked as they are read). */
  readonly schemaProblems: string[] = [];
  /** Every log line any instance wrote (for the secret scan). */
  readonly logs: string[] = [];
  /** Failed invocations seen by the queue host, per queue. */
  readonly failures = { [QUEUE_NAMES.pollRequests]: 0, [QUEUE_NAMES.incidents]: 0 } as Record<string, number>;
  readonly options: FlowSettings;
  /** Where the run's own routes file is written (`routes`), removed on stop. */
  #routesDir: string | undefined;
  readonly queues: QueueServiceClient;
  readonly logger: Logger = {
    info: (m: string) => void this.logs.push(m),
    warn: (m: string) => void this.logs.push(m),
    error: (m: string) => void this.logs.push(m),
  };

  private constructor(
    readonly world: DemoWorld,
    readonly faults: FaultBoard,
    readonly standIns: StandIns,
    readonly azurite: DurableAzurite,
    options: FlowOptions,
  ) {
    this.options = {
      instances: 1,
      leaseSeconds: 120,
      retryDelaySeconds: 1,
      maxDequeueCount: 5,
      batchSize: 16,
      extraTenants: 0,
      incidentsPerExtraTenant: 0,
      appSettings: {},
      singletonTimer: false,
      quietTimeoutMs: 90_000,
      ...options,
    };
    this.queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  }

  static async start(options: FlowOptions = {}): Promise<Flow> {
    const world = createDemoWorld();
    const faults = new FaultBoard();
    const routesDir = options.routes ? mkdtempSync(join(tmpdir(), 'defender-relay-faults-routes-')) : undefined;
    const routesFile = routesDir ? join(routesDir, 'routes.json') : undefined;
    if (routesFile) writeFileSync(routesFile, JSON.stringify(options.routes, null, 2));
    const [standIns, azurite] = await Promise.all([
      startStandIns({ tls: inject('tls'), faults, world, routesFile }),
      startDurableAzurite(inject('tls')),
    ]);
    const flow = new Flow(world, faults, standIns, azurite, options);
    flow.#routesDir = routesDir;
    try {
      await registerDemoTenants(world, azurite.connectionString);
      await flow.#onboardExtraTenants();
      // The app as Azure runs it: identity-based storage with its managed identity (the test itself uses the account key).
      // It publishes Sentinel rows too, with Monitoring Metrics Publisher on the rule (infra/app/rbac.bicep).
      const identity = assignAppIdentity(world, standIns.entra, standIns.keyVault, undefined, standIns.logsIngestion);
      await useIdentityEndpoint({ endpoint: standIns.entra.msi.endpoint, header: standIns.entra.msi.header });
      const settings = appSettingsFor(
        world,
        {
          blobUrl: azurite.blobUrl,
          queueUrl: azurite.queueUrl,
          tableUrl: azurite.tableUrl,
          managedIdentityClientId: identity.clientId,
        },
        standIns,
      );
      for (let i = 0; i < flow.options.instances; i++) {
        const services = createServices(loadConfig({ ...settings, ...flow.options.appSettings }));
        flow.instances.push({ services, deps: enrichDependencies(services) });
      }
      for (const name of [QUEUE_NAMES.pollRequests, QUEUE_NAMES.incidents, ...standIns.routedQueues])
        await flow.queues.getQueueClient(name).createIfNotExists();
      for (const tenantId of [...world.tenants.map((t) => t.tenantId), ...flow.extraTenantIds]) {
        // Each tenant is in the stand-in of its source only.
        for (const incident of standIns.defender.store.hasTenant(tenantId)
          ? standIns.defender.store.list(tenantId)
          : []) {
          flow.seeded.set(eventIdOf(tenantId, incident.incidentId, incident.lastUpdateTime), tenantId);
        }
        // A tenant read through Graph: the same version key (Graph's id is Defender's incident id).
        for (const incident of standIns.graph.store.hasTenant(tenantId) ? standIns.graph.store.list(tenantId) : []) {
          flow.seeded.set(eventIdOf(tenantId, Number(incident.id), incident.lastUpdateDateTime), tenantId);
        }
      }
    } catch (err) {
      await flow.stop();
      throw err;
    }
    return flow;
  }

  async stop(): Promise<void> {
    await Promise.all([this.standIns.close(), this.azurite.dispose()]);
    if (this.#routesDir) rmSync(this.#routesDir, { recursive: true, force: true });
  }

  /** The demo's partner app, consented in each extra tenant (as an MSSP onboards customers). */
  get partnerApp(): DemoApp {
    return this.world.apps.find((a) => a.multiTenant)!;
  }

  /** Onboards `extraTenants` partner-context tenants, `incidentsPerExtraTenant` incidents each. */
  async #onboardExtraTenants(): Promise<void> {
    const registry = new TenantRegistry(
      TableClient.fromConnectionString(this.azurite.connectionString, TENANTS_TABLE, { allowInsecureConnection: true }),
    );
    const targets = {
      entra: this.standIns.entra,
      defender: this.standIns.defender,
      registry,
      partnerApp: this.partnerApp,
      partnerSecretName: this.world.tenants.find((t) => t.context === 'partner')!.clientSecretName,
    };
    for (let i = 0; i < this.options.extraTenants; i++) this.extraTenantIds.push(randomUUID());
    await Promise.all(
      this.extraTenantIds.map((tenantId, i) =>
        addPartnerTenant(targets, {
          tenantId,
          displayName: `Partner customer ${i + 1}`,
          incidents: this.options.incidentsPerExtraTenant,
          seed: `faults-extra-${i}`,
        }),
      ),
    );
  }

  /** Every secret value the run holds (the scan for leaks in the logs). */
  secrets(): string[] {
    const w = this.world;
    return [
      w.appIdentity.clientSecret,
      w.relayApi.clientSecret,
      w.webhookClient.clientSecret,
      w.webhookHmacKey,
      w.siemHmacKey,
      w.analyst.password,
      AZURITE_KEY,
      ...w.apps.map((a) => a.clientSecret),
    ];
  }

  /**
   * The poll timer on every instance at once (on the first only with `singletonTimer`). A failed run (e.g. no managed-identity token while Entra is down)
   * is counted, as the host logs a failed timer invocation, and the next tick runs as usual.
   */
  async tick(): Promise<void> {
    const timers = this.options.singletonTimer ? this.instances.slice(0, 1) : this.instances;
    await Promise.all(
      timers.map((i) =>
        handlePollSchedule(i.services, this.logger).catch(() => {
          this.failures.pollSchedule = (this.failures.pollSchedule ?? 0) + 1;
        }),
      ),
    );
  }

  /** Ticks and runs until the queues are quiet, until every seeded version is accounted for or `maxTicks` ran. */
  async settle(maxTicks = 3, timeoutMs = this.options.quietTimeoutMs): Promise<void> {
    for (let tick = 0; tick < maxTicks; tick++) {
      await this.tick();
      await this.runUntilQuiet(timeoutMs);
      if ((await this.accountedFor()) >= this.seeded.size) return;
    }
  }

  /** Runs the queue host on every instance until poll-requests and incidents hold no message, visible or not. */
  async runUntilQuiet(timeoutMs = this.options.quietTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const handled = await Promise.all(this.instances.map((instance) => this.step(instance)));
      if (handled.some((n) => n > 0)) continue;
      if (await this.#quiet()) return;
      if (Date.now() > deadline)
        throw new Error(
          `The flow did not go quiet within ${timeoutMs} ms (queue host failures: ${JSON.stringify(this.failures)})`,
        );
      await sleep(100);
    }
  }

  /** One batch from each queue on one instance; returns how many messages it took. */
  async step(instance: AppInstance): Promise<number> {
    const [polls, events] = await Promise.all([
      this.#batch(QUEUE_NAMES.pollRequests, (m) => handlePollRequest(m, instance.services, this.logger)),
      this.#batch(QUEUE_NAMES.incidents, async (m, dequeueCount) => {
        this.#conforms('incident-event', m, QUEUE_NAMES.incidents);
        const outcome = await handleIncidentEvent(m, instance.deps, this.logger, { dequeueCount });
        const eventId = outcome.eventId ?? '(unreadable)';
        this.outcomes.set(eventId, [...(this.outcomes.get(eventId) ?? []), outcome]);
      }),
    ]);
    return polls + events;
  }

  /** Polls until `poll-requests` is quiet, leaving the events it enqueued on `incidents` (a backlog). */
  async runPollsUntilQuiet(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const polls = this.queues.getQueueClient(QUEUE_NAMES.pollRequests);
    for (;;) {
      const handled = await Promise.all(
        this.instances.map((i) =>
          this.#batch(QUEUE_NAMES.pollRequests, (m) => handlePollRequest(m, i.services, this.logger)),
        ),
      );
      if (handled.every((n) => n === 0) && (await polls.getProperties()).approximateMessagesCount === 0) return;
      if (Date.now() > deadline) throw new Error(`poll-requests did not go quiet within ${timeoutMs} ms`);
    }
  }

  /** Puts every message on `incidents` there twice, each copy next to its original (as a redelivering queue would). */
  async duplicateBacklog(): Promise<number> {
    const queue = this.queues.getQueueClient(QUEUE_NAMES.incidents);
    const texts: string[] = [];
    for (;;) {
      const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 60 });
      if (receivedMessageItems.length === 0) break;
      for (const m of receivedMessageItems) {
        texts.push(m.messageText);
        await queue.deleteMessage(m.messageId, m.popReceipt);
      }
    }
    for (const text of texts) {
      await queue.sendMessage(text, { messageTimeToLive: -1 });
      await queue.sendMessage(text, { messageTimeToLive: -1 });
    }
    return texts.length;
  }

  async #batch(
    queueName: string,
    handle: (message: unknown, dequeueCount: number) => Promise<unknown>,
  ): Promise<number> {
    const queue = this.queues.getQueueClient(queueName);
    let messages: DequeuedMessageItem[];
    try {
      ({ receivedMessageItems: messages } = await queue.receiveMessages({
        numberOfMessages: this.options.batchSize,
        visibilityTimeout: this.options.leaseSeconds,
      }));
    } catch {
      return 0; // storage unreachable: the host logs it and polls again
    }
    await Promise.all(messages.map((m) => this.#process(queue, m, handle)));
    return messages.length;
  }

  async #process(
    queue: QueueClient,
    message: DequeuedMessageItem,
    handle: (message: unknown, dequeueCount: number) => Promise<unknown>,
  ): Promise<void> {
    try {
      await handle(decode(message.messageText), message.dequeueCount);
    } catch (err) {
      this.failures[queue.name] = (this.failures[queue.name] ?? 0) + 1;
      if (err instanceof SimulatedCrash) return;
      await this.#release(queue, message).catch(() => undefined);
      return;
    }
    // A delete lost to a storage outage leaves the message to come back: the handlers must take it twice.
    await queue.deleteMessage(message.messageId, message.popReceipt).catch(() => undefined);
  }

  async #release(queue: QueueClient, message: DequeuedMessageItem): Promise<void> {
    if (message.dequeueCount >= this.options.maxDequeueCount) {
      const poison = this.queues.getQueueClient(`${queue.name}-poison`);
      await poison.createIfNotExists();
      await poison.sendMessage(message.messageText, { messageTimeToLive: -1 });
      await queue.deleteMessage(message.messageId, message.popReceipt);
      return;
    }
    await queue.updateMessage(message.messageId, message.popReceipt, undefined, this.options.retryDelaySeconds);
  }

  async #quiet(): Promise<boolean> {
    try {
      for (const name of [QUEUE_NAMES.pollRequests, QUEUE_NAMES.incidents]) {
        if ((await this.queues.getQueueClient(name).getProperties()).approximateMessagesCount !== 0) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  async #count(queueName: string): Promise<number> {
    const queue = this.queues.getQueueClient(queueName);
    if (!(await queue.exists())) return 0;
    return (await queue.getProperties()).approximateMessagesCount ?? 0;
  }

  /** Seeded versions routed, plus every dead letter and poisoned event (an approximation for "go on ticking?"). */
  async accountedFor(): Promise<number> {
    const routed = [...this.seeded.keys()].filter((id) =>
      this.outcomes.get(id)?.some((o) => o.status === 'routed'),
    ).length;
    return routed + (await this.#count('incidents-deadletter')) + (await this.#count(QUEUE_NAMES.poison));
  }

  async #drain(queueName: string): Promise<unknown[]> {
    const queue = this.queues.getQueueClient(queueName);
    if (!(await queue.exists())) return [];
    const out: unknown[] = [];
    for (;;) {
      const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 60 });
      if (receivedMessageItems.length === 0) return out;
      for (const m of receivedMessageItems) {
        out.push(decode(m.messageText));
        await queue.deleteMessage(m.messageId, m.popReceipt);
      }
    }
  }

  /** Deliveries per destination and eventId, read from the routed queues, the receivers and the Sentinel rows. */
  async deliveries(): Promise<Map<string, number>> {
    const tally = new Map<string, number>();
    const add = (destination: string, eventId: unknown) => {
      const key = `${destination}|${String(eventId)}`;
      tally.set(key, (tally.get(key) ?? 0) + 1);
    };
    for (const [destination, queueName] of Object.entries(QUEUE_DESTINATIONS)) {
      for (const message of (await this.#drain(queueName)) as { eventId?: string }[]) {
        this.#conforms('routed-message', message, queueName);
        add(destination, message.eventId);
      }
    }
    for (const name of RECEIVER_DESTINATIONS) {
      for (const request of this.standIns.receivers[name].accepted()) {
        // Teams and Slack get their own formats; the generic webhook gets the published message.
        if (name === 'siem') {
          this.#conforms('routed-message', request.body, 'webhook siem');
          this.#conforms('webhook-headers', request.headers, 'webhook siem headers');
        }
        add(name, request.headers[EVENT_ID_HEADER.toLowerCase()]);
      }
    }
    // The demo's `sentinel` destination: one row per event, its EventId column.
    for (const row of this.standIns.logsIngestion.store.rows({ rule: this.standIns.sentinelRule.ruleId }))
      add('sentinel', row.columns.EventId);
    return tally;
  }

  #conforms(schema: PublishedSchemaName, message: unknown, where: string): void {
    for (const problem of schemaProblems(schema, message)) {
      const eventId = (message as { eventId?: unknown } | null)?.eventId;
      this.schemaProblems.push(`${where} ${typeof eventId === 'string' ? eventId : ''} (${schema}) ${problem}`);
    }
  }

  /** The final accounting (reads the destinations, dead-letter and poison queues: call once, at the end). */
  async report(): Promise<FlowReport> {
    const deadLetters = (await this.#drain('incidents-deadletter')) as DeadLetter[];
    const poisoned = (await this.#drain(QUEUE_NAMES.poison)) as { eventId?: string }[];
    for (const deadLetter of deadLetters) this.#conforms('dead-letter', deadLetter, 'incidents-deadletter');
    for (const event of poisoned) this.#conforms('incident-event', event, QUEUE_NAMES.poison);
    const deadIds = new Set(deadLetters.map((d) => (d.message as { eventId?: string } | undefined)?.eventId));
    const poisonIds = new Set(poisoned.map((p) => p.eventId));
    const deliveries = await this.deliveries();

    const routedIds = new Set<string>();
    const missingDeliveries: string[] = [];
    const deliveryLog = this.instances[0]!.services.deliveryLog;
    for (const eventId of this.seeded.keys()) {
      const routed = this.outcomes.get(eventId)?.filter((o) => o.status === 'routed') ?? [];
      if (routed.length === 0 || !(await deliveryLog.isRouted(eventId))) continue;
      routedIds.add(eventId);
      for (const destination of routed.at(-1)!.destinations) {
        if (DROP_DESTINATIONS.has(destination)) continue;
        if (!deliveries.has(`${destination}|${eventId}`)) missingDeliveries.push(`${eventId} → ${destination}`);
      }
    }
    const lostIds = [...this.seeded.keys()].filter(
      (id) => !routedIds.has(id) && !deadIds.has(id) && !poisonIds.has(id),
    );
    const duplicateIds = [...deliveries].filter(([, n]) => n > 1).map(([key, n]) => `${key} ×${n}`);
    return {
      incidents: this.seeded.size,
      routed: routedIds.size,
      deadLettered: [...this.seeded.keys()].filter((id) => deadIds.has(id) && !routedIds.has(id)).length,
      poisoned: [...this.seeded.keys()].filter((id) => poisonIds.has(id) && !routedIds.has(id) && !deadIds.has(id))
        .length,
      duplicates: [...deliveries.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0),
      lost: lostIds.length,
      reasons: deadLetters.map((d) => d.reason),
      missingDeliveries,
      lostIds,
      duplicateIds,
      schemaProblems: this.schemaProblems,
    };
  }
}
