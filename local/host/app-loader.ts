import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { resolveAppSettings, UnresolvedSettingError } from './app-settings.js';
import { expandGlob } from './glob.js';
import { parseRouteTemplate, type RouteTemplate } from './routes.js';
import { DEFAULT_CONNECTION } from './storage-connection.js';
import type { FunctionMetadata, RpcBindingInfo } from './worker-contract.js';

/** A function as the worker describes it to the host (its FunctionMetadataResponse). */
export interface IndexedFunction {
  metadata: FunctionMetadata;
}

/** The name of the function's trigger binding (the parameter the host binds the trigger input to). */
export function triggerBindingName(metadata: FunctionMetadata): string {
  return Object.entries(metadata.bindings).find(([, binding]) => /trigger$/i.test(binding.type ?? ''))?.[0] ?? '';
}

export interface HttpFunction extends IndexedFunction {
  trigger: 'http';
  route: RouteTemplate;
  /** Upper-case; empty means every method. */
  methods: string[];
  authLevel: string;
}
export interface QueueFunction extends IndexedFunction {
  trigger: 'queue';
  queueName: string;
  /** The app setting that holds the connection string. */
  connectionSetting: string;
}
export interface TimerFunction extends IndexedFunction {
  trigger: 'timer';
  schedule: string;
  runOnStartup: boolean;
  useMonitor: boolean;
}
export type HostedFunction = HttpFunction | QueueFunction | TimerFunction;

/** A function the host refused as the real host does: it is "in error" and does not run; the others do. */
export interface FunctionError {
  name: string;
  message: string;
}

/** The files package.json `main` names: the Node worker's entry point(s). */
export function entryPointFiles(appDir: string): string[] {
  const packagePath = join(appDir, 'package.json');
  if (!existsSync(packagePath)) throw new Error(`No package.json in ${appDir}.`);
  const main = (JSON.parse(readFileSync(packagePath, 'utf8')) as { main?: unknown }).main;
  if (typeof main !== 'string' || main === '') {
    throw new Error(
      `package.json in ${appDir} has no 'main': it must name the function files (e.g. "dist/functions/*.js").`,
    );
  }
  const files = /[*?]/.test(main) ? expandGlob(appDir, main) : [main].filter((file) => existsSync(join(appDir, file)));
  if (files.length === 0)
    throw new Error(`package.json 'main' ('${main}') matches no file in ${appDir}. Did you build?`);
  return files.map((file) => resolve(appDir, file));
}

/**
 * Imports every entry point; the `app.*` calls they make are the only list of functions. One that
 * fails stops the app, named as the worker names it: the path as `main`'s pattern matched it, relative
 * to the app (azure-functions-nodejs-worker src/startApp.ts `loadEntryPointFile`; blocking from Node 20).
 */
