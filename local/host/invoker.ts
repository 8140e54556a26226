import { randomUUID } from 'node:crypto';
import { triggerBindingName, type HostedFunction } from './app-loader.js';
import type { RpcInvocationRequest, RpcInvocationResponse, RpcTypedData } from './worker-contract.js';
import type { WorkerDispatcher } from './worker-dispatcher.js';

export interface InvocationInput {
  /** Why the host runs it, as the real host words it in the 'Executing' line. */
  reason: string;
  data: RpcTypedData;
  triggerMetadata?: Record<string, RpcTypedData>;
}

export type InvocationOutcome =
  | { succeeded: true; invocationId: string; response: RpcInvocationResponse }
  | { succeeded: false; invocationId: string; error: Error };

export class FunctionTimeoutError extends Error {}

/** How long a timed-out function may still finish before its worker is restarted (TimeoutAttribute.GracePeriod). */
export const TIMEOUT_GRACE_MS = 2_000;

/** .NET's `TimeSpan.ToString()` (the "c" format): `[d.]hh:mm:ss[.fffffff]`, days and fraction only when not zero. */
export function formatTimeSpan(ms: number): string {
  const ticks = Math.round(ms * 10_000);
  const totalSeconds = Math.floor(ticks / 10_000_000);
  const fraction = ticks % 10_000_000;
  const days = Math.floor(totalSeconds / 86_400);
  const pad = (n: number): string => String(n).padStart(2, '0');
  const clock = `${pad(Math.floor(totalSeconds / 3600) % 24)}:${pad(Math.floor(totalSeconds / 60) % 60)}:${pad(totalSeconds % 60)}`;
  return `${days > 0 ? `${days}.` : ''}${clock}${fraction > 0 ? `.${String(fraction).padStart(7, '0')}` : ''}`;
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/**
 * The host's function executor (azure-webjobs-sdk FunctionExecutor): logs each invocation, sends it
 * to the worker process and enforces `functionTimeout`. A timed-out invocation fails and is logged
 * at once; the host then gives the handler the grace period and, if it is still running, restarts
 * the worker (ending everything in it) before the trigger sees the failure: a queue message is
 * released only after that (FunctionExecutor.TryExecuteAsync awaits HandleExceptionAsync;
 * azure-functions-host WebScriptHostExceptionHandler.OnTimeoutExceptionAsync).
 */
export class Invoker {
  readonly #dispatcher: WorkerDispatcher;
  readonly #log: (line: string) => void;
  readonly #timeoutMs: number | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(dispatcher: WorkerDispatcher, log: (line: string) => void, timeoutMs: number | undefined) {
    this.#dispatcher = dispatcher;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  invoke(fn: HostedFunction, input: InvocationInput): Promise<InvocationOutcome> {
    const run = this.#run(fn, input);
    this.#inFlight.add(run);
    void run.finally(() => this.#inFlight.delete(run));
    return run;
  }

  /** Waits for in-flight invocations, at most `timeoutMs`; true when all finished. */
  async drain(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const finished = (async () => {
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      return true as const;
    })();
    try {
      return await Promise.race([finished, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #run(fn: HostedFunction, input: InvocationInput): Promise<InvocationOutcome> {
    const { metadata } = fn;
    const invocationId = randomUUID();
    const started = Date.now();
    this.#log(`Executing 'Functions.${metadata.name}' (Reason='${input.reason}', Id=${invocationId})`);
    const request: RpcInvocationRequest = {
      invocationId,
      functionId: metadata.functionId ?? metadata.name,
      inputData: [{ name: triggerBindingName(metadata), data: input.data }],
      triggerMetadata: input.triggerMetadata ?? {},
    };

    const work = this.#dispatcher.invoke(request);
    let outcome: InvocationOutcome;
    try {
      const response =
        this.#timeoutMs === undefined ? await work : await this.#withTimeout(work, metadata.name, invocationId);
      outcome = { succeeded: true, invocationId, response };
    } catch (error) {
      outcome = { succeeded: false, invocationId, error: asError(error) };
    }

    const duration = Date.now() - started;
    if (outcome.succeeded) {
      this.#log(`Executed 'Functions.${metadata.name}' (Succeeded, Id=${invocationId}, Duration=${duration}ms)`);
    } else {
      // The stack goes to the log only; HTTP callers never see it.
      this.#log(`Executed 'Functions.${metadata.name}' (Failed, Id=${invocationId}, Duration=${duration}ms)`);
      this.#log(`[error] ${outcome.error.stack ?? outcome.error.message}`);
      if (outcome.error instanceof FunctionTimeoutError) await this.#onTimeout(work, invocationId);
    }
    return outcome;
  }

  async #withTimeout<T>(work: Promise<T>, name: string, invocationId: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        const message = `Timeout value of ${formatTimeSpan(this.#timeoutMs!)} exceeded by function 'Functions.${name}' (Id: '${invocationId}'). Initiating cancellation.`;
        // FunctionExecutor.OnFunctionTimeout logs this the moment the timeout fires.
        this.#log(`[error] ${message}`);
        reject(new FunctionTimeoutError(message));
      }, this.#timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** OnTimeoutExceptionAsync: wait the grace period for the handler, then restart the worker running it. */
  async #onTimeout(work: Promise<unknown>, invocationId: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), TIMEOUT_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (finished) return;
    this.#log(
      `[warning] A function timeout has occurred. Restarting worker process executing invocationId '${invocationId}'.`,
    );
    await this.#dispatcher.restartWorkerWithInvocationId(invocationId);
    this.#log('[warning] Restart of language worker process(es) completed.');
  }
}
