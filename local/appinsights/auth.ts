import { TokenRejectedError, type TokenVerifier } from '../common/bearer.js';
import { forbidden, unauthorized } from './errors.js';

/**
 * The audience of ingestion tokens in Azure's public cloud ("Token audience": `https://monitor.azure.com`,
 * MicrosoftDocs/azure-monitor-docs `articles/azure-monitor/app/azure-ad-authentication.md`). The exporter
 * asks for the scope `https://monitor.azure.com/.default` (@azure/monitor-opentelemetry-exporter 1.0.0-beta.47
 * `src/platform/nodejs/httpSender.ts`, `applicationInsightsResource`); a v1 token's `aud` is then the URI
 * without the scope, with or without its trailing slash.
 */
export const AZURE_MONITOR_RESOURCE = 'https://monitor.azure.com';
const ACCEPTED_AUDIENCES = [AZURE_MONITOR_RESOURCE, `${AZURE_MONITOR_RESOURCE}/`];

/**
 * The one built-in role that lets an identity ingest: "Although the Monitoring Metrics Publisher role says
 * 'metrics', it publishes all telemetry to the Application Insights resource" (same page). `infra/app/rbac.bicep`
 * assigns it to the app's identity on the component.
 */
export type ComponentRole = 'Monitoring Metrics Publisher';

export interface Caller {
  oid: string;
  appid: string;
  tid: string;
}

/**
 * Checks the bearer token as ingestion does with local authentication disabled (`DisableLocalAuth: true`):
 * signature, lifetime, audience and the component's tenant, else 401 ("the authorization token was either
 * absent, invalid, or expired"); then the caller's role on the component, else 403.
 */
export async function authenticate(
  header: string | undefined,
  options: { verifier: TokenVerifier; tenantId: string; roles: RoleAssignments },
): Promise<Caller> {
  let caller: Caller;
  try {
    const { claims, clientId } = await options.verifier.verifyAuthorization(header, { audience: ACCEPTED_AUDIENCES });
    // A token another tenant issued is no token of the component's directory (the verifier already tied iss to tid).
    if (claims.tid !== options.tenantId) throw unauthorized('wrong_tenant');
    caller = { oid: claims.oid ?? '', appid: clientId, tid: claims.tid };
  } catch (err) {
    if (err instanceof TokenRejectedError) throw unauthorized(err.reason);
    throw err;
  }
  if (!options.roles.has(caller.oid)) throw forbidden(`no role for oid ${caller.oid}`);
  return caller;
}

/** Role assignments on the component, by principal object id (the token's `oid`). */
export class RoleAssignments {
  readonly #principals = new Set<string>();

  grant(principalObjectId: string, _role: ComponentRole = 'Monitoring Metrics Publisher'): void {
    this.#principals.add(principalObjectId);
  }

  revoke(principalObjectId: string): void {
    this.#principals.delete(principalObjectId);
  }

  has(principalObjectId: string): boolean {
    return principalObjectId !== '' && this.#principals.has(principalObjectId);
  }
}
