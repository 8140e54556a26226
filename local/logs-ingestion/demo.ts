import { DEFAULT_SENTINEL_STREAM, SENTINEL_COLUMNS } from '../../shared/route/destinations/sentinel-columns.js';
import type { LogsIngestionStandIn } from './server.js';

/**
 * The local stack's data collection rule: the one `infra/core/sentinel.bicep` deploys (its stream declares
 * the relay's row, `SENTINEL_COLUMNS`), on the stand-in's endpoint.
 */
export function addRelayRule(standIn: LogsIngestionStandIn): { ruleId: string; streamName: string } {
  const rule = standIn.addRule({
    name: 'dcr-defender-relay-local',
    streamDeclarations: { [DEFAULT_SENTINEL_STREAM]: { columns: SENTINEL_COLUMNS } },
  });
  return { ruleId: rule.immutableId, streamName: DEFAULT_SENTINEL_STREAM };
}

/**
 * Routes whose `sentinel` destinations point at the stand-in: the template's `endpoint` and `ruleId` are
 * placeholders (as its webhook URLs are, see receiver.ts `withReceiverUrls`), replaced by the stand-in's
 * endpoint and the rule's immutable id. Other destinations are left as they are.
 */
export function withLogsIngestion<T extends { destinations: Record<string, Record<string, unknown>> }>(
  routes: T,
  target: { endpoint: string; ruleId: string },
): T {
  const destinations = Object.fromEntries(
    Object.entries(routes.destinations).map(([name, destination]) => [
      name,
      destination.type === 'sentinel'
        ? { ...destination, endpoint: target.endpoint, ruleId: target.ruleId }
        : destination,
    ]),
  );
  return { ...routes, destinations };
}

/** Rows the stand-in stored for a rule, for `npm start`'s screen: `12 rows` (and the problems, when there are any). */
export function sentinelHeadline(standIn: LogsIngestionStandIn, ruleId: string): string {
  const rows = standIn.store.summary().rowsByStream;
  const stored = Object.entries(rows)
    .filter(([key]) => key.startsWith(`${ruleId}/`))
    .reduce((sum, [, n]) => sum + n, 0);
  const problems = standIn.store.problems({ rule: ruleId }).length;
  return `${stored} rows${problems > 0 ? ` (${problems} problems: curl …/_control/problems)` : ''}`;
}
