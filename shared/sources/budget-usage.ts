import type { TableClient } from '@azure/data-tables';
import { DEFAULT_BUDGET, type BudgetRate } from './call-budget.js';
import { SLOT_MS } from './shared-budget.js';

/**
 * How much of each tenant's Defender call budget all instances used in the last minute and hour, read
 * from the shared budget's counts (`shared-budget.ts`: one entity per tenant, `slots` = JSON of
 * slot number → calls per class). For people, not for deciding calls: one query for every tenant.
 */
export interface BudgetUsage {
  lastMinute: number;
  lastHour: number;
  limits: BudgetRate;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

export async function readBudgetUsage(table: TableClient, now = Date.now()): Promise<Map<string, BudgetUsage>> {
  const usage = new Map<string, BudgetUsage>();
  try {
    for await (const entity of table.listEntities<{ slots?: string }>({
      queryOptions: { filter: "RowKey eq 'calls'", select: ['PartitionKey', 'slots'] },
    }))
      usage.set(entity.partitionKey!, usageOf(entity.slots, now));
  } catch (err) {
    // No tenant has made a call yet: the table does not exist.
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  return usage;
}

/** Calls counted in slots that end within the window (a call counts at the end of its slot, as the budget counts it). */
export function usageOf(slotsJson: string | undefined, now: number): BudgetUsage {
  const usage: BudgetUsage = { lastMinute: 0, lastHour: 0, limits: DEFAULT_BUDGET };
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
