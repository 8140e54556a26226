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
    if (interval <= 0)
      throw new Error(`Function '${functionName}': the TimeSpan schedule '${expression}' must be positive.`);
    return { next: (after) => new Date(after.getTime() + interval), adjustForDst: false, describe: `every ${trimmed}` };
  }
  const fields = trimmed.split(/\s+/);
  if (fields.length !== 6 && fields.length !== 5) {
    throw new Error(
      `Function '${functionName}': '${expression}' is neither an NCRONTAB expression ({second} {minute} {hour} {day} {month} {day-of-week}) nor a TimeSpan.`,
    );
  }
  const tz = process.env.WEBSITE_TIME_ZONE || process.env.TZ || 'UTC';
  try {
    CronExpressionParser.parse(trimmed, { tz, strict: false });
  } catch (error) {
    throw new Error(
      `Function '${functionName}': invalid NCRONTAB schedule '${expression}': ${(error as Error).message}`,
    );
  }
  return {
    next: (after) => CronExpressionParser.parse(trimmed, { currentDate: after, tz }).next().toDate(),
    adjustForDst: true,
    describe: trimmed,
  };
}

/** .NET's DateTime.MinValue, which the host reports as Last/LastUpdated before any run. */
export const NEVER = '0001-01-01T00:00:00';
/** setTimeout's limit; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The extension's ScheduleStatus (azure-webjobs-sdk-extensions …/Timers/ScheduleStatus.cs), ISO times. */
export interface ScheduleStatus {
  Last: string;
  Next: string;
  LastUpdated: string;
}

/** Where a timer's status is kept between runs and restarts (the extension's ScheduleMonitor). */
export interface ScheduleMonitor {
  /** The recorded status, or undefined before the first one. */
  getStatus(timerName: string): Promise<ScheduleStatus | undefined>;
  updateStatus(timerName: string, status: ScheduleStatus): Promise<void>;
}

const time = (iso: string): number => (iso === NEVER ? Number.NEGATIVE_INFINITY : Date.parse(iso));

/**
 * UseMonitor is turned off for schedules that fire more than once a minute (azure-webjobs-sdk-extensions
 * src/WebJobs.Extensions/Extensions/Timers/Scheduling/TimerSchedule.cs, `Create` and
 * `ShouldDisableScheduleMonitor`): a TimeSpan under a minute, or a cron expression whose minute and
 * larger fields are all `*` with more than one occurrence in the next minute.
 */
export function monitorsSchedule(expression: string, schedule: TimerSchedule, now = new Date()): boolean {
  const fields = expression.trim().split(/\s+/);
  if (!schedule.adjustForDst) return schedule.next(now).getTime() - now.getTime() >= 60_000;
  if (fields.length === 6 && fields.slice(1).every((f) => f === '*')) {
    const first = schedule.next(now);
    return schedule.next(first).getTime() > now.getTime() + 60_000;
  }
  return true;
}

/**
 * Whether the recorded status says an occurrence was missed while the app was not running, fixing up a
 * status the schedule no longer explains; a port of the extension's ScheduleMonitor.CheckPastDueAsync
 * (…/Timers/Scheduling/ScheduleMonitor.cs). Returns the status to keep and whether it is past due.
 */
export async function checkPastDue(
  monitor: ScheduleMonitor,
  timerName: string,
  now: Date,
  schedule: TimerSchedule,
  last: ScheduleStatus | undefined,
): Promise<{ status: ScheduleStatus; pastDue: boolean }> {
  let status: ScheduleStatus;
  if (last === undefined) {
    // A new timer: record its first occurrence now, so that one cannot be missed either.
    status = { Last: NEVER, Next: schedule.next(now).toISOString(), LastUpdated: now.toISOString() };
    await monitor.updateStatus(timerName, status);
  } else {
    status = { ...last };
    let basis: Date;
    if (last.Last !== NEVER) basis = new Date(last.Last);
    else if (last.LastUpdated !== NEVER) basis = new Date(last.LastUpdated);
    else basis = now;
    let expectedNext = schedule.next(basis);
    // The schedule changed since the status was written: start from it afresh, not as past due.
    if (time(last.Next) !== expectedNext.getTime()) {
      if (now.getTime() > expectedNext.getTime()) {
        expectedNext = schedule.next(now);
        basis = now;
      }
      status = { Last: NEVER, Next: expectedNext.toISOString(), LastUpdated: basis.toISOString() };
      await monitor.updateStatus(timerName, status);
    }
  }
  return { status, pastDue: now.getTime() > time(status.Next) };
}

/** How an invocation came about: the listener words and flags each differently. */
type Firing = { kind: 'scheduled' } | { kind: 'pastDue' } | { kind: 'runOnStartup' };

