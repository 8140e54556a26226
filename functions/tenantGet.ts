import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, getTenantView, parseTenantId } from '../shared/tenants/tenant-admin.js';

/** GET /api/tenants/{tenantId}: one tenant with its last poll. */
export async function tenantGet(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'get tenant', async () => ({
    status: 200,
    jsonBody: await getTenantView(parseTenantId(request.params.tenantId), getServices()),
  }));
}

app.http('tenantGet', { methods: ['GET'], authLevel: 'function', route: 'tenants/{tenantId}', handler: tenantGet });
