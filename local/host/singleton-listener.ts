import type { SingletonOptions } from './host-config.js';
import type { DistributedLock, DistributedLockManager } from './singleton-lock.js';

/** A trigger's listener, as the host starts and stops it. */
export interface Listener {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The lease renewal's fastest pace after failures (SingletonManager.MinimumLeaseRenewalInterval). */
const MINIMUM_LEASE_RENEWAL_INTERVAL_MS = 1_000;

/**
 * The lock id of a function's listener: `FormatLockId` with scope Function and no scope id gives
 * "{hostId}/{FullName}", and SingletonListener appends ".Listener"; a script host function's FullName
 * is `Host.Functions.<name>` (azure-webjobs-sdk src/Microsoft.Azure.WebJobs.Host/Singleton/
 * SingletonManager.cs, SingletonListener.cs; azure-functions-host ScriptHost.cs `GeneratedTypeNamespace`,
 * `GeneratedTypeName`).
 */
export function listenerLockId(hostId: string, functionName: string): string {
  return `${hostId}/Host.Functions.${functionName}.Listener`;
}

/**
 * Keeps a held lease alive: first at half the lease period, then every half period after a success;
 * after a server error the next attempt comes after half the last wait, never under a second
 * (SingletonManager.CreateLeaseRenewalTimer, RenewLeaseCommand; …/Timers/LinearSpeedupStrategy.cs).
 * A renewal that throws ends the timer and goes to the host's unhandled-exception handler
 * (…/Timers/TaskSeriesTimer.cs `RunAsync`).
 */
class LeaseRenewal {
  readonly #normalMs: number;
  #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(
    private readonly locks: DistributedLockManager,
    private readonly lock: DistributedLock,
    periodMs: number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.#normalMs = periodMs / 2;
    this.#intervalMs = this.#normalMs;
    this.#schedule(this.#normalMs);
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#running = this.#renew();
    }, delayMs);
  }

  async #renew(): Promise<void> {
    let renewed: boolean;
    try {
      renewed = await this.locks.renew(this.lock);
    } catch (error) {
      if (!this.#stopped) this.onError(error);
      return;
    }
    if (this.#stopped) return;
    this.#intervalMs = renewed ? this.#normalMs : Math.max(this.#intervalMs / 2, MINIMUM_LEASE_RENEWAL_INTERVAL_MS);
    this.#schedule(this.#intervalMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}

export interface SingletonListenerEvents {
  log: (line: string) => void;
  /** The lease could not be renewed: in the real host, "An unhandled exception has occurred. Host is shutting down." */
  onUnhandledException: (error: unknown) => void;
}

/**
 * A listener only one instance of the app runs at a time, as the real host runs a timer's: the
 * extension's TimerListener carries `[Singleton(Mode = SingletonMode.Listener)]` (azure-webjobs-sdk-extensions
 * src/WebJobs.Extensions/Extensions/Timers/Listener/TimerListener.cs) and FunctionIndexer wraps it in a
 * SingletonListener (azure-webjobs-sdk src/Microsoft.Azure.WebJobs.Host/Singleton/SingletonListener.cs):
 * - at start, one attempt at the lock (retrying every LockAcquisitionPollingInterval up to
 *   LockAcquisitionTimeout only when recovery is off); with the lock, the inner listener starts;
 * - without it, the listener does not start, and every ListenerLockRecoveryPollingInterval the
 *   instance tries again (a failed attempt is swallowed, as System.Timers.Timer swallows it), so that
 *   when the holder stops (releasing the lease) or dies (the lease lapses) another one takes over;
 * - while held, the lease is renewed at half the ListenerLockPeriod; on stop the inner listener stops
 *   first (its running invocation finishes), then the lease is released.
 */
export class SingletonListener implements Listener {
  readonly #lockId: string;
  readonly #inner: Listener;
  readonly #locks: DistributedLockManager;
  readonly #options: SingletonOptions;
  readonly #events: SingletonListenerEvents;
  #held: { lock: DistributedLock; renewal: LeaseRenewal } | undefined;
  #recovery: NodeJS.Timeout | undefined;
  #recovering: Promise<void> = Promise.resolve();
  #listening = false;
  #stopped = false;

  constructor(
    lockId: string,
    inner: Listener,
    locks: DistributedLockManager,
    options: SingletonOptions,
    events: SingletonListenerEvents,
  ) {
    this.#lockId = lockId;
    this.#inner = inner;
    this.#locks = locks;
    this.#options = options;
    this.#events = events;
  }

  get lockId(): string {
    return this.#lockId;
  }

  async start(): Promise<void> {
    const recoveryEnabled = Number.isFinite(this.#options.listenerLockRecoveryPollingIntervalMs);
    if (!(await this.#tryLock(!recoveryEnabled))) {
      this.#events.log(`[debug] Unable to acquire Singleton lock (${this.#lockId}).`);
      if (recoveryEnabled) {
        this.#recovery = setInterval(() => {
          this.#recovering = this.#recovering.then(() => this.#tryAcquireLock());
        }, this.#options.listenerLockRecoveryPollingIntervalMs);
      }
      return;
    }
    await this.#inner.start();
    this.#listening = true;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#recovery);
    await this.#recovering;
    if (this.#listening) {
      await this.#inner.stop();
      this.#listening = false;
    }
    if (this.#held) {
      await this.#held.renewal.stop();
      await this.#locks.release(this.#held.lock);
      this.#events.log(`[debug] Singleton lock released (${this.#lockId})`);
      this.#held = undefined;
    }
  }

  /** SingletonListener.TryAcquireLock, on the recovery timer. */
  async #tryAcquireLock(): Promise<void> {
    if (this.#stopped || this.#held) return;
    try {
      if (!(await this.#tryLock(false))) return;
      clearInterval(this.#recovery);
      await this.#inner.start();
      this.#listening = true;
    } catch (error) {
      this.#events.log(
        `[debug] Singleton lock recovery attempt failed (${this.#lockId}): ${(error as Error).message.split('\n')[0]}`,
      );
    }
  }

  /** SingletonManager.TryLockAsync: the lock with its renewal started, or false. */
  async #tryLock(retry: boolean): Promise<boolean> {
    const periodMs = this.#options.listenerLockPeriodMs;
    let lock = await this.#locks.tryLock(this.#lockId, periodMs);
    for (
      let waited = 0;
      !lock && retry && !this.#stopped && waited < this.#options.lockAcquisitionTimeoutMs;
      waited += this.#options.lockAcquisitionPollingIntervalMs
    ) {
      await new Promise((resolve) => setTimeout(resolve, this.#options.lockAcquisitionPollingIntervalMs));
      lock = await this.#locks.tryLock(this.#lockId, periodMs);
    }
    if (!lock) return false;
    this.#held = { lock, renewal: new LeaseRenewal(this.#locks, lock, periodMs, this.#events.onUnhandledException) };
    this.#events.log(`[debug] Singleton lock acquired (${this.#lockId})`);
    return true;
  }
}
