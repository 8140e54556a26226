import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { getServices } from '../shared/services.js';
import { pushIncidents as acceptPushedIncidents, webhookPushDeps } from '../shared/api/webhook-push.js';

/**
 * POST /api/incidents: one incident or a batch pushed by a Logic App, Sentinel automation or a
 * partner system; 202 with the event ids once they are on the `incidents` queue.
 */
export async function pushIncidents(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return acceptPushedIncidents(request, webhookPushDeps(getServices(), context));
}

// Anonymous at the host on purpose: callers authenticate with an Entra token or an HMAC signature, which the handler verifies itself.
app.http('pushIncidents', { methods: ['POST'], authLevel: 'anonymous', route: 'incidents', handler: pushIncidents });
