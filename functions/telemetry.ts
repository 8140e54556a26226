import * as functionsLibrary from '@azure/functions';
import { app } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { startTelemetry, stopTelemetry } from '../shared/telemetry/telemetry.js';

/**
 * OpenTelemetry export (shared/telemetry/telemetry.ts), when APPLICATIONINSIGHTS_CONNECTION_STRING is set: started
 * before the worker tells the host its capabilities, flushed when the instance goes away.
 */
app.hook.appStart(async () => {
  await startTelemetry(functionsLibrary, getServices);
});

app.hook.appTerminate(async () => {
  await stopTelemetry();
});
