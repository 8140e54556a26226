import { describe, expect, it } from 'vitest';
import {
  CheckpointConflictError,
  MAX_BOUNDARY_IDS,
  type Checkpoint,
  type CheckpointStore,
} from '../../../shared/ingest/checkpoints.js';
import {
  PAGE_SIZE,
  type DefenderClient,
  type DefenderIncident,
  type IncidentPage,
} from '../../../shared/sources/defender/client.js';
import { eventIdOf, type IncidentEnvelope } from '../../../shared/messages/events.js';
import { handlePollRequest, handlePollSchedule } from '../../../shared/ingest/ingest-handlers.js';
import {
  pollRequest,
  pollRequestSchema,
  pollTenant,
  schedulePolls,
  type IngestDependencies,
  type PollRequest,
} from '../../../shared/ingest/ingest.js';
import { QUEUE_NAMES, type MessageSender } from '../../../shared/storage/queues.js';
import type { Services } from '../../../shared/services.js';
import type { Tenant, TenantRegistry } from '../../../shared/tenants/tenants.js';
import { normalizeTimestamp } from '../../../shared/timestamps.js';

/**
 * The poller with in-memory stand-ins for the tenant registry, the checkpoint table, Defender's
 * incident list and the queues: what the schedule asks for, what reaches the `incidents` queue over
 * successive polls, what a continuation carries and what the operator's log line counts.
 * test/integration/ingest/ingest.test.ts drives the same code against Azurite and the Defender stand-in.
 */
const CONTOSO = '0b7d3c1e-4f5a-4e2b-9c8d-1a2b3c4d5e6f';
const FABRIKAM = '6f1c2a4e-0b5d-4c3e-9a7f-2d8e1b4c5a6f';
const NORTHWIND = '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b';
const MINUTE = 60_000;
/** The relay's clock at the first poll. */
const T = Date.parse('2025-03-01T12:00:00Z');
const at = (ms: number) => normalizeTimestamp(new Date(ms).toISOString());

const tenantOf = (tenantId: string, displayName: string, enabled = true): Tenant => ({
  tenantId,
  displayName,
  context: 'partner',
  clientId: '3b5f0c2e-8d4a-4e6f-9b1c-7a2d5e8f0c3b',
  credential: { kind: 'secret', secretName: 'partner-app-client-secret' },
  enabled,
  source: 'defender',
  firstRunLookbackHours: 24,
});

/** The registry: lists enabled tenants only when asked to, as the table-backed one does. */
function registryOf(tenants: Tenant[]): TenantRegistry {
  return {
    list: async (options: { enabledOnly?: boolean } = {}) => tenants.filter((t) => !options.enabledOnly || t.enabled),
    get: async (tenantId: string) => tenants.find((t) => t.tenantId === tenantId)!,
  } as unknown as TenantRegistry;
}

/** Checkpoints keeping the newest MAX_BOUNDARY_IDS of the list they are given, as the table does. */
class Checkpoints {
  readonly rows = new Map<string, { lastUpdateTime: string; boundaryEventIds: string[] }>();
  /** What advance throws instead of storing, once. */
  failNext: unknown;
  async get(tenantId: string): Promise<Checkpoint> {
    const row = this.rows.get(tenantId);
    return row
      ? { tenantId, lastUpdateTime: row.lastUpdateTime, boundaryEventIds: [...row.boundaryEventIds], etag: 'x' }
      : { tenantId, boundaryEventIds: [] };
  }
  async advance(previous: Checkpoint, next: { lastUpdateTime: string; boundaryEventIds: string[] }): Promise<void> {
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    this.rows.set(previous.tenantId, {
      lastUpdateTime: next.lastUpdateTime,
      boundaryEventIds: next.boundaryEventIds.slice(-MAX_BOUNDARY_IDS),
    });
  }
}

