import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseTimeSpan } from './timespan.js';

/** The host.json options the real host applies to the triggers this host runs. */
export interface QueueOptions {
  batchSize: number;
  newBatchThreshold: number;
  maxPollingIntervalMs: number;
  visibilityTimeoutMs: number;
  maxDequeueCount: number;
  messageEncoding: 'base64' | 'none';
}

export interface HostConfig {
  routePrefix: string;
  functionTimeoutMs: number | undefined;
  queues: QueueOptions;
}

/**
 * functionTimeout (azure-functions-host src/WebJobs.Script/Config/ScriptJobHostOptionsSetup.cs,
 * `ConfigureFunctionTimeout`): unset, 5 minutes on the Consumption plan (WEBSITE_SKU Dynamic) and 30
 * minutes elsewhere (Flex Consumption, Premium, Dedicated, Core Tools); `-1` is unbounded except on
 * Consumption; a value must lie between 1 second and, on Consumption, 10 minutes.
 */
const CONSUMPTION_DEFAULT_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_FUNCTION_TIMEOUT_MS = 30 * 60_000;
const CONSUMPTION_MAX_TIMEOUT_MS = 10 * 60_000;

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`host.json: '${where}' must be an object.`);
  }
  return value as Record<string, unknown>;
}

function positiveInt(value: unknown, where: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new Error(`host.json: '${where}' must be a non-negative integer.`);
  }
  return value;
}

function timeSpan(value: unknown, where: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') throw new Error(`host.json: '${where}' must be a TimeSpan string (hh:mm:ss).`);
  try {
    return parseTimeSpan(value);
  } catch (error) {
    throw new Error(`host.json: '${where}': ${(error as Error).message}`);
  }
}

/** What the queue options' defaults depend on: the instance's processors, and the plan (WEBSITE_SKU). */
export interface HostEnvironment {
  processorCount: number;
  sku: string | undefined;
}

const thisMachine = (): HostEnvironment => ({ processorCount: availableParallelism(), sku: process.env.WEBSITE_SKU });

/**
 * The Storage Queues extension counts one processor on the Consumption plan (WEBSITE_SKU "Dynamic",
 * any case) and the machine's processors elsewhere, Flex Consumption included (azure-sdk-for-net
 * sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/SkuUtility.cs).
 */
function isConsumptionPlan(environment: HostEnvironment): boolean {
  return environment.sku?.toLowerCase() === 'dynamic';
}

function effectiveProcessorCount(environment: HostEnvironment): number {
  return environment.sku?.toLowerCase() === 'dynamic' ? 1 : environment.processorCount;
}

export function parseHostConfig(json: unknown, environment: HostEnvironment = thisMachine()): HostConfig {
  const root = asObject(json, '(root)');
  const extensions = asObject(root.extensions, 'extensions');
  const http = asObject(extensions.http, 'extensions.http');
  const queues = asObject(extensions.queues, 'extensions.queues');

  const routePrefix = http.routePrefix === undefined ? 'api' : http.routePrefix;
  if (typeof routePrefix !== 'string') throw new Error(`host.json: 'extensions.http.routePrefix' must be a string.`);

  const batchSize = positiveInt(queues.batchSize, 'extensions.queues.batchSize', 16);
  if (batchSize < 1 || batchSize > 32)
    throw new Error(`host.json: 'extensions.queues.batchSize' must be 1–32 (a Storage limit).`);
  const encoding = queues.messageEncoding === undefined ? 'base64' : String(queues.messageEncoding).toLowerCase();
  if (encoding !== 'base64' && encoding !== 'none') {
    throw new Error(`host.json: 'extensions.queues.messageEncoding' must be 'base64' or 'none'.`);
  }

  // QueuesOptions refuses these at start-up (azure-sdk-for-net
  // sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Config/QueuesOptions.cs).
  if (batchSize < 1) throw new Error(`host.json: 'extensions.queues.batchSize' must be 1–32 (a Storage limit).`);
  const maxDequeueCount = positiveInt(queues.maxDequeueCount, 'extensions.queues.maxDequeueCount', 5);
  if (maxDequeueCount < 1)
    throw new Error(`host.json: 'extensions.queues.maxDequeueCount': MaxDequeueCount must not be less than 1.`);
  const maxPollingIntervalMs = timeSpan(queues.maxPollingInterval, 'extensions.queues.maxPollingInterval', 60_000);
  if (maxPollingIntervalMs < 100)
    throw new Error(
      `host.json: 'extensions.queues.maxPollingInterval': MaxPollingInterval must not be less than 00:00:00.1000000.`,
    );

  const consumption = isConsumptionPlan(environment);
  let functionTimeoutMs: number | undefined;
  if (root.functionTimeout === '-1' || root.functionTimeout === null) {
    if (consumption)
      throw new Error(
        `host.json: 'functionTimeout': FunctionTimeout must be greater than 00:00:01 and less than 00:10:00.`,
      );
    functionTimeoutMs = undefined;
  } else {
    functionTimeoutMs = timeSpan(
      root.functionTimeout,
      'functionTimeout',
      consumption ? CONSUMPTION_DEFAULT_TIMEOUT_MS : DEFAULT_FUNCTION_TIMEOUT_MS,
    );
    const max = consumption ? CONSUMPTION_MAX_TIMEOUT_MS : Number.POSITIVE_INFINITY;
    if (functionTimeoutMs < 1_000 || functionTimeoutMs > max) {
      throw new Error(
        `host.json: 'functionTimeout': FunctionTimeout must be greater than 00:00:01 and less than ${consumption ? '00:10:00' : '10675199.02:48:05.4775807'}.`,
      );
    }
  }

  return {
    routePrefix: routePrefix.replace(/^\/+|\/+$/g, ''),
    functionTimeoutMs,
    queues: {
      batchSize,
      // QueuesOptions.NewBatchThreshold: unset, it is (batchSize / 2) × processors (integer division).
      newBatchThreshold: positiveInt(
        queues.newBatchThreshold,
        'extensions.queues.newBatchThreshold',
        Math.floor(batchSize / 2) * effectiveProcessorCount(environment),
      ),
      maxPollingIntervalMs,
      visibilityTimeoutMs: timeSpan(queues.visibilityTimeout, 'extensions.queues.visibilityTimeout', 0),
      maxDequeueCount,
      messageEncoding: encoding,
    },
  };
}

