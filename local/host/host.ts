import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { indexFunctions, triggerBindingName, type FunctionError, type HostedFunction } from './app-loader.js';
import { applyLocalSettings } from './app-settings.js';
import { readHostConfig, readSingletonOptions } from './host-config.js';
import { startHttpServer, type AdminInvokeResult, type RunningHttpServer } from './http-server.js';
import { Invoker } from './invoker.js';
import { QueueListener } from './queue-listener.js';
import { BlobScheduleMonitor, HOSTS_CONTAINER, localHostId } from './schedule-monitor.js';
import { BlobLeaseLockManager, type DistributedLockManager } from './singleton-lock.js';
import { listenerLockId, SingletonListener, type Listener } from './singleton-listener.js';
import { DEFAULT_CONNECTION, MissingConnectionError, resolveStorageConnection } from './storage-connection.js';
import { TimerTrigger, type ScheduleMonitor } from './timer-trigger.js';
import type { WorkerLog } from './worker-channel.js';
import { WorkerDispatcher } from './worker-dispatcher.js';

export interface HostOptions {
  appDir: string;
  /** Default 7071, like `func start`; 0 picks a free port. */
  port?: number;
  log?: (line: string) => void;
  /** How long close() waits for in-flight invocations. */
  drainTimeoutMs?: number;
}

export interface RunningHost {
  url: string;
  functions: { name: string; trigger: string; detail: string }[];
  /** Functions in error (the real host's route checks): they do not run; the others do. */
  errors: FunctionError[];
  /** Resolves when the host stops itself (its worker kept dying), with the reason. */
  fatal: Promise<string>;
  close(): Promise<void>;
}

function describe(
  fn: HostedFunction,
  routePrefix: string,
  url: string,
  timers: Map<string, TimerTrigger>,
): { name: string; trigger: string; detail: string } {
  const name = fn.metadata.name;
  switch (fn.trigger) {
    case 'http': {
      const path = [routePrefix, fn.route.template.replace(/^\/+/, '')].filter(Boolean).join('/');
      const methods = fn.methods.length > 0 ? fn.methods.join(',') : 'ALL';
      return { name, trigger: 'httpTrigger', detail: `[${methods}] ${url}/${path}` };
    }
    case 'queue':
      return { name, trigger: 'queueTrigger', detail: `queue '${fn.queueName}' (connection ${fn.connectionSetting})` };
    case 'timer':
      return {
        name,
        trigger: 'timerTrigger',
        detail: `schedule '${timers.get(name)?.schedule.describe ?? fn.schedule}'${fn.runOnStartup ? ', runOnStartup' : ''}`,
      };
  }
}

/**
 * What timers keep in AzureWebJobsStorage, as the real host does (it needs that setting for timers):
 * their schedule status, and the singleton locks that let one instance of the app run each timer
 * (StorageServiceCollectionExtensions registers BlobLeaseDistributedLockManager when the hosts container
 * is reachable). Without it, timers run unmonitored (no past-due check) and unlocked (the in-memory
 * lock manager, which one instance always holds), and the host says so.
 */
function timerStorage(
  appDir: string,
  log: (line: string) => void,
): { hostId: string; monitor: ScheduleMonitor; locks: DistributedLockManager } | undefined {
  let connection;
  try {
    connection = resolveStorageConnection(DEFAULT_CONNECTION);
  } catch (err) {
    if (!(err instanceof MissingConnectionError)) throw err;
    log(
      '[warning] AzureWebJobsStorage is not set: timers run without their schedule status (no past-due runs after a restart).',
    );
    return undefined;
  }
  const hostId = localHostId(appDir);
  const blobs = connection.blobs();
  return {
    hostId,
    monitor: new BlobScheduleMonitor(blobs, hostId),
    locks: new BlobLeaseLockManager(blobs.getContainerClient(HOSTS_CONTAINER), log),
  };
}

/**
 * Starts the local Functions host for the app in `appDir`: starts the language worker (a child
 * process that loads the app through the `@azure/functions-core` seam and runs its appStart hooks),
 * indexes the functions it reports, then serves their HTTP, queue and timer triggers.
 *
 * A worker whose app fails to load (an entry point or an appStart hook throws) fails its init in
 * Azure too (src/startApp.ts has no catch; the worker answers WorkerInitRequest with Failure), and
 * the host logs "Initializing worker process failed", retries a few times and stops, running no
 * function. Here the host refuses to start at once, with the worker's message: a configuration
 * error would only fail again on each restart.
 */
