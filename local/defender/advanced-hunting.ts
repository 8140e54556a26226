import { HUNTING_TABLES, type HuntingTable } from './hunting-tables.js';
import { KqlError, parseKql, runKql } from './kql.js';
import { parseTimestamp, ticksFromMs } from './timestamps.js';
import type { Incident } from './types.js';

/** Advanced hunting keeps 30 days of data and answers at most 100,000 rows. */
const RETENTION_MS = 30 * 86_400_000;
const MAX_ROWS = 100_000;

export interface HuntingResponse {
  Stats: {
    ExecutionTime: number;
    resource_usage: Record<string, unknown>;
    dataset_statistics: { table_row_count: number; table_size: number }[];
  };
  Schema: HuntingTable['schema'];
  Results: HuntingTable['rows'];
}

/** What a query that ran cost: how long it ran and the CPU it used (see hunting-quota.ts). */
export type ChargeQuery = (rowsScanned: number) => { runSeconds: number; cpuSeconds: number };

/**
 * A time range (100 ns ticks since the epoch, both ends included) that narrows the rows a query sees, as
 * Microsoft Graph's runHuntingQuery `Timespan` does. It narrows within the 30 days kept, never beyond them.
 */
export interface HuntingWindow {
  from: bigint;
  to: bigint;
}

/**
 * Runs a query over the tables derived from the tenant's incidents; throws KqlError for a bad query
 * (which costs nothing). `charge` prices a query that ran, and may refuse it (the timeout). Without
 * `window`, the rows are the 30 days kept (the Defender API has no time range of its own).
 */
export function runAdvancedHunting(
  incidents: readonly Incident[],
  query: string,
  now: number,
  charge: ChargeQuery,
  window?: HuntingWindow,
): HuntingResponse {
  const parsed = parseKql(query, now);
  const build = HUNTING_TABLES[parsed.table];
  if (!build) {
    throw new KqlError(
      `Failed to resolve table expression named '${parsed.table}' (tables here: ${Object.keys(HUNTING_TABLES).join(', ')}).`,
    );
  }
  const table = build(incidents);
  const oldest = ticksFromMs(now - RETENTION_MS);
  const from = window !== undefined && window.from > oldest ? window.from : oldest;
  const visible = (ticks: bigint) => ticks >= from && (window === undefined || ticks <= window.to);
  const retained = {
    schema: table.schema,
    rows: table.rows.filter((row) => visible(parseTimestamp(String(row.Timestamp)) ?? 0n)),
  };
  const result = runKql(parsed, retained);
  const rows = result.rows.slice(0, MAX_ROWS);
  const size = Buffer.byteLength(JSON.stringify(rows));
  const { runSeconds, cpuSeconds } = charge(retained.rows.length);
  const cpu = formatTimespan(cpuSeconds);
  return {
    Stats: {
      ExecutionTime: runSeconds,
      resource_usage: {
        cache: {
          memory: { hits: retained.rows.length, misses: 0, total: retained.rows.length },
          disk: { hits: 0, misses: 0, total: 0 },
        },
        cpu: { user: cpu, kernel: '00:00:00', 'total cpu': cpu },
        memory: { peak_per_node: 1_048_576 + size },
      },
      dataset_statistics: [{ table_row_count: rows.length, table_size: size }],
    },
    Schema: result.schema,
    Results: rows,
  };
}

function formatTimespan(seconds: number): string {
  const whole = Math.floor(seconds);
  const fraction = (seconds - whole).toFixed(7).slice(1);
  const hh = String(Math.floor(whole / 3600)).padStart(2, '0');
  const mm = String(Math.floor((whole % 3600) / 60)).padStart(2, '0');
  const ss = String(whole % 60).padStart(2, '0');
  return `${hh}:${mm}:${ss}${fraction}`;
}
