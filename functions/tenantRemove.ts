import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, parseTenantId } from '../shared/tenants/tenant-admin.js';

/** DELETE /api/tenants/{tenantId}: stops reading the tenant (204). Its checkpoint stays, so re-adding it resumes without duplicates. */
export async function tenantRemove(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'remove tenant', async () => {
    await getServices().registry.remove(parseTenantId(request.params.tenantId));
    return { status: 204 };
  });
}

app.http('tenantRemove', {
  methods: ['DELETE'],
  authLevel: 'function',
  route: 'tenants/{tenantId}',
  handler: tenantRemove,
});
