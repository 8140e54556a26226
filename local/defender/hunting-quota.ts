import * as z from 'zod';
import { DefenderApiError } from './errors.js';

/**
 * Advanced hunting's per-tenant CPU quota and per-query timeout, as MicrosoftDocs/defender-docs
 * `defender-xdr/api-advanced-hunting.md` ("Quotas and resource allocation") states them:
 * - 4. "Each tenant is allocated CPU resources, based on the tenant size. Queries are blocked if the
 *   tenant has reached 100% of the allocated resources until after the next 15-minute cycle."
 * - 5. "If a single request runs for more than three minutes, it times out and returns an error."
 * - 6. "A 429 HTTP response code indicates that you've reached the allocated CPU resources ... Read
 *   the response body to understand the limit you have reached." (no Retry-After is documented).
 * The messages are `defender-xdr/advanced-hunting-errors.md`'s ("CPU throttling", "Timeouts").
 *
 * The CPU cost is a model, simple and deterministic so that tests can count on it: a query costs
 * `BASE_CPU_MS` plus `CPU_MS_PER_100_ROWS` for every 100 rows of the table it scans (after the 30-day
 * retention), and runs (simulated, answered at once) as long as it costs. The control surface can
 * size a tenant's quota, mark this cycle's quota spent, or make the next queries run long.
 */

/** The quota's refresh cycle: fixed quarter hours (:00, :15, :30, :45 UTC). */
export const CPU_CYCLE_MS = 15 * 60_000;
/** "more than three minutes": a query that would run longer is stopped at three minutes. */
export const QUERY_TIMEOUT_SECONDS = 180;
/** "based on the tenant size": undocumented; one CPU for the whole cycle, far above what a relay's queries cost here. */
export const DEFAULT_CPU_SECONDS_PER_CYCLE = 900;
const BASE_CPU_MS = 100;
const CPU_MS_PER_100_ROWS = 1;

export interface HuntingSettings {
  /** The tenant's allocation per 15-minute cycle, in CPU seconds (the tenant's size). */
  cpuSecondsPerCycle?: number;
  /** Marks the current cycle's quota as used up; the next cycle starts afresh. */
  quotaSpent?: boolean;
  /** The next `count` (default 1) queries that run take `runSeconds` each; over three minutes they time out. */
  nextQueries?: { runSeconds: number; count?: number };
}

/** A control surface's body for `configure` (the Defender and Graph stand-ins' `PATCH …/hunting`): bounded, nothing else. */
export const huntingSettingsSchema = z.strictObject({
  cpuSecondsPerCycle: z.number().positive().max(1_000_000).optional(),
  quotaSpent: z.literal(true).optional(),
  nextQueries: z
    .strictObject({ runSeconds: z.number().min(0).max(86_400), count: z.number().int().min(1).max(10_000).optional() })
    .optional(),
});

export interface HuntingState {
  tenantId: string;
  cpuSecondsPerCycle: number;
  cpuSecondsUsed: number;
  cycleStartedAt: string;
  cycleEndsAt: string;
  blocked: boolean;
  /** Simulated run times queued for the next queries. */
  nextRunSeconds: number[];
}

interface TenantUsage {
  cpuSecondsPerCycle: number;
  cycleStart: number;
  usedMs: number;
  nextRunSeconds: number[];
}

