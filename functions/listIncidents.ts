import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { listIncidentsForAnalyst } from '../shared/api/user-incidents.js';

/** GET /api/incidents: the signed-in analyst's view of their tenant's incidents (on-behalf-of the analyst). */
export async function listIncidents(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return listIncidentsForAnalyst(request, getServices().userContext, context);
}

// Anonymous at the host: the handler validates the caller's Entra ID token itself (audience, issuer, scp, tenant).
app.http('listIncidents', { methods: ['GET'], authLevel: 'anonymous', route: 'incidents', handler: listIncidents });
