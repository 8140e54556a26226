/**
 * Defender timestamps carry up to 7 fractional digits (100 ns ticks), more than a JS Date holds,
 * so comparisons use BigInt ticks since the Unix epoch to keep `gt` exact at the last digit.
 */

const TICKS_PER_MS = 10_000n;
const ISO_PATTERN = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(Z|[+-]\d{2}:\d{2}))?$/;

/**
 * Each distinct text is parsed once: a list request compares every incident's time (the filter, then
 * the order), on every page, and an incident's time changes only when the incident does. Bounded, so
 * a long run of ever new times (or hostile filters) cannot grow it without end.
 */
const parsed = new Map<string, bigint | undefined>();
const PARSED_LIMIT = 100_000;

/** Ticks (100 ns) since the epoch, or undefined when `text` is not an ISO date or date-time with zone. */
export function parseTimestamp(text: string): bigint | undefined {
  if (parsed.has(text)) return parsed.get(text);
  const ticks = parse(text);
  if (parsed.size >= PARSED_LIMIT) parsed.clear();
  parsed.set(text, ticks);
  return ticks;
}

function parse(text: string): bigint | undefined {
  const match = ISO_PATTERN.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second, fraction, zone] = match;
  // A time of day without a zone is ambiguous: OData DateTimeOffset literals require one.
  if (hour !== undefined && zone === undefined) return undefined;
  const isoMs = `${year}-${month}-${day}T${hour ?? '00'}:${minute ?? '00'}:${second ?? '00'}${zone === undefined || zone === 'Z' ? 'Z' : zone}`;
  const ms = Date.parse(isoMs);
  if (Number.isNaN(ms) || !sameCalendarDay(ms, zone, year, month, day)) return undefined;
  const fractionTicks = BigInt((fraction ?? '').padEnd(7, '0'));
  return BigInt(ms) * TICKS_PER_MS + fractionTicks;
}

/** Rejects dates like 2024-02-30 that Date.parse silently rolls over. */
function sameCalendarDay(ms: number, zone: string | undefined, year?: string, month?: string, day?: string): boolean {
  if (zone !== undefined && zone !== 'Z') return true;
  const date = new Date(ms);
  return (
    date.getUTCFullYear() === Number(year) &&
    date.getUTCMonth() + 1 === Number(month) &&
    date.getUTCDate() === Number(day)
  );
}

/** `2020-09-06T14:46:57.0733333Z`: always 7 fractional digits, as Defender writes them. */
export function formatTimestamp(ticks: bigint): string {
  const ms = ticks / TICKS_PER_MS;
  const subMs = ticks % TICKS_PER_MS;
  const iso = new Date(Number(ms)).toISOString(); // …T14:46:57.073Z
  return `${iso.slice(0, -1)}${subMs.toString().padStart(4, '0')}Z`;
}

export function ticksFromMs(ms: number): bigint {
  return BigInt(Math.floor(ms)) * TICKS_PER_MS;
}

export function msFromTicks(ticks: bigint): number {
  return Number(ticks / TICKS_PER_MS);
}

/**
 * Update times for a stand-in's store, as the service stamps a change: now, but strictly later than the
 * incident's previous time and than any time this clock handed out (two updates in one millisecond differ).
 */
export class UpdateClock {
  #last = 0n;

  constructor(private readonly now: () => number = Date.now) {}

  next(previous: string): string {
    let ticks = ticksFromMs(this.now());
    const previousTicks = parseTimestamp(previous);
    if (previousTicks !== undefined && ticks <= previousTicks) ticks = previousTicks + 1n;
    if (ticks <= this.#last) ticks = this.#last + 1n;
    this.#last = ticks;
    return formatTimestamp(ticks);
  }
}
