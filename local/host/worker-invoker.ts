import type { CoreRegistry } from './core-api.js';
import type {
  CoreInvocationContext,
  RpcInvocationRequest,
  RpcInvocationResponse,
  RpcLogCategory,
  RpcLogLevel,
} from './worker-contract.js';

export type InvocationLog = (level: RpcLogLevel, category: RpcLogCategory, message: string) => void;

/**
 * What the Node worker does with an InvocationRequest (azure-functions-nodejs-worker
 * src/eventHandlers/InvocationHandler.ts): the programming model builds the context and the inputs,
 * pre/post-invocation hooks run around the handler, and the model converts the result back to an
 * RPC response. It runs in the worker process (worker-process.ts), with the app.
 */
export class WorkerInvoker {
  readonly #registry: CoreRegistry;
  readonly #appHookData: Record<string, unknown> = {};
  readonly #appLevelOnlyHookData: Record<string, unknown> = {};

  constructor(registry: CoreRegistry) {
    this.#registry = registry;
  }

  /** appStart and appTerminate hooks share one app-level hookData (the worker's `appLevelOnlyHookData`, src/AppContext.ts). */
  async runAppHooks(name: 'appStart' | 'appTerminate', extra: Record<string, unknown> = {}): Promise<void> {
    for (const hook of this.#registry.hooks(name)) {
      await hook({ hookData: this.#appLevelOnlyHookData, appHookData: this.#appHookData, ...extra });
    }
  }

  /** Runs one invocation; rejects with the handler's (or a hook's) error. */
  async invoke(request: RpcInvocationRequest, log: InvocationLog): Promise<RpcInvocationResponse> {
    const registered = this.#registry.functions.get(request.functionId);
    if (!registered) throw new Error(`Function code for '${request.functionId}' was not found.`);
    const model = this.#registry.programmingModel();
    if (!model) throw new Error('@azure/functions never set its programming model.');
    const coreContext: CoreInvocationContext = {
      invocationId: request.invocationId,
      metadata: registered.metadata,
      state: undefined,
      request,
      log,
    };
    const invocationModel = model.getInvocationModel(coreContext);
    const { context, inputs } = await invocationModel.getArguments();

    // The hook contexts as the worker builds them: hookData, appHookData and invocationContext
    // read-only, inputs and functionCallback replaceable before the call, result and error starting at null.
    const hookData: Record<string, unknown> = {};
    const readOnly = (name: string): never => {
      throw new Error(`Cannot assign to read only property '${name}'`);
    };
    const appHookData = this.#appHookData;
    const shared = {
      get hookData() {
        return hookData;
      },
      set hookData(_value: unknown) {
        readOnly('hookData');
      },
      get appHookData() {
        return appHookData;
      },
      set appHookData(_value: unknown) {
        readOnly('appHookData');
      },
      get invocationContext() {
        return context;
      },
      set invocationContext(_value: unknown) {
        readOnly('invocationContext');
      },
    };
    coreContext.state = 'preInvocationHooks';
    const pre = Object.defineProperties(
      { inputs, functionCallback: registered.handler },
      Object.getOwnPropertyDescriptors(shared),
    ) as typeof shared & { inputs: unknown[]; functionCallback: typeof registered.handler };
    try {
      for (const hook of this.#registry.hooks('preInvocation')) await hook(pre);
    } finally {
      coreContext.state = undefined;
    }

    const post = Object.defineProperties(
      { inputs: pre.inputs, result: null as unknown, error: null as unknown },
      Object.getOwnPropertyDescriptors(shared),
    );
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
}
