import express from 'express';
import type { TokenVerifier } from '../common/bearer.js';
import type { FaultBoard } from '../common/faults.js';
import { startHttpsServer } from '../common/https-server.js';
import type { KeyAndCert } from '../common/tls.js';
import { createApiRouter } from './api.js';
import { createControlRouter } from './control.js';
import { DefenderApiError, sendDefenderError } from './errors.js';
import { HuntingQuota } from './hunting-quota.js';
import { RateLimiter } from './rate-limiter.js';
import { CallStats } from './stats.js';
import { IncidentStore } from './store.js';

export { CallStats } from './stats.js';
export { HuntingQuota, type HuntingSettings, type HuntingState } from './hunting-quota.js';
export { IncidentStore } from './store.js';
export type { Alert, Device, Entity, Incident } from './types.js';

/** The Microsoft Defender XDR API stand-in: `{url}/api/…` as the app calls it, `{controlUrl}` to drive it. */
export interface DefenderStandIn {
  /** https://localhost:PORT — the API base (the app calls {url}/api/incidents …). */
  url: string;
  /** `${url}/_control` — the control surface (no auth; local only). */
  controlUrl: string;
  store: IncidentStore;
  stats: CallStats;
  /** Advanced hunting's per-tenant CPU quota and timeout: size it, mark it spent, make the next queries run long. */
  hunting: HuntingQuota;
  close(): Promise<void>;
}

export interface DefenderOptions {
  tls: KeyAndCert;
  verifier: TokenVerifier;
  faults: FaultBoard;
  port?: number;
  /** The incidents API's shared quota, per tenant and app; the documented limits are 50 per minute and 1500 per hour. */
  limits?: { perMinute: number; perHour: number };
  /** Get incident's own quota, counted on top of the shared one; documented: 100 per minute and 1,500 per hour. */
  getIncidentLimits?: { perMinute: number; perHour: number };
  /** Injectable clock for limit tests. */
  now?: () => number;
  log?: (line: string) => void;
}

/** Advanced hunting is documented at (at least) 45 calls per minute, separately from the incidents API. */
const HUNTING_PER_MINUTE = 45;

export async function startDefender(options: DefenderOptions): Promise<DefenderStandIn> {
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => undefined);
  const limits = options.limits ?? { perMinute: 50, perHour: 1500 };
  const store = new IncidentStore(now);
  const stats = new CallStats();
  const incidentLimiter = new RateLimiter(
    [
      { limit: limits.perMinute, windowMs: 60_000 },
      { limit: limits.perHour, windowMs: 3_600_000 },
    ],
    now,
  );
  const getLimits = options.getIncidentLimits ?? { perMinute: 100, perHour: 1500 };
  const getIncidentLimiter = new RateLimiter(
    [
      { limit: getLimits.perMinute, windowMs: 60_000 },
      { limit: getLimits.perHour, windowMs: 3_600_000 },
    ],
    now,
  );
  const huntingLimiter = new RateLimiter([{ limit: HUNTING_PER_MINUTE, windowMs: 60_000 }], now);
  const hunting = new HuntingQuota(now);
  let baseUrl = '';

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(
    '/_control',
    createControlRouter({
      store,
      faults: options.faults,
      stats,
      limiters: [incidentLimiter, getIncidentLimiter, huntingLimiter],
      hunting,
      now,
    }),
  );
  app.use(
    '/api',
    createApiRouter({
      store,
      verifier: options.verifier,
      faults: options.faults,
      stats,
      incidentLimiter,
      getIncidentLimiter,
      huntingLimiter,
      huntingQuota: hunting,
      now,
      baseUrl: () => baseUrl,
      log,
    }),
  );
  app.use((req, res) =>
    sendDefenderError(res, new DefenderApiError(404, 'ResourceNotFound', `No resource at ${req.path}.`)),
  );

  const server = await startHttpsServer(options.tls, app, options.port ?? 0);
  baseUrl = server.url;
  return { url: server.url, controlUrl: `${server.url}/_control`, store, stats, hunting, close: () => server.close() };
}
