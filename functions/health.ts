import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { checkHealth, healthReport, type HealthReport } from '../shared/health.js';
import { describeError } from '../shared/redact.js';
import { getServices } from '../shared/services.js';

/** GET /api/health: storage, token acquisition and Key Vault, each with its latency; never a secret. */
export async function health(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  let report: HealthReport;
  try {
    const { storage, secrets, appCredential } = getServices();
    report = await checkHealth({ queues: storage.queues, secrets, appCredential });
  } catch (err) {
    // Configuration errors name the setting; they never carry a secret value.
    report = healthReport([{ name: 'configuration', ok: false, latencyMs: 0, detail: describeError(err) }]);
  }
  if (report.status !== 'healthy') context.warn(`health: ${report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; ')}`);
  return { status: report.status === 'healthy' ? 200 : 503, jsonBody: report, headers: { 'cache-control': 'no-store' } };
}

app.http('health', { methods: ['GET'], authLevel: 'anonymous', route: 'health', handler: health });
