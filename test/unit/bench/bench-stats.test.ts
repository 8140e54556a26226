import { describe, expect, it } from 'vitest';
import {
  describeGoal,
  forEachLimited,
  median,
  perSecond,
  ratio,
  renewalIntervalMs,
  round,
  verdict,
} from '../../../bench/stats.js';
import { figure, formatTable, selectFigures, type BenchReport } from '../../../bench/report.js';

describe('benchmark statistics', () => {
  it('takes the median of odd and even samples without reordering the input', () => {
    const samples = [5, 1, 3];
    expect(median(samples)).toBe(3);
    expect(samples).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(/no values/);
  });

  it('turns counts and times into rates and ratios, refusing meaningless references', () => {
    expect(perSecond(500, 250)).toBe(2000);
    expect(ratio(85, 100)).toBe(0.85);
    expect(() => perSecond(1, 0)).toThrow(/positive/);
    expect(() => ratio(1, 0)).toThrow(/positive/);
  });

  it('judges a figure against its goal, forgiving only floating-point noise', () => {
    expect(verdict(0.85, { atLeast: 0.85 })).toBe('PASS');
    expect(verdict(0.849, { atLeast: 0.85 })).toBe('FAIL');
    expect(verdict((21 * 100) / 2000, { atMost: 1.05 })).toBe('PASS');
    expect(verdict(1.06, { atMost: 1.05 })).toBe('FAIL');
    expect(verdict(0, { equals: 0 })).toBe('PASS');
    expect(verdict(0.09, { equals: 0 })).toBe('FAIL');
    expect(verdict(19, undefined)).toBe('INFO');
    expect([
      describeGoal({ atLeast: 0.7 }),
      describeGoal({ atMost: 1.3 }),
      describeGoal({ equals: 0 }),
      describeGoal(undefined),
    ]).toEqual(['≥ 0.7', '≤ 1.3', '= 0', '—']);
  });

  it('rounds to three significant digits, whole numbers from 100 up', () => {
    expect(round(0.123456)).toBe(0.123);
    expect(round(1.0549)).toBe(1.05);
    expect(round(1234.6)).toBe(1235);
  });

  it('knows when a token is renewed on a schedule: the first poll with less than the margin left', () => {
    // Entra stand-in tokens live 3599 s, polls every 5 minutes: a 5-minute margin renews a cycle early.
    expect(renewalIntervalMs(3_599_000, 300_000, 300_000)).toBe(55 * 60_000);
    // With the provider's 2-minute margin the same token serves the whole hour.
    expect(renewalIntervalMs(3_599_000, 120_000, 300_000)).toBe(60 * 60_000);
    // Azure's usual 60-90 minute tokens.
    expect(renewalIntervalMs(75 * 60_000, 300_000, 300_000)).toBe(70 * 60_000);
    expect(renewalIntervalMs(60_000, 300_000, 300_000)).toBe(300_000);
  });

  it('runs work with a bounded number in flight, each item once', async () => {
    let inFlight = 0;
    let peak = 0;
    const seen: number[] = [];
    await forEachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (item) => {
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      seen.push(item);
      inFlight -= 1;
    });
    expect(peak).toBe(3);
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});

describe('benchmark report', () => {
  it('prints one line per figure with its verdict and the absolute numbers beside it', () => {
    const report: BenchReport = {
      date: '2026-11-23T19:00:00.000Z',
      command: 'npm run bench',
      mode: 'full',
      durationSeconds: 170,
      machine: { cpuModel: 'Test CPU', cores: 2, memoryGiB: 24, freeMemoryGiB: 20, node: 'v20.19.0', os: 'linux' },
      figures: [
        figure(
          'ingest-throughput',
          'Ingest throughput vs raw sendMessage',
          0.912345,
          '×',
          { atLeast: 0.85 },
          'poll 912/s vs raw 1,000/s',
        ),
        figure('cold-start', 'Cold start', 19.2, '×', undefined, '550 ms vs 29 ms'),
      ],
      details: {},
    };
    expect(report.figures[0]).toMatchObject({ value: 0.912, verdict: 'PASS' });
    const table = formatTable(report);
    expect(table).toContain('Test CPU, 2 cores, 24 GiB, Node v20.19.0');
    expect(table).toMatch(/Ingest throughput vs raw sendMessage +0\.912 × +≥ 0\.85 +PASS +poll 912\/s vs raw 1,000\/s/);
    expect(table).toMatch(/Cold start +19\.2 × +— +INFO +550 ms vs 29 ms/);
  });

  it('names the figures a partial run (--only) measured in its heading', () => {
    const report: BenchReport = {
      date: '2026-12-03T05:00:00.000Z',
      command: 'npm run bench -- --only graph-calls-per-100-incidents',
      mode: 'full',
      only: ['graph-calls-per-100-incidents'],
      durationSeconds: 20,
      machine: { cpuModel: 'Test CPU', cores: 2, memoryGiB: 24, freeMemoryGiB: 20, node: 'v20.19.0', os: 'linux' },
      figures: [],
      details: {},
    };
    expect(formatTable(report)).toMatch(/^defender-relay benchmark \(full, only graph-calls-per-100-incidents\), /);
  });
});

describe('benchmark figure selection (--only)', () => {
  const known = ['calls-per-100-incidents', 'graph-calls-per-100-incidents', 'cold-start'];

  it('takes every figure without --only, and the ids given (spaces and empty entries aside) with it', () => {
    expect(selectFigures(undefined, known)).toBeUndefined();
    expect(selectFigures(' graph-calls-per-100-incidents, cold-start,', known)).toEqual(
      new Set(['graph-calls-per-100-incidents', 'cold-start']),
    );
  });

  it('refuses an id that names no figure, and a list that names none, rather than run everything or nothing', () => {
    expect(() => selectFigures('graph-calls-per-100', known)).toThrow(/no figure is called graph-calls-per-100$/);
    expect(() => selectFigures(' , ', known)).toThrow(/at least one figure id/);
    expect(() => selectFigures('', known)).toThrow(/at least one figure id/);
  });
});
