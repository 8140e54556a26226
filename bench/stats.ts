/**
 * The benchmark's arithmetic and verdicts, kept pure so they can be tested: medians, rates, ratios
 * and whether a figure meets its goal.
 */

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Items per second. */
export function perSecond(count: number, elapsedMs: number): number {
  if (elapsedMs <= 0) throw new Error(`elapsed time must be positive (got ${elapsedMs} ms)`);
  return (count * 1000) / elapsedMs;
}

export function ratio(measured: number, reference: number): number {
  if (reference <= 0) throw new Error(`the reference must be positive (got ${reference})`);
  return measured / reference;
}

/** A goal a figure is held to: at least, at most, or exactly a value. */
export type Goal = { atLeast: number } | { atMost: number } | { equals: number };

export type Verdict = 'PASS' | 'FAIL' | 'INFO';

/** PASS/FAIL against the goal (rounding noise of 1e-9 forgiven); INFO when the figure has no goal. */
export function verdict(value: number, goal: Goal | undefined): Verdict {
  if (!goal) return 'INFO';
  const eps = 1e-9;
  if ('atLeast' in goal) return value >= goal.atLeast - eps ? 'PASS' : 'FAIL';
  if ('atMost' in goal) return value <= goal.atMost + eps ? 'PASS' : 'FAIL';
  return Math.abs(value - goal.equals) <= eps ? 'PASS' : 'FAIL';
}

export function describeGoal(goal: Goal | undefined): string {
  if (!goal) return '—';
  if ('atLeast' in goal) return `≥ ${goal.atLeast}`;
  if ('atMost' in goal) return `≤ ${goal.atMost}`;
  return `= ${goal.equals}`;
}

/** Rounds for display and JSON: 3 significant digits below 100, whole numbers above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  if (Math.abs(value) >= 100) return Math.round(value);
  return Number(value.toPrecision(3));
}

/** How often the poller renews a token on a schedule: the first cycle at which less than the margin is left. */
export function renewalIntervalMs(tokenLifetimeMs: number, refreshMarginMs: number, cycleMs: number): number {
  if (cycleMs <= 0) throw new Error('the cycle must be positive');
  const usable = tokenLifetimeMs - refreshMarginMs;
  if (usable <= 0) return cycleMs;
  return Math.ceil(usable / cycleMs) * cycleMs;
}

/** Runs `work` on every item with at most `limit` in flight. */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index]!, index);
    }
  });
  await Promise.all(workers);
}