export async function importEntryPoints(appDir: string, files: string[]): Promise<void> {
  for (const file of files) {
    try {
      await import(pathToFileURL(file).href);
    } catch (error) {
      throw new Error(
        `Worker was unable to load entry point "${relative(appDir, file)}": ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
}

function stringProperty(
  binding: RpcBindingInfo,
  property: string,
  functionName: string,
  required: boolean,
): string | undefined {
  const value = binding[property];
  if (value === undefined || value === null) {
    if (required) throw new Error(`Function '${functionName}': the trigger has no '${property}'.`);
    return undefined;
  }
  if (typeof value !== 'string') throw new Error(`Function '${functionName}': '${property}' must be a string.`);
  return resolveAppSettings(value, functionName, property);
}

/**
 * Turns one registration into what this host runs, or refuses it clearly. Only the trigger (and,
 * for HTTP, its `$return` http output) are supported: the app talks to storage through SDKs.
 */
export function describeFunction(fn: IndexedFunction): HostedFunction {
  const { metadata } = fn;
  const name = metadata.name;
  const entries = Object.entries(metadata.bindings);
  const triggers = entries.filter(([, b]) => /trigger$/i.test(b.type ?? ''));
  if (triggers.length !== 1)
    throw new Error(`Function '${name}' must have exactly one trigger (has ${triggers.length}).`);
  const [triggerName, trigger] = triggers[0]!;
  const type = (trigger.type ?? '').toLowerCase();

  for (const [bindingName, binding] of entries) {
    if (bindingName === triggerName) continue;
    const isHttpReturn = type === 'httptrigger' && bindingName === '$return' && binding.type?.toLowerCase() === 'http';
    if (!isHttpReturn) {
      throw new Error(
        `Function '${name}': binding '${bindingName}' (${binding.type}, ${binding.direction}) is not supported by the local host; use the Azure SDK in the handler instead.`,
      );
    }
  }
  if (metadata.retryOptions) throw new Error(`Function '${name}': retry policies are not supported by the local host.`);

  switch (type) {
    case 'httptrigger': {
      const route = stringProperty(trigger, 'route', name, false) ?? name;
      const methods = Array.isArray(trigger.methods) ? trigger.methods.map((m) => String(m).toUpperCase()) : [];
      let template: RouteTemplate;
      try {
        template = parseRouteTemplate(route);
      } catch (error) {
        throw new Error(`Function '${name}': ${(error as Error).message}`);
      }
      return {
        ...fn,
        trigger: 'http',
        route: template,
        methods,
        authLevel: String(trigger.authLevel ?? 'anonymous').toLowerCase(),
      };
    }
    case 'queuetrigger': {
      const queueName = stringProperty(trigger, 'queueName', name, true)!;
      // Queue names: 3–63 lower-case letters, digits and single hyphens (Storage rule).
      if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(queueName)) {
        throw new Error(`Function '${name}': '${queueName}' is not a valid queue name.`);
      }
      const connectionSetting = stringProperty(trigger, 'connection', name, false) || DEFAULT_CONNECTION;
      return { ...fn, trigger: 'queue', queueName, connectionSetting };
    }
    case 'timertrigger': {
      const schedule = stringProperty(trigger, 'schedule', name, true)!;
      return {
        ...fn,
        trigger: 'timer',
        schedule,
        runOnStartup: trigger.runOnStartup === true,
        useMonitor: trigger.useMonitor !== false,
      };
    }
    default:
      throw new Error(
        `Function '${name}': trigger type '${trigger.type}' is not supported by the local host (HTTP, queue and timer are).`,
      );
  }
}

/**
 * The functions in the order the real host keeps them: by name, ordinal and case-insensitive
 * (azure-functions-host src/WebJobs.Script/Host/FunctionMetadataManager.cs, `OrderBy(f => f.Name,
 * StringComparer.OrdinalIgnoreCase)`). Route checks and HTTP matching follow this order.
 */
export function byFunctionName<T extends { metadata: { name: string } }>(functions: readonly T[]): T[] {
  const key = (fn: T) => fn.metadata.name.toUpperCase();
  return [...functions].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/**
 * The real host's checks of each HTTP function against the routes before it, in function-name order
 * (azure-functions-host src/WebJobs.Script/Host/ScriptHost.cs `ValidateHttpFunction` and
 * `HttpRoutesConflict`): a route starting with `admin` or `runtime` (its own `/admin/...` and
 * `/runtime/...` APIs; a plain prefix test, so `administration` too), or the same route
 * (case-insensitive, slashes trimmed) with an overlapping method (no methods means all), puts that
 * function in error. The host logs "The '<name>' function is in error: <message>" and runs the others.
 */
export function checkHttpRoutes(registered: HostedFunction[]): {
  functions: HostedFunction[];
  errors: FunctionError[];
} {
  const functions = byFunctionName(registered);
  const accepted: HostedFunction[] = [];
  const errors: FunctionError[] = [];
  const http: HttpFunction[] = [];
  const routeOf = (fn: HttpFunction) => fn.route.template.replace(/^\/+|\/+$/g, '').toLowerCase();
  for (const fn of functions) {
    if (fn.trigger !== 'http') {
      accepted.push(fn);
      continue;
    }
    const route = routeOf(fn);
    const name = fn.metadata.name;
    if (route.startsWith('admin') || route.startsWith('runtime')) {
      errors.push({ name, message: 'The specified route conflicts with one or more built in routes.' });
      continue;
    }
    const clash = http.find(
      (other) =>
        routeOf(other) === route &&
        (fn.methods.length === 0 || other.methods.length === 0 || fn.methods.some((m) => other.methods.includes(m))),
    );
    if (clash) {
      errors.push({
        name,
        message: `The route specified conflicts with the route defined by function '${clash.metadata.name}'.`,
      });
      continue;
    }
    http.push(fn);
    accepted.push(fn);
  }
  return { functions: accepted, errors };
}

/**
 * What the host makes of the worker's function metadata, once the worker has loaded the app and run
 * its appStart hooks (the worker's `startApp`, before the host asks for capabilities and metadata).
 * A %SETTING% no app setting provides puts that function in error, as in Azure; anything else this
 * host cannot run stops it.
 */
export function indexFunctions(
  appDir: string,
  worker: { functions: FunctionMetadata[]; capabilities: Record<string, string> },
): { functions: HostedFunction[]; errors: FunctionError[] } {
  if (worker.functions.length === 0)
    throw new Error(`No functions were registered by the files package.json 'main' names in ${appDir}.`);
  if (worker.capabilities.HttpUri)
    throw new Error('app.setup({ enableHttpStream: true }) is not supported by the local host.');
  const described: HostedFunction[] = [];
  const unresolved: FunctionError[] = [];
  for (const metadata of worker.functions) {
    try {
      described.push(describeFunction({ metadata }));
    } catch (error) {
      if (!(error instanceof UnresolvedSettingError)) throw error;
      unresolved.push({ name: metadata.name, message: error.message });
    }
  }
  const checked = checkHttpRoutes(described);
  return { functions: checked.functions, errors: [...unresolved, ...checked.errors] };
}
