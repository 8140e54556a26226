import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, platform, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { describeGoal, round, verdict, type Goal, type Verdict } from './stats.js';

/** One line of the table: the figure, its goal and verdict, and the absolute numbers it comes from. */
export interface Figure {
  id: string;
  name: string;
  value: number;
  unit: string;
  goal?: Goal;
  verdict: Verdict;
  /** The absolute numbers beside the ratio, in words. */
  detail: string;
}

export function figure(
  id: string,
  name: string,
  value: number,
  unit: string,
  goal: Goal | undefined,
  detail: string,
): Figure {
  return { id, name, value: round(value), unit, goal, verdict: verdict(value, goal), detail };
}

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  freeMemoryGiB: number;
  node: string;
  os: string;
}

export function describeMachine(): Machine {
  const cpu = cpus();
  return {
    cpuModel: cpu[0]?.model.trim() ?? 'unknown',
    cores: cpu.length,
    memoryGiB: round(totalmem() / 2 ** 30),
    freeMemoryGiB: round(freemem() / 2 ** 30),
    node: process.version,
    os: `${platform()} ${release()}`,
  };
}

export interface BenchReport {
  date: string;
  command: string;
  mode: 'full' | 'quick';
  /** The figures `--only` asked for, when the run measured no others. */
  only?: string[];
  durationSeconds: number;
  machine: Machine;
  figures: Figure[];
  details: Record<string, unknown>;
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** The table people read: one line per figure, absolute numbers on the right. */
export function formatTable(report: BenchReport): string {
  const m = report.machine;
  const rows = report.figures.map((f) => [
    f.name,
    `${f.value}${f.unit ? ` ${f.unit}` : ''}`,
    describeGoal(f.goal),
    f.verdict,
    f.detail,
  ]);
  const header = ['Figure', 'Value', 'Goal', 'Result', 'Measured'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === 4 ? 0 : r[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === 4 ? c : pad(c, widths[i]!))).join('  ');
  return [
    `defender-relay benchmark (${report.mode}${report.only ? `, only ${report.only.join(', ')}` : ''}), ${report.date}, ${report.durationSeconds} s`,
    `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}`,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w)).concat('-'.repeat(8))),
    ...rows.map(line),
  ].join('\n');
}

/** Writes the report, keeping the latest mutation scores `npm run test:mutation` recorded in the same file. */
export function writeReport(path: string, report: BenchReport): void {
  mkdirSync(dirname(path), { recursive: true });
  let mutation: unknown;
  try {
    mutation = (JSON.parse(readFileSync(path, 'utf8')) as { mutation?: unknown }).mutation;
  } catch {
    // No earlier report.
  }
  writeFileSync(path, `${JSON.stringify(mutation === undefined ? report : { ...report, mutation }, null, 2)}\n`);
}

/**
 * `--only id,id`: the figures asked for, or undefined for all of them. An id that names no figure is
 * refused rather than ignored, so that a typo never runs nothing (or everything) silently.
 */
export function selectFigures(only: string | undefined, known: readonly string[]): Set<string> | undefined {
  if (only === undefined) return undefined;
  const ids = only
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
  if (ids.length === 0) throw new Error('--only needs at least one figure id');
  const unknown = ids.filter((id) => !known.includes(id));
  if (unknown.length > 0) throw new Error(`--only: no figure is called ${unknown.join(', ')}`);
  return new Set(ids);
}
