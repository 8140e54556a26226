import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { generateIncidents } from '../../local/defender/generator.js';
import { DefenderClient } from '../../shared/sources/defender/client.js';
import { eventIdOf } from '../../shared/messages/events.js';
import { pushIncidents, webhookPushDeps } from '../../shared/api/webhook-push.js';
import { pushSignatureHeader } from '../../shared/api/webhook-signature.js';
import type { DeliveryLog, EventClaim } from '../../shared/route/delivery-log.js';
import type { MessageSender } from '../../shared/storage/queues.js';
import { Flow, SimulatedCrash, type FlowOptions, type FlowReport } from './flow.js';
import { TENANT_CREDENTIAL_TAGS } from '../../shared/auth/credential-fence.js';
import { deliveredRequest } from '../support/host-request.js';

/**
 * The fault suite (`npm run test:faults`): for each fault the whole flow runs — poll both demo
 * tenants, enrich and route every event to the demo destinations — until it is quiet, and the
 * accounting must hold: every incident version Defender held is routed, or dead-lettered with a
 * reason, or (reported) poisoned; none is lost; no destination receives an event twice.
 * `retries` in the table counts the invocations that failed and went back to their queue (or whose
 * instance "crashed"): the work the fault caused.
 *
 * What "nothing lost" means when storage restarts: Azurite here keeps its data on disk, as Azure
 * Storage does, so a restart is an outage of a second or two; sends that fail in it fail the poll,
 * which is retried from the unchanged checkpoint, and what it had enqueued already is deduplicated by
 * the enricher. (The in-memory Azurite of the other tests would come back empty: a wiped account,
 * where the tenant registry, checkpoints and delivery log are gone too — not a restart.)
 */
const rows: (FlowReport & { fault: string; seconds: number; retries: number })[] = [];

