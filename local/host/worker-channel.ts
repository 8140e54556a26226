import { fork, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { join } from 'node:path';
import type {
  FunctionMetadata,
  RpcInvocationRequest,
  RpcInvocationResponse,
  RpcLogCategory,
  RpcLogLevel,
} from './worker-contract.js';
import type { HostToWorker, WorkerError, WorkerToHost } from './worker-messages.js';

const WORKER_ENTRY = join(import.meta.dirname, 'worker-process.js');
/** How long a terminating worker has for its appTerminate hooks (WorkerConstants.WorkerTerminateGracePeriodInSeconds). */
const TERMINATE_GRACE_MS = 5_000;

/** The handler (or a hook) failed in the worker: its message and stack, as the worker reported them. */
export class WorkerInvocationError extends Error {
  constructor(reported: WorkerError) {
    super(reported.message);
    this.name = 'Error';
    if (reported.stack) this.stack = reported.stack;
  }
}

/** The worker process ended while the invocation ran (azure-functions-host WorkerProcess.cs `OnProcessExited`). */
export class WorkerProcessExitError extends Error {}

export type WorkerLog = (level: RpcLogLevel, category: RpcLogCategory, message: string, invocationId?: string) => void;

export interface ReadyWorker {
  functions: FunctionMetadata[];
  capabilities: Record<string, string>;
}

interface Pending {
  resolve(response: RpcInvocationResponse): void;
  reject(error: Error): void;
}

/**
 * One worker process and the invocations it runs (the real host's GrpcWorkerChannel). Its console
 * output goes to the host's own stdout and stderr; its log calls come back as messages.
 */
export class WorkerChannel {
  readonly #child: ChildProcess;
  readonly #executing = new Map<string, Pending>();
  #exited = false;
  #disposed = false;
  #onUnexpectedExit: (error: WorkerProcessExitError) => void = () => undefined;

  private constructor(child: ChildProcess, log: WorkerLog) {
    this.#child = child;
    child.on('message', (message: WorkerToHost) => {
      switch (message.type) {
        case 'log':
          log(message.level, message.category, message.message, message.invocationId);
          break;
        case 'response':
          this.#settle(message.invocationId, (pending) => pending.resolve(message.response));
          break;
        case 'failure':
          this.#settle(message.invocationId, (pending) => pending.reject(new WorkerInvocationError(message.error)));
          break;
        default:
          break;
      }
    });
    child.once('exit', (code, signal) => {
      this.#exited = true;
      // Exit code 0 is no error to the host (WorkerProcess.cs `OnProcessExited`): nothing is failed
      // or restarted, and what it was running ends by its timeout.
      if (this.#disposed || code === 0) return;
      const exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
      const error = new WorkerProcessExitError(
        `node exited with code ${exitCode} (0x${exitCode.toString(16).toUpperCase()})`,
      );
      // Any other exit fails everything it was running (GrpcWorkerChannel.TryFailExecutions).
      for (const pending of this.#executing.values()) pending.reject(error);
      this.#executing.clear();
      this.#onUnexpectedExit(error);
    });
  }

  /** Starts a worker for the app and waits until it has loaded the app and run its appStart hooks. */
  static async start(appDir: string, log: WorkerLog): Promise<{ channel: WorkerChannel; ready: ReadyWorker }> {
    const child = fork(WORKER_ENTRY, [appDir], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const channel = new WorkerChannel(child, log);
    const ready = await new Promise<ReadyWorker>((resolve, reject) => {
      const onMessage = (message: WorkerToHost): void => {
        if (message.type === 'ready') {
          cleanup();
          resolve({ functions: message.functions, capabilities: message.capabilities });
        } else if (message.type === 'initFailed') {
          cleanup();
          reject(new Error(message.error.message));
        }
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`The worker process exited with code ${code} while loading the app.`));
      };
      const cleanup = (): void => {
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    }).catch((error: unknown) => {
      channel.kill();
      throw error;
    });
    return { channel, ready };
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  set onUnexpectedExit(callback: (error: WorkerProcessExitError) => void) {
    this.#onUnexpectedExit = callback;
  }

  isExecuting(invocationId: string): boolean {
    return this.#executing.has(invocationId);
  }

  /** Sends the invocation; to a worker that has exited it is never answered (it ends by its timeout). */
  invoke(request: RpcInvocationRequest): Promise<RpcInvocationResponse> {
    return new Promise((resolve, reject) => {
      this.#executing.set(request.invocationId, { resolve, reject });
      if (!this.#exited) this.#child.send({ type: 'invoke', request } satisfies HostToWorker, () => undefined);
    });
  }

  /**
   * Ends the process at once, as the host disposes a channel on a function timeout. The invocations
   * it ran are dropped without a result (ShutdownChannelIfExistsAsync passes no exception, so
   * TryFailExecutions fails none of them): each ends when its own timeout fires.
   */
  kill(): void {
    this.#disposed = true;
    this.#executing.clear();
    if (!this.#exited) this.#child.kill('SIGKILL');
  }

  /** WorkerTerminate: the worker runs its appTerminate hooks and exits; killed after the grace period. */
  async terminate(): Promise<void> {
    if (this.#exited) return;
    this.#disposed = true;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.send({ type: 'terminate' } satisfies HostToWorker, () => undefined);
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), TERMINATE_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  #settle(invocationId: string, settle: (pending: Pending) => void): void {
    const pending = this.#executing.get(invocationId);
    if (!pending) return;
    this.#executing.delete(invocationId);
    settle(pending);
  }
}
