import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { checkHealth, configurationHealth, healthReport, type HealthCheck } from '../shared/status/health.js';
import { describeError } from '../shared/telemetry/redact.js';
import { getServices, type Services } from '../shared/services.js';
import { CONFIGURATION_FILES, configurationProblems } from '../shared/config/startup-check.js';

/**
 * GET /api/health: the configuration (the start-up check's answer: settings and configuration files,
 * each problem with its file, line and field), then storage, token acquisition and Key Vault, each
 * with its latency; 503 when one fails; never a secret.
 */
export async function health(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const checks: HealthCheck[] = [
    configurationHealth(
      configurationProblems(),
      CONFIGURATION_FILES.map((f) => f.setting),
    ),
  ];
  let services: Services | undefined;
  try {
    services = getServices();
  } catch (err) {
    // Settings that do not load: the configuration check names them (never a secret value).
    if (checks[0]!.ok) checks[0] = { name: 'configuration', ok: false, latencyMs: 0, detail: describeError(err) };
  }
  if (services)
    checks.push(
      ...(
        await checkHealth({
          queues: services.storage.queues,
          secrets: services.secrets,
          appCredential: services.appCredential,
        })
      ).checks,
    );
  const report = healthReport(checks);
  if (report.status !== 'healthy')
    context.warn(
      `health: ${report.checks
        .filter((c) => !c.ok)
        .map((c) => `${c.name}: ${c.detail}`)
        .join('; ')}`,
    );
  return {
    status: report.status === 'healthy' ? 200 : 503,
    jsonBody: report,
    headers: { 'cache-control': 'no-store' },
  };
}

app.http('health', { methods: ['GET'], authLevel: 'anonymous', route: 'health', handler: health });
