import { randomUUID } from 'node:crypto';
import { CallBudget } from '../shared/sources/call-budget.js';
import { loadConfig } from '../shared/config/config.js';
import { DefenderTokenProvider } from '../shared/auth/credentials.js';
import { DefenderClient } from '../shared/sources/defender/client.js';
import { pollRequest, pollTenant, type IngestDependencies } from '../shared/ingest/ingest.js';
import { QUEUE_NAMES } from '../shared/storage/queues.js';
import { SecretCache } from '../shared/auth/secrets.js';
import { FaultBoard } from '../local/common/faults.js';
import { startDefender } from '../local/defender/server.js';
import { forEachLimited } from './stats.js';
import { addPartnerTenant, clearQueue, type BenchWorld } from './world.js';

/**
 * Figure 4 and the Key Vault and token figures of figure 3: many partner-context tenants (one
 * multi-tenant app consented in all) polled on the default schedule for one simulated hour. A
 * simulated clock, 5 minutes further at each cycle, drives everything that keeps time across polls:
 * a Defender stand-in with the documented limits, the real CallBudget, the poller, the token
 * provider and the secret cache. Entra ID and the SDKs keep real time (tokens live 3599 s), so the
 * hour is simulated exactly up to the first renewal, which is what the figures need.
 */
export interface ScheduleResult {
  tenants: number;
  /** Tenants polled in each cycle: all of them in the first cycles, then a sample for the rest of the hour. */
  polled: number[];
  /** Token requests per tenant over the whole run (the hour and the poll after it), for the tenants polled in every cycle. */
  tokenRequestsPerHourTenant: number;
  cycles: number;
  cycleMinutes: number;
  /** Real time each cycle of polls took. */
  cycleSeconds: number[];
  calls: number[];
  throttled: number[];
  keyVaultReads: number[];
  tokenRequests: number[];
  eventsEnqueued: number;
  /** Minutes after the first token at which the poller asked for the next one (none within the hour: undefined). */
  tokenRenewalMinutes?: number;
}

/** The minutes between polls on the app's default schedule (`0 *\/N * * * *`), read from its configuration. */
export function defaultScheduleMinutes(appSettings: Record<string, string>): number {
  const { POLL_SCHEDULE: _demoSchedule, ...settings } = appSettings;
  const schedule = loadConfig(settings).pollSchedule;
  const minutes = /^0 \*\/(\d+) \* \* \* \*$/.exec(schedule)?.[1];
  if (!minutes)
    throw new Error(
      `The default POLL_SCHEDULE '${schedule}' is not of the form '0 */N * * * *'; the benchmark cannot simulate it`,
    );
  return Number(minutes);
}

const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);

export interface ScheduleOptions {
  tenants: number;
  /** Cycles in which every tenant is polled (the 429 figure); after them only `hourTenants` go on, to keep the hour short. */
  fullCycles: number;
  hourTenants: number;
  concurrency: number;
}

export async function runSchedule(bench: BenchWorld, options: ScheduleOptions): Promise<ScheduleResult> {
  const cycleMinutes = defaultScheduleMinutes(bench.appSettings);
  const cycleMs = cycleMinutes * 60_000;
  // A simulated hour and the poll that opens the next, where an hour's token is due for renewal.
  const cycles = Math.ceil(60 / cycleMinutes) + 1;
  let offset = 0;
  const now = () => Date.now() + offset;

  const defender = await startDefender({
    tls: bench.tls,
    verifier: bench.entra.verifier,
    faults: new FaultBoard(),
    now,
  });
  try {
    const tenantIds = Array.from({ length: options.tenants }, () => randomUUID());
    await forEachLimited(tenantIds, 16, (tenantId, i) =>
      addPartnerTenant(bench, {
        tenantId,
        displayName: `Bench schedule ${i + 1}`,
        incidents: 2,
        seed: `schedule-${i}`,
        defender,
        now: now(),
      }),
    );

    const { services } = bench;
    const config = services.config;
    const secretCache = new SecretCache(services.secrets, undefined, now);
    const tokens = new DefenderTokenProvider({
      secrets: secretCache,
      entra: config.entra,
      appCredential: services.appCredential,
      scope: config.defender.scope,
      now,
    });
    const client = new DefenderClient({ apiUrl: defender.url, tokens, budget: new CallBudget(undefined, now) });
    const deps: IngestDependencies = {
      registry: services.registry,
      checkpoints: services.checkpoints,
      sender: services.sender,
      defender: client,
      now: () => new Date(now()),
      maxPagesPerRun: config.pollMaxPagesPerRun,
    };

    const result: ScheduleResult = {
      tenants: options.tenants,
      polled: [],
      tokenRequestsPerHourTenant: 0,
      cycles,
      cycleMinutes,
      cycleSeconds: [],
      calls: [],
      throttled: [],
      keyVaultReads: [],
      tokenRequests: [],
      eventsEnqueued: 0,
    };
    const hourTenants = tenantIds.slice(0, Math.min(options.hourTenants, tenantIds.length));
    const totals = () => {
      const stats = defender.stats.snapshot();
      return {
        calls: sum(stats.map((s) => s.calls)),
        throttled: sum(stats.map((s) => s.throttled)),
        reads: secretCache.reads,
        tokens: sum(tokens.requests.values()),
      };
    };
    for (let cycle = 0; cycle < cycles; cycle++) {
      if (cycle > 0) {
        offset += cycleMs;
        // Between polls, a tenth of the tenants see an incident change in the portal.
        for (const tenantId of (cycle < options.fullCycles ? tenantIds : hourTenants).filter(
          (_, i) => i % 10 === cycle % 10,
        )) {
          const [first] = defender.store.list(tenantId);
          if (first)
            defender.store.update(
              tenantId,
              first.incidentId,
              (incident) => void (incident.assignedTo = `analyst-${cycle}@contoso.example`),
            );
        }
      }
      const polled = cycle < options.fullCycles ? tenantIds : hourTenants;
      result.polled.push(polled.length);
      const before = totals();
      const started = performance.now();
      await forEachLimited(polled, options.concurrency, async (tenantId) => {
        const outcome = await pollTenant(pollRequest(tenantId, 'schedule', new Date(now())), deps);
        result.eventsEnqueued += outcome.enqueued;
      });
      result.cycleSeconds.push((performance.now() - started) / 1000);
      const after = totals();
      result.calls.push(after.calls - before.calls);
      result.throttled.push(after.throttled - before.throttled);
      result.keyVaultReads.push(after.reads - before.reads);
      result.tokenRequests.push(after.tokens - before.tokens);
      if (result.tokenRenewalMinutes === undefined && cycle > 0 && after.tokens > before.tokens)
        result.tokenRenewalMinutes = cycle * cycleMinutes;
    }
    result.tokenRequestsPerHourTenant = sum(hourTenants.map((id) => tokens.requests.get(id) ?? 0)) / hourTenants.length;
    await clearQueue(services.storage.queues, QUEUE_NAMES.incidents);
    return result;
  } finally {
    await defender.close();
  }
}
