import { CallStats as StandInCallStats, type ClientCallStats as StandInClientCallStats } from '../common/call-stats.js';

/** Calls the Graph stand-in received, per tenant, client and endpoint (local/common/call-stats.ts). */
export type Endpoint =
  'listIncidents' | 'getIncident' | 'updateIncident' | 'createComment' | 'runHuntingQuery' | 'other';
export type ClientCallStats = StandInClientCallStats<Endpoint>;
export class CallStats extends StandInCallStats<Endpoint> {}
export { UNAUTHENTICATED } from '../common/call-stats.js';