/** Defender's incident list for one tenant: `lastUpdateTime ge since`, newest first, in pages of PAGE_SIZE. */
class Defender {
  incidents: DefenderIncident[] = [];
  version(incidentId: number, ms: number): DefenderIncident {
    const incident = { incidentId, lastUpdateTime: at(ms), status: 'Active', severity: 'Medium' };
    this.incidents = [...this.incidents.filter((i) => i.incidentId !== incidentId), incident];
    return incident;
  }
  async *incidentPagesSince(
    _tenant: Tenant,
    since: string,
    options: { maxPages?: number; skip?: number } = {},
  ): AsyncGenerator<IncidentPage> {
    const listed = this.incidents
      .filter((i) => normalizeTimestamp(i.lastUpdateTime) >= normalizeTimestamp(since))
      .sort((a, b) => b.lastUpdateTime.localeCompare(a.lastUpdateTime));
    let skip = options.skip ?? 0;
    for (let pages = 0; options.maxPages === undefined || pages < options.maxPages; pages++) {
      const page = listed.slice(skip, skip + PAGE_SIZE);
      skip += page.length;
      const last = page.length < PAGE_SIZE;
      yield { incidents: page, nextSkip: skip, last };
      if (last) return;
    }
  }
}

/** The queues: the JSON of each message, by queue; counts the event sends in flight. */
class Queues {
  readonly sent = new Map<string, unknown[]>();
  inFlight = 0;
  mostInFlight = 0;
  constructor(private readonly claimCheck: (incidentId: number) => boolean = () => false) {}
  of(queue: string): unknown[] {
    return this.sent.get(queue) ?? [];
  }
  take<T>(queue: string): T[] {
    const messages = this.of(queue);
    this.sent.delete(queue);
    return messages as T[];
  }
  send = async (queue: string, value: unknown): Promise<void> => {
    await new Promise((resolve) => setImmediate(resolve));
    this.sent.set(queue, [...this.of(queue), JSON.parse(JSON.stringify(value)) as unknown]);
  };
  sendEvent = async (queue: string, envelope: IncidentEnvelope): Promise<{ claimChecked: boolean }> => {
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    try {
      await this.send(queue, envelope);
      return { claimChecked: this.claimCheck(envelope.incidentId) };
    } finally {
      this.inFlight -= 1;
    }
  };
}

function poller(options: { claimCheck?: (incidentId: number) => boolean } = {}) {
  const tenant = tenantOf(FABRIKAM, 'Fabrikam');
  const defender = new Defender();
  const checkpoints = new Checkpoints();
  const queues = new Queues(options.claimCheck);
  const deps = (now: number, more: Partial<IngestDependencies> = {}): IngestDependencies => ({
    registry: registryOf([tenant]),
    checkpoints: checkpoints as unknown as CheckpointStore,
    defender: defender as unknown as DefenderClient,
    sender: queues as unknown as MessageSender,
    now: () => new Date(now),
    overlapMs: 5 * MINUTE,
    ...more,
  });
  const poll = (
    now: number,
    more: Partial<IngestDependencies> = {},
    request: PollRequest = pollRequest(FABRIKAM, 'schedule', new Date(now)),
  ) => pollTenant(request, deps(now, more));
  const enqueued = () => queues.take<IncidentEnvelope>(QUEUE_NAMES.incidents).map((e) => e.eventId);
  const idOf = (incident: DefenderIncident) => eventIdOf(FABRIKAM, incident.incidentId, incident.lastUpdateTime);
  return { tenant, defender, checkpoints, queues, deps, poll, enqueued, idOf };
}

