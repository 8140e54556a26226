import type { RpcInvocationRequest, RpcInvocationResponse } from './worker-contract.js';
import { WorkerChannel, type ReadyWorker, type WorkerLog, type WorkerProcessExitError } from './worker-channel.js';

/** Worker errors within this long of the previous one add up (WorkerConstants.WorkerRestartErrorIntervalThresholdInMinutes). */
const ERROR_INTERVAL_MS = 30 * 60_000;
/** Restarts allowed before the host gives up (`ErrorEventsThreshold`: 3 × one worker process). */
const ERROR_EVENTS_THRESHOLD = 3;

/**
 * The host's side of its language worker (azure-functions-host RpcFunctionInvocationDispatcher): one
 * worker process, restarted when it dies and when a function times out in it. While it restarts,
 * invocations wait for the new one. Three crashes close together stop the host.
 */
export class WorkerDispatcher {
  readonly #appDir: string;
  readonly #log: (line: string) => void;
  readonly #workerLog: WorkerLog;
  readonly #onFatal: (message: string) => void;
  #current: Promise<WorkerChannel>;
  #channel: WorkerChannel | undefined;
  #errors: number[] = [];
  #stopped = false;

  private constructor(
    appDir: string,
    log: (line: string) => void,
    workerLog: WorkerLog,
    onFatal: (message: string) => void,
    first: WorkerChannel,
  ) {
    this.#appDir = appDir;
    this.#log = log;
    this.#workerLog = workerLog;
    this.#onFatal = onFatal;
    this.#adopt(first);
    this.#current = Promise.resolve(first);
  }

  /** Starts the first worker; rejects (with the worker's init error) when the app does not load. */
  static async start(
    appDir: string,
    options: { log: (line: string) => void; workerLog: WorkerLog; onFatal: (message: string) => void },
  ): Promise<{ dispatcher: WorkerDispatcher; ready: ReadyWorker }> {
    const { channel, ready } = await WorkerChannel.start(appDir, options.workerLog);
    return {
      dispatcher: new WorkerDispatcher(appDir, options.log, options.workerLog, options.onFatal, channel),
      ready,
    };
  }

  async invoke(request: RpcInvocationRequest): Promise<RpcInvocationResponse> {
    const channel = await this.#current;
    return channel.invoke(request);
  }

  /**
   * On a function timeout (RestartWorkerWithInvocationIdAsync): the worker running that invocation is
   * ended and a new one started; false when no worker runs it any more (already restarted).
   */
  async restartWorkerWithInvocationId(invocationId: string): Promise<boolean> {
    const channel = this.#channel;
    if (!channel?.isExecuting(invocationId)) return false;
    channel.kill();
    await this.#restart();
    return true;
  }

  /** Host shutdown: the worker runs its appTerminate hooks and exits. */
  async terminate(): Promise<void> {
    this.#stopped = true;
    const channel = await this.#current.catch(() => undefined);
    await channel?.terminate();
  }

  #adopt(channel: WorkerChannel): void {
    this.#channel = channel;
    channel.onUnexpectedExit = (error) => void this.#workerError(channel, error);
  }

  /** WorkerErrorEvent: log it, count it, and restart unless this is the third error in a row. */
  async #workerError(channel: WorkerChannel, error: WorkerProcessExitError): Promise<void> {
    if (this.#stopped || channel !== this.#channel) return;
    this.#log(`[error] Language Worker Process exited. Pid=${channel.pid}. ${error.message}`);
    const now = Date.now();
    const newest = this.#errors.at(-1);
    if (newest !== undefined && now - newest > ERROR_INTERVAL_MS) this.#errors = [];
    this.#errors.push(now);
    if (this.#errors.length >= ERROR_EVENTS_THRESHOLD) {
      this.#channel = undefined;
      this.#log(
        '[error] Exceeded language worker restart retry count for runtime:node. Shutting down and proactively recycling the Functions Host to recover',
      );
      this.#onFatal('the language worker kept exiting');
      return;
    }
    await this.#restart();
  }

  async #restart(): Promise<void> {
    if (this.#stopped) return;
    this.#channel = undefined;
    const starting = WorkerChannel.start(this.#appDir, this.#workerLog).then(({ channel }) => {
      if (this.#stopped) {
        channel.kill();
      } else {
        this.#adopt(channel);
      }
      return channel;
    });
    this.#current = starting;
    try {
      await starting;
    } catch (error) {
      // The app no longer loads: nothing can run, as when the real host's restarts are used up.
      this.#log(`[error] Restarting the language worker failed: ${(error as Error).message}`);
      this.#onFatal('the language worker could not be restarted');
    }
  }
}
