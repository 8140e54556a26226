import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, parseJsonBody, putTenant } from '../shared/tenant-admin.js';

/** POST /api/tenants: adds a tenant (201 with its Location) or replaces the one with that id (200); 400 lists every invalid field. */
export async function tenantsAdd(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'add tenant', async () => {
    const { tenant, created } = await putTenant(parseJsonBody(await request.text()), getServices());
    return created ? { status: 201, jsonBody: tenant, headers: { location: `/api/tenants/${tenant.tenantId}` } } : { status: 200, jsonBody: tenant };
  });
}

app.http('tenantsAdd', { methods: ['POST'], authLevel: 'function', route: 'tenants', handler: tenantsAdd });
