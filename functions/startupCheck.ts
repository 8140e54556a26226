import { app } from '@azure/functions';
import { assertConfiguration } from '../shared/config/startup-check.js';

/**
 * Start-up configuration check: settings, ROUTES_FILE and every other configuration file, loaded when
 * the worker starts, before any trigger runs. Configuration that cannot load fails loudly here
 * instead of burning every event into poison.
 *
 * What a throwing appStart hook does, from the sources: `@azure/functions` (src/hooks/registerHook.ts,
 * `appStart`) passes the handler to the worker unwrapped; the Node.js worker runs it in `startApp`
 * (src/startApp.ts, `executeHooks('appStart', …)`, no catch) from `WorkerInitHandler.handleEvent` (or
 * `FunctionEnvironmentReloadHandler.handleEvent` when a placeholder is specialized, as on Flex
 * Consumption); `handleMessage` in src/setupEventStream.ts turns the error into a `workerInitResponse`
 * with status Failure and the exception's message. The Functions host
 * (GrpcWorkerChannel.WorkerInitResponse → HandleWorkerInitError) logs "Initializing worker process
 * failed" with that message, and RpcFunctionInvocationDispatcher restarts the worker (up to 3 times
 * per worker process) and then stops and recycles the host ("Exceeded language worker restart retry
 * count"). No function runs meanwhile: queue messages stay in their queues, nothing is lost.
 * The local host (local/host/host.ts) refuses to start the same way, at once.
 */
app.hook.appStart(() => {
  assertConfiguration();
});
