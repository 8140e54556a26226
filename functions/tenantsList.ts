import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, listTenantViews } from '../shared/tenants/tenant-admin.js';

/** GET /api/tenants: every registered tenant with its last poll. */
export async function tenantsList(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'list tenants', async () => ({
    status: 200,
    jsonBody: { tenants: await listTenantViews(getServices()) },
  }));
}

app.http('tenantsList', { methods: ['GET'], authLevel: 'function', route: 'tenants', handler: tenantsList });
