import { randomUUID } from 'node:crypto';
import { BudgetSpentError, CallBudget, type DefenderCallBudget } from '../shared/sources/call-budget.js';
import { DefenderClient } from '../shared/sources/defender/client.js';
import { SharedCallBudget, type SharedBudgetStats } from '../shared/sources/shared-budget.js';
import type { Tenant } from '../shared/tenants/tenants.js';
import { FaultBoard } from '../local/common/faults.js';
import { startDefender } from '../local/defender/server.js';
import { forEachLimited } from './stats.js';
import { addPartnerTenant, type BenchWorld } from './world.js';

/**
 * Several instances of the app calling Defender for the same tenants at once, as Flex Consumption
 * runs them: each "instance" is a DefenderClient with a budget of its own, all against one Defender
 * stand-in with the documented limits (50 calls a minute per tenant and app), in real time. Each
 * instance keeps every tenant busy with a mix of the calls the relay makes (incident list pages,
 * full-incident fetches, write-back), as fast as its budget lets it. Run twice: with a budget per
 * instance (what each instance did before issue 14) and with the budget they share.
 */
export interface InstancesBudgetRun {
  instances: number;
  tenants: number;
  seconds: number;
  shared: boolean;
  /** Calls Defender answered, and how many of them were 429s. */
  calls: number;
  throttled: number;
  /** Calls the budget refused (the work would go back to its queue). */
  refusedByBudget: number;
  /** The shared budget's storage operations and calls (shared runs only). */
  storage?: SharedBudgetStats;
}

export async function runInstancesBudget(
  bench: BenchWorld,
  options: { instances: number; tenants: number; seconds: number; shared: boolean },
): Promise<InstancesBudgetRun> {
  const defender = await startDefender({ tls: bench.tls, verifier: bench.entra.verifier, faults: new FaultBoard() });
  try {
    const tenantIds = Array.from({ length: options.tenants }, () => randomUUID());
    await forEachLimited(tenantIds, 16, (tenantId, i) =>
      addPartnerTenant(bench, {
        tenantId,
        displayName: `Bench instances ${i + 1}`,
        incidents: 300,
        seed: `instances-${i}`,
        defender,
      }),
    );
    const tenants = await Promise.all(tenantIds.map((id) => bench.services.registry.get(id)));
    const table = bench.services.storage.table(`budget${randomUUID().replace(/-/g, '').slice(0, 12)}`);
    const budgets: DefenderCallBudget[] = Array.from({ length: options.instances }, () =>
      options.shared ? new SharedCallBudget(table) : new CallBudget(),
    );
    // Short waits: work the budget cannot serve soon goes back to its queue, as in the app.
    const clients = budgets.map(
      (budget) =>
        new DefenderClient({
          apiUrl: defender.url,
          tokens: bench.services.tokens,
          budget,
          maxWaitMs: 2_000,
          maxRetries: 1,
        }),
    );
    const deadline = Date.now() + options.seconds * 1000;
    let refusedByBudget = 0;

    const keepBusy = async (client: DefenderClient, tenant: Tenant, instance: number) => {
      const ids = defender.store.list(tenant.tenantId).map((incident) => incident.incidentId);
      for (let step = instance; Date.now() < deadline; step++) {
        const incidentId = ids[step % ids.length]!;
        try {
          if (step % 3 === 0) await client.listIncidentsPage(tenant, { top: 100, skip: (step * 100) % 300 });
          else if (step % 3 === 1) await client.getIncident(tenant, incidentId);
          else await client.updateIncident(tenant, incidentId, { tags: [`bench-${step}`] });
        } catch (err) {
          if (err instanceof BudgetSpentError) {
            refusedByBudget += 1;
            await new Promise((resolve) =>
              setTimeout(resolve, Math.min(err.retryAfterMs ?? 1_000, Math.max(0, deadline - Date.now()))),
            );
          }
          // A 429 or 5xx the client gave up on: the stand-in counted it; go on.
        }
      }
    };
    await Promise.all(
      clients.flatMap((client, instance) => tenants.map((tenant) => keepBusy(client, tenant, instance))),
    );

    const stats = tenantIds.map((id) => defender.stats.for(id, bench.partnerApp.clientId));
    const storage = options.shared
      ? budgets
          .map((b) => (b as SharedCallBudget).stats)
          .reduce((a, b) => ({
            calls: a.calls + b.calls,
            storageOperations: a.storageOperations + b.storageOperations,
            races: a.races + b.races,
          }))
      : undefined;
    return {
      instances: options.instances,
      tenants: options.tenants,
      seconds: options.seconds,
      shared: options.shared,
      calls: stats.reduce((n, s) => n + s.calls, 0),
      throttled: stats.reduce((n, s) => n + s.throttled, 0),
      refusedByBudget,
      storage,
    };
  } finally {
    await defender.close();
  }
}
