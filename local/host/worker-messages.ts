import type {
  FunctionMetadata,
  RpcInvocationRequest,
  RpcInvocationResponse,
  RpcLogCategory,
  RpcLogLevel,
} from './worker-contract.js';

/**
 * What the local host and its worker process say to each other over the child process's IPC channel
 * (structured clone, so Buffers arrive as Uint8Array, as protobuf bytes do). A subset of the real
 * host's gRPC messages (azure-functions-language-worker-protobuf `FunctionRpc.proto`): worker init
 * and function metadata, invocation request and response, RpcLog, and WorkerTerminate.
 */
export type HostToWorker = { type: 'invoke'; request: RpcInvocationRequest } | { type: 'terminate' };

export interface WorkerError {
  message: string;
  stack?: string;
}

export type WorkerToHost =
  /** The app loaded, its appStart hooks ran and registrations are locked (WorkerInitResponse + FunctionMetadataResponse). */
  | { type: 'ready'; functions: FunctionMetadata[]; capabilities: Record<string, string> }
  /** Loading the app or an appStart hook failed (WorkerInitResponse with status Failure). */
  | { type: 'initFailed'; error: WorkerError }
  | { type: 'log'; invocationId?: string; level: RpcLogLevel; category: RpcLogCategory; message: string }
  | { type: 'response'; invocationId: string; response: RpcInvocationResponse }
  | { type: 'failure'; invocationId: string; error: WorkerError }
  /** appTerminate hooks have run; the worker exits next. */
  | { type: 'terminated' };
