import { randomUUID } from 'node:crypto';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { createSelfSignedCert } from '../../../local/common/tls.js';
import { generateIncidents } from '../../../local/defender/generator.js';
import { DEFENDER_APP_ROLES, DEFENDER_RESOURCE, WEBHOOK_HMAC_SECRET_NAME } from '../../../local/demo.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { loadConfig } from '../../../shared/config/config.js';
import { deadLetterQueueOf } from '../../../shared/messages/dead-letter.js';
import { DefenderClient } from '../../../shared/sources/defender/client.js';
import { envelopeSchema, eventIdOf, type IncidentEnvelope } from '../../../shared/messages/events.js';
import { handlePollRequest } from '../../../shared/ingest/ingest-handlers.js';
import { pollRequest, pollTenant, pollRequestSchema, type PollRequest } from '../../../shared/ingest/ingest.js';
import { QUEUE_NAMES } from '../../../shared/storage/queues.js';
import { createServices, type Services } from '../../../shared/services.js';
import { checkRegisteredTenant } from '../../../shared/tenants/tenant-admin.js';
import { normalizeTimestamp } from '../../../shared/timestamps.js';
import { drainQueue } from '../../support/queues.js';
import { startThrottlingStorage } from '../../support/throttling-storage.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { TENANT_CREDENTIAL_TAGS } from '../../../shared/auth/credential-fence.js';

/**
 * Ingest end to end against Azurite and the stand-ins with the real SDK clients: poll → events on the
 * `incidents` queue → checkpoint. This file has an Azurite of its own, since it uses the app's real queue names.
 */
