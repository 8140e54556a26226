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
  if (batchSize < 1 || batchSize > 32) throw new Error(`host.json: 'extensions.queues.batchSize' must be 1–32 (a Storage limit).`);
  const encoding = queues.messageEncoding === undefined ? 'base64' : String(queues.messageEncoding).toLowerCase();
  if (encoding !== 'base64' && encoding !== 'none') {
    throw new Error(`host.json: 'extensions.queues.messageEncoding' must be 'base64' or 'none'.`);
  }

  // QueuesOptions refuses these at start-up (azure-sdk-for-net
  // sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Config/QueuesOptions.cs).
  if (batchSize < 1) throw new Error(`host.json: 'extensions.queues.batchSize' must be 1–32 (a Storage limit).`);
  const maxDequeueCount = positiveInt(queues.maxDequeueCount, 'extensions.queues.maxDequeueCount', 5);
  if (maxDequeueCount < 1) throw new Error(`host.json: 'extensions.queues.maxDequeueCount': MaxDequeueCount must not be less than 1.`);
  const maxPollingIntervalMs = timeSpan(queues.maxPollingInterval, 'extensions.queues.maxPollingInterval', 60_000);
  if (maxPollingIntervalMs < 100) throw new Error(`host.json: 'extensions.queues.maxPollingInterval': MaxPollingInterval must not be less than 00:00:00.1000000.`);

  const consumption = isConsumptionPlan(environment);
  let functionTimeoutMs: number | undefined;
  if (root.functionTimeout === '-1' || root.functionTimeout === null) {
    if (consumption) throw new Error(`host.json: 'functionTimeout': FunctionTimeout must be greater than 00:00:01 and less than 00:10:00.`);
    functionTimeoutMs = undefined;
  } else {
    functionTimeoutMs = timeSpan(root.functionTimeout, 'functionTimeout', consumption ? CONSUMPTION_DEFAULT_TIMEOUT_MS : DEFAULT_FUNCTION_TIMEOUT_MS);
    const max = consumption ? CONSUMPTION_MAX_TIMEOUT_MS : Number.POSITIVE_INFINITY;
    if (functionTimeoutMs < 1_000 || functionTimeoutMs > max) {
      throw new Error(`host.json: 'functionTimeout': FunctionTimeout must be greater than 00:00:01 and less than ${consumption ? '00:10:00' : '10675199.02:48:05.4775807'}.`);
    }
  }

  return {
    routePrefix: routePrefix.replace(/^\/+|\/+$/g, ''),
    functionTimeoutMs,
    queues: {
      batchSize,
      // QueuesOptions.NewBatchThreshold: unset, it is (batchSize / 2) × processors (integer division).
      newBatchThreshold: positiveInt(queues.newBatchThreshold, 'extensions.queues.newBatchThreshold', Math.floor(batchSize / 2) * effectiveProcessorCount(environment)),
      maxPollingIntervalMs,
      visibilityTimeoutMs: timeSpan(queues.visibilityTimeout, 'extensions.queues.visibilityTimeout', 0),
      maxDequeueCount,
      messageEncoding: encoding,
    },
  };
}

export function readHostConfig(appDir: string): HostConfig {
  const path = join(appDir, 'host.json');
  if (!existsSync(path)) throw new Error(`No host.json in ${appDir}: the Functions host needs one.`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`host.json is not valid JSON: ${(error as Error).message}`);
  }
  return parseHostConfig(json);
}
