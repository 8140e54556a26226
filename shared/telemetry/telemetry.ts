import type * as AzureFunctions from '@azure/functions';
import type { TokenCredential } from '@azure/identity';
import { managedIdentityCredential } from '../auth/app-identity.js';
import { ConfigError, GUID } from '../config/config.js';
import { observeBudgetUsage, observeQueueDepths } from './metrics.js';
import { queueDepthReader } from '../storage/queues.js';
import type { Services } from '../services.js';

/**
 * OpenTelemetry for the app, as "Use OpenTelemetry with Azure Functions" (Microsoft Learn, Node.js)
 * sets it up: host.json `"telemetryMode": "OpenTelemetry"` has the host export its own telemetry the
 * OpenTelemetry way; the worker exports the app's logs, traces and metrics through the Azure Monitor
 * distro (`@azure/monitor-opentelemetry`), and `@azure/functions-opentelemetry-instrumentation` tells
 * the host that the worker sends its own logs (capability WorkerOpenTelemetryEnabled, so they are not
 * sent twice) and makes the host's trace context of each invocation the handler's active context.
 *
 * Only when APPLICATIONINSIGHTS_CONNECTION_STRING is set (the platform's setting: infra/app/api.bicep).
 * Otherwise nothing is loaded, and metrics.ts and tracing.ts record into the OpenTelemetry API's no-ops.
 * The distro is loaded with import(), so a cold start without it reads none of it (scripts/bundle.ts
 * puts it in chunks of its own; `npm run bench`, figure 6).
 */
export interface TelemetrySettings {
  connectionString: string;
  /** APPLICATIONINSIGHTS_AUTHENTICATION_STRING: Entra ID authentication with the app's managed identity (user-assigned when a client id is given). */
  entra?: { clientId?: string };
  /**
   * The ingestion endpoint is on this machine (a local stand-in of Application Insights): then nothing
   * else may leave it either, so statsbeat (the SDK's telemetry about itself, sent to Microsoft) and
   * live metrics are off.
   */
  local: boolean;
}

export const CONNECTION_STRING_SETTING = 'APPLICATIONINSIGHTS_CONNECTION_STRING';
export const AUTHENTICATION_STRING_SETTING = 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING';

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** `Key=value;Key=value` as Application Insights writes its strings: keys case-insensitive, empty parts ignored. */
function keyValues(text: string): Map<string, string> {
  const pairs = new Map<string, string>();
  for (const part of text.split(';')) {
    const at = part.indexOf('=');
    if (at > 0) pairs.set(part.slice(0, at).trim().toLowerCase(), part.slice(at + 1).trim());
  }
  return pairs;
}

/**
 * The telemetry settings in `env`, or undefined when no connection string is set (telemetry off).
 * Throws a `ConfigError` naming the setting that is malformed, never echoing its value.
 */
export function telemetrySettings(
  env: Record<string, string | undefined> = process.env,
): TelemetrySettings | undefined {
  const connectionString = env[CONNECTION_STRING_SETTING]?.trim();
  if (!connectionString) return undefined;
  const problems: string[] = [];
  const parts = keyValues(connectionString);
  if (!GUID.test(parts.get('instrumentationkey') ?? ''))
    problems.push(
      `${CONNECTION_STRING_SETTING} must hold InstrumentationKey=<GUID> (copy it from the Application Insights resource)`,
    );
  let local = false;
  const ingestion = parts.get('ingestionendpoint');
  if (ingestion) {
    try {
      const url = new URL(ingestion);
      local = LOOPBACK.test(url.hostname);
      if (url.protocol !== 'https:' && !(local && url.protocol === 'http:'))
        problems.push(`${CONNECTION_STRING_SETTING}: IngestionEndpoint must be an https:// URL`);
    } catch {
      problems.push(`${CONNECTION_STRING_SETTING}: IngestionEndpoint must be a URL`);
    }
  }
  let entra: TelemetrySettings['entra'];
  const authentication = env[AUTHENTICATION_STRING_SETTING]?.trim();
  if (authentication) {
    const auth = keyValues(authentication);
    const clientId = auth.get('clientid');
    if (auth.get('authorization')?.toLowerCase() !== 'aad' || (clientId !== undefined && !GUID.test(clientId)))
      problems.push(
        `${AUTHENTICATION_STRING_SETTING} must be Authorization=AAD (the system-assigned identity) or ClientId=<GUID>;Authorization=AAD (a user-assigned one)`,
      );
    else entra = { clientId };
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { connectionString, entra, local };
}

/**
 * The Azure Monitor exporter's own switches for statsbeat (documented: APPLICATIONINSIGHTS_STATSBEAT_DISABLED,
 * "Statsbeat in Application Insights"; the exporter also reads APPLICATION_INSIGHTS_NO_STATSBEAT for the
 * essential part, and APPLICATIONINSIGHTS_SDKSTATS_DISABLED for its SDK stats), read when it is built.
 * A value already set is kept.
 */
const LOCAL_ONLY_SWITCHES = [
  'APPLICATIONINSIGHTS_STATSBEAT_DISABLED',
  'APPLICATION_INSIGHTS_NO_STATSBEAT',
  'APPLICATIONINSIGHTS_SDKSTATS_DISABLED',
];

type AzureMonitor = typeof import('./azure-monitor.js');
let started: Promise<AzureMonitor> | undefined;

/**
 * Starts exporting when a connection string is set (false when none is: nothing is loaded). Called
 * by an appStart hook (functions/telemetry.ts): the worker asks the app for its capabilities after
 * those hooks (azure-functions-nodejs-worker src/eventHandlers/WorkerInitHandler.ts), so the
 * instrumentation's capability reaches the host. The queue-depth and budget gauges read `services`
 * when the SDK collects them (once per export interval), never at start.
 */
export async function startTelemetry(
  functionsLibrary: typeof AzureFunctions,
  services: () => Pick<Services, 'storage' | 'defender' | 'graph'>,
  env: Record<string, string | undefined> = process.env,
): Promise<boolean> {
  const settings = telemetrySettings(env);
  if (!settings) return false;
  if (settings.local) for (const name of LOCAL_ONLY_SWITCHES) env[name] ??= 'true';
  // The distro's own log level (documented in its README, "Self-diagnostics"), which it also gives every
  // Azure SDK's logger: its default, WARN, prints a deprecation warning for each Storage Tables client the
  // app makes. ERROR keeps what matters, failed exports among it.
  env.APPLICATIONINSIGHTS_INSTRUMENTATION_LOGGING_LEVEL ??= 'ERROR';
  const credential: TokenCredential | undefined = settings.entra && managedIdentityCredential(settings.entra.clientId);
  started = import('./azure-monitor.js');
  (await started).startAzureMonitor(settings, functionsLibrary, credential);
  let readQueueDepths: (() => Promise<Map<string, number>>) | undefined;
  observeQueueDepths(() => {
    readQueueDepths ??= queueDepthReader(services().storage.queues);
    return readQueueDepths();
  });
  observeBudgetUsage('defender', () => services().defender.budget.minuteShares?.() ?? new Map());
  observeBudgetUsage('graph', () => services().graph.budget.minuteShares?.() ?? new Map());
  return true;
}

/** Exports what is still buffered and stops (an appTerminate hook: the instance is going away). */
export async function stopTelemetry(): Promise<void> {
  if (started) await (await started).stopAzureMonitor();
}
