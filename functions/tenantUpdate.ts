import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, parseJsonBody, parseTenantId, updateTenant } from '../shared/tenants/tenant-admin.js';

/** PATCH /api/tenants/{tenantId}: `{ enabled?, displayName?, firstRunLookbackHours? }`. */
export async function tenantUpdate(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'update tenant', async () => {
    const tenantId = parseTenantId(request.params.tenantId);
    return { status: 200, jsonBody: await updateTenant(tenantId, parseJsonBody(await request.text()), getServices()) };
  });
}

app.http('tenantUpdate', {
  methods: ['PATCH'],
  authLevel: 'function',
  route: 'tenants/{tenantId}',
  handler: tenantUpdate,
});
