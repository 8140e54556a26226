import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { requestPoll } from '../shared/ingest/ingest-handlers.js';
import { InvalidTenantIdError, parseTenantId } from '../shared/tenants/tenant-admin.js';
import { getServices } from '../shared/services.js';
import { TenantNotFoundError } from '../shared/tenants/tenants.js';

/** POST /api/tenants/{tenantId}/poll: poll this tenant now (202; the poll runs from the queue). */
export async function requestTenantPoll(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  let tenantId: string;
  try {
    tenantId = parseTenantId(request.params.tenantId);
    await requestPoll(tenantId, getServices());
  } catch (err) {
    if (err instanceof InvalidTenantIdError) return { status: 400, jsonBody: { error: err.message } };
    if (err instanceof TenantNotFoundError) return { status: 404, jsonBody: { error: err.message } };
    context.error(err);
    throw err;
  }
  return { status: 202, jsonBody: { tenantId, status: 'poll requested' } };
}

app.http('requestTenantPoll', {
  methods: ['POST'],
  authLevel: 'function',
  route: 'tenants/{tenantId}/poll',
  handler: requestTenantPoll,
});
