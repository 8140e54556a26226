import { entryPointFiles, importEntryPoints } from './app-loader.js';
import { installCoreApi } from './core-api.js';
import type { HostToWorker, WorkerError, WorkerToHost } from './worker-messages.js';
import { WorkerInvoker } from './worker-invoker.js';

/**
 * The local host's language worker: a child process running the app, as the real host runs the
 * Node.js worker (azure-functions-nodejs-worker) in a process of its own. The host can end it on a
 * function timeout, and restarts it when it dies, without losing itself.
 *
 * Usage (by the host only): node worker-process.js <appDir>, with an IPC channel.
 */
function send(message: WorkerToHost, then?: () => void): void {
  process.send!(message, undefined, undefined, () => then?.());
}

function toWorkerError(thrown: unknown): WorkerError {
  return thrown instanceof Error ? { message: thrown.message, stack: thrown.stack } : { message: String(thrown) };
}

// As the Node worker does (src/Worker.ts): an uncaught exception (an unhandled rejection is one, by
// Node's default) is reported to the host and ends the process with code 1; the host restarts it.
process.on('uncaughtException', (error: unknown) => {
  const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
  send(
    {
      type: 'log',
      level: 'error',
      category: 'system',
      message: `Worker uncaught exception (learn more: https://go.microsoft.com/fwlink/?linkid=2097909 ): ${stack}`,
    },
    () => process.exit(1),
  );
  setTimeout(() => process.exit(1), 1_000).unref();
});

// The host went away (its IPC channel closed): so does the worker, as the Node worker ends with its gRPC stream.
process.on('disconnect', () => process.exit(0));
// Ctrl-C reaches the whole process group: the host stops the worker itself, after its in-flight work.
process.on('SIGINT', () => undefined);

async function main(appDir: string): Promise<void> {
  const registry = installCoreApi();
  registry.onLog = (level, category, message) => send({ type: 'log', level, category, message });
  const invoker = new WorkerInvoker(registry);

  process.on('message', (message: HostToWorker) => {
    if (message.type === 'invoke') {
      const { invocationId } = message.request;
      invoker
        .invoke(message.request, (level, category, text) =>
          send({ type: 'log', invocationId, level, category, message: text }),
        )
        .then(
          (response) => send({ type: 'response', invocationId, response }),
          (error: unknown) => send({ type: 'failure', invocationId, error: toWorkerError(error) }),
        );
    } else if (message.type === 'terminate') {
      // WorkerTerminate: the worker runs the appTerminate hooks, then exits (src/eventHandlers/terminateWorker.ts).
      invoker
        .runAppHooks('appTerminate')
        .catch((error: unknown) => {
          send({
            type: 'log',
            level: 'error',
            category: 'system',
            message: `An appTerminate hook failed: ${toWorkerError(error).stack ?? toWorkerError(error).message}`,
          });
        })
        .finally(() => send({ type: 'terminated' }, () => process.exit(0)));
    }
  });

  // src/startApp.ts: load the entry points, then run the appStart hooks; the host asks for
  // capabilities and function metadata after that, which locks registrations.
  try {
    await importEntryPoints(appDir, entryPointFiles(appDir));
    try {
      await invoker.runAppHooks('appStart', { functionAppDirectory: appDir });
    } catch (error) {
      // A hook that throws fails the worker's init (src/startApp.ts has no catch).
      throw new Error(`Initializing worker process failed: an appStart hook threw: ${toWorkerError(error).message}`, {
        cause: error,
      });
    }
    const capabilities = (await registry.programmingModel()?.getCapabilities?.({})) ?? {};
    registry.lockIndexing();
    const functions = [...registry.functions].map(([functionId, fn]) => ({ ...fn.metadata, functionId }));
    send({ type: 'ready', functions, capabilities });
  } catch (error) {
    send({ type: 'initFailed', error: toWorkerError(error) }, () => process.exit(1));
  }
}

if (!process.send) {
  console.error('worker-process.js is started by the local host, with an IPC channel.');
  process.exit(2);
}
void main(process.argv[2] ?? process.cwd());
