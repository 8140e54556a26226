import { RestError, type TableClient, type TransactionAction } from '@azure/data-tables';
import { RetryableError } from '../errors.js';
import { LazyTable } from '../storage/table.js';
import { TableWriteBatcher } from '../storage/table-batch.js';

/**
 * What the enricher has delivered, so an event is routed once however often the queue delivers it.
 * One row per event holds its state: claimed by the invocation routing it (with a lease, so a crashed
 * invocation's claim is taken over), the destinations already served (a retry after a partial
 * fan-out skips them), and finally routed. A new event costs two writes, the claim and the commit,
 * and concurrent invocations' writes share transactions (table-batch.ts).
 */
export const DELIVERY_LOG_TABLE = 'deliveries';

// Type aliases, not interfaces: a transaction takes them as plain records.
type EventEntity = {
  partitionKey: string;
  rowKey: string;
  state: 'claimed' | 'routed';
  /** When the lease of a claim started (renewed with every recorded delivery); the epoch once released. */
  claimedAt: string;
  /** JSON array of the destinations (and write-back markers) already served. */
  delivered: string;
  routes?: string;
  routedAt?: string;
};

type FingerprintEntity = {
  partitionKey: string;
  rowKey: string;
  fingerprint: string;
};

/** Held by the one invocation routing an event. */
export interface EventClaim {
  eventId: string;
  etag: string;
  /** Served by an earlier attempt or by this one. */
  readonly delivered: Set<string>;
}

export type ClaimResult = { status: 'claimed'; claim: EventClaim } | { status: 'routed' } | { status: 'busy' };

/** The claim was taken over (this invocation outlived its lease): the holder finishes the event. */
export class ClaimLostError extends RetryableError {}

const RELEASED = new Date(0).toISOString();

/**
 * Measured against Azurite: 4 ms gathers most of a queue batch's commits into a transaction or two.
 * Commits go sooner once every claim this instance holds in the partition has its write waiting.
 */
const COMMIT_LINGER_MS = 4;

/** Table keys may not contain / \ # ? or control characters; event ids are tenant:incident:timestamp. */
function rowKeyOf(eventId: string): string {
  // Stryker disable next-line StringLiteral: event ids are tenant:number:timestamp (eventIdOf), where dropping the escape marker cannot make two ids share a key
  return encodeURIComponent(eventId).replace(/%/g, '~');
}

/** The tenant, so that an event's row and its incident's fingerprint share a partition (one transaction). */
function partitionOf(eventId: string): string {
  return eventId.split(':')[0]?.toLowerCase() || 'unknown';
}

const isStatus = (err: unknown, ...codes: number[]) => err instanceof RestError && codes.includes(err.statusCode ?? 0);

export class DeliveryLog {
  readonly #table: LazyTable;
  /** A batch's claims come in one turn of the event loop; its commits as each delivery returns, a few ms apart. */
  readonly #claims: TableWriteBatcher;
  readonly #writes: TableWriteBatcher;
  /**
   * Per partition, the claims this instance holds that have no write waiting: the writes that may
   * still join a commit batch. A claim dropped without its release (a crashed invocation) keeps the
   * count up, and the batch waits for its linger, as it would without the count.
   */
  readonly #idleClaims = new Map<string, number>();

