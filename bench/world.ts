import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueServiceClient } from '@azure/storage-queue';
import { azuriteConnectionString, startAzurite, type RunningAzurite } from '../local/azurite.js';
import { FaultBoard } from '../local/common/faults.js';
import type { KeyAndCert } from '../local/common/tls.js';
import { startDefender, type DefenderStandIn } from '../local/defender/server.js';
import { createDemoWorld, type DemoApp, type DemoWorld } from '../local/demo.js';
import { startEntra, type EntraStandIn } from '../local/entra/server.js';
import { startGraph, type GraphStandIn } from '../local/graph/server.js';
import { startKeyVault, type KeyVaultStandIn } from '../local/keyvault/server.js';
import { addPartnerTenant as onboardPartnerTenant, appSettingsFor, seedWorld } from '../local/stack.js';
import { loadConfig } from '../shared/config/config.js';
import { createServices, type Services } from '../shared/services.js';
import { startLatencyProxyThread } from './latency-proxy.js';

/**
 * What every figure runs against: Azurite, the Entra ID, Key Vault, Defender and Graph stand-ins (over
 * HTTPS, in this process) with the demo world seeded, and the app's services pointed at them. The
 * Defender and Graph stand-ins' rate limits are raised so that the figures measure the relay, not the
 * quota; the schedule figure starts a Defender stand-in of its own with the documented limits.
 */
export const BENCH_ROUTED_QUEUE = 'bench-routed';

/** Far above anything a figure sends, so that only the figures that are about the quota meet it. */
export const UNLIMITED = { perMinute: 1_000_000, perHour: 10_000_000 };
/** The same for the Graph stand-in, whose limits are per minute per tenant and per second per app. */
export const GRAPH_UNLIMITED = { perAppPerTenantPerMinute: 1_000_000, perAppPerSecond: 1_000_000 };

