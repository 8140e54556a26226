import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { updateIncidentForAnalyst } from '../shared/api/user-incidents.js';

/** PATCH /api/incidents/{tenantId}/{incidentId}: status, assignment, classification, tags, comment, as the signed-in analyst. */
export async function updateIncident(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return updateIncidentForAnalyst(request, getServices().userContext, context);
}

// Anonymous at the host: the handler validates the caller's Entra ID token itself (audience, issuer, scp, tenant).
app.http('updateIncident', {
  methods: ['PATCH'],
  authLevel: 'anonymous',
  route: 'incidents/{tenantId}/{incidentId}',
  handler: updateIncident,
});
