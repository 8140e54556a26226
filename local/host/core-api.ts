import Module from 'node:module';
import type {
  Disposable,
  FunctionCallback,
  FunctionMetadata,
  HookCallback,
  HookName,
  ProgrammingModel,
  RpcLogCategory,
  RpcLogLevel,
} from './worker-contract.js';

/** The module name `@azure/functions` requires to find the worker that hosts it. */
export const CORE_MODULE = '@azure/functions-core';
/** Reported as the host version; `@azure/functions` only checks that `log` exists (host ≥ 4.28). */
export const HOST_VERSION = '4.1037.0-local';

export interface RegisteredFunction {
  metadata: FunctionMetadata;
  handler: FunctionCallback;
}

/** Everything the app registered through `@azure/functions` in this process. */
export interface CoreRegistry {
  readonly functions: ReadonlyMap<string, RegisteredFunction>;
  programmingModel(): ProgrammingModel | undefined;
  hooks(name: HookName): HookCallback[];
  /** Where `log(level, category, message)` calls from the library go. */
  onLog: (level: RpcLogLevel, category: RpcLogCategory, message: string) => void;
  /** The host has asked for the function metadata: registering (or disposing) a function is refused from now on. */
  lockIndexing(): void;
}

/** The object `require('@azure/functions-core')` returns: the worker's API surface. */
export interface CoreApi {
  version: string;
  hostVersion: string;
  setProgrammingModel(model: ProgrammingModel): void;
  getProgrammingModel(): ProgrammingModel;
  registerFunction(metadata: FunctionMetadata, handler: FunctionCallback): Disposable;
  registerHook(name: string, callback: HookCallback): Disposable;
  log(level: RpcLogLevel, category: RpcLogCategory, message: string): void;
  Disposable: new (onDispose: () => void) => Disposable;
}

class CallbackDisposable implements Disposable {
  #onDispose: (() => void) | undefined;
  constructor(onDispose: () => void) {
    this.#onDispose = onDispose;
  }
  dispose(): void {
    this.#onDispose?.();
    this.#onDispose = undefined;
  }
}

export function createCoreApi(): { api: CoreApi; registry: CoreRegistry } {
  const functions = new Map<string, RegisteredFunction>();
  const hooks = new Map<string, HookCallback[]>();
  let model: ProgrammingModel | undefined;
  let indexingLocked = false;

  const registry: CoreRegistry = {
    functions,
    programmingModel: () => model,
    hooks: (name) => [...(hooks.get(name) ?? [])],
    onLog: () => undefined,
    lockIndexing: () => void (indexingLocked = true),
  };

  const api: CoreApi = {
    version: '3.10.1',
    hostVersion: HOST_VERSION,
    setProgrammingModel(programmingModel) {
      model = programmingModel;
    },
    getProgrammingModel() {
      if (!model) throw new Error('No programming model has been set.');
      return model;
    },
    // As the worker does (azure-functions-nodejs-worker src/coreApi/registerFunction.ts): keyed by
    // functionId, else the name (case-sensitive), and only while the app starts.
    registerFunction(metadata, handler) {
      if (indexingLocked) throw new Error('A function can only be registered during app startup.');
      const functionId = metadata.functionId || metadata.name;
      if (functions.has(functionId)) throw new Error(`A function with id "${functionId}" has already been registered.`);
      functions.set(functionId, { metadata, handler });
      return new CallbackDisposable(() => {
        if (indexingLocked) throw new Error('A function can only be disposed during app startup.');
        functions.delete(functionId);
      });
    },
    registerHook(name, callback) {
      const list = hooks.get(name) ?? [];
      list.push(callback);
      hooks.set(name, list);
      return new CallbackDisposable(() => {
        const index = list.indexOf(callback);
        if (index >= 0) list.splice(index, 1);
      });
    },
    log(level, category, message) {
      registry.onLog(level, category, message);
    },
    Disposable: CallbackDisposable,
  };
  return { api, registry };
}

type LoadFunction = (request: string, parent: unknown, isMain: boolean) => unknown;
const cjsLoader = Module as unknown as { _load: LoadFunction };
let installed: { api: CoreApi; registry: CoreRegistry } | undefined;

/**
 * Makes `require('@azure/functions-core')` (as done inside `@azure/functions`) return this host's
 * core API, the way the Node worker provides it. Once per process, like the worker: the library
 * caches the module and its registrations for the life of the process.
 */
export function installCoreApi(): CoreRegistry {
  if (installed) return installed.registry;
  const core = createCoreApi();
  const originalLoad = cjsLoader._load;
  cjsLoader._load = function load(request, parent, isMain) {
    if (request === CORE_MODULE) return core.api;
    return originalLoad.call(this, request, parent, isMain);
  };
  installed = core;
  return core.registry;
}
