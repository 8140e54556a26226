import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { answerAdmin, parseJsonBody, putTenant } from '../shared/tenants/tenant-admin.js';

/**
 * POST /api/tenants: adds a tenant (201 with its Location) or replaces the one with that id (200), with
 * `warnings` when its secret is not in Key Vault yet; 400 lists every invalid field, and refuses a
 * credential naming one of the relay's own secrets or a secret not tagged as a tenant credential.
 */
export async function tenantsAdd(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerAdmin(context, 'add tenant', async () => {
    const { tenant, created, warnings } = await putTenant(parseJsonBody(await request.text()), getServices());
    const jsonBody = warnings.length ? { ...tenant, warnings } : tenant;
    return created
      ? { status: 201, jsonBody, headers: { location: `/api/tenants/${tenant.tenantId}` } }
      : { status: 200, jsonBody };
  });
}

app.http('tenantsAdd', { methods: ['POST'], authLevel: 'function', route: 'tenants', handler: tenantsAdd });