export class HuntingQuota {
  readonly #now: () => number;
  readonly #tenants = new Map<string, TenantUsage>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Throws the documented 429 when the tenant's quota for this cycle is used up. */
  admit(tenantId: string): void {
    const usage = this.#usage(tenantId);
    if (usage.usedMs < usage.cpuSecondsPerCycle * 1000) return;
    const waitSeconds = Math.max(1, Math.ceil((usage.cycleStart + CPU_CYCLE_MS - this.#now()) / 1000));
    // The wait is in the body only, as a TimeSpan: the format Defender's other quota messages use
    // ("API calls quota exceeded! maximum allowed 45 per 00:01:00", MicrosoftDocs/microsoft-365-docs#4616);
    // the errors page writes it as "<duration>".
    throw new DefenderApiError(
      429,
      'TooManyRequests',
      `You have exceeded processing resources allocated to this tenant. You can run queries again in ${timeSpan(waitSeconds)}.`,
    );
  }

  /**
   * Charges a query that scanned `rowsScanned` rows and says how long it ran; throws the timeout
   * error (after charging the three minutes it ran) when it would have run longer.
   */
  run(tenantId: string, rowsScanned: number): { runSeconds: number; cpuSeconds: number } {
    const usage = this.#usage(tenantId);
    const costMs = BASE_CPU_MS + Math.ceil(rowsScanned / 100) * CPU_MS_PER_100_ROWS;
    const override = usage.nextRunSeconds.shift();
    const runMs = override === undefined ? costMs : Math.round(override * 1000);
    if (runMs > QUERY_TIMEOUT_SECONDS * 1000) {
      usage.usedMs += QUERY_TIMEOUT_SECONDS * 1000;
      // The status is not documented ("times out and returns an error"). The closest documented
      // behaviour: the API's other per-query limit, the result size, answers 400 Bad Request
      // (MicrosoftDocs/defender-docs defender-endpoint/api/run-advanced-query-api.md), as do queries
      // preempted for their resources. The message is advanced-hunting-errors.md's for a timeout.
      throw new DefenderApiError(400, 'BadRequest', 'Query exceeded the timeout period.');
    }
    usage.usedMs += runMs;
    return { runSeconds: runMs / 1000, cpuSeconds: runMs / 1000 };
  }

  configure(tenantId: string, settings: HuntingSettings): HuntingState {
    const usage = this.#usage(tenantId);
    if (settings.cpuSecondsPerCycle !== undefined) usage.cpuSecondsPerCycle = settings.cpuSecondsPerCycle;
    if (settings.quotaSpent) usage.usedMs = Math.max(usage.usedMs, usage.cpuSecondsPerCycle * 1000);
    if (settings.nextQueries) {
      const { runSeconds, count = 1 } = settings.nextQueries;
      usage.nextRunSeconds.push(...Array<number>(count).fill(runSeconds));
    }
    return this.state(tenantId);
  }

  state(tenantId: string): HuntingState {
    const usage = this.#usage(tenantId);
    return {
      tenantId,
      cpuSecondsPerCycle: usage.cpuSecondsPerCycle,
      cpuSecondsUsed: usage.usedMs / 1000,
      cycleStartedAt: new Date(usage.cycleStart).toISOString(),
      cycleEndsAt: new Date(usage.cycleStart + CPU_CYCLE_MS).toISOString(),
      blocked: usage.usedMs >= usage.cpuSecondsPerCycle * 1000,
      nextRunSeconds: [...usage.nextRunSeconds],
    };
  }

  /** Back to the defaults: one tenant's settings, or every tenant's. */
  reset(tenantId?: string): void {
    if (tenantId === undefined) this.#tenants.clear();
    else this.#tenants.delete(tenantId);
  }

  /** The tenant's usage in the current cycle; a new cycle starts with nothing used (the settings stay). */
  #usage(tenantId: string): TenantUsage {
    const cycleStart = Math.floor(this.#now() / CPU_CYCLE_MS) * CPU_CYCLE_MS;
    let usage = this.#tenants.get(tenantId);
    if (!usage) {
      usage = { cpuSecondsPerCycle: DEFAULT_CPU_SECONDS_PER_CYCLE, cycleStart, usedMs: 0, nextRunSeconds: [] };
      this.#tenants.set(tenantId, usage);
    } else if (usage.cycleStart !== cycleStart) {
      usage.cycleStart = cycleStart;
      usage.usedMs = 0;
    }
    return usage;
  }
}

/** Seconds as a .NET TimeSpan, `hh:mm:ss`. */
function timeSpan(seconds: number): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor((seconds % 3600) / 60))}:${pad(seconds % 60)}`;
}