/**
 * SingletonOptions (azure-webjobs-sdk src/Microsoft.Azure.WebJobs.Host/Singleton/SingletonOptions.cs),
 * in milliseconds; `Infinity` stands for TimeSpan.MaxValue.
 */
export interface SingletonOptions {
  /** Function-mode locks (not used by this host: no function declares [Singleton]). */
  lockPeriodMs: number;
  /** Listener locks (a timer's): the blob lease's duration, renewed at half of it. */
  listenerLockPeriodMs: number;
  lockAcquisitionTimeoutMs: number;
  lockAcquisitionPollingIntervalMs: number;
  /** How often an instance without a listener's lock tries again; Infinity turns recovery off. */
  listenerLockRecoveryPollingIntervalMs: number;
}

/** TimeSpan.MaxValue in milliseconds (rounded down): a value at least this large is MaxValue. */
const TIMESPAN_MAX_MS = 922_337_203_685_477;
/** The lease limits of Azure Storage that SingletonOptions enforces (MinimumLeasePeriod, MaximumLeasePeriod). */
const MIN_LEASE_MS = 15_000;
const MAX_LEASE_MS = 60_000;

/**
 * host.json `singleton`, bound to SingletonOptions (azure-webjobs-sdk
 * src/Microsoft.Azure.WebJobs.Host/Hosting/WebJobsServiceCollectionExtensions.cs, section "Singleton"
 * of the host.json root; azure-functions-host HostJsonFileConfigurationSource lists `singleton`). The
 * defaults and the checks are SingletonOptions' own: a lock period outside 15–60 s, a polling
 * interval under 500 ms or a recovery interval under 15 s (other than TimeSpan.MaxValue) refuse to
 * start. In the Development environment (AZURE_FUNCTIONS_ENVIRONMENT, which Azure leaves unset) the
 * listener lock period defaults to 15 s instead of 60 s.
 */
export function parseSingletonOptions(
  json: unknown,
  environment: { azureFunctionsEnvironment?: string } = {
    azureFunctionsEnvironment: process.env.AZURE_FUNCTIONS_ENVIRONMENT,
  },
): SingletonOptions {
  const section = asObject(asObject(json, '(root)').singleton, 'singleton');
  const span = (name: string, fallback: number): number => {
    const ms = timeSpan(section[name], `singleton.${name}`, fallback);
    return ms >= TIMESPAN_MAX_MS ? Number.POSITIVE_INFINITY : ms;
  };
  const leasePeriod = (name: string, fallback: number): number => {
    const ms = span(name, fallback);
    if (ms < MIN_LEASE_MS || ms > MAX_LEASE_MS)
      throw new Error(
        `host.json: 'singleton.${name}' must be from 00:00:15 to 00:01:00 (the lease periods Azure Storage allows).`,
      );
    return ms;
  };
  const development = environment.azureFunctionsEnvironment?.toLowerCase() === 'development';
  const options: SingletonOptions = {
    lockPeriodMs: leasePeriod('lockPeriod', MIN_LEASE_MS),
    listenerLockPeriodMs: leasePeriod('listenerLockPeriod', development ? MIN_LEASE_MS : MAX_LEASE_MS),
    lockAcquisitionTimeoutMs: span('lockAcquisitionTimeout', Number.POSITIVE_INFINITY),
    lockAcquisitionPollingIntervalMs: span('lockAcquisitionPollingInterval', 5_000),
    listenerLockRecoveryPollingIntervalMs: span('listenerLockRecoveryPollingInterval', 60_000),
  };
  if (options.lockAcquisitionTimeoutMs <= 0)
    throw new Error(`host.json: 'singleton.lockAcquisitionTimeout' must be positive.`);
  if (options.lockAcquisitionPollingIntervalMs < 500)
    throw new Error(`host.json: 'singleton.lockAcquisitionPollingInterval' must be at least 00:00:00.5.`);
  if (options.listenerLockRecoveryPollingIntervalMs < MIN_LEASE_MS) {
    throw new Error(
      `host.json: 'singleton.listenerLockRecoveryPollingInterval' must be at least 00:00:15 (or TimeSpan.MaxValue, 10675199.02:48:05.4775807, to turn recovery off).`,
    );
  }
  return options;
}

function readHostJson(appDir: string): unknown {
  const path = join(appDir, 'host.json');
  if (!existsSync(path)) throw new Error(`No host.json in ${appDir}: the Functions host needs one.`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`host.json is not valid JSON: ${(error as Error).message}`);
  }
}

export function readHostConfig(appDir: string): HostConfig {
  return parseHostConfig(readHostJson(appDir));
}

export function readSingletonOptions(appDir: string): SingletonOptions {
  return parseSingletonOptions(readHostJson(appDir));
}