afterAll(() => {
  const header = [
    'fault',
    'incidents',
    'routed',
    'dead-lettered',
    'poisoned',
    'duplicates',
    'lost',
    'retries',
    'seconds',
  ];
  const lines = rows.map((r) =>
    [
      r.fault,
      r.incidents,
      r.routed,
      r.deadLettered,
      r.poisoned,
      r.duplicates,
      r.lost,
      r.retries,
      r.seconds.toFixed(1),
    ].map(String),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(['', format(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(format), ''].join('\n'));
});

/** Runs one fault against a fresh stack and checks the accounting; `settled` checks more before the stack stops. */
async function withFault(
  fault: string,
  options: FlowOptions,
  run: (flow: Flow) => Promise<void>,
  settled?: (flow: Flow, report: FlowReport) => void | Promise<void>,
): Promise<FlowReport> {
  const started = Date.now();
  const flow = await Flow.start(options);
  try {
    await run(flow);
    // Whatever the fault left for the next timer tick, the tick takes; then nothing may be missing.
    await flow.settle(3);
    const report = await flow.report();
    const retries = Object.values(flow.failures).reduce((a, b) => a + b, 0);
    rows.push({ ...report, fault, retries, seconds: (Date.now() - started) / 1000 });
    // Every fault that was set for a number of requests was met by the flow (it did not pass the fault by).
    expect(flow.faults.list(), `${fault}: faults never reached`).toEqual([]);
    expect(report.lostIds, `${fault}: incident versions lost`).toEqual([]);
    expect(report.duplicateIds, `${fault}: deliveries made twice`).toEqual([]);
    expect(report.routed + report.deadLettered + report.poisoned).toBe(report.incidents);
    expect(report.missingDeliveries, `${fault}: routed events missing at a destination`).toEqual([]);
    expect(report.schemaProblems, `${fault}: messages the published schemas refuse`).toEqual([]);
    for (const reason of report.reasons) expect(reason.trim()).not.toBe('');
    const logs = flow.logs.join('\n');
    for (const secret of flow.secrets()) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/eyJ[\w-]{10,}\.[\w-]{10,}\./);
    await settled?.(flow, report);
    return report;
  } finally {
    await flow.stop();
  }
}

/**
 * Routes that make Defender calls for most events: closed incidents are dropped, every other one goes to
 * the SOC queue with an advanced-hunting query (the demo's, for the incident's devices) and a write-back tag.
 */
const HUNT_AND_TAG_ROUTES = {
  destinations: {
    'soc-queue': { type: 'queue', queueName: 'routed-high' },
    nowhere: { type: 'drop' },
  },
  rules: [{ name: 'closed-drop', match: { status: ['Resolved', 'Redirected'] }, destinations: ['nowhere'] }],
  defaultRoute: {
    destinations: ['soc-queue'],
    writeBack: { tag: 'relayed:hunt-and-tag' },
    hunting: [{ name: 'recent-logons', query: 'DeviceLogonEvents | where DeviceName in ({deviceNames}) | take 50' }],
  },
};

/** Clears a fault after `ms`, while the flow runs. */
const clearAfter = (flow: Flow, target: 'entra' | 'keyvault' | 'defender' | 'graph', ms: number) =>
  sleep(ms).then(() => flow.faults.clear(target));

/** A Defender client with a short per-call timeout on every instance (polls and enrichment). */
function shortDefenderTimeout(flow: Flow, timeoutMs: number) {
  for (const instance of flow.instances) {
    const defender = new DefenderClient({
      apiUrl: instance.services.config.defender.apiUrl,
      tokens: instance.services.tokens,
      timeoutMs,
      baseDelayMs: 200,
    });
    instance.services.defender = defender;
    instance.deps.defender = defender;
  }
}

/**
 * Every instance's enricher giving an event back to its queue after `maxWaitMs` of waiting for the budget
 * (or a 429), rather than the app's minute, as the benchmarks do; the poller keeps the app's client. The
 * host here runs a batch to its end before it fetches the next (the Functions host goes on fetching while
 * some run): one event held back for a minute by a spent budget would hold its whole batch, and the run
 * would be paced by the budget rather than by the work. The budget stays the instance's: the shared one.
 */
function shortEnricherWaits(flow: Flow, maxWaitMs: number) {
  for (const instance of flow.instances) {
    instance.deps.defender = new DefenderClient({
      apiUrl: instance.services.config.defender.apiUrl,
      tokens: instance.services.tokens,
      budget: instance.services.defender.budget,
      maxWaitMs,
    });
  }
}

/** The delivery log with some of its methods replaced (the others still act on the real one). */
function interceptDeliveryLog(log: DeliveryLog, overrides: Partial<DeliveryLog>): DeliveryLog {
  return new Proxy(log, {
    get(target, property) {
      const replaced = (overrides as Record<PropertyKey, unknown>)[property];
      if (replaced !== undefined) return replaced;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Wraps the sender's sendEvent: `around` gets each call and the original. */
function interceptSendEvent(
  sender: MessageSender,
  around: (send: () => ReturnType<MessageSender['sendEvent']>, call: number) => ReturnType<MessageSender['sendEvent']>,
) {
  const original = sender.sendEvent.bind(sender);
  let calls = 0;
  sender.sendEvent = (queueName, envelope) => around(() => original(queueName, envelope), ++calls);
}

describe('fault suite: the whole flow under each fault, nothing lost, nothing routed twice', () => {
  it('no fault (the reference run)', async () => {
    const report = await withFault('none', {}, async () => undefined);
    expect(report.routed).toBe(report.incidents);
  });

  it('a 429 storm from Defender', async () => {
    await withFault('429 storm (Defender)', {}, async (flow) => {
      flow.faults.add('defender', { kind: 'status', status: 429, retryAfterSeconds: 1 }, 12);
    });
  });

  it('5xx bursts from Defender', async () => {
    await withFault('5xx bursts (Defender)', {}, async (flow) => {
      flow.faults.add('defender', { kind: 'status', status: 503 }, 6);
      flow.faults.add('defender', { kind: 'status', status: 500 }, 6);
      flow.faults.add('defender', { kind: 'status', status: 502 }, 6, '/api/advancedhunting');
    });
  });

  // The demo world reads Woodgrove through Microsoft Graph: the same faults on Graph, the same accounting.
  it('a 429 storm from Microsoft Graph', async () => {
    await withFault('429 storm (Graph)', {}, async (flow) => {
      flow.faults.add('graph', { kind: 'status', status: 429, retryAfterSeconds: 1 }, 12);
    });
  });

  it('5xx bursts from Microsoft Graph', async () => {
    await withFault('5xx bursts (Graph)', {}, async (flow) => {
      flow.faults.add('graph', { kind: 'status', status: 503 }, 4);
      flow.faults.add('graph', { kind: 'status', status: 500 }, 4);
    });
  });

  it('a Microsoft Graph outage, for a while', async () => {
    await withFault('Graph outage (6 s)', {}, async (flow) => {
      flow.faults.add('graph', { kind: 'outage' });
      const cleared = clearAfter(flow, 'graph', 6_000);
      await flow.tick();
      await flow.runUntilQuiet();
      await cleared;
    });
  });

  it('two instances racing on every tenant (pollers and enrichers), with Graph throttling', async () => {
    await withFault('racing pollers, 2 instances (Graph 429s)', { instances: 2 }, async (flow) => {
      flow.faults.add('graph', { kind: 'status', status: 429, retryAfterSeconds: 1 }, 4);
      await flow.tick();
      await flow.tick();
      await flow.runUntilQuiet();
    });
  });

  it('a slow Defender, slower than the call timeout', async () => {
    await withFault('slow Defender (1.5 s > 1 s timeout)', {}, async (flow) => {
      shortDefenderTimeout(flow, 1_000);
      flow.faults.add('defender', { kind: 'delay', ms: 1_500 }, 8);
      flow.faults.add('defender', { kind: 'delay', ms: 400 }, 10);
    });
  });

  it('a malformed Defender body', async () => {
    await withFault('malformed Defender body', {}, async (flow) => {
      flow.faults.add('defender', { kind: 'malformed' }, 3, '/api/incidents');
    });
  });

  it('an Entra ID outage, for a while', async () => {
    await withFault('Entra outage (6 s)', {}, async (flow) => {
      flow.faults.add('entra', { kind: 'outage' });
      const cleared = clearAfter(flow, 'entra', 6_000);
      await flow.tick();
      await flow.runUntilQuiet();
      await cleared;
    });
  });

  it('a Key Vault outage, for a while', async () => {
    await withFault('Key Vault outage (6 s)', {}, async (flow) => {
      flow.faults.add('keyvault', { kind: 'outage' });
      const cleared = clearAfter(flow, 'keyvault', 6_000);
      await flow.tick();
      await flow.runUntilQuiet();
      await cleared;
    });
  });

  it('a client secret rotated mid-run', async () => {
    await withFault('secret rotated mid-run', {}, async (flow) => {
      await flow.tick();
      const [instance] = flow.instances;
      await flow.step(instance!);
      await flow.step(instance!);
      const fabrikam = flow.world.tenants.find((t) => t.context === 'application')!;
      const app = flow.world.apps.find((a) => a.clientId === fabrikam.clientId)!;
      const rotated = `rotated-${randomUUID()}`;
      flow.standIns.entra.registry.addSecret(app.clientId, rotated);
      // A rotated tenant secret is a new version: it needs the tenant-credential tag again, as in Key Vault.
      await flow.standIns.keyVault.store.setSecret(fabrikam.clientSecretName, rotated, {
        tags: TENANT_CREDENTIAL_TAGS,
      });
      flow.standIns.entra.registry.removeSecret(app.clientId, app.clientSecret);
      // The cached token expires too: the next call needs the new secret.
      for (const { services } of flow.instances)
        services.tokens.invalidate(await services.registry.get(fabrikam.tenantId));
      flow.world.apps.push({ ...app, clientSecret: rotated }); // scanned for in the logs as well
      await flow.runUntilQuiet();
    });
  });

  it('Azurite restarted mid-poll (its data kept, as storage keeps it)', async () => {
    await withFault('Azurite restarted mid-poll', {}, async (flow) => {
      let restart: Promise<void> | undefined;
      interceptSendEvent(flow.instances[0]!.services.sender, (send, call) => {
        if (call === 20)
          restart ??= flow.azurite
            .stop()
            .then(() => sleep(1_500))
            .then(() => flow.azurite.start());
        return send();
      });
      await flow.tick();
      await flow.runUntilQuiet();
      await restart;
      expect(restart, 'the restart happened').toBeDefined();
    });
  });

  it('the enricher crashing mid-batch, between the destinations of a fan-out', async () => {
    // Time is scaled down as a whole: the message lease (10 min in Azure) stays longer than the event claim's (2 min).
    await withFault('enricher crashes mid-batch', { leaseSeconds: 3 }, async (flow) => {
      const instance = flow.instances[0]!;
      const log = instance.deps.deliveryLog;
      const crashed = new Set<string>();
      const dead = new Set<string>();
      // The process dies right after the first destination of an event has its delivery: nothing after
      // that line runs (not even the claim's release), the message comes back when its lease runs out.
      instance.deps.deliveryLog = interceptDeliveryLog(log, {
        claim: (eventId: string, _leaseMs?: number, now?: Date) => log.claim(eventId, 2_000, now),
        recordDelivery: async (claim: EventClaim, destination: string, at?: Date) => {
          await log.recordDelivery(claim, destination, at);
          if (crashed.size < 6 && !crashed.has(claim.eventId)) {
            crashed.add(claim.eventId);
            dead.add(claim.eventId);
            throw new SimulatedCrash(`crash after the first delivery of ${claim.eventId}`);
          }
        },
        release: async (claim) => {
          if (dead.delete(claim.eventId)) return;
          await log.release(claim);
        },
      });
      // And the SIEM fails a few times: the fan-out's other destinations are served, the event retried.
      flow.standIns.receivers.siem.setFailures(4, 503);
      await flow.tick();
      await flow.runUntilQuiet();
      expect(crashed.size).toBe(6);
    });
  });

  it('a destination refusing some events for good (the dead-letter path)', async () => {
    const report = await withFault('SIEM refuses 5 events (400)', {}, async (flow) => {
      flow.standIns.receivers.siem.setFailures(5, 400);
    });
    expect(report.deadLettered).toBe(5);
    for (const reason of report.reasons) expect(reason).toMatch(/→ siem \(webhook → localhost:\d+\).*400/);
  });

  it('duplicate delivery: every event on the queue twice, copies side by side', async () => {
    await withFault('duplicate delivery', {}, async (flow) => {
      await flow.tick();
      await flow.runPollsUntilQuiet();
      expect(await flow.duplicateBacklog()).toBe(flow.seeded.size);
      await flow.runUntilQuiet();
    });
  });

  it.each([
    ['two', 2],
    ['three', 3],
  ] as const)('%s pollers (and enrichers) racing', async (count, instances) => {
    await withFault(`${count} pollers racing`, { instances }, async (flow) => {
      await flow.tick();
      await flow.runUntilQuiet();
      // The race happened: a poller lost the checkpoint after enqueueing, or an event came twice.
      const raced =
        flow.logs.some((l) => /: conflict, [1-9]\d* event/.test(l)) ||
        [...flow.outcomes.values()].flat().some((o) => o.status === 'duplicate');
      expect(raced, `the ${count} pollers raced`).toBe(true);
    });
  });

  it("three instances polling 50 more tenants with continuations, hunting and write-back: no 429 from Defender (the instances share each tenant's call budget)", async () => {
    // Defender allows each tenant 50 calls a minute to the incidents API and 45 to advanced hunting. Each extra
    // tenant holds 105 incidents: with pages of 100 and POLL_MAX_PAGES_PER_RUN 1 its first poll hands over to a
    // continuation, and no fewer would. About 75 of them are open, and each open one asks for a hunting query
    // (when it names devices) and a write-back: well over 100 calls wanted per tenant within the run, more than
    // Defender allows, which only the budget the three instances share (45 a minute, 35 of it for the poller
    // and enricher) keeps them under; three budgets of their own would allow 105. What the budget cannot serve
    // at once is skipped (both calls are optional), so the run is not paced by it: its time is that of 5,350
    // events through three instances (aimed at under 90 s on 2 cores; measured 177-200 s on 2 cores, and over 150 s in one CI run: to be tuned).
    const report = await withFault(
      '3 instances, 52 tenants, hunting + write-back',
      {
        instances: 3,
        singletonTimer: true,
        extraTenants: 50,
        incidentsPerExtraTenant: 105,
        appSettings: { POLL_MAX_PAGES_PER_RUN: '1' },
        routes: HUNT_AND_TAG_ROUTES,
        quietTimeoutMs: 330_000,
      },
      async (flow) => shortEnricherWaits(flow, 2_000),
      (flow) => {
        const stats = flow.standIns.defender.stats;
        const throttled = stats.snapshot().filter((s) => s.throttled > 0);
        expect(
          throttled.map((s) => `${s.tenantId}: ${s.throttled} of ${s.calls}`),
          '429s from Defender',
        ).toEqual([]);
        // Not vacuous: every extra tenant's poll handed over to a continuation, and each was hunted in and written back to.
        const continued = new Set(flow.logs.flatMap((l) => /^pollTenant (\S+): continued,/.exec(l)?.[1] ?? []));
        for (const tenantId of flow.extraTenantIds) {
          const { byEndpoint } = stats.for(tenantId, flow.partnerApp.clientId);
          expect(continued.has(tenantId), `${tenantId}: a poll continued`).toBe(true);
          expect(byEndpoint.listIncidents ?? 0, `${tenantId}: list pages`).toBeGreaterThanOrEqual(2);
          expect(byEndpoint.advancedHunting ?? 0, `${tenantId}: hunting queries`).toBeGreaterThan(0);
          expect(byEndpoint.updateIncident ?? 0, `${tenantId}: write-backs`).toBeGreaterThan(0);
        }
      },
    );
    expect(report.incidents).toBeGreaterThanOrEqual(50 * 105);
  }, 480_000);

  it("cross-tenant pushes from each tenant's own caller, and structures built to overflow the stack, during the run", async () => {
    await withFault('cross-tenant and deep pushes', {}, async (flow) => {
      await flow.tick();
      const [a, b] = flow.world.tenants as [(typeof flow.world.tenants)[0], (typeof flow.world.tenants)[0]];
      const services = flow.instances[0]!.services;
      const push = (signer: typeof a, target: typeof a, body: string) => {
        const signature = pushSignatureHeader(
          signer.pushKey.key,
          { tenantId: target.tenantId, method: 'POST', path: '/api/incidents' },
          body,
        );
        const request = deliveredRequest({
          method: 'POST',
          url: `http://localhost:7071/api/incidents?tenantId=${target.tenantId}`,
          headers: { 'content-type': 'application/json', 'x-relay-signature': signature },
          body: { string: body },
        });
        return pushIncidents(request, webhookPushDeps(services, flow.logger));
      };
      const statuses: Record<string, number> = {};
      const tally = (what: string) => (r: { status: number }) =>
        void (statuses[`${what} ${r.status}`] = (statuses[`${what} ${r.status}`] ?? 0) + 1);
      const pushedIds: string[] = [];
      const runs: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) {
        for (const [signer, target] of [
          [a, b],
          [b, a],
        ] as const) {
          const [incident] = generateIncidents({ tenantId: target.tenantId, count: 1, seed: `cross-${i}` });
          const forged = { ...incident!, incidentId: 880_000 + i, severity: 'High' };
          pushedIds.push(
            eventIdOf(target.tenantId, forged.incidentId, forged.lastUpdateTime),
            eventIdOf(signer.tenantId, 890_000 + i, forged.lastUpdateTime),
          );
          const deep = JSON.stringify({
            ...forged,
            incidentId: 890_000 + i,
            alerts: [{ alertId: 'x', entities: [{ entityType: 'File', nested: '__DEEP__' }] }],
          }).replace('"__DEEP__"', `${'['.repeat(5_000)}${']'.repeat(5_000)}`);
          runs.push(
            push(signer, target, JSON.stringify(forged)).then(tally('cross-tenant')),
            push(signer, signer, deep).then(tally('deep')),
          );
        }
      }
      await Promise.all(runs);
      await flow.runUntilQuiet();
      expect(statuses).toEqual({ 'cross-tenant 401': 40, 'deep 400': 40 });
      // Nothing of them was enqueued: no event of theirs exists for either tenant.
      for (const eventId of pushedIds) expect(await services.deliveryLog.isRouted(eventId), eventId).toBe(false);
    });
  });
});
