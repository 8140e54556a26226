import { TokenRejectedError, type TokenVerifier } from '../common/bearer.js';
import { noAccess, unauthorized } from './errors.js';

/**
 * The audience of Logs Ingestion tokens in Azure's public cloud: "Token audience … Azure public cloud
 * `https://monitor.azure.com`" (MicrosoftDocs/azure-docs `articles/azure-monitor/logs/logs-ingestion-api-overview.md`,
 * "Token audience"). The SDK asks for `https://monitor.azure.com/.default` (@azure/monitor-ingestion 1.2.0
 * `src/api/logsIngestionContext.ts`, `KnownMonitorAudience.AzurePublicCloud`); a v1 token's `aud` is the URI,
 * with or without its trailing slash.
 */
export const LOGS_INGESTION_AUDIENCE = 'https://monitor.azure.com';
const ACCEPTED_AUDIENCES = [LOGS_INGESTION_AUDIENCE, `${LOGS_INGESTION_AUDIENCE}/`];

/**
 * "To ingest logs, ensure the user or service principal is assigned the Monitoring Metrics Publisher role
 * for the DCR" (azure-sdk-for-js `sdk/monitor/monitor-ingestion/TROUBLESHOOTING.md`); `infra/core/sentinel.bicep`
 * assigns it to the app's identity on the rule.
 */
export type RuleRole = 'Monitoring Metrics Publisher';

export interface Caller {
  oid: string;
  appid: string;
  tid: string;
}

/** Checks the bearer token: signature (the Entra stand-in's keys), lifetime, audience and the rule's tenant; else 401. */
export async function authenticate(
  header: string | undefined,
  options: { verifier: TokenVerifier; tenantId: string },
): Promise<Caller> {
  try {
    const { claims, clientId } = await options.verifier.verifyAuthorization(header, { audience: ACCEPTED_AUDIENCES });
    // A token another tenant issued is no token of the rule's directory (the verifier already tied iss to tid).
    if (claims.tid !== options.tenantId) throw unauthorized('wrong_tenant');
    return { oid: claims.oid ?? '', appid: clientId, tid: claims.tid };
  } catch (err) {
    if (err instanceof TokenRejectedError) throw unauthorized(err.reason);
    throw err;
  }
}

/** Role assignments on rules, by rule immutable id and principal object id (the token's `oid`). */
export class RoleAssignments {
  readonly #grants = new Map<string, Set<string>>();

  grant(principalObjectId: string, immutableId: string, _role: RuleRole = 'Monitoring Metrics Publisher'): void {
    let principals = this.#grants.get(immutableId);
    if (!principals) this.#grants.set(immutableId, (principals = new Set()));
    principals.add(principalObjectId);
  }

  revoke(principalObjectId: string, immutableId?: string): void {
    for (const [rule, principals] of this.#grants)
      if (!immutableId || rule === immutableId) principals.delete(principalObjectId);
  }

  /** Throws the service's 403 unless the caller holds the role on the rule. */
  authorize(caller: Caller, immutableId: string): void {
    if (caller.oid !== '' && this.#grants.get(immutableId)?.has(caller.oid)) return;
    throw noAccess(immutableId, caller);
  }
}
