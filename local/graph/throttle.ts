import { RateLimiter } from '../defender/rate-limiter.js';

/**
 * Microsoft Graph's limits that apply to the security incidents API, counted in rolling windows:
 * - per app per tenant: 150 requests a minute. "The following limits apply to any request on `/security`";
 *   the row for alerts (the incidents API's closest, and the only one that is not Secure Score or threat
 *   indicators) is "150 requests per minute" (microsoftgraph/microsoft-graph-docs-contrib
 *   includes/throttling-security-detections-incidents.md, included by concepts/throttling-limits.md,
 *   "Security detections and incidents service limits");
 * - per app across all tenants: 2,000 requests a second, the global limit of every Graph request
 *   (concepts/throttling-limits.md, the table before the service limits).
 * A throttled call does not count, so a client that waits the advertised Retry-After gets through. The numbers
 * can be changed (tests, the demo): changing them starts the windows afresh.
 */
export interface ThrottleSettings {
  perAppPerTenantPerMinute: number;
  perAppPerSecond: number;
}

export const DOCUMENTED_LIMITS: ThrottleSettings = { perAppPerTenantPerMinute: 150, perAppPerSecond: 2000 };

export type ThrottleDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export class GraphThrottle {
  #settings: ThrottleSettings;
  #perTenant!: RateLimiter;
  #perApp!: RateLimiter;
  readonly #now: () => number;

  constructor(settings: ThrottleSettings = DOCUMENTED_LIMITS, now: () => number = Date.now) {
    this.#now = now;
    this.#settings = { ...settings };
    this.#build();
  }

  settings(): ThrottleSettings {
    return { ...this.#settings };
  }

  configure(changes: Partial<ThrottleSettings>): ThrottleSettings {
    this.#settings = { ...this.#settings, ...changes };
    this.#build();
    return this.settings();
  }

  /** Admits and records the call, or says how many whole seconds until it would be admitted. */
  admit(tenantId: string, clientId: string): ThrottleDecision {
    const tenantKey = `${tenantId}\n${clientId}`;
    const waitMs = Math.max(this.#perTenant.waitMs(tenantKey), this.#perApp.waitMs(clientId));
    if (waitMs > 0) return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
    this.#perTenant.record(tenantKey);
    this.#perApp.record(clientId);
    return { allowed: true };
  }

  reset(): void {
    this.#perTenant.reset();
    this.#perApp.reset();
  }

  #build(): void {
    this.#perTenant = new RateLimiter(
      [{ limit: this.#settings.perAppPerTenantPerMinute, windowMs: 60_000 }],
      this.#now,
    );
    this.#perApp = new RateLimiter([{ limit: this.#settings.perAppPerSecond, windowMs: 1_000 }], this.#now);
  }
}