  /** `commitLingerMs`: the most a commit waits for others to join its transaction (tests lengthen it to see it cut short). */
  constructor(table: TableClient, options: { commitLingerMs?: number } = {}) {
    this.#table = new LazyTable(table);
    this.#claims = new TableWriteBatcher(() => this.#table.ready());
    this.#writes = new TableWriteBatcher(
      () => this.#table.ready(),
      options.commitLingerMs ?? COMMIT_LINGER_MS,
      (partition) => this.#idleClaims.get(partition) ?? 0,
    );
  }

  /** One entry per tenant this instance has claimed for: as many as the tenants, so none is ever removed. */
  #countIdle(eventId: string, change: 1 | -1): void {
    const partition = partitionOf(eventId);
    // Stryker disable next-line ArithmeticOperator: equivalent: only whether a count is 0 matters, and negating every change keeps that
    this.#idleClaims.set(partition, (this.#idleClaims.get(partition) ?? 0) + change);
  }

  /** Submits a claim's write: while it waits, the claim is not idle; after, it is again if `stillHeld` says so. */
  async #write(
    claim: EventClaim,
    actions: TransactionAction[],
    stillHeld: (ok: boolean) => boolean,
  ): Promise<(string | undefined)[]> {
    this.#countIdle(claim.eventId, -1);
    let ok = false;
    try {
      const etags = await this.#writes.submit(actions);
      ok = true;
      return etags;
    } finally {
      if (stillHeld(ok)) this.#countIdle(claim.eventId, 1);
    }
  }

  /**
   * Claims the event for this invocation, so that two deliveries of the same message running at once
   * (the queue delivers at least once) never both route it. `busy` while another invocation holds a
   * live lease; `routed` once the event is done.
   */
  async claim(eventId: string, leaseMs = 2 * 60_000, now = new Date()): Promise<ClaimResult> {
    const entity: EventEntity = {
      partitionKey: partitionOf(eventId),
      rowKey: rowKeyOf(eventId),
      // Stryker disable next-line StringLiteral: a row's state is only ever compared with 'routed'
      state: 'claimed',
      claimedAt: now.toISOString(),
      // Stryker disable next-line StringLiteral: equivalent: parseDelivered reads '' (not JSON) as the empty list, as it reads '[]'
      delivered: '[]',
    };
    try {
      const [etag] = await this.#claims.submit([['create', entity]]);
      this.#countIdle(eventId, 1);
      return { status: 'claimed', claim: { eventId, etag: etag!, delivered: new Set() } };
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
    }
    const held = await this.#table.find<EventEntity>(entity.partitionKey, entity.rowKey);
    if (!held) return { status: 'busy' };
    if (held.state === 'routed') return { status: 'routed' };
    // Stryker disable next-line EqualityOperator: whether a 2-minute lease ends at or 1 ms after leaseMs is not observable
    if (now.getTime() - Date.parse(held.claimedAt) < leaseMs) return { status: 'busy' };
    const delivered = parseDelivered(held.delivered);
    try {
      const taken = await (
        await this.#table.ready()
      ).updateEntity({ ...entity, delivered: JSON.stringify([...delivered]) }, 'Replace', { etag: held.etag });
      this.#countIdle(eventId, 1);
      return { status: 'claimed', claim: { eventId, etag: taken.etag!, delivered } };
    } catch (err) {
      if (isStatus(err, 404, 412)) return { status: 'busy' };
      throw err;
    }
  }

  /** Records one destination served (and renews the lease), before the next is tried. */
  async recordDelivery(claim: EventClaim, destination: string, now = new Date()): Promise<void> {
    claim.delivered.add(destination);
    await this.#update(claim, { claimedAt: now.toISOString(), delivered: JSON.stringify([...claim.delivered]) });
  }

  /**
   * Marks the event routed, with the destinations served last; with `fingerprint`, records the
   * incident's content fingerprint in the same transaction.
   */
  async complete(
    claim: EventClaim,
    routes: string[],
    options: { delivered?: string[]; fingerprint?: { incidentId: number; value: string } } = {},
    now = new Date(),
  ): Promise<void> {
    // Stryker disable next-line ArrayDeclaration: a routed row's delivered list is never read again (claim answers routed)
    for (const destination of options.delivered ?? []) claim.delivered.add(destination);
    const row: EventEntity = {
      partitionKey: partitionOf(claim.eventId),
      rowKey: rowKeyOf(claim.eventId),
      state: 'routed',
      claimedAt: now.toISOString(),
      // Stryker disable next-line ArrayDeclaration: a routed row's delivered list is never read again (claim answers routed)
      delivered: JSON.stringify([...claim.delivered]),
      // Stryker disable next-line StringLiteral: routes is a note for people reading the table; no code reads it
      routes: routes.join(','),
      routedAt: now.toISOString(),
    };
    const actions: TransactionAction[] = [['update', row, 'Replace', { etag: claim.etag }]];
    if (options.fingerprint) {
      const fingerprint: FingerprintEntity = {
        partitionKey: row.partitionKey,
        rowKey: fingerprintKey(options.fingerprint.incidentId),
        fingerprint: options.fingerprint.value,
      };
      actions.push(['upsert', fingerprint, 'Replace']);
    }
    try {
      // Done once written; a failed commit still holds the claim (its release follows).
      await this.#write(claim, actions, (ok) => !ok);
    } catch (err) {
      throw this.#lost(err, claim);
    }
  }

  /** Gives the claim up after a failure, keeping what was delivered, so the retry may start at once. */
  async release(claim: EventClaim): Promise<void> {
    try {
      await this.#update(claim, { claimedAt: RELEASED }, false);
    } catch (err) {
      if (!(err instanceof ClaimLostError || isStatus(err, 404))) throw err;
    }
  }

  /** Whether the whole event was routed already. */
  async isRouted(eventId: string): Promise<boolean> {
    return (await this.#table.find<EventEntity>(partitionOf(eventId), rowKeyOf(eventId)))?.state === 'routed';
  }

  /** The content fingerprint of the incident version last routed (see write-back.ts). */
  async lastRoutedFingerprint(tenantId: string, incidentId: number): Promise<string | undefined> {
    return (await this.#table.find<FingerprintEntity>(tenantId.toLowerCase(), fingerprintKey(incidentId)))?.fingerprint;
  }

  /** `held`: whether the claim goes on after this write (a recorded delivery) or ends with it (a release). */
  async #update(claim: EventClaim, fields: Partial<EventEntity>, held = true): Promise<void> {
    try {
      const [etag] = await this.#write(
        claim,
        [
          [
            'update',
            { partitionKey: partitionOf(claim.eventId), rowKey: rowKeyOf(claim.eventId), ...fields },
            'Merge',
            { etag: claim.etag },
          ],
        ],
        () => held,
      );
      claim.etag = etag!;
    } catch (err) {
      throw this.#lost(err, claim);
    }
  }

  #lost(err: unknown, claim: EventClaim): unknown {
    // A transaction reports the failed action's status on the error (412: the row changed under us), as a
    // single write does; the SDK takes an UpdateConditionNotSatisfied code only from such a 412 answer.
    if (!isStatus(err, 412)) return err;
    return new ClaimLostError(
      `the claim on event ${claim.eventId} was taken over by another invocation after its lease ran out`,
      {
        tenantId: partitionOf(claim.eventId),
        operation: 'record the event in the delivery log',
      },
    );
  }
}

function fingerprintKey(incidentId: number): string {
  return `incident-${incidentId}`;
}

function parseDelivered(text: string | undefined): Set<string> {
  try {
    // Stryker disable next-line StringLiteral: JSON.parse('') throws, and the catch answers the same empty set
    const list: unknown = JSON.parse(text ?? '[]');
    // Stryker disable next-line MethodExpression,ConditionalExpression,ArrayDeclaration: only this module writes the column, always a JSON array of strings; the checks guard a hand-edited row
    return new Set(Array.isArray(list) ? list.filter((d): d is string => typeof d === 'string') : []);
  } catch {
    return new Set();
  }
}