export async function startHost(options: HostOptions): Promise<RunningHost> {
  const appDir = resolve(options.appDir);
  const log = options.log ?? ((line: string) => console.log(line));
  applyLocalSettings(appDir);
  const config = readHostConfig(appDir);
  const singleton = readSingletonOptions(appDir);
  const workerLog: WorkerLog = (level, category, message) => {
    const prefix = category === 'system' ? `[${level}] ` : level === 'error' || level === 'critical' ? '[error] ' : '';
    log(`${prefix}${message}`);
  };
  let reportFatal: (reason: string) => void = () => undefined;
  const fatal = new Promise<string>((resolveFatal) => {
    reportFatal = resolveFatal;
  });
  const { dispatcher, ready } = await WorkerDispatcher.start(appDir, {
    log,
    workerLog,
    onFatal: (reason) => reportFatal(reason),
  });
  let loaded: ReturnType<typeof indexFunctions>;
  try {
    loaded = indexFunctions(appDir, ready);
  } catch (error) {
    await dispatcher.terminate();
    throw error;
  }
  const invoker = new Invoker(dispatcher, log, config.functionTimeoutMs);
  const errors = [...loaded.errors];
  // A queue trigger whose connection is missing fails indexing, as in the real host: it is in error, the others run.
  const queues = new Map<string, QueueListener>();
  for (const fn of loaded.functions) {
    if (fn.trigger !== 'queue') continue;
    try {
      queues.set(fn.metadata.name, new QueueListener(fn, config.queues, invoker, log));
    } catch (error) {
      if (!(error instanceof MissingConnectionError)) throw error;
      errors.push({
        name: fn.metadata.name,
        message: `Microsoft.Azure.WebJobs.Host: Error indexing method 'Functions.${fn.metadata.name}'. Microsoft.Azure.WebJobs.Host.Storage: ${error.message}`,
      });
    }
  }
  const functions = loaded.functions.filter((fn) => !errors.some((e) => e.name === fn.metadata.name));
  for (const error of errors) log(`[error] The '${error.name}' function is in error: ${error.message}`);
  for (const fn of functions) {
    if (fn.trigger === 'http' && fn.authLevel !== 'anonymous') {
      log(
        `Function '${fn.metadata.name}' has authLevel '${fn.authLevel}': keys are not enforced by the local host (as with Core Tools).`,
      );
    }
  }

  const byName = new Map(functions.map((fn) => [fn.metadata.name.toLowerCase(), fn]));
  const timers = new Map<string, TimerTrigger>();
  const timerListeners: Listener[] = [];
  const storage = functions.some((fn) => fn.trigger === 'timer') ? timerStorage(appDir, log) : undefined;
  // The renewal of a timer's lease failed: the real host logs it and stops (WebScriptHostExceptionHandler).
  const onUnhandledException = (error: unknown): void => {
    log('[error] An unhandled exception has occurred. Host is shutting down.');
    reportFatal(`an unhandled exception has occurred (${(error as Error).message.split('\n')[0]})`);
  };
  // Build every timer before starting any trigger, so a bad schedule fails start-up cleanly.
  for (const fn of functions) {
    if (fn.trigger !== 'timer') continue;
    const timer = new TimerTrigger(fn, invoker, { monitor: storage?.monitor, log });
    timers.set(fn.metadata.name, timer);
    timerListeners.push(
      storage
        ? new SingletonListener(listenerLockId(storage.hostId, fn.metadata.name), timer, storage.locks, singleton, {
            log,
            onUnhandledException,
          })
        : timer,
    );
  }

  let accepting = true;
  const adminInvoke = (name: string, input: string): AdminInvokeResult => {
    const fn = byName.get(name.toLowerCase());
    if (!fn) return { status: 404, message: `Function '${name}' does not exist.` };
    if (fn.trigger === 'http') {
      // Accepted, then the call fails binding its trigger before the function starts (no 'Executing'
      // line): the HTTP trigger binds only an HttpRequest (FunctionsController.Invoke answers 202 and
      // calls in the background; HttpTriggerAttributeBindingProvider.BindAsync; FunctionExecutor
      // binds before LogFunctionStarted).
      log(`Executed 'Functions.${fn.metadata.name}' (Failed, Id=${randomUUID()}, Duration=0ms)`);
      log(
        `[error] Microsoft.Azure.WebJobs.Host: Exception binding parameter '${triggerBindingName(fn.metadata)}'. Microsoft.Azure.WebJobs.Extensions.Http: An HttpRequest is required.`,
      );
      return { status: 202 };
    }
    if (fn.trigger === 'timer') timers.get(fn.metadata.name)!.invokeNow();
    else queues.get(fn.metadata.name)!.invokeWithText(input);
    return { status: 202 };
  };

  let http: RunningHttpServer | undefined;
  try {
    await Promise.all([...queues.values()].map((listener) => listener.start()));
    http = await startHttpServer(
      {
        functions: functions.filter((fn) => fn.trigger === 'http'),
        routePrefix: config.routePrefix,
        invoker,
        adminInvoke,
        accepting: () => accepting,
        log,
      },
      options.port ?? 7071,
    );
  } catch (error) {
    await Promise.allSettled([...queues.values()].map((listener) => listener.stop()));
    await dispatcher.terminate();
    throw error;
  }
  await Promise.all(timerListeners.map((listener) => listener.start()));

  const url = `http://localhost:${http.port}`;
  const server = http;
  let closing: Promise<void> | undefined;
  return {
    url,
    functions: functions.map((fn) => describe(fn, config.routePrefix, url, timers)),
    errors,
    fatal,
    close: () => {
      closing ??= (async () => {
        accepting = false;
        const drainMs = options.drainTimeoutMs ?? 30_000;
        const stopped = Promise.all([
          ...[...queues.values()].map((listener) => listener.stop()),
          ...timerListeners.map((listener) => listener.stop()),
        ]);
        const drained = await invoker.drain(drainMs);
        if (!drained)
          log(`[warning] ${invoker.inFlightCount} invocation(s) still running after ${drainMs} ms; stopping anyway.`);
        else await stopped;
        await server.close();
        await dispatcher.terminate();
      })();
      return closing;
    },
  };
}
