import { CronExpressionParser } from 'cron-parser';
import type { TimerFunction } from './app-loader.js';
import type { Invoker } from './invoker.js';
import { parseTimeSpan } from './timespan.js';

export interface TimerSchedule {
  /** The first occurrence strictly after `after`. */
  next(after: Date): Date;
  adjustForDst: boolean;
  describe: string;
}

/**
 * The two schedule forms the timer trigger accepts: NCRONTAB (`{second} {minute} {hour} {day}
 * {month} {day-of-week}`, or the five-field form without seconds) and a TimeSpan interval. Cron
 * times are UTC unless WEBSITE_TIME_ZONE (or TZ) names another zone, as on Azure.
 */
export function parseSchedule(expression: string, functionName: string): TimerSchedule {
  const trimmed = expression.trim();
  if (/^\d+(\.\d+)?:\d+:\d+(\.\d+)?$/.test(trimmed)) {
    const interval = parseTimeSpan(trimmed);
    if (interval <= 0) throw new Error(`Function '${functionName}': the TimeSpan schedule '${expression}' must be positive.`);
    return { next: (after) => new Date(after.getTime() + interval), adjustForDst: false, describe: `every ${trimmed}` };
  }
  const fields = trimmed.split(/\s+/);
  if (fields.length !== 6 && fields.length !== 5) {
    throw new Error(`Function '${functionName}': '${expression}' is neither an NCRONTAB expression ({second} {minute} {hour} {day} {month} {day-of-week}) nor a TimeSpan.`);
  }
  const tz = process.env.WEBSITE_TIME_ZONE || process.env.TZ || 'UTC';
  try {
    CronExpressionParser.parse(trimmed, { tz, strict: false });
  } catch (error) {
    throw new Error(`Function '${functionName}': invalid NCRONTAB schedule '${expression}': ${(error as Error).message}`);
  }
  return {
    next: (after) => CronExpressionParser.parse(trimmed, { currentDate: after, tz }).next().toDate(),
    adjustForDst: true,
    describe: trimmed,
  };
}

/** .NET's DateTime.MinValue, which the host reports as Last/LastUpdated before any run. */
const NEVER = '0001-01-01T00:00:00';
/** setTimeout's limit; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One timer trigger: fires at each occurrence, never overlaps itself (an occurrence that passes
 * while the function runs is skipped, the next one is computed when it finishes), and passes the
 * host's TimerInfo JSON (PascalCase; the library camel-cases it).
 */
export class TimerTrigger {
  readonly #fn: TimerFunction;
  readonly #schedule: TimerSchedule;
  readonly #invoker: Invoker;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #chain: Promise<void> = Promise.resolve();
  #last: string = NEVER;
  #lastUpdated: string = NEVER;

  constructor(fn: TimerFunction, invoker: Invoker) {
    this.#fn = fn;
    this.#schedule = parseSchedule(fn.schedule, fn.metadata.name);
    this.#invoker = invoker;
  }

  get schedule(): TimerSchedule {
    return this.#schedule;
  }

  start(): void {
    if (this.#fn.runOnStartup) this.#enqueue('Timer fired at startup (runOnStartup).', new Date());
    this.#chain = this.#chain.then(() => this.#arm());
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#chain;
  }

  /** Runs now (admin API); queued behind a running invocation, since a timer never overlaps itself. */
  invokeNow(): void {
    this.#enqueue('This function was programmatically called via the host APIs.', new Date());
  }

  #arm(): void {
    if (this.#stopped) return;
    const occurrence = this.#schedule.next(new Date());
    const wait = (): void => {
      const remaining = occurrence.getTime() - Date.now();
      if (remaining > 0) {
        this.#timer = setTimeout(wait, Math.min(remaining, MAX_TIMER_MS));
        return;
      }
      this.#enqueue('Timer fired at ' + occurrence.toISOString(), occurrence);
      this.#chain = this.#chain.then(() => this.#arm());
    };
    this.#timer = setTimeout(wait, Math.min(Math.max(occurrence.getTime() - Date.now(), 0), MAX_TIMER_MS));
  }

  #enqueue(reason: string, occurrence: Date): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#stopped) return;
      const next = this.#schedule.next(new Date(Math.max(occurrence.getTime(), Date.now())));
      const timerInfo = {
        Schedule: { AdjustForDST: this.#schedule.adjustForDst },
        ScheduleStatus: this.#fn.useMonitor ? { Last: this.#last, Next: next.toISOString(), LastUpdated: this.#lastUpdated } : null,
        IsPastDue: false,
      };
      await this.#invoker.invoke(this.#fn, { reason, data: { json: JSON.stringify(timerInfo) } });
      this.#last = occurrence.toISOString();
      this.#lastUpdated = new Date().toISOString();
    });
  }
}
