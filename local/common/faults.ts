/**
 * Faults injected into the stand-ins through the Defender stand-in's control surface.
 * Each stand-in asks the board at the start of every request whether a fault applies to it.
 */
export type FaultTarget = 'entra' | 'keyvault' | 'defender' | 'graph';

export type FaultSpec =
  /**
   * Answer with this HTTP status (e.g. 429, 500, 503) in the service's own error shape. Defender's
   * 429 says the wait in its body; `retryAfterHeader: false` leaves out the Retry-After header, as
   * the API documents it ("The response body indicates the time when you can begin making new calls").
   */
  | { kind: 'status'; status: number; retryAfterSeconds?: number; retryAfterHeader?: boolean }
  /** Delay the answer by `ms` milliseconds, then answer normally. */
  | { kind: 'delay'; ms: number }
  /** Answer 200 with a body that is not valid JSON. */
  | { kind: 'malformed' }
  /** The whole service is down: connections are reset (for Entra and Key Vault outages). */
  | { kind: 'outage' };

export interface Fault {
  id: number;
  target: FaultTarget;
  spec: FaultSpec;
  /** How many more requests this fault applies to; Infinity until cleared. */
  remaining: number;
  /** Optional: only requests whose path contains this string (e.g. a tenant id or `/api/incidents`). */
  pathContains?: string;
}

export class FaultBoard {
  #faults: Fault[] = [];
  #nextId = 1;

  add(target: FaultTarget, spec: FaultSpec, times = Infinity, pathContains?: string): Fault {
    const fault: Fault = { id: this.#nextId++, target, spec, remaining: times, pathContains };
    this.#faults.push(fault);
    return fault;
  }

  /** Returns the fault that applies to this request (consuming one use of it), if any. */
  take(target: FaultTarget, path: string): FaultSpec | undefined {
    const fault = this.#faults.find(
      (f) => f.target === target && f.remaining > 0 && (f.pathContains === undefined || path.includes(f.pathContains)),
    );
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.#faults = this.#faults.filter((f) => f !== fault);
    return fault.spec;
  }

  list(): Fault[] {
    return this.#faults.map((f) => ({ ...f }));
  }

  clear(target?: FaultTarget): void {
    this.#faults = target ? this.#faults.filter((f) => f.target !== target) : [];
  }
}
