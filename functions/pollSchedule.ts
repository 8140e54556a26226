import { app, type InvocationContext, type Timer } from '@azure/functions';
import { handlePollSchedule } from '../shared/ingest/ingest-handlers.js';
import { getServices } from '../shared/services.js';

/** Timer (POLL_SCHEDULE, NCRONTAB): asks for one poll per enabled tenant. */
export async function pollSchedule(_timer: Timer, context: InvocationContext): Promise<void> {
  await handlePollSchedule(getServices(), context);
}

app.timer('pollSchedule', { schedule: '%POLL_SCHEDULE%', handler: pollSchedule });
