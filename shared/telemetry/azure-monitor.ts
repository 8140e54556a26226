import type * as AzureFunctions from '@azure/functions';
import { AzureFunctionsInstrumentationESM } from '@azure/functions-opentelemetry-instrumentation';
import type { TokenCredential } from '@azure/identity';
import { shutdownAzureMonitor, useAzureMonitor } from '@azure/monitor-opentelemetry';
import type { TelemetrySettings } from './telemetry.js';

/**
 * The Azure Monitor distro and the Functions instrumentation: loaded only by telemetry.ts, with
 * import(), when a connection string is set (this module is the chunk boundary; nothing else in the
 * app imports these packages).
 */

/** The distro's instrumentations patch modules as Node loads them; the bundle loads none that way, and the relay makes its own spans (tracing.ts). */
const OFF = { enabled: false };

export function startAzureMonitor(
  settings: TelemetrySettings,
  functionsLibrary: typeof AzureFunctions,
  credential: TokenCredential | undefined,
): void {
  useAzureMonitor({
    azureMonitorExporterOptions: {
      connectionString: settings.connectionString,
      credential,
      // Telemetry that cannot reach a local stand-in is not kept on disk for later.
      disableOfflineStorage: settings.local,
    },
    // Live metrics opens a channel of its own to the live endpoint (and sends statsbeat): never locally.
    enableLiveMetrics: !settings.local,
    // Every trace whole: an incident's spans (poll, enrich, destinations) are one trace over several
    // invocations, which a rate limit could cut apart. OTEL_TRACES_SAMPLER / _ARG override this.
    samplingRatio: 1,
    tracesPerSecond: 0,
    instrumentationOptions: {
      azureSdk: OFF,
      http: OFF,
      mongoDb: OFF,
      mySql: OFF,
      postgreSql: OFF,
      redis: OFF,
      redis4: OFF,
      bunyan: OFF,
      winston: OFF,
      console: OFF,
    },
  });
  // Made after the distro registered its providers: the instrumentation takes its logger from the global
  // provider when it is constructed. Not enabled (that would hook `require`, which the bundled
  // @azure/functions never goes through): registerAzFunc patches the library the app really uses.
  new AzureFunctionsInstrumentationESM(OFF).registerAzFunc(functionsLibrary);
}

export function stopAzureMonitor(): Promise<void> {
  return shutdownAzureMonitor();
}
