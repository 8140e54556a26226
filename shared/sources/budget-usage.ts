import type { TableClient } from '@azure/data-tables';
import { DEFAULT_BUDGET, type BudgetedService, type BudgetRate } from './call-budget.js';
import { GRAPH_BUDGET } from './graph/client.js';
import { BUDGET_ROWS, parseBlocked, SLOT_MS } from './shared-budget.js';

/**
 * How much of each tenant's call budgets (Defender's, Graph's) all instances used in the last minute
 * and hour, and which of its calls are held back after a 429, read from the shared budget (`shared-budget.ts`:
 * one entity per tenant and service, `slots` = JSON of slot number → calls per class, `blocked` = JSON of
 * budget API → until when). For people, not for deciding calls: one query for every tenant.
 */
export interface BudgetUsage {
  lastMinute: number;
  lastHour: number;
  limits: BudgetRate;
  /**
   * The tenant's calls the service is holding back after a 429, until its Retry-After: the budget API
   * held (Defender's `listIncidents`…, Graph's `security`, or hunting alone, `security/runHuntingQuery`).
   */
  held: { api: string; until: string }[];
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

/** Per tenant, the usage of each service's budget it has counts for. */
export type TenantBudgetUsage = Partial<Record<BudgetedService, BudgetUsage>>;

const LIMITS: Record<BudgetedService, BudgetRate> = { defender: DEFAULT_BUDGET, graph: GRAPH_BUDGET };
const SERVICE_OF_ROW = new Map(Object.entries(BUDGET_ROWS).map(([service, row]) => [row, service as BudgetedService]));

export async function readBudgetUsage(table: TableClient, now = Date.now()): Promise<Map<string, TenantBudgetUsage>> {
  const usage = new Map<string, TenantBudgetUsage>();
  const filter = [...SERVICE_OF_ROW.keys()].map((row) => `RowKey eq '${row}'`).join(' or ');
  try {
    for await (const entity of table.listEntities<{ slots?: string; blocked?: string }>({
      queryOptions: { filter, select: ['PartitionKey', 'RowKey', 'slots', 'blocked'] },
    })) {
      const service = SERVICE_OF_ROW.get(entity.rowKey!)!;
      usage.set(entity.partitionKey!, {
        ...usage.get(entity.partitionKey!),
        [service]: usageOf(entity.slots, now, LIMITS[service], entity.blocked),
      });
    }
  } catch (err) {
    // No tenant has made a call yet: the table does not exist.
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  return usage;
}

/**
 * Calls counted in slots that end within the window (a call counts at the end of its slot, as the budget
 * counts it), and the holds that have not run out yet.
 */
export function usageOf(
  slotsJson: string | undefined,
  now: number,
  limits: BudgetRate = DEFAULT_BUDGET,
  blockedJson?: string,
): BudgetUsage {
  const usage: BudgetUsage = { lastMinute: 0, lastHour: 0, limits, held: heldOf(blockedJson, now) };
  let slots: unknown;
  try {
    slots = JSON.parse(slotsJson ?? '{}');
  } catch {
    return usage;
  }
  if (typeof slots !== 'object' || slots === null) return usage;
  for (const [slot, counts] of Object.entries(slots)) {
    if (!Array.isArray(counts)) continue;
    const calls = counts.reduce<number>((sum, n) => sum + (typeof n === 'number' && n > 0 ? n : 0), 0);
    const endsAt = (Number(slot) + 1) * SLOT_MS;
    if (endsAt > now - HOUR_MS) usage.lastHour += calls;
    if (endsAt > now - MINUTE_MS) usage.lastMinute += calls;
  }
  return usage;
}

/** The holds of a `blocked` column still running at `now`, soonest end first. */
function heldOf(blockedJson: string | undefined, now: number): BudgetUsage['held'] {
  return [...parseBlocked(blockedJson)]
    .filter(([, until]) => until > now)
    .sort(([, a], [, b]) => a - b)
    .map(([api, until]) => ({ api, until: new Date(until).toISOString() }));
}
