import type { TokenCredential } from '@azure/identity';
import type { SecretClient } from '@azure/keyvault-secrets';
import type { QueueServiceClient } from '@azure/storage-queue';
import { describeError } from '../telemetry/redact.js';
import { describeConfigurationProblem, type ConfigurationProblem } from '../config/startup-check.js';

export type HealthCheckName = 'configuration' | 'storage' | 'token' | 'keyVault';

export interface HealthCheck {
  name: HealthCheckName;
  ok: boolean;
  latencyMs: number;
  /** What was checked and what came back; never a secret or token. */
  detail: string;
  /** The configuration check's problems: setting, file, line, column and field of each. */
  problems?: ConfigurationProblem[];
}

export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  checkedAt: string;
  checks: HealthCheck[];
}

export interface HealthDependencies {
  queues: QueueServiceClient;
  secrets: SecretClient;
  appCredential: TokenCredential;
}

const KEY_VAULT_SCOPE = 'https://vault.azure.net/.default';

async function timed(name: HealthCheckName, timeoutMs: number, probe: () => Promise<string>): Promise<HealthCheck> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    const detail = await Promise.race([probe(), timeout]);
    return { name, ok: true, latencyMs: Date.now() - started, detail };
  } catch (err) {
    return { name, ok: false, latencyMs: Date.now() - started, detail: describeError(err) };
  } finally {
    clearTimeout(timer);
  }
}

/** Checks storage, the app identity's token acquisition and Key Vault access, in parallel. */
export async function checkHealth(deps: HealthDependencies, timeoutMs = 5_000): Promise<HealthReport> {
  const checks = await Promise.all([
    timed('storage', timeoutMs, async () => {
      await deps.queues.getProperties();
      return 'queue service reachable';
    }),
    timed('token', timeoutMs, async () => {
      const token = await deps.appCredential.getToken(KEY_VAULT_SCOPE);
      if (!token) throw new Error('the credential returned no token');
      const minutes = Math.round((token.expiresOnTimestamp - Date.now()) / 60_000);
      return `app identity token acquired for https://vault.azure.net (valid ${minutes} min)`;
    }),
    timed('keyVault', timeoutMs, async () => {
      // Listing properties proves authentication and permission without reading any secret value.
      const page = await deps.secrets.listPropertiesOfSecrets().byPage({ maxPageSize: 25 }).next();
      const count = page.done ? 0 : page.value.length;
      return `vault reachable, ${count} secret name(s) listed (values not read)`;
    }),
  ]);
  return healthReport(checks);
}

/**
 * The configuration check: the start-up check's answer (settings and configuration files, with file,
 * line and field of each problem). Cheap: the caller passes what the process checked once.
 */
export function configurationHealth(problems: readonly ConfigurationProblem[], files: readonly string[]): HealthCheck {
  if (problems.length === 0)
    return {
      name: 'configuration',
      ok: true,
      latencyMs: 0,
      detail: `settings valid; configuration files load (${files.join(', ')}, those set)`,
    };
  return {
    name: 'configuration',
    ok: false,
    latencyMs: 0,
    detail: problems.map(describeConfigurationProblem).join('; '),
    problems: problems.map((p) => ({ ...p })),
  };
}

export function healthReport(checks: HealthCheck[]): HealthReport {
  return { status: checks.every((c) => c.ok) ? 'healthy' : 'unhealthy', checkedAt: new Date().toISOString(), checks };
}