export interface BenchWorld {
  tls: KeyAndCert;
  world: DemoWorld;
  azurite: RunningAzurite;
  entra: EntraStandIn;
  keyVault: KeyVaultStandIn;
  defender: DefenderStandIn;
  /** Where tenants whose source is `graph` are read (the demo world's Woodgrove among them). */
  graph: GraphStandIn;
  faults: FaultBoard;
  /** The multi-tenant app every benchmark tenant has consented to (partner context). */
  partnerApp: DemoApp;
  partnerSecretName: string;
  appSettings: Record<string, string>;
  services: Services;
  queues: QueueServiceClient;
  /**
   * Replaces Azurite (and the services that use it) with a fresh, empty one. Each figure starts on
   * its own and stays well under a minute on it: Azurite's queue garbage collector, every 60 s,
   * takes time quadratic in the messages cleared since the last, and stalls everything for minutes
   * once a few thousand have been (an emulator artefact that Azure Storage does not share).
   */
  renewStorage(options?: { oneWayLatencyMs?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function startBenchWorld(tls: KeyAndCert): Promise<BenchWorld> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    const faults = new FaultBoard();
    const world = createDemoWorld();
    const azurite = await startAzurite({ extentMemoryLimitMb: 1024 });
    cleanups.push(() => azurite.stop());
    const entra = await startEntra({ tls, faults });
    cleanups.push(() => entra.close());
    const keyVault = await startKeyVault({
      tls,
      verifier: entra.verifier,
      tenantId: world.provider.tenantId,
      authorityHost: entra.url,
      faults,
    });
    cleanups.push(() => keyVault.close());
    const defender = await startDefender({
      tls,
      verifier: entra.verifier,
      faults,
      limits: UNLIMITED,
      getIncidentLimits: UNLIMITED,
    });
    cleanups.push(() => defender.close());
    const graph = await startGraph({
      tls,
      verifier: entra.verifier,
      faults,
      authorityHost: entra.url,
      limits: GRAPH_UNLIMITED,
    });
    cleanups.push(() => graph.close());
    await seedWorld(world, entra, keyVault, defender, graph);

    const dir = mkdtempSync(join(tmpdir(), 'defender-relay-bench-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    // Every event goes to one queue: the figure is the pipeline's cost, not a webhook's.
    const routesFile = join(dir, 'routes.json');
    writeFileSync(
      routesFile,
      JSON.stringify(
        {
          destinations: { out: { type: 'queue', queueName: BENCH_ROUTED_QUEUE } },
          rules: [],
          defaultRoute: { destinations: ['out'] },
        },
        null,
        2,
      ),
    );
    const partnerApp = world.apps.find((a) => a.multiTenant);
    const partnerTenant = world.tenants.find((t) => t.context === 'partner');
    if (!partnerApp || !partnerTenant)
      throw new Error('The demo world has no partner-context app and tenant to model benchmark tenants on');

    const storageFor = (running: RunningAzurite) => {
      const appSettings = appSettingsFor(world, running.connectionString, {
        entra,
        keyVault,
        defender,
        graph,
        routesFile,
      });
      return {
        azurite: running,
        appSettings,
        services: createServices(loadConfig(appSettings)),
        queues: QueueServiceClient.fromConnectionString(running.connectionString),
      };
    };
    const bench: BenchWorld = {
      tls,
      world,
      ...storageFor(azurite),
      entra,
      keyVault,
      defender,
      graph,
      faults,
      partnerApp,
      partnerSecretName: partnerTenant.clientSecretName,
      async renewStorage({ oneWayLatencyMs = 0 } = {}) {
        await bench.azurite.stop();
        const fresh = await startAzurite({ extentMemoryLimitMb: 1024 });
        Object.assign(bench, storageFor(oneWayLatencyMs > 0 ? await behindLatency(fresh, oneWayLatencyMs) : fresh));
      },
      close,
    };
    // Whichever Azurite is current when the run ends.
    cleanups[0] = () => bench.azurite.stop();
    return bench;
  } catch (err) {
    await close();
    throw err;
  }
}

/** The same Azurite, reached through a latency proxy per service (the relay and the raw reference alike). */
async function behindLatency(azurite: RunningAzurite, oneWayMs: number): Promise<RunningAzurite> {
  const [blob, queue, table] = await Promise.all(
    [azurite.ports.blob, azurite.ports.queue, azurite.ports.table].map((port) =>
      startLatencyProxyThread(port, oneWayMs),
    ),
  );
  const url = (original: string, port: number) => {
    const proxied = new URL(original);
    proxied.port = String(port);
    return proxied.toString().replace(/\/$/, '');
  };
  const blobUrl = url(azurite.blobUrl, blob!.port);
  const queueUrl = url(azurite.queueUrl, queue!.port);
  const tableUrl = url(azurite.tableUrl, table!.port);
  return {
    ...azurite,
    blobUrl,
    queueUrl,
    tableUrl,
    connectionString: azuriteConnectionString(blobUrl, queueUrl, tableUrl),
    ports: { blob: blob!.port, queue: queue!.port, table: table!.port },
    stop: async () => {
      await Promise.all([blob, queue, table].map((proxy) => proxy!.close()));
      await azurite.stop();
    },
  };
}

/**
 * A customer tenant read in the partner context (local/stack.ts `addPartnerTenant`), onboarded in this
 * bench world's stand-ins and registry (or in `defender`, a stand-in of a figure's own); with
 * `source: 'graph'` in the Graph stand-in.
 */
export async function addPartnerTenant(
  bench: BenchWorld,
  options: Parameters<typeof onboardPartnerTenant>[1] & { defender?: DefenderStandIn },
): Promise<void> {
  const { defender, ...tenant } = options;
  await onboardPartnerTenant(
    {
      entra: bench.entra,
      defender: defender ?? bench.defender,
      graph: bench.graph,
      registry: bench.services.registry,
      partnerApp: bench.partnerApp,
      partnerSecretName: bench.partnerSecretName,
    },
    tenant,
  );
}

/** Empties a queue (creating it if needed) so the next figure starts from the same state. */
export async function clearQueue(queues: QueueServiceClient, name: string): Promise<void> {
  const queue = queues.getQueueClient(name);
  await queue.createIfNotExists();
  await queue.clearMessages();
}