describe('the poll schedule', () => {
  it('asks for one poll per enabled tenant, stamped with the scheduled time, and logs how many', async () => {
    const registry = registryOf([
      tenantOf(CONTOSO, 'Contoso'),
      tenantOf(FABRIKAM, 'Fabrikam', false),
      tenantOf(NORTHWIND, 'Northwind'),
    ]);
    const queues = new Queues();
    const scheduled = new Date('2025-03-01T12:05:00.000Z');
    const logs: string[] = [];
    const log = {
      info: (m: string) => logs.push(m),
      warn: (m: string) => logs.push(m),
      error: (m: string) => logs.push(m),
    };
    const services = { registry, sender: queues, now: () => scheduled } as unknown as Services;

    expect(await handlePollSchedule(services, log)).toEqual([CONTOSO, NORTHWIND]);
    const requests = queues.of(QUEUE_NAMES.pollRequests) as PollRequest[];
    expect(requests.map((r) => r.tenantId).sort()).toEqual([CONTOSO, NORTHWIND]);
    for (const request of requests) {
      expect(request).toEqual({
        tenantId: request.tenantId,
        reason: 'schedule',
        requestedAt: '2025-03-01T12:05:00.000Z',
      });
      expect(pollRequestSchema.safeParse(request).success).toBe(true);
    }
    expect(logs).toEqual(['pollSchedule: poll requested for 2 tenant(s)']);
    expect(queues.of(QUEUE_NAMES.incidents)).toEqual([]);
  });

  it('asks for nothing when no tenant is enabled', async () => {
    const queues = new Queues();
    expect(
      await schedulePolls({
        registry: registryOf([tenantOf(FABRIKAM, 'Fabrikam', false)]),
        sender: queues as unknown as MessageSender,
      }),
    ).toEqual([]);
    expect(queues.of(QUEUE_NAMES.pollRequests)).toEqual([]);
  });
});

