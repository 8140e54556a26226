import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, consentInstructions, parseTenantId } from '../shared/tenants/tenant-admin.js';

/** GET /api/tenants/{tenantId}/consent-link: the partner admin-consent link and the steps (409 for an application-context tenant). */
export async function tenantConsentLink(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'consent link', async () => {
    const services = getServices();
    const tenant = await services.registry.get(parseTenantId(request.params.tenantId));
    return { status: 200, jsonBody: consentInstructions(tenant, services.config.entra.authorityHost) };
  });
}

app.http('tenantConsentLink', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'tenants/{tenantId}/consent-link',
  handler: tenantConsentLink,
});
