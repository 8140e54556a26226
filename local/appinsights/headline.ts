import { METRICS } from '../../shared/telemetry/telemetry-names.js';
import type { TelemetrySummary } from './store.js';

/**
 * The figures `npm start` shows from the component: items it accepted, and the running totals of the
 * relay's headline counters (exported as deltas, so their sum is the count so far), all 0 until the app
 * emits them. An API's 429s are its calls whose `status` dimension is 429.
 */
export function telemetryHeadline(summary: TelemetrySummary): string {
  const total = (name: string) => summary.metrics[name]?.sum ?? 0;
  const throttled = (name: string) => summary.metrics[name]?.byDimension['status=429'] ?? 0;
  return [
    `${summary.itemsAccepted} items`,
    `routed ${total(METRICS.eventsRouted)}`,
    `defender calls ${total(METRICS.defenderCalls)} (429: ${throttled(METRICS.defenderCalls)})`,
    `graph calls ${total(METRICS.graphCalls)} (429: ${throttled(METRICS.graphCalls)})`,
    `dead-lettered ${total(METRICS.eventsDeadLettered)}`,
  ].join(' · ');
}
