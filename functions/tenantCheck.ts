import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, checkRegisteredTenant, parseTenantId } from '../shared/tenants/tenant-admin.js';

/** GET /api/tenants/{tenantId}/check: the doctor's row for the tenant; 200 either way, `ok` says whether it passed. */
export async function tenantCheck(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'check tenant', async () => ({
    status: 200,
    jsonBody: await checkRegisteredTenant(parseTenantId(request.params.tenantId), getServices()),
    headers: { 'cache-control': 'no-store' },
  }));
}

app.http('tenantCheck', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'tenants/{tenantId}/check',
  handler: tenantCheck,
});
