import { randomUUID } from 'node:crypto';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../local/azurite.js';
import { createSelfSignedCert } from '../../local/common/tls.js';
import { generateIncidents } from '../../local/defender/generator.js';
import { DEFENDER_APP_ROLES, DEFENDER_RESOURCE } from '../../local/demo.js';
import { appSettingsFor, registerDemoTenants } from '../../local/stack.js';
import { loadConfig } from '../../shared/config.js';
import { envelopeSchema, type IncidentEnvelope } from '../../shared/events.js';
import { handlePollRequest } from '../../shared/ingest-handlers.js';
import { pollRequest, pollTenant, pollRequestSchema, type PollRequest } from '../../shared/ingest.js';
import { QUEUE_NAMES } from '../../shared/queues.js';
import { createServices, type Services } from '../../shared/services.js';
import { drainQueue } from '../support/queues.js';
import { startTestStandIns, type TestStandIns } from '../support/stand-ins.js';

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
  const log = { info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) };

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 256 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    services = createServices(loadConfig(appSettingsFor(stack.world, azurite.connectionString, stack)));
    queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([stack?.close(), azurite?.stop()]);
  });

  const tenant = (context: 'application' | 'partner') => stack.world.tenants.find((t) => t.context === context)!;

  const drain = (queueName: string) => drainQueue(queues, queueName);
  const drainEvents = async () => (await drain(QUEUE_NAMES.incidents)) as IncidentEnvelope[];

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

  it.each(['application', 'partner'] as const)('delivers every incident of the %s-context tenant once, then only what changed', async (context) => {
    const t = tenant(context);
    await drainEvents();
    const [first] = await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
    const events = await drainEvents();
    expect(first).toMatchObject({ status: 'polled', enqueued: t.incidentCount });
    expect(events).toHaveLength(t.incidentCount);
    expect(new Set(events.map((e) => e.incidentId)).size).toBe(t.incidentCount);
    for (const e of events) {
      expect(envelopeSchema.safeParse(e).success).toBe(true);
      expect(e).toMatchObject({ tenantId: t.tenantId, source: 'poll', eventId: `${t.tenantId}:${e.incidentId}:${e.lastUpdateTime}` });
      expect(e.incident!.incidentId).toBe(e.incidentId);
    }
    const original = stack.defender.store.get(t.tenantId, events[0]!.incidentId)!;
    expect(events[0]!.incident).toEqual(original); // the incident travels unmodified

    // Nothing changed: nothing new.
    const [second] = await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
    expect(second!.enqueued).toBe(0);
    expect(await drainEvents()).toEqual([]);

    // One incident changes in the portal: exactly that version arrives.
    const changed = stack.defender.store.update(t.tenantId, original.incidentId, (i) => void (i.assignedTo = 'tier2@contoso.example'))!;
    await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
    const news = await drainEvents();
    expect(news.map((e) => e.eventId)).toEqual([`${t.tenantId}:${changed.incidentId}:${changed.lastUpdateTime}`]);
    expect(news[0]!.incident!.assignedTo).toBe('tier2@contoso.example');
  });

  it('pages through 1,050 incidents in bounded runs with follow-up requests, losing and repeating nothing', async () => {
    const t = tenant('application');
    const bulkTenant = randomUUID();
    stack.entra.registry.addTenant({ tenantId: bulkTenant, displayName: 'Bulk' });
    const app = stack.world.apps.find((a) => a.clientId === t.clientId)!;
    const partnerApp = stack.world.apps.find((a) => a.multiTenant)!;
    stack.entra.registry.grantAppPermissions(bulkTenant, partnerApp.clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES);
    stack.defender.store.provisionTenant(bulkTenant, 'Bulk');
    stack.defender.store.upsert(bulkTenant, generateIncidents({ tenantId: bulkTenant, count: 1050, seed: 'bulk', since: new Date(Date.now() - 86_400_000) }));
    await services.registry.put({ tenantId: bulkTenant, displayName: 'Bulk', context: 'partner', clientId: partnerApp.clientId, credential: { kind: 'secret', secretName: 'partner-app-client-secret' } });
    expect(app).toBeDefined();

    await drainEvents();
    const outcomes = await pollToTheEnd(pollRequest(bulkTenant, 'manual'), { maxPagesPerRun: 3 });
    const events = await drainEvents();
    expect(outcomes.map((o) => o.status)).toEqual(['continued', 'continued', 'continued', 'polled']);
    expect(events).toHaveLength(1050);
    expect(new Set(events.map((e) => e.eventId)).size).toBe(1050);
    expect((await services.checkpoints.get(bulkTenant)).lastUpdateTime).toBeDefined();
  }, 60_000);

  it('rides out a 429 storm and 5xx bursts with nothing lost', async () => {
    const t = tenant('partner');
    await services.checkpoints.get(t.tenantId); // warm
    const changed = stack.defender.store.update(t.tenantId, stack.defender.store.list(t.tenantId)[0]!.incidentId, (i) => void (i.tags = ['storm']))!;
    stack.faults.add('defender', { kind: 'status', status: 429, retryAfterSeconds: 1 }, 2);
    stack.faults.add('defender', { kind: 'status', status: 503 }, 2);
    await drainEvents();
    const [outcome] = await pollToTheEnd(pollRequest(t.tenantId, 'manual'));
    expect(outcome!.status).toBe('polled');
    expect((await drainEvents()).map((e) => e.eventId)).toContain(`${t.tenantId}:${changed.incidentId}:${changed.lastUpdateTime}`);
    expect(stack.faults.list()).toEqual([]);
  }, 30_000);

  it('lets one of two racing pollers advance the checkpoint, delivering every change at least once', async () => {
    const t = tenant('application');
    const changedIds = stack.defender.store.list(t.tenantId).slice(0, 5).map((i) => stack.defender.store.update(t.tenantId, i.incidentId, (x) => void (x.tags = ['race']))!);
    await drainEvents();
    const outcomes = await Promise.all([pollTenant(pollRequest(t.tenantId, 'manual'), services), pollTenant(pollRequest(t.tenantId, 'manual'), services)]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['conflict', 'polled']);
    const delivered = new Set((await drainEvents()).map((e) => e.eventId));
    for (const c of changedIds) expect(delivered.has(`${t.tenantId}:${c.incidentId}:${c.lastUpdateTime}`)).toBe(true);
  });

  it('names the cause when a tenant fails, and other tenants are unaffected', async () => {
    const app = tenant('application');
    const partner = tenant('partner');
    const partnerApp = stack.world.apps.find((a) => a.multiTenant)!;
    const cases: { name: string; breakIt: () => Promise<void> | void; mendIt: () => Promise<void> | void; expected: RegExp }[] = [
      {
        name: 'wrong secret in Key Vault',
        breakIt: async () => {
          await stack.keyVault.store.setSecret(app.clientSecretName, 'not-the-secret');
          await services.secretCache.refresh(app.clientSecretName);
        },
        mendIt: async () => void (await stack.keyVault.store.setSecret(app.clientSecretName, stack.world.apps.find((a) => a.clientId === app.clientId)!.clientSecret)),
        expected: /AADSTS7000215/,
      },
      {
        name: 'consent revoked in the partner tenant',
        breakIt: () => stack.entra.registry.revokeConsent(partner.tenantId, partnerApp.clientId),
        mendIt: () => stack.entra.registry.grantAppPermissions(partner.tenantId, partnerApp.clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES),
        expected: /AADSTS700016/,
      },
    ];
    for (const c of cases) {
      const victim = c.name.includes('partner') ? partner : app;
      const bystander = victim === app ? partner : app;
      await c.breakIt();
      services.tokens.invalidate((await services.registry.get(victim.tenantId)));
      logs.length = 0;
      expect(await handlePollRequest(pollRequest(victim.tenantId, 'manual'), services, log)).toBeUndefined();
      const status = await services.tenantStatus.get(victim.tenantId);
      expect(status, c.name).toMatchObject({ lastOutcome: 'failed', lastError: expect.stringMatching(c.expected) });
      expect(logs.join('\n')).toMatch(new RegExp(`pollTenant ${victim.tenantId} failed \\(not retried\\)`));
      expect(await handlePollRequest(pollRequest(bystander.tenantId, 'manual'), services, log)).toMatchObject({ status: 'polled' });
      await c.mendIt();
      services.tokens.invalidate((await services.registry.get(victim.tenantId)));
      await services.secretCache.refresh(victim.clientSecretName);
      expect(await handlePollRequest(pollRequest(victim.tenantId, 'manual'), services, log), `${c.name} mended`).toMatchObject({ status: 'polled' });
    }
    for (const secret of [stack.world.appIdentity.clientSecret, ...stack.world.apps.map((a) => a.clientSecret), 'not-the-secret']) {
      expect(logs.join('\n')).not.toContain(secret);
    }
  }, 60_000);

  it('polls a tenant whose app authenticates with a certificate kept in Key Vault', async () => {
    const tenantId = randomUUID();
    const clientId = randomUUID();
    const { key, cert } = createSelfSignedCert('tailspin-defender-reader');
    stack.entra.registry.addTenant({ tenantId, displayName: 'Tailspin Toys' });
    stack.entra.registry.addApp({ clientId, displayName: 'tailspin-defender-reader', homeTenantId: tenantId, multiTenant: false, certificates: [cert] });
    stack.entra.registry.grantAppPermissions(tenantId, clientId, DEFENDER_RESOURCE, DEFENDER_APP_ROLES);
    await stack.keyVault.store.setSecret('tenant-tailspin-certificate', `${key}\n${cert}`);
    stack.defender.store.provisionTenant(tenantId, 'Tailspin Toys');
    stack.defender.store.upsert(tenantId, generateIncidents({ tenantId, count: 12, seed: 'tailspin', since: new Date(Date.now() - 86_400_000) }));
    await services.registry.put({ tenantId, displayName: 'Tailspin Toys', context: 'application', clientId, credential: { kind: 'certificate', secretName: 'tenant-tailspin-certificate' } });
    await drainEvents();
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toMatchObject({ status: 'polled', enqueued: 12 });
    expect((await drainEvents()).every((e) => e.tenantId === tenantId)).toBe(true);
    await services.registry.setEnabled(tenantId, false);
  });

  it('names a missing Defender permission, and other tenants are unaffected', async () => {
    const tenantId = randomUUID();
    const clientId = randomUUID();
    stack.entra.registry.addTenant({ tenantId, displayName: 'Limited' });
    stack.entra.registry.addApp({ clientId, displayName: 'hunting-only', homeTenantId: tenantId, multiTenant: false, secrets: ['limited-secret-value'] });
    stack.entra.registry.grantAppPermissions(tenantId, clientId, DEFENDER_RESOURCE, ['AdvancedHunting.Read.All']);
    await stack.keyVault.store.setSecret('tenant-limited-client-secret', 'limited-secret-value');
    stack.defender.store.provisionTenant(tenantId, 'Limited');
    await services.registry.put({ tenantId, displayName: 'Limited', context: 'application', clientId, credential: { kind: 'secret', secretName: 'tenant-limited-client-secret' } });
    logs.length = 0;
    expect(await handlePollRequest(pollRequest(tenantId, 'manual'), services, log)).toBeUndefined();
    expect(await services.tenantStatus.get(tenantId)).toMatchObject({ lastOutcome: 'failed', lastError: expect.stringMatching(/403.*Incident\.Read\.All/) });
    expect(await handlePollRequest(pollRequest(tenant('partner').tenantId, 'manual'), services, log)).toMatchObject({ status: 'polled' });
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
    await stack.keyVault.store.setSecret(t.clientSecretName, rotated);
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
});
