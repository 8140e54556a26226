/** Parses a .NET TimeSpan string as host.json uses it: `hh:mm:ss`, `d.hh:mm:ss`, `hh:mm:ss.fff`. */
export function parseTimeSpan(value: string): number {
  const match = /^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$/.exec(value.trim());
  if (!match) throw new Error(`'${value}' is not a TimeSpan (expected hh:mm:ss).`);
  const [, days, hours, minutes, seconds, fraction] = match;
  const ms =
    ((Number(days ?? 0) * 24 + Number(hours)) * 60 + Number(minutes)) * 60_000 +
    Number(seconds) * 1000 +
    Math.round(Number(`0.${fraction ?? '0'}`) * 1000);
  if (Number(minutes) > 59 || Number(seconds) > 59) throw new Error(`'${value}' is not a valid TimeSpan.`);
  return ms;
}
