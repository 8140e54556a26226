/**
 * Defender writes timestamps with up to seven fractional digits (`2020-09-06T14:46:57.0733333Z`).
 * Normalised to exactly seven, they compare correctly as strings, with no precision lost to Date.
 */
const ISO = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?(Z|[+-]00:00)$/;

export function normalizeTimestamp(value: string): string {
  const m = ISO.exec(value);
  if (!m) {
    const parsed = new Date(value);
    if (Number.isNaN(parsed.getTime())) throw new Error(`Not an ISO 8601 UTC timestamp: ${value}`);
    return normalizeTimestamp(parsed.toISOString());
  }
  return `${m[1]}.${(m[2] ?? '').padEnd(7, '0')}Z`;
}

/** The timestamp moved back by `ms` milliseconds (sub-millisecond digits are kept as zeros). */
export function minusMilliseconds(timestamp: string, ms: number): string {
  return normalizeTimestamp(
    new Date(new Date(normalizeTimestamp(timestamp).slice(0, 23) + 'Z').getTime() - ms).toISOString(),
  );
}

export function laterOf(a: string | undefined, b: string): string {
  return a === undefined || normalizeTimestamp(b) > normalizeTimestamp(a)
    ? normalizeTimestamp(b)
    : normalizeTimestamp(a);
}

const UTC_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,7})?(?:Z|[+-]00:00)$/;

/**
 * An ISO 8601 UTC timestamp as Defender and Graph write them (up to seven fractional digits, `Z` or
 * `±00:00`) naming a real date and time (Date.parse would take 2021-02-30).
 */
export function isUtcTimestamp(value: string): boolean {
  const m = UTC_TIMESTAMP.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  date.setUTCFullYear(year); // Date.UTC reads years 0-99 as 1900-1999
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}
