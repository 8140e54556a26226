/**
 * Calls a stand-in received, per tenant and client: benchmarks read them to prove a client stays within
 * the limits, tests to prove what a client actually sent. `E` names the stand-in's endpoints.
 */
export interface ClientCallStats<E extends string = string> {
  tenantId: string;
  clientId: string;
  /** Every call, whatever its answer. */
  calls: number;
  byEndpoint: Partial<Record<E, number>>;
  /** Calls answered 429 (by the limiter or an injected fault). */
  throttled: number;
  /** Calls answered with any other 4xx or 5xx. */
  errors: number;
}

/** Calls whose token was refused have no trustworthy tenant or client. */
export const UNAUTHENTICATED = '(unauthenticated)';

export class CallStats<E extends string = string> {
  #byClient = new Map<string, ClientCallStats<E>>();

  record(tenantId: string, clientId: string, endpoint: E, status: number): void {
    const key = `${tenantId}\n${clientId}`;
    let entry = this.#byClient.get(key);
    if (!entry) {
      entry = { tenantId, clientId, calls: 0, byEndpoint: {}, throttled: 0, errors: 0 };
      this.#byClient.set(key, entry);
    }
    entry.calls += 1;
    entry.byEndpoint[endpoint] = (entry.byEndpoint[endpoint] ?? 0) + 1;
    if (status === 429) entry.throttled += 1;
    else if (status >= 400) entry.errors += 1;
  }

  /** The counts for one tenant and client (zeros if it never called). */
  for(tenantId: string, clientId: string): ClientCallStats<E> {
    const entry = this.#byClient.get(`${tenantId}\n${clientId}`);
    return entry ? structuredClone(entry) : { tenantId, clientId, calls: 0, byEndpoint: {}, throttled: 0, errors: 0 };
  }

  snapshot(): ClientCallStats<E>[] {
    return [...this.#byClient.values()].map((entry) => structuredClone(entry));
  }

  reset(): void {
    this.#byClient.clear();
  }
}
