import express from 'express';
import type { TokenVerifier } from '../common/bearer.js';
import type { FaultBoard } from '../common/faults.js';
import { startHttpsServer } from '../common/https-server.js';
import type { KeyAndCert } from '../common/tls.js';
import { HuntingQuota } from '../defender/hunting-quota.js';
import { createApiRouter } from './api.js';
import { createControlRouter } from './control.js';
import { GraphApiError, assignRequestIds, badRequest, sendGraphError } from './errors.js';
import { SkipTokens } from './skiptoken.js';
import { CallStats } from './stats.js';
import { GraphIncidentStore } from './store.js';
import { DOCUMENTED_LIMITS, GraphThrottle, type ThrottleSettings } from './throttle.js';

export { GRAPH_AUDIENCES, GRAPH_FAULT_TARGET } from './api.js';
export { generateGraphIncidents, generateGraphTenant, type GraphTenantData } from './generator.js';
export { toGraphIncident } from './mapping.js';
export { MAX_PAGE_SIZE } from './odata-query.js';
export { CallStats } from './stats.js';
export { GraphIncidentStore } from './store.js';
export { DOCUMENTED_LIMITS, GraphThrottle, type ThrottleSettings } from './throttle.js';
export { HuntingQuota, type HuntingSettings, type HuntingState } from '../defender/hunting-quota.js';
export type { Evidence, GraphAlert, GraphIncident } from './types.js';

/**
 * The Microsoft Graph security API stand-in: `{url}/v1.0/security/incidents…` and
 * `{url}/v1.0/security/runHuntingQuery` as a client calls `https://graph.microsoft.com/v1.0/security/…`, and
 * `{controlUrl}` to drive it.
 */
export interface GraphStandIn {
  /** https://localhost:PORT: the Graph base (a client calls {url}/v1.0/security/incidents). */
  url: string;
  /** `${url}/_control`: the control surface (no auth; local only). */
  controlUrl: string;
  store: GraphIncidentStore;
  stats: CallStats;
  throttle: GraphThrottle;
  /** Advanced hunting's per-tenant CPU quota and timeout: size it, mark it spent, make the next queries run long. */
  hunting: HuntingQuota;
  close(): Promise<void>;
}

export interface GraphOptions {
  tls: KeyAndCert;
  /** The Entra stand-in's verifier: signature, expiry, audience (Graph's URI or app id), issuer of the `tid`. */
  verifier: TokenVerifier;
  faults: FaultBoard;
  port?: number;
  /** Per app per tenant per minute and per app per second; the documented 150 and 2,000 by default. */
  limits?: Partial<ThrottleSettings>;
  /** The authority a 401's challenge names (Graph names https://login.microsoftonline.com). */
  authorityHost?: string;
  /** Injectable clock for throttling tests. */
  now?: () => number;
  log?: (line: string) => void;
}

export async function startGraph(options: GraphOptions): Promise<GraphStandIn> {
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => undefined);
  const store = new GraphIncidentStore(now);
  const stats = new CallStats();
  const throttle = new GraphThrottle({ ...DOCUMENTED_LIMITS, ...options.limits }, now);
  const skipTokens = new SkipTokens();
  // This stand-in's own: its tenants are not the Defender stand-in's (a tenant is read through one API or the other).
  const hunting = new HuntingQuota(now);
  let baseUrl = '';

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use('/_control', createControlRouter({ store, faults: options.faults, stats, throttle, hunting, now }));
  app.use(assignRequestIds());
  app.use(
    '/v1.0',
    createApiRouter({
      store,
      verifier: options.verifier,
      faults: options.faults,
      stats,
      throttle,
      huntingQuota: hunting,
      skipTokens,
      now,
      baseUrl: () => baseUrl,
      authorityHost: options.authorityHost ?? 'https://login.microsoftonline.com',
      log,
    }),
  );
  // Outside /v1.0: Graph answers an unknown version so; beta exists in Graph but is not served here.
  app.use((req, res) => {
    const version = req.path.split('/').filter(Boolean)[0] ?? '';
    const error =
      version.toLowerCase() === 'beta'
        ? new GraphApiError(501, 'NotImplemented', 'The Microsoft Graph stand-in serves /v1.0 only.')
        : badRequest(`Invalid version: ${version}`);
    sendGraphError(res, error, now());
  });

  const server = await startHttpsServer(options.tls, app, options.port ?? 0);
  baseUrl = server.url;
  return {
    url: server.url,
    controlUrl: `${server.url}/_control`,
    store,
    stats,
    throttle,
    hunting,
    close: () => server.close(),
  };
}