/**
 * One timer trigger, as the extension's TimerListener runs it (…/Timers/Listener/TimerListener.cs):
 * - the next occurrence is computed from the time an invocation started (moved forward to the
 *   scheduled time if it fired early), not from when it finished; an occurrence that passes while the
 *   function runs fires as soon as it finishes (once), and a timer never overlaps itself;
 * - with UseMonitor (the default, off for sub-minute schedules) the status is kept in a ScheduleMonitor
 *   (Blob storage, as the real host keeps it), passed to the function as ScheduleStatus (Last = the
 *   previous run, Next = this occurrence), and at start-up an occurrence missed while the app was
 *   stopped runs at once with IsPastDue: true ("past due" wins over runOnStartup);
 * - the TimerInfo JSON is PascalCase; the library camel-cases it.
 */
export class TimerTrigger {
  readonly #fn: TimerFunction;
  readonly #schedule: TimerSchedule;
  readonly #invoker: Invoker;
  readonly #monitor: ScheduleMonitor | undefined;
  readonly #timerName: string;
  readonly #log: (line: string) => void;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #chain: Promise<void> = Promise.resolve();
  #status: ScheduleStatus = { Last: NEVER, Next: NEVER, LastUpdated: NEVER };

  constructor(
    fn: TimerFunction,
    invoker: Invoker,
    options: { monitor?: ScheduleMonitor; log?: (line: string) => void } = {},
  ) {
    this.#fn = fn;
    this.#schedule = parseSchedule(fn.schedule, fn.metadata.name);
    this.#invoker = invoker;
    this.#monitor = fn.useMonitor && monitorsSchedule(fn.schedule, this.#schedule) ? options.monitor : undefined;
    // The extension's timer name: the method's declaring type and name, Host.Functions.<name> for the script host.
    this.#timerName = `Host.Functions.${fn.metadata.name}`;
    this.#log = options.log ?? (() => undefined);
  }

  get schedule(): TimerSchedule {
    return this.#schedule;
  }

  get monitored(): boolean {
    return this.#monitor !== undefined;
  }

  async start(): Promise<void> {
    const now = new Date();
    let pastDue = false;
    if (this.#monitor) {
      const checked = await checkPastDue(
        this.#monitor,
        this.#timerName,
        now,
        this.#schedule,
        await this.#monitor.getStatus(this.#timerName),
      );
      this.#status = checked.status;
      pastDue = checked.pastDue;
    } else {
      this.#status = { Last: NEVER, Next: this.#schedule.next(now).toISOString(), LastUpdated: NEVER };
    }
    if (pastDue) {
      this.#log(`Function 'Functions.${this.#fn.metadata.name}' is past due on startup. Executing now.`);
      this.#fire({ kind: 'pastDue' });
    } else if (this.#fn.runOnStartup) {
      this.#fire({ kind: 'runOnStartup' });
    } else {
      this.#arm();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#chain;
  }

  /**
   * Runs now, as the admin API does: straight to the function with the current status (the binding's
   * BindAsync), outside the listener: it neither waits for a running invocation nor updates the status.
   */
  invokeNow(): void {
    void this.#invoker.invoke(this.#fn, {
      reason: 'This function was programmatically called via the host APIs.',
      data: { json: JSON.stringify(this.#timerInfo(false)) },
    });
  }

  /** Waits for the recorded next occurrence (at once if it has passed), then fires. */
  #arm(): void {
    if (this.#stopped) return;
    const due = time(this.#status.Next);
    const wait = (): void => {
      const remaining = due - Date.now();
      if (remaining > 0) {
        this.#timer = setTimeout(wait, Math.min(remaining, MAX_TIMER_MS));
        return;
      }
      this.#fire({ kind: 'scheduled' });
    };
    wait();
  }

  #timerInfo(isPastDue: boolean): Record<string, unknown> {
    return {
      Schedule: { AdjustForDST: this.#schedule.adjustForDst },
      ScheduleStatus: this.#monitor ? { ...this.#status } : null,
      IsPastDue: isPastDue,
    };
  }

  #fire(firing: Firing): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#stopped) return;
      const invokedAt = new Date();
      const reason =
        firing.kind === 'scheduled'
          ? `Timer fired at ${invokedAt.toISOString()}`
          : firing.kind === 'pastDue'
            ? 'Timer is past due.'
            : 'Timer fired at startup (runOnStartup).';
      await this.#invoker.invoke(this.#fn, {
        reason,
        data: { json: JSON.stringify(this.#timerInfo(firing.kind === 'pastDue')) },
      });
      // Fired a moment early (clock granularity): count it as the scheduled time, or the same Next
      // would be computed twice.
      const next = time(this.#status.Next);
      const basis = firing.kind === 'scheduled' && next > invokedAt.getTime() ? new Date(next) : invokedAt;
      this.#status = {
        Last: basis.toISOString(),
        Next: this.#schedule.next(basis).toISOString(),
        LastUpdated: basis.toISOString(),
      };
      if (this.#monitor) {
        await this.#monitor.updateStatus(this.#timerName, this.#status).catch((error: unknown) => {
          this.#log(
            `[error] Function '${this.#timerName}' failed to update the timer trigger status: ${(error as Error).message}`,
          );
        });
      }
      this.#arm();
    });
  }
}