describe('ingest: polling tenants into the incidents queue', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let services: Services;
  let queues: QueueServiceClient;
  const logs: string[] = [];
  const log = {
    info: (m: string) => logs.push(m),
    warn: (m: string) => logs.push(m),
    error: (m: string) => logs.push(m),
  };
  const realFetch = globalThis.fetch;

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 256 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    services = createServices(loadConfig(appSettingsFor(stack.world, azurite.connectionString, stack)));
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
  });
  afterEach(() => void vi.restoreAllMocks());

  const tenant = (context: 'application' | 'partner') => stack.world.tenants.find((t) => t.context === context)!;

  const drain = (queueName: string) => drainQueue(queues, queueName);
  const drainEvents = async () => (await drain(QUEUE_NAMES.incidents)) as IncidentEnvelope[];

  /** A partner-context tenant holding `count` incidents updated in the last day, in no order. */
  async function addBulkTenant(count: number, seed: string): Promise<string> {
    const tenantId = randomUUID();
    const partnerApp = stack.world.apps.find((a) => a.multiTenant)!;
    stack.entra.registry.addTenant({ tenantId, displayName: `Bulk ${seed}` });
    stack.entra.registry.grantAppPermissions(tenantId, partnerApp.clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES);
    stack.defender.store.provisionTenant(tenantId, `Bulk ${seed}`);
    stack.defender.store.upsert(
      tenantId,
      generateIncidents({ tenantId, count, seed, since: new Date(Date.now() - 86_400_000) }),
    );
    await services.registry.put({
      tenantId,
      displayName: `Bulk ${seed}`,
      context: 'partner',
      clientId: partnerApp.clientId,
      credential: { kind: 'secret', secretName: 'partner-app-client-secret' },
    });
    return tenantId;
  }

  /**
   * Stands between the relay and Defender's incident list: `answer` gets each page's $skip and the
   * stand-in's real answer, and returns what the relay receives instead.
   */
  function interceptListPages(
    answer: (skip: number, real: () => Promise<Response>) => Promise<Response> | Response,
  ): void {
    vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const url = new URL(input instanceof Request ? input.url : input.toString());
      const real = () => realFetch(input, init);
      return url.pathname.endsWith('/api/incidents')
        ? Promise.resolve(answer(Number(url.searchParams.get('$skip') ?? 0), real))
        : real();
    });
  }

  /** Defender answering one list page with an error, once (as after the client's retries). */
  function failListPageOnce(failedSkip: number, status: number, headers: Record<string, string> = {}): void {
    let failed = false;
    interceptListPages((skip, real) => {
      if (skip !== failedSkip || failed) return real();
      failed = true;
      return Response.json(
        {
          error: {
            code: status === 429 ? 'TooManyRequests' : 'Failed',
            message: `Injected ${status}`,
            target: randomUUID(),
          },
        },
        { status, headers },
      );
    });
  }

  /** The app's services with a Defender client that gives up at the first failure, so a failed page reaches the poller at once. */
  const withoutRetries = (): Services => ({
    ...services,
    defender: new DefenderClient({ apiUrl: services.config.defender.apiUrl, tokens: services.tokens, maxRetries: 0 }),
  });

  /** Poll requests on the queue, visible or not. */
  const pendingPollRequests = async () =>
    (await queues.getQueueClient(QUEUE_NAMES.pollRequests).getProperties()).approximateMessagesCount ?? 0;

  async function waitForPollRequest(timeoutMs: number): Promise<PollRequest> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [request, ...others] = (await drain(QUEUE_NAMES.pollRequests)) as PollRequest[];
      expect(others).toEqual([]);
      if (request) return request;
      if (Date.now() > deadline) throw new Error(`No poll request became visible within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Runs a poll request and every follow-up it hands over, as the queue trigger would. */
  async function pollToTheEnd(first: PollRequest, options: { maxPagesPerRun?: number } = {}) {
    const outcomes = [];
    let request: PollRequest | undefined = first;
    while (request) {
      outcomes.push(await pollTenant(request, { ...services, ...options }));
      request = ((await drain(QUEUE_NAMES.pollRequests)) as PollRequest[]).find((r) => r.reason === 'continuation');
    }
    return outcomes;
  }

  it.each(['application', 'partner'] as const)(
    'delivers every incident of the %s-context tenant once, then only what changed',
    async (context) => {
      const t = tenant(context);
      await drainEvents();
      const [first] = await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
      const events = await drainEvents();
      expect(first).toMatchObject({ status: 'polled', enqueued: t.incidentCount });
      expect(events).toHaveLength(t.incidentCount);
      expect(new Set(events.map((e) => e.incidentId)).size).toBe(t.incidentCount);
      for (const e of events) {
        expect(envelopeSchema.safeParse(e).success).toBe(true);
        expect(e).toMatchObject({
          tenantId: t.tenantId,
          source: 'poll',
          eventId: `${t.tenantId}:${e.incidentId}:${e.lastUpdateTime}`,
        });
        expect(e.incident!.incidentId).toBe(e.incidentId);
      }
      const original = stack.defender.store.get(t.tenantId, events[0]!.incidentId)!;
      expect(events[0]!.incident).toEqual(original); // the incident travels unmodified

      // Nothing changed: nothing new.
      const [second] = await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
      expect(second!.enqueued).toBe(0);
      expect(await drainEvents()).toEqual([]);

      // One incident changes in the portal: exactly that version arrives.
      const changed = stack.defender.store.update(
        t.tenantId,
        original.incidentId,
        (i) => void (i.assignedTo = 'tier2@contoso.example'),
      )!;
      await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
      const news = await drainEvents();
      expect(news.map((e) => e.eventId)).toEqual([`${t.tenantId}:${changed.incidentId}:${changed.lastUpdateTime}`]);
      expect(news[0]!.incident!.assignedTo).toBe('tier2@contoso.example');
    },
  );

  it.each([
    { maxPagesPerRun: 3, statuses: ['continued', 'continued', 'continued', 'polled'] },
    { maxPagesPerRun: 20, statuses: ['polled'] },
  ])(
    'pages through 1,050 unordered incidents in runs of $maxPagesPerRun pages, losing and repeating nothing',
    async ({ maxPagesPerRun, statuses }) => {
      const tenantId = await addBulkTenant(1050, `bulk-${maxPagesPerRun}`);
      await drainEvents();
      const outcomes = await pollToTheEnd(pollRequest(tenantId, 'manual'), { maxPagesPerRun });
      const events = await drainEvents();
      expect(outcomes.map((o) => o.status)).toEqual(statuses);
      expect(outcomes.reduce((pages, o) => pages + o.pages, 0)).toBe(11);
      expect(events).toHaveLength(1050);
      expect(new Set(events.map((e) => e.eventId)).size).toBe(1050);
      // The checkpoint passes the newest version of any page of any run.
      const newest = stack.defender.store
        .list(tenantId)
        .map((i) => normalizeTimestamp(i.lastUpdateTime))
        .sort()
        .at(-1)!;
      expect((await services.checkpoints.get(tenantId)).lastUpdateTime! >= newest).toBe(true);
    },
    60_000,
  );

  it.each([3, 20])(
    'loses and repeats nothing when incidents change while it pages (newest first, so they jump to the top), in runs of %i pages',
    async (maxPagesPerRun) => {
      const tenantId = await addBulkTenant(650, `churn-${maxPagesPerRun}`);
      await drainEvents();
      // After each of the first five pages, four incidents the listing has not reached yet change.
      const churn = stack.defender.store.setPagingChurn(tenantId, { perPage: 4, pages: 5 });
      const first = await pollToTheEnd(pollRequest(tenantId, 'manual'), { maxPagesPerRun });
      stack.defender.store.setPagingChurn(tenantId, undefined);
      expect(churn.changed).toHaveLength(20);
      // The next scheduled poll, as the timer would run it.
      const next = await pollToTheEnd(pollRequest(tenantId, 'schedule'), { maxPagesPerRun });
      const events = await drainEvents();
      expect(first.at(-1)!.status).toBe('polled');
      expect(next.at(-1)!.status).toBe('polled');

      const delivered = new Set(events.map((e) => e.eventId));
      expect(events.length, 'an incident version enqueued twice').toBe(delivered.size);
      // Every incident's current version has arrived: none of those that jumped ahead of the listing is lost.
      const current = stack.defender.store.list(tenantId).map((i) => `${tenantId}:${i.incidentId}:${i.lastUpdateTime}`);
      expect(current.filter((id) => !delivered.has(id))).toEqual([]);
      // The changed incidents arrive in their new version; the only other versions are the ones listed before they changed.
      for (const id of churn.changed)
        expect(
          events.some(
            (e) => e.incidentId === id && (e.incident as { tags?: string[] }).tags?.includes('changed-while-paging'),
          ),
        ).toBe(true);
      expect(events.length).toBeLessThanOrEqual(650 + churn.changed.length);
    },
    60_000,
  );

  it('enqueues a version Defender lists on two pages of one listing once', async () => {
    const tenantId = await addBulkTenant(250, 'repeats');
    const firstPage: unknown[] = [];
    // The order shifts between two calls, as Defender's may: page 2 begins with ten of page 1's incidents.
    interceptListPages(async (skip, real) => {
      const page = (await (await real()).json()) as { value: unknown[] };
      if (skip === 0) firstPage.push(...page.value.slice(0, 10));
      if (skip === 100) page.value.splice(0, 10, ...firstPage);
      return Response.json(page);
    });
    await drainEvents();
    const [outcome] = await pollToTheEnd(pollRequest(tenantId, 'manual'));
    const events = await drainEvents();
    expect(outcome).toMatchObject({ status: 'polled', fetched: 240, enqueued: 240, pages: 3 });
    expect(new Set(events.map((e) => e.eventId)).size).toBe(240);
    expect(events).toHaveLength(240);
  });

  it('enqueues a version listed in the overlap windows of several successive polls once', async () => {
    // Each poll looks back 5 minutes before its checkpoint (late-indexed updates), so a version just
    // before the checkpoint is listed again by the next polls, until the checkpoint has passed it by 5 minutes.
    const tenantId = await addBulkTenant(3, 'overlap');
    const store = stack.defender.store;
    const [older, boundary, busy] = store.list(tenantId);
    const t0 = Date.now() - 3_600_000;
    const minute = 60_000;
    const updateAt = (incidentId: number, ms: number) =>
      store.update(
        tenantId,
        incidentId,
        (i) => void (i.lastUpdateTime = normalizeTimestamp(new Date(ms).toISOString())),
      )!;
    updateAt(older!.incidentId, t0 - 120 * minute);
    updateAt(busy!.incidentId, t0 - 60 * minute);
    const v = updateAt(boundary!.incidentId, t0);
    const poll = (atMs: number) =>
      pollTenant(pollRequest(tenantId, 'schedule'), { ...services, overlapMs: 5 * minute, now: () => new Date(atMs) });
    await drainEvents();

    expect(await poll(t0 + minute)).toMatchObject({ status: 'polled', enqueued: 3 });
    expect((await drainEvents()).map((e) => e.eventId)).toContain(eventIdOf(tenantId, v.incidentId, v.lastUpdateTime));

    // A poll a minute, each seeing one new version of another incident: V stays inside every window.
    for (const at of [2, 3, 4, 5]) {
      const news = updateAt(busy!.incidentId, t0 + (at - 0.5) * minute);
      const outcome = await poll(t0 + at * minute);
      expect(outcome.fetched).toBe(2); // V listed again, with the new version
      expect((await drainEvents()).map((e) => e.eventId)).toEqual([
        eventIdOf(tenantId, news.incidentId, news.lastUpdateTime),
      ]);
    }
  });

  it('goes on from the failed page when Defender fails mid-run, losing nothing and sending no page twice', async () => {
    const tenantId = await addBulkTenant(550, 'mid-run');
    const app = withoutRetries();
    await drainEvents();
    await drain(QUEUE_NAMES.pollRequests);
    failListPageOnce(300, 429, { 'retry-after': '1' });
    logs.length = 0;
    const interrupted = await handlePollRequest(pollRequest(tenantId, 'manual'), app, log);
    expect(interrupted).toMatchObject({ status: 'retrying', pages: 3, enqueued: 300 });
    expect(await services.tenantStatus.get(tenantId)).toMatchObject({
      lastOutcome: 'retrying',
      lastError: expect.stringMatching(/429/),
      eventsEnqueued: 300,
    });
    expect(logs.join('\n')).toMatch(
      new RegExp(`pollTenant ${tenantId}: retrying, 300 event\\(s\\) enqueued.*from the failed page.*429`),
    );
    expect((await services.checkpoints.get(tenantId)).lastUpdateTime).toBeUndefined();
    // The follow-up waits for Defender's Retry-After, then starts at the failed page.
    expect(await drain(QUEUE_NAMES.pollRequests)).toEqual([]);
    const followUp = await waitForPollRequest(5_000);
    expect(followUp).toMatchObject({ tenantId, reason: 'continuation', continuation: { skip: 300 } });
    expect(await handlePollRequest(followUp, app, log)).toMatchObject({ status: 'polled', pages: 3, enqueued: 250 });
    const events = await drainEvents();
    expect(events).toHaveLength(550);
    expect(new Set(events.map((e) => e.eventId))).toEqual(
      new Set(stack.defender.store.list(tenantId).map((i) => eventIdOf(tenantId, i.incidentId, i.lastUpdateTime))),
    );
    expect((await services.checkpoints.get(tenantId)).lastUpdateTime).toBeDefined();
  }, 30_000);

  it('leaves a failure of the first page to the host to retry, and fails the tenant on a permanent one mid-run', async () => {
    const tenantId = await addBulkTenant(350, 'failures');
    const app = withoutRetries();
    await drainEvents();
    await drain(QUEUE_NAMES.pollRequests);

    // Nothing enqueued yet: the error goes back to the host, which retries the request as it is.
    failListPageOnce(0, 503);
    await expect(handlePollRequest(pollRequest(tenantId, 'manual'), app, log)).rejects.toThrow(/503/);
    expect(await services.tenantStatus.get(tenantId)).toMatchObject({
      lastOutcome: 'retrying',
      lastError: expect.stringMatching(/503/),
    });
    expect(await drainEvents()).toEqual([]);
    expect(await pendingPollRequests()).toBe(0);

    // A permanent failure after two pages: the tenant fails, no follow-up; the next poll starts again from the checkpoint.
    failListPageOnce(200, 403);
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), app, log)).toBeUndefined();
    expect(await services.tenantStatus.get(tenantId)).toMatchObject({
      lastOutcome: 'failed',
      lastError: expect.stringMatching(/403/),
    });
    expect(await pendingPollRequests()).toBe(0);
    const partial = await drainEvents();
    expect(partial).toHaveLength(200);
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), app, log)).toMatchObject({
      status: 'polled',
      enqueued: 350,
    });
    // The 200 sent before the failure come again: the enricher drops them by eventId.
    const again = await drainEvents();
    expect(again).toHaveLength(350);
    expect(new Set(again.map((e) => e.eventId)).size).toBe(350);
    expect(partial.every((e) => again.some((a) => a.eventId === e.eventId))).toBe(true);
  }, 30_000);

  it('rides out a 429 storm and 5xx bursts with nothing lost', async () => {
    const t = tenant('partner');
    await services.checkpoints.get(t.tenantId); // warm
    const changed = stack.defender.store.update(
      t.tenantId,
      stack.defender.store.list(t.tenantId)[0]!.incidentId,
      (i) => void (i.tags = ['storm']),
    )!;
    stack.faults.add('defender', { kind: 'status', status: 429, retryAfterSeconds: 1 }, 1);
    // Defender's documented 429 says the wait only in its body: the relay waits that long too.
    stack.faults.add('defender', { kind: 'status', status: 429, retryAfterSeconds: 2, retryAfterHeader: false }, 1);
    stack.faults.add('defender', { kind: 'status', status: 503 }, 2);
    await drainEvents();
    const started = Date.now();
    const [outcome] = await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000 + 2_000 - 100);
    expect(outcome!.status).toBe('polled');
    expect((await drainEvents()).map((e) => e.eventId)).toContain(
      `${t.tenantId}:${changed.incidentId}:${changed.lastUpdateTime}`,
    );
    expect(stack.faults.list()).toEqual([]);
    // 7-9 s alone; a loaded 2-core machine (a mutation run beside it) has taken over 60 s.
  }, 120_000);

  it('lets one of two racing pollers advance the checkpoint, delivering every change at least once', async () => {
    const t = tenant('application');
    const changedIds = stack.defender.store
      .list(t.tenantId)
      .slice(0, 5)
      .map((i) => stack.defender.store.update(t.tenantId, i.incidentId, (x) => void (x.tags = ['race']))!);
    await drainEvents();
    const outcomes = await Promise.all([
      pollTenant(pollRequest(t.tenantId, 'manual'), services),
      pollTenant(pollRequest(t.tenantId, 'manual'), services),
    ]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['conflict', 'polled']);
    const delivered = new Set((await drainEvents()).map((e) => e.eventId));
    for (const c of changedIds) expect(delivered.has(`${t.tenantId}:${c.incidentId}:${c.lastUpdateTime}`)).toBe(true);
  });

  it("counts a raced poll's events once in the tenant's status: the loser's copies are duplicates the enricher skips", async () => {
    const t = tenant('application');
    for (const i of stack.defender.store.list(t.tenantId).slice(0, 3))
      stack.defender.store.update(t.tenantId, i.incidentId, (x) => void (x.tags = ['race-count']));
    await drainEvents();
    const before = (await services.tenantStatus.get(t.tenantId)).eventsEnqueued;
    const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const outcomes = await Promise.all([
      handlePollRequest(pollRequest(t.tenantId, 'manual'), services, quiet),
      handlePollRequest(pollRequest(t.tenantId, 'manual'), services, quiet),
    ]);
    expect(outcomes.map((o) => o?.status).sort()).toEqual(['conflict', 'polled']);
    const winner = outcomes.find((o) => o?.status === 'polled')!;
    expect(winner.enqueued).toBeGreaterThanOrEqual(3);
    expect((await services.tenantStatus.get(t.tenantId)).eventsEnqueued - before).toBe(winner.enqueued);
    await drainEvents();
  });

  it('names the cause when a tenant fails, and other tenants are unaffected', async () => {
    const app = tenant('application');
    const partner = tenant('partner');
    const partnerApp = stack.world.apps.find((a) => a.multiTenant)!;
    const cases: {
      name: string;
      breakIt: () => Promise<void> | void;
      mendIt: () => Promise<void> | void;
      expected: RegExp;
    }[] = [
      {
        name: 'wrong secret in Key Vault',
        breakIt: async () => {
          await stack.keyVault.store.setSecret(app.clientSecretName, 'not-the-secret', {
            tags: TENANT_CREDENTIAL_TAGS,
          });
          await services.secretCache.refresh(app.clientSecretName);
        },
        mendIt: async () =>
          void (await stack.keyVault.store.setSecret(
            app.clientSecretName,
            stack.world.apps.find((a) => a.clientId === app.clientId)!.clientSecret,
            { tags: TENANT_CREDENTIAL_TAGS },
          )),
        expected: /AADSTS7000215/,
      },
      {
        name: 'consent revoked in the partner tenant',
        breakIt: () => stack.entra.registry.revokeConsent(partner.tenantId, partnerApp.clientId),
        mendIt: () =>
          stack.entra.registry.grantAppPermissions(
            partner.tenantId,
            partnerApp.clientId,
            DEFENDER_RESOURCE,
            DEFENDER_APP_ROLES,
          ),
        expected: /AADSTS700016/,
      },
    ];
    for (const c of cases) {
      const victim = c.name.includes('partner') ? partner : app;
      const bystander = victim === app ? partner : app;
      await c.breakIt();
      services.tokens.invalidate(await services.registry.get(victim.tenantId));
      logs.length = 0;
      expect(await handlePollRequest(pollRequest(victim.tenantId, 'manual'), services, log)).toBeUndefined();
      const status = await services.tenantStatus.get(victim.tenantId);
      expect(status, c.name).toMatchObject({ lastOutcome: 'failed', lastError: expect.stringMatching(c.expected) });
      expect(logs.join('\n')).toMatch(new RegExp(`pollTenant ${victim.tenantId} failed \\(not retried\\)`));
      expect(await handlePollRequest(pollRequest(bystander.tenantId, 'manual'), services, log)).toMatchObject({
        status: 'polled',
      });
      await c.mendIt();
      services.tokens.invalidate(await services.registry.get(victim.tenantId));
      await services.secretCache.refresh(victim.clientSecretName);
      expect(
        await handlePollRequest(pollRequest(victim.tenantId, 'manual'), services, log),
        `${c.name} mended`,
      ).toMatchObject({ status: 'polled' });
    }
    for (const secret of [
      stack.world.appIdentity.clientSecret,
      ...stack.world.apps.map((a) => a.clientSecret),
      'not-the-secret',
    ]) {
      expect(logs.join('\n')).not.toContain(secret);
    }
  }, 60_000);

  it('polls a tenant whose app authenticates with a certificate kept in Key Vault', async () => {
    const tenantId = randomUUID();
    const clientId = randomUUID();
    const { key, cert } = createSelfSignedCert('tailspin-defender-reader');
    stack.entra.registry.addTenant({ tenantId, displayName: 'Tailspin Toys' });
    stack.entra.registry.addApp({
      clientId,
      displayName: 'tailspin-defender-reader',
      homeTenantId: tenantId,
      multiTenant: false,
      certificates: [cert],
    });
    stack.entra.registry.grantAppPermissions(tenantId, clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES);
    await stack.keyVault.store.setSecret('tenant-tailspin-certificate', `${key}\n${cert}`, {
      tags: TENANT_CREDENTIAL_TAGS,
    });
    stack.defender.store.provisionTenant(tenantId, 'Tailspin Toys');
    stack.defender.store.upsert(
      tenantId,
      generateIncidents({ tenantId, count: 12, seed: 'tailspin', since: new Date(Date.now() - 86_400_000) }),
    );
    await services.registry.put({
      tenantId,
      displayName: 'Tailspin Toys',
      context: 'application',
      clientId,
      credential: { kind: 'certificate', secretName: 'tenant-tailspin-certificate' },
    });
    await drainEvents();
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toMatchObject({
      status: 'polled',
      enqueued: 12,
    });
    expect((await drainEvents()).every((e) => e.tenantId === tenantId)).toBe(true);
    await services.registry.setEnabled(tenantId, false);
  });

  it("retries a poll while Key Vault throttles (429) reading the tenant's secret, and the retry delivers it", async () => {
    const tenantId = randomUUID();
    const clientId = randomUUID();
    const secretName = `tenant-throttled-${tenantId.slice(0, 8)}`;
    stack.entra.registry.addTenant({ tenantId, displayName: 'Throttled' });
    stack.entra.registry.addApp({
      clientId,
      displayName: 'throttled-reader',
      homeTenantId: tenantId,
      multiTenant: false,
      secrets: ['throttled-secret-value'],
    });
    stack.entra.registry.grantAppPermissions(tenantId, clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES);
    await stack.keyVault.store.setSecret(secretName, 'throttled-secret-value', { tags: TENANT_CREDENTIAL_TAGS });
    stack.defender.store.provisionTenant(tenantId, 'Throttled');
    stack.defender.store.upsert(
      tenantId,
      generateIncidents({ tenantId, count: 7, seed: 'kv-throttled', since: new Date(Date.now() - 86_400_000) }),
    );
    await services.registry.put({
      tenantId,
      displayName: 'Throttled',
      context: 'application',
      clientId,
      credential: { kind: 'secret', secretName },
    });
    await drainEvents();
    const deadLettered = deadLetterQueueOf(QUEUE_NAMES.pollRequests);
    await drain(deadLettered);

    // Key Vault throttles that secret for longer than the SDK's own retries last.
    stack.faults.add(
      'keyvault',
      { kind: 'status', status: 429, retryAfterSeconds: 0 },
      Infinity,
      `/secrets/${secretName}`,
    );
    logs.length = 0;
    try {
      // (The Defender client's own retries of a retryable failure are left out, so the failure reaches the host at once.)
      await expect(handlePollRequest(pollRequest(tenantId, 'manual'), withoutRetries(), log)).rejects.toThrow(
        /Key Vault/,
      );
    } finally {
      stack.faults.clear('keyvault');
    }
    expect(await services.tenantStatus.get(tenantId)).toMatchObject({
      lastOutcome: 'retrying',
      lastError: expect.stringMatching(/429/),
    });
    expect(logs.join('\n')).toContain(`pollTenant ${tenantId} failed, will be retried`);
    expect(await drain(deadLettered)).toEqual([]);
    expect(await drainEvents()).toEqual([]);

    // The host's retry, once Key Vault answers again.
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toMatchObject({
      status: 'polled',
      enqueued: 7,
    });
    expect(await drainEvents()).toHaveLength(7);
    await services.registry.setEnabled(tenantId, false);
  });

  it('retries a poll while Storage throttles (429) the incidents queue or the tenant table, and the retry delivers every incident', async () => {
    const tenantId = await addBulkTenant(40, 'storage-throttled');
    const storage = await startThrottlingStorage(azurite.connectionString);
    try {
      const app = createServices(loadConfig(appSettingsFor(stack.world, storage.connectionString, stack)));
      const deadLettered = deadLetterQueueOf(QUEUE_NAMES.pollRequests);
      await drainEvents();
      await drain(deadLettered);
      const refusedNow = async () => {
        const before = storage.throttled;
        logs.length = 0;
        await expect(handlePollRequest(pollRequest(tenantId, 'manual'), app, log)).rejects.toMatchObject({
          statusCode: 429,
        });
        expect(storage.throttled).toBeGreaterThan(before);
        expect(await services.tenantStatus.get(tenantId)).toMatchObject({
          lastOutcome: 'retrying',
          lastError: expect.stringMatching(/429/),
        });
        expect(logs.join('\n')).toContain(`pollTenant ${tenantId} failed, will be retried`);
        expect(await drain(deadLettered)).toEqual([]);
        expect((await services.checkpoints.get(tenantId)).lastUpdateTime).toBeUndefined();
      };

      // Queue Storage throttles the incidents queue (the SDK's RestError from @azure/storage-queue).
      storage.throttle(
        ({ service, path }) => service === 'queue' && /^\/devstoreaccount1\/incidents(\/messages)?$/.test(path),
      );
      await refusedNow();
      expect(await drainEvents()).toEqual([]);

      // Table storage throttles the tenant registry (the SDK's RestError from @azure/data-tables).
      storage.throttle(({ service, path }) => service === 'table' && /^\/devstoreaccount1\/tenants\(/.test(path));
      await refusedNow();

      // The host's retry, once Storage takes requests again.
      storage.throttle(() => false);
      expect(await handlePollRequest(pollRequest(tenantId, 'manual'), app, log)).toMatchObject({
        status: 'polled',
        enqueued: 40,
      });
      expect(new Set((await drainEvents()).map((e) => e.eventId))).toEqual(
        new Set(stack.defender.store.list(tenantId).map((i) => eventIdOf(tenantId, i.incidentId, i.lastUpdateTime))),
      );
    } finally {
      await storage.close();
    }
  });

  it('names a missing Defender permission, and other tenants are unaffected', async () => {
    const tenantId = randomUUID();
    const clientId = randomUUID();
    stack.entra.registry.addTenant({ tenantId, displayName: 'Limited' });
    stack.entra.registry.addApp({
      clientId,
      displayName: 'hunting-only',
      homeTenantId: tenantId,
      multiTenant: false,
      secrets: ['limited-secret-value'],
    });
    stack.entra.registry.grantAppPermissions(tenantId, clientId, DEFENDER_RESOURCE, ['AdvancedHunting.Read.All']);
    await stack.keyVault.store.setSecret('tenant-limited-client-secret', 'limited-secret-value', {
      tags: TENANT_CREDENTIAL_TAGS,
    });
    stack.defender.store.provisionTenant(tenantId, 'Limited');
    await services.registry.put({
      tenantId,
      displayName: 'Limited',
      context: 'application',
      clientId,
      credential: { kind: 'secret', secretName: 'tenant-limited-client-secret' },
    });
    logs.length = 0;
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toBeUndefined();
    expect(await services.tenantStatus.get(tenantId)).toMatchObject({
      lastOutcome: 'failed',
      lastError: expect.stringMatching(/403.*Incident\.Read\.All/),
    });
    expect(await handlePollRequest(pollRequest(tenant('partner').tenantId, 'manual'), services, log)).toMatchObject({
      status: 'polled',
    });
    await services.registry.setEnabled(tenantId, false);
  });

  it('refuses a tenant whose credential names a secret not tagged as a tenant credential, before anything reaches Entra; tagging it fixes it (issue 10, finding 6)', async () => {
    const tenantId = randomUUID();
    const partnerApp = stack.world.apps.find((a) => a.multiTenant)!;
    stack.entra.registry.addTenant({ tenantId, displayName: 'Misnamed' });
    stack.entra.registry.grantAppPermissions(tenantId, partnerApp.clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES);
    stack.defender.store.provisionTenant(tenantId, 'Misnamed');
    stack.defender.store.upsert(
      tenantId,
      generateIncidents({ tenantId, count: 5, seed: 'misnamed', since: new Date(Date.now() - 86_400_000) }),
    );
    // Every request the Entra stand-in receives passes its fault board: record the paths (they name the tenant).
    const entraPaths: string[] = [];
    const take = stack.faults.take.bind(stack.faults);
    vi.spyOn(stack.faults, 'take').mockImplementation((target, path) => {
      if (target === 'entra') entraPaths.push(path);
      return take(target, path);
    });
    const register = (secretName: string) =>
      services.registry.put({
        tenantId,
        displayName: 'Misnamed',
        context: 'partner',
        clientId: partnerApp.clientId,
        credential: { kind: 'secret', secretName },
      });
    const pollRefused = async (secretName: string) => {
      logs.length = 0;
      expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toBeUndefined();
      expect(await services.tenantStatus.get(tenantId)).toMatchObject({
        lastOutcome: 'failed',
        lastError: expect.stringContaining(`Key Vault secret '${secretName}' is not tagged as a tenant credential`),
      });
      expect(logs.join('\n')).toContain(`--name ${secretName} --tags defender-relay=tenant-credential`);
      expect(
        entraPaths.filter((p) => p.includes(tenantId)),
        'requests to Entra for the tenant',
      ).toEqual([]);
    };

    // Registered straight into the table (past the admin API's check), naming the relay's webhook HMAC key.
    await register(WEBHOOK_HMAC_SECRET_NAME);
    await pollRefused(WEBHOOK_HMAC_SECRET_NAME);
    const reads = services.secretCache.reads;
    await pollRefused(WEBHOOK_HMAC_SECRET_NAME); // refused again from the cache
    expect(services.secretCache.reads).toBe(reads);
    expect(logs.join('\n')).not.toContain(stack.world.webhookHmacKey);

    // The partner app's secret under a name of its own, stored without the tag: refused the same way.
    const secretName = `tenant-misnamed-${tenantId.slice(0, 8)}`;
    await stack.keyVault.store.setSecret(secretName, partnerApp.clientSecret);
    await register(secretName);
    await pollRefused(secretName);
    expect((await checkRegisteredTenant(tenantId, services)).steps[0]).toMatchObject({
      name: 'secret',
      status: 'failed',
      detail: expect.stringMatching(
        new RegExp(
          `not tagged as a tenant credential .*az keyvault secret set-attributes --vault-name \\S+ --name ${secretName} --tags defender-relay=tenant-credential`,
        ),
      ),
    });
    expect(entraPaths.filter((p) => p.includes(tenantId))).toEqual([]);

    // Tagged (az keyvault secret set-attributes … --tags defender-relay=tenant-credential): the check passes and the tenant is polled.
    stack.keyVault.store.updateProperties(secretName, undefined, { tags: TENANT_CREDENTIAL_TAGS });
    expect(await checkRegisteredTenant(tenantId, services)).toMatchObject({ ok: true });
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toMatchObject({
      status: 'polled',
      enqueued: 5,
    });
    expect((await drainEvents()).filter((e) => e.tenantId === tenantId)).toHaveLength(5);
    await services.registry.setEnabled(tenantId, false);
  });

  it('picks up a rotated secret after one refused token request', async () => {
    const t = tenant('application');
    const appReg = stack.world.apps.find((a) => a.clientId === t.clientId)!;
    const tenantRecord = await services.registry.get(t.tenantId);
    await services.tokens.getToken(tenantRecord); // warm: the old secret is cached
    const rotated = `rotated-${randomUUID()}`;
    stack.entra.registry.addSecret(appReg.clientId, rotated);
    stack.entra.registry.removeSecret(appReg.clientId, appReg.clientSecret);
    await stack.keyVault.store.setSecret(t.clientSecretName, rotated, { tags: TENANT_CREDENTIAL_TAGS });
    services.tokens.invalidate(tenantRecord);
    const reads = services.secretCache.reads;
    expect(await services.tokens.getToken(tenantRecord)).toMatch(/^eyJ/);
    expect(services.secretCache.reads).toBe(reads + 1);
    appReg.clientSecret = rotated;
  });

  it('dead-letters a poll request it cannot read, with the reason', async () => {
    await drain('poll-requests-deadletter');
    expect(await handlePollRequest({ tenant: 'x' }, services, log)).toBeUndefined();
    const [dead] = (await drain('poll-requests-deadletter')) as { reason: string; message: unknown }[];
    expect(dead).toMatchObject({ message: { tenant: 'x' }, reason: expect.stringMatching(/tenantId/) });
    expect(pollRequestSchema.safeParse(pollRequest('t', 'schedule')).success).toBe(true);
  });

  it('dead-letters an incident Defender lists too deep to enqueue, with its event id and reason, and enqueues the rest (issue 10, finding 2)', async () => {
    const tenantId = await addBulkTenant(5, 'deep');
    const [victim] = stack.defender.store.list(tenantId);
    // Deeper than an incident may be, yet shallow enough for the stand-in to serve.
    let deep: unknown = 'bottom';
    for (let i = 0; i < 200; i++) deep = [deep];
    stack.defender.store.upsert(tenantId, [
      { ...victim!, alerts: [{ alertId: 'da1', entities: [{ entityType: 'File', nested: deep }] }] } as typeof victim &
        object,
    ]);
    const updated = stack.defender.store.list(tenantId).find((i) => i.incidentId === victim!.incidentId)!;
    const eventId = eventIdOf(tenantId, updated.incidentId, updated.lastUpdateTime);
    await drain('incidents-deadletter');

    const outcome = await handlePollRequest(pollRequest(tenantId, 'manual'), services, log);
    expect(outcome).toMatchObject({
      status: 'polled',
      enqueued: 4,
      refused: [
        {
          eventId,
          reason: expect.stringMatching(
            /structure: alerts\.0\.entities\.0\.nested(\.0)+: nested deeper than 32 levels/,
          ),
        },
      ],
    });
    expect(outcome!.checkpoint).toBeDefined();
    expect((await drainEvents()).filter((e) => e.tenantId === tenantId).map((e) => e.eventId)).not.toContain(eventId);
    const [dead] = (await drain('incidents-deadletter')) as { reason: string; message: Record<string, unknown> }[];
    expect(dead).toMatchObject({
      reason: expect.stringContaining('structure: alerts.0.entities.0.nested'),
      message: { eventId, tenantId, incidentId: updated.incidentId },
    });
    expect(dead!.message.incident).toBeUndefined();
    expect(
      logs.some(
        (l) => l.includes(eventId) && l.includes('dead-lettered') && l.includes('nested deeper than 32 levels'),
      ),
    ).toBe(true);
    await services.registry.setEnabled(tenantId, false);
  });
});
