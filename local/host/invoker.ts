import { randomUUID } from 'node:crypto';
import type { CoreRegistry, RegisteredFunction } from './core-api.js';
import type { CoreInvocationContext, RpcInvocationResponse, RpcTypedData } from './worker-contract.js';

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
 * Runs functions the way the Node worker does: the programming model builds the context and the
 * inputs from an RPC InvocationRequest, pre/post-invocation hooks run around the handler, and the
 * model converts the result back to an RPC response.
 */
export class Invoker {
  readonly #registry: CoreRegistry;
  readonly #log: (line: string) => void;
  readonly #timeoutMs: number | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #appHookData: Record<string, unknown> = {};
  readonly #appLevelOnlyHookData: Record<string, unknown> = {};

  constructor(registry: CoreRegistry, log: (line: string) => void, timeoutMs: number | undefined) {
    this.#registry = registry;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** appStart and appTerminate hooks share one app-level hookData (the worker's `appLevelOnlyHookData`, src/AppContext.ts). */
  async runAppHooks(name: 'appStart' | 'appTerminate', extra: Record<string, unknown> = {}): Promise<void> {
    for (const hook of this.#registry.hooks(name)) {
      await hook({ hookData: this.#appLevelOnlyHookData, appHookData: this.#appHookData, ...extra });
    }
  }

  invoke(fn: RegisteredFunction, input: InvocationInput): Promise<InvocationOutcome> {
    const run = this.#run(fn, input);
    this.#inFlight.add(run);
    void run.finally(() => this.#inFlight.delete(run));
    return run;
  }

  /** Waits for in-flight invocations, at most `timeoutMs`; true when all finished. */
  async drain(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
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

  async #run(fn: RegisteredFunction, input: InvocationInput): Promise<InvocationOutcome> {
    const { metadata, handler } = fn;
    const invocationId = randomUUID();
    const started = Date.now();
    this.#log(`Executing 'Functions.${metadata.name}' (Reason='${input.reason}', Id=${invocationId})`);
    const triggerName = Object.entries(metadata.bindings).find(([, b]) => /trigger$/i.test(b.type ?? ''))?.[0];
    const coreContext: CoreInvocationContext = {
      invocationId,
      metadata,
      state: undefined,
      request: {
        invocationId,
        functionId: metadata.name,
        inputData: [{ name: triggerName ?? '', data: input.data }],
        triggerMetadata: input.triggerMetadata ?? {},
      },
      log: (level, category, message) => {
        const prefix = category === 'system' ? `[${level}] ` : level === 'error' || level === 'critical' ? '[error] ' : '';
        this.#log(`${prefix}${message}`);
      },
    };

    let outcome: InvocationOutcome;
    try {
      const work = this.#invokeThroughModel(coreContext, handler);
      const response = this.#timeoutMs === undefined ? await work : await this.#withTimeout(work, metadata.name, invocationId);
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
    }
    return outcome;
  }

  async #invokeThroughModel(coreContext: CoreInvocationContext, handler: RegisteredFunction['handler']): Promise<RpcInvocationResponse> {
    const model = this.#registry.programmingModel();
    if (!model) throw new Error('@azure/functions never set its programming model.');
    const invocationModel = model.getInvocationModel(coreContext);
    const { context, inputs } = await invocationModel.getArguments();

    // The hook contexts as the worker builds them (azure-functions-nodejs-worker
    // src/eventHandlers/InvocationHandler.ts): hookData, appHookData and invocationContext read-only,
    // inputs and functionCallback replaceable before the call, result and error starting at null.
    const hookData: Record<string, unknown> = {};
    const readOnly = (name: string): never => {
      throw new Error(`Cannot assign to read only property '${name}'`);
    };
    const appHookData = this.#appHookData;
    const shared = {
      get hookData() { return hookData; },
      set hookData(_value: unknown) { readOnly('hookData'); },
      get appHookData() { return appHookData; },
      set appHookData(_value: unknown) { readOnly('appHookData'); },
      get invocationContext() { return context; },
      set invocationContext(_value: unknown) { readOnly('invocationContext'); },
    };
    coreContext.state = 'preInvocationHooks';
    const pre = Object.defineProperties({ inputs, functionCallback: handler }, Object.getOwnPropertyDescriptors(shared)) as typeof shared & { inputs: unknown[]; functionCallback: RegisteredFunction['handler'] };
    try {
      for (const hook of this.#registry.hooks('preInvocation')) await hook(pre);
    } finally {
      coreContext.state = undefined;
    }

    const post = Object.defineProperties({ inputs: pre.inputs, result: null as unknown, error: null as unknown }, Object.getOwnPropertyDescriptors(shared));
    coreContext.state = 'invocation';
    try {
      post.result = await invocationModel.invokeFunction(context, pre.inputs, pre.functionCallback);
    } catch (thrown) {
      post.error = thrown;
    } finally {
      coreContext.state = undefined;
    }

    coreContext.state = 'postInvocationHooks';
    try {
      for (const hook of this.#registry.hooks('postInvocation')) await hook(post);
    } finally {
      coreContext.state = undefined;
    }
    if (post.error !== undefined && post.error !== null) throw post.error;
    return invocationModel.getResponse(context, post.result);
  }

  async #withTimeout<T>(work: Promise<T>, name: string, invocationId: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new FunctionTimeoutError(
        `Timeout value of ${formatTimeSpan(this.#timeoutMs!)} exceeded by function 'Functions.${name}' (Id: '${invocationId}'). Initiating cancellation.`,
      )), this.#timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
