import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { app } from '@azure/functions';
import { replayIncidents as replay, replayRequestSchema } from '../shared/route/replay.js';
import { getServices } from '../shared/services.js';

/** POST /api/replay: dead-lettered and poisoned incident events back onto `incidents` (all, or by filter). */
export async function replayIncidents(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const text = await request.text();
  let body: unknown;
  try {
    body = text.trim() ? JSON.parse(text) : {};
  } catch {
    return { status: 400, jsonBody: { errors: ['the body is not valid JSON'] } };
  }
  const parsed = replayRequestSchema.safeParse(body);
  if (!parsed.success) {
    return {
      status: 400,
      jsonBody: { errors: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`) },
    };
  }
  const result = await replay(parsed.data, getServices().storage.queues);
  context.info(
    `replay: ${result.moved} event(s) moved back to incidents (${result.bySource.deadletter} dead-lettered, ${result.bySource.poison} poisoned), ${result.skipped} left in place`,
  );
  for (const { eventId, reason } of result.refused)
    context.warn(`replay: ${eventId ?? '(no event id)'} left in place, it cannot be replayed: ${reason}`);
  return { status: 200, jsonBody: result };
}

app.http('replayIncidents', { methods: ['POST'], authLevel: 'function', route: 'replay', handler: replayIncidents });