describe('polling a tenant', () => {
  it('counts in its log line the versions already delivered and the claim-checked events', async () => {
    const { defender, queues, deps, enqueued } = poller({ claimCheck: (incidentId) => incidentId % 3 === 0 });
    for (let id = 1; id <= 7; id++) defender.version(id, T - 3 * MINUTE - id * 1000);
    const logs: string[] = [];
    const log = {
      info: (m: string) => logs.push(m),
      warn: (m: string) => logs.push(m),
      error: (m: string) => logs.push(m),
    };
    const recorded: unknown[] = [];
    const services = (now: number) =>
      ({
        ...deps(now),
        tenantStatus: {
          prefetch: (tenantId: string) => ({ tenantId, read: Promise.resolve(undefined) }),
          recordPoll: async (_t: string, poll: unknown) => void recorded.push(poll),
        },
        config: { pollMaxPagesPerRun: 20 },
      }) as unknown as Services;

    expect(await handlePollRequest(pollRequest(FABRIKAM, 'schedule'), services(T), log)).toMatchObject({
      status: 'polled',
      enqueued: 7,
      claimChecked: 2,
      duplicates: 0,
    });
    expect(logs).toEqual([
      `pollTenant ${FABRIKAM}: polled, 7 event(s) enqueued (7 listed in 1 page(s), 0 already delivered, 2 claim-checked)`,
    ]);
    expect(enqueued()).toHaveLength(7);

    // A minute later all seven are still in the overlap window, listed again, and one is new.
    defender.version(8, T + 30_000);
    logs.length = 0;
    expect(await handlePollRequest(pollRequest(FABRIKAM, 'schedule'), services(T + MINUTE), log)).toMatchObject({
      status: 'polled',
      enqueued: 1,
      duplicates: 7,
      claimChecked: 0,
    });
    expect(logs).toEqual([
      `pollTenant ${FABRIKAM}: polled, 1 event(s) enqueued (8 listed in 1 page(s), 7 already delivered, 0 claim-checked)`,
    ]);
    expect(enqueued()).toEqual([eventIdOf(FABRIKAM, 8, at(T + 30_000))]);
    expect(queues.of(QUEUE_NAMES.pollRequests)).toEqual([]);
  });

  it("enqueues a version exactly at the start of the next poll's overlap window once", async () => {
    const { defender, poll, enqueued, idOf } = poller();
    // The first poll (no checkpoint) advances to now - overlap; the next poll looks back from there
    // by the overlap again, to exactly this version.
    const edge = defender.version(1, T - 10 * MINUTE);
    const later = defender.version(2, T - 7 * MINUTE);
    expect(await poll(T)).toMatchObject({ status: 'polled', enqueued: 2, checkpoint: at(T - 5 * MINUTE) });
    expect(enqueued().sort()).toEqual([idOf(edge), idOf(later)].sort());

    expect(await poll(T + 30_000)).toMatchObject({ status: 'polled', fetched: 2, duplicates: 2, enqueued: 0 });
    expect(enqueued()).toEqual([]);
  });

  it('does not enqueue again a version still in the window when versions that left it would fill the boundary', async () => {
    const { defender, poll, enqueued } = poller();
    // 100 versions a minute old and 200 from nearly six minutes ago: all in the first poll's window.
    for (let id = 1; id <= 100; id++) defender.version(id, T - MINUTE - id);
    for (let id = 101; id <= 300; id++) defender.version(id, T - 5.9 * MINUTE - id);
    expect(await poll(T)).toMatchObject({ status: 'polled', enqueued: 300 });
    enqueued();
    // Ten new versions move the checkpoint on: the 200 older ones leave the window, the 100 stay in it.
    for (let id = 301; id <= 310; id++) defender.version(id, T + MINUTE + id);
    expect(await poll(T + 2 * MINUTE)).toMatchObject({ status: 'polled', enqueued: 10, duplicates: 300 });
    enqueued();
    expect(await poll(T + 3 * MINUTE)).toMatchObject({ status: 'polled', fetched: 110, duplicates: 110, enqueued: 0 });
    expect(enqueued()).toEqual([]);
  });

  it('drops the superseded versions of changed incidents first when the boundary is full, so no version still listed is enqueued again', async () => {
    const { defender, poll, enqueued } = poller();
    // As many versions in the window as the boundary holds.
    for (let id = 1; id <= MAX_BOUNDARY_IDS; id++) defender.version(id, T - 4 * MINUTE + id * 100);
    expect(await poll(T)).toMatchObject({ status: 'polled', enqueued: MAX_BOUNDARY_IDS });
    enqueued();
    // The ten oldest change: Defender lists only their new versions; the old ones stay in the boundary.
    for (let id = 1; id <= 10; id++) defender.version(id, T + 30_000 + id);
    expect(await poll(T + MINUTE)).toMatchObject({ status: 'polled', enqueued: 10, duplicates: MAX_BOUNDARY_IDS - 10 });
    enqueued();
    expect(await poll(T + 2 * MINUTE)).toMatchObject({
      status: 'polled',
      fetched: MAX_BOUNDARY_IDS,
      duplicates: MAX_BOUNDARY_IDS,
      enqueued: 0,
    });
    expect(enqueued()).toEqual([]);
  });

  it('hands the versions in the next window to its continuation, and its last run keeps them as the boundary', async () => {
    const { defender, poll, enqueued, queues, checkpoints, idOf } = poller();
    // Three pages: 150 versions from the last five minutes, then 100 an hour old.
    const old = Array.from({ length: 100 }, (_, i) => defender.version(i + 1, T - 60 * MINUTE - i * 1000));
    const recent = Array.from({ length: 150 }, (_, i) => defender.version(i + 200, T - 4 * MINUTE + i * 1000));
    expect(await poll(T, { maxPagesPerRun: 2 })).toMatchObject({ status: 'continued', pages: 2, enqueued: 200 });
    const [continuation, ...others] = queues.take<PollRequest>(QUEUE_NAMES.pollRequests);
    expect(others).toEqual([]);
    expect(pollRequestSchema.safeParse(continuation).success).toBe(true);
    // The next checkpoint's window starts no earlier than ten minutes ago: the old versions enqueued are not part of it.
    expect(new Set(continuation!.continuation!.fresh)).toEqual(new Set(recent.map(idOf)));

    expect(await poll(T, { maxPagesPerRun: 2 }, continuation)).toMatchObject({
      status: 'polled',
      pages: 1,
      enqueued: 50,
    });
    expect(new Set(enqueued())).toEqual(new Set([...old, ...recent].map(idOf)));
    expect(new Set(checkpoints.rows.get(FABRIKAM)!.boundaryEventIds)).toEqual(new Set(recent.map(idOf)));
    expect(await poll(T + MINUTE)).toMatchObject({ status: 'polled', fetched: 150, duplicates: 150, enqueued: 0 });
  });

  it('keeps a continuation readable when more versions than the boundary holds fall in the window', async () => {
    const { defender, poll, queues, enqueued } = poller();
    for (let id = 1; id <= 450; id++) defender.version(id, T - 4 * MINUTE + id * 100);
    expect(await poll(T, { maxPagesPerRun: 4 })).toMatchObject({ status: 'continued', enqueued: 400 });
    const [continuation] = queues.take<PollRequest>(QUEUE_NAMES.pollRequests);
    expect(pollRequestSchema.safeParse(continuation).success).toBe(true);
    // The newest versions: those the next polls list again longest.
    expect(continuation!.continuation!.fresh).toHaveLength(MAX_BOUNDARY_IDS);
    expect(continuation!.continuation!.fresh!.every((id) => Number(id.split(':')[1]) > 150)).toBe(true);
    expect(await poll(T, {}, pollRequestSchema.parse(continuation))).toMatchObject({ status: 'polled', enqueued: 50 });
    expect(new Set(enqueued()).size).toBe(450);
  });

  it('reports a poll that lost the checkpoint race as a conflict, and rethrows any other failure to store the checkpoint', async () => {
    const { defender, poll, checkpoints } = poller();
    defender.version(1, T - MINUTE);
    checkpoints.failNext = new CheckpointConflictError(FABRIKAM);
    expect(await poll(T)).toMatchObject({ status: 'conflict', enqueued: 1 });
    const unavailable = Object.assign(new Error('Server busy'), { statusCode: 503 });
    checkpoints.failNext = unavailable;
    await expect(poll(T)).rejects.toBe(unavailable);
    expect(checkpoints.rows.has(FABRIKAM)).toBe(false);
  });

  it('answers a poll request for a disabled tenant (a manual poll, or one queued before it was disabled) without polling it', async () => {
    const { tenant, defender, poll, queues, checkpoints } = poller();
    defender.version(1, T - MINUTE);
    expect(await poll(T, { registry: registryOf([{ ...tenant, enabled: false }]) })).toMatchObject({
      status: 'disabled',
      fetched: 0,
      enqueued: 0,
    });
    expect(queues.sent.size).toBe(0);
    expect(checkpoints.rows.size).toBe(0);
  });

  it("refuses to poll with a checkpoint that is another tenant's, before Defender is asked or anything is sent", async () => {
    const { defender, poll, queues, checkpoints } = poller();
    defender.version(1, T - MINUTE);
    let listed = false;
    const foreign: Partial<IngestDependencies> = {
      // A checkpoint store answering for the wrong row (a key bug, a hostile table): tenants must stay apart.
      checkpoints: {
        ...checkpoints,
        get: () => checkpoints.get(CONTOSO),
        advance: checkpoints.advance,
      } as unknown as CheckpointStore,
      defender: {
        incidentPagesSince: (...args: Parameters<Defender['incidentPagesSince']>) => {
          listed = true;
          return defender.incidentPagesSince(...args);
        },
      } as unknown as DefenderClient,
    };
    await expect(poll(T, foreign)).rejects.toThrow(`The checkpoint read for ${FABRIKAM} is not tenant ${FABRIKAM}'s`);
    expect(listed).toBe(false);
    expect(queues.sent.size).toBe(0);
    expect(checkpoints.rows.size).toBe(0);
  });

  it.each([1, 4, 16])('keeps at most %i event sends in flight', async (sendConcurrency) => {
    const { defender, poll, queues } = poller();
    for (let id = 1; id <= 60; id++) defender.version(id, T - MINUTE - id * 1000);
    expect(await poll(T, { sendConcurrency })).toMatchObject({ status: 'polled', enqueued: 60 });
    expect(queues.mostInFlight).toBe(sendConcurrency);
  });
});
