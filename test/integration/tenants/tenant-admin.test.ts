import { randomUUID } from 'node:crypto';
import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tenantCheck } from '../../../functions/tenantCheck.js';
import { tenantConsentLink } from '../../../functions/tenantConsentLink.js';
import { tenantGet } from '../../../functions/tenantGet.js';
import { tenantRemove } from '../../../functions/tenantRemove.js';
import { tenantsAdd } from '../../../functions/tenantsAdd.js';
import { tenantsList } from '../../../functions/tenantsList.js';
import { tenantUpdate } from '../../../functions/tenantUpdate.js';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { appSettingsFor, registerDemoTenants } from '../../../local/stack.js';
import { TENANT_CREDENTIAL_TAGS } from '../../../shared/auth/credential-fence.js';
import type { TenantCheck } from '../../../shared/tenants/doctor.js';
import { getServices } from '../../../shared/services.js';
import type { TenantView } from '../../../shared/tenants/tenant-admin.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';
import { deliveredRequest } from '../../support/host-request.js';

/**
 * The tenant admin endpoints, called as the host calls them (HttpRequest → handler → plain response),
 * on an Azurite of this file's own (they use the app's real table names) and the stand-ins.
 */
describe('tenant admin endpoints', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let logs: string[] = [];
  const originalEnv = { ...process.env };

  beforeAll(async () => {
    [stack, azurite] = await Promise.all([startTestStandIns(), startAzurite({ extentMemoryLimitMb: 64 })]);
    await registerDemoTenants(stack.world, azurite.connectionString);
    // The handlers build their services from the process's settings, as in the Functions host.
    Object.assign(process.env, appSettingsFor(stack.world, azurite.connectionString, stack));
  }, 60_000);
  afterAll(async () => {
    process.env = originalEnv;
    await Promise.all([stack?.close(), azurite?.stop()]);
  });
  beforeEach(() => {
    logs = [];
  });

  /** The fields the answers carry (tenant, list, check, consent link or error). */
  type AnswerBody = Partial<TenantView & TenantCheck> & { tenants: TenantView[]; problems: string[]; error: string };
  type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;
  async function call(
    handler: Handler,
    method: string,
    path: string,
    options: { params?: Record<string, string>; body?: unknown } = {},
  ) {
    const body =
      options.body === undefined
        ? undefined
        : { string: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) };
    const request = deliveredRequest({
      method,
      url: `http://localhost:7071/api/${path}`,
      params: options.params ?? {},
      body,
      headers: body ? { 'content-type': 'application/json' } : {},
    });
    const context = new InvocationContext({ logHandler: (_level, ...args) => logs.push(args.join(' ')) });
    const response = await handler(request, context);
    return response as { status: number; jsonBody?: AnswerBody; headers?: Record<string, string> };
  }
  const byId = (tenantId: string) => ({ params: { tenantId } });
  const demo = (context: 'application' | 'partner') => stack.world.tenants.find((t) => t.context === context)!;
  const newTenant = () => ({
    tenantId: randomUUID(),
    displayName: 'Contoso Pharma',
    context: 'partner',
    clientId: demo('partner').clientId,
    credential: { kind: 'secret', secretName: demo('partner').clientSecretName },
  });
  const expectNoSecret = (response: unknown) => {
    const text = JSON.stringify(response) + logs.join('\n');
    for (const secret of [stack.world.appIdentity.clientSecret, ...stack.world.apps.map((a) => a.clientSecret)])
      expect(text).not.toContain(secret);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
  };

  it('lists the registered tenants with their last poll', async () => {
    await getServices().tenantStatus.recordPoll(demo('application').tenantId, {
      outcome: 'polled',
      eventsEnqueued: 60,
      checkpoint: '2026-11-23T10:00:00Z',
    });
    const response = await call(tenantsList, 'GET', 'tenants');
    expect(response.status).toBe(200);
    const fabrikam = response.jsonBody!.tenants.find((t) => t.tenantId === demo('application').tenantId);
    expect(fabrikam).toMatchObject({
      displayName: 'Fabrikam',
      context: 'application',
      enabled: true,
      credential: { kind: 'secret', secretName: demo('application').clientSecretName },
      lastPoll: { outcome: 'polled', eventsEnqueued: 60, at: expect.any(String) },
    });
    const northwind = response.jsonBody!.tenants.find((t) => t.tenantId === demo('partner').tenantId);
    expect(northwind!.lastPoll).toEqual({ eventsEnqueued: 0 });
    expectNoSecret(response);
  });

  it('adds a tenant (201 + Location), reads it back, and replaces it on a second POST (200)', async () => {
    const input = newTenant();
    const created = await call(tenantsAdd, 'POST', 'tenants', { body: input });
    expect(created).toMatchObject({
      status: 201,
      headers: { location: `/api/tenants/${input.tenantId}` },
      jsonBody: { ...input, enabled: true, firstRunLookbackHours: 168 },
    });

    const read = await call(tenantGet, 'GET', `tenants/${input.tenantId}`, byId(input.tenantId.toUpperCase()));
    expect(read).toMatchObject({
      status: 200,
      jsonBody: { tenantId: input.tenantId, displayName: 'Contoso Pharma', lastPoll: { eventsEnqueued: 0 } },
    });

    const replaced = await call(tenantsAdd, 'POST', 'tenants', {
      body: { ...input, displayName: 'Contoso Pharma EU', firstRunLookbackHours: 48 },
    });
    expect(replaced).toMatchObject({
      status: 200,
      jsonBody: { displayName: 'Contoso Pharma EU', firstRunLookbackHours: 48 },
    });
    expect(await getServices().registry.get(input.tenantId)).toMatchObject({
      displayName: 'Contoso Pharma EU',
      firstRunLookbackHours: 48,
    });
  });

  it('refuses an invalid tenant with 400 listing every problem, and stores nothing', async () => {
    const before = (await getServices().registry.list()).length;
    const response = await call(tenantsAdd, 'POST', 'tenants', {
      body: {
        tenantId: 'contoso.onmicrosoft.com',
        displayName: '',
        context: 'user',
        clientId: randomUUID(),
        credential: { kind: 'secret', secretName: 'no spaces!' },
      },
    });
    expect(response.status).toBe(400);
    expect(response.jsonBody!.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^tenantId: must be a GUID/),
        expect.stringMatching(/^displayName: must not be empty/),
        expect.stringMatching(/^context:/),
        expect.stringMatching(/^credential.secretName: must be a Key Vault secret name/),
      ]),
    );
    expect(await call(tenantsAdd, 'POST', 'tenants', { body: '{"tenantId":' })).toMatchObject({
      status: 400,
      jsonBody: { error: expect.stringMatching(/not valid JSON/) },
    });
    expect(await call(tenantsAdd, 'POST', 'tenants', { body: '' })).toMatchObject({
      status: 400,
      jsonBody: { error: expect.stringMatching(/body is empty/) },
    });
    expect((await getServices().registry.list()).length).toBe(before);
  });

  it('accepts a credential only when it names a tenant credential: an untagged secret is refused (400), a secret not stored yet is accepted with a warning', async () => {
    const before = (await getServices().registry.list()).length;
    const untagged = `tenant-untagged-${randomUUID().slice(0, 8)}`;
    stack.keyVault.store.setSecret(untagged, 'a-client-secret-value-untagged');
    const refused = await call(tenantsAdd, 'POST', 'tenants', {
      body: { ...newTenant(), credential: { kind: 'certificate', secretName: untagged } },
    });
    expect(refused).toMatchObject({ status: 400, jsonBody: { error: 'The tenant is not valid' } });
    expect(refused.jsonBody!.problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^credential.secretName: Key Vault secret '${untagged}' is not tagged as a tenant credential .*az keyvault secret set-attributes --vault-name \\S+ --name ${untagged} --tags defender-relay=tenant-credential`,
        ),
      ),
    ]);
    expect(JSON.stringify(refused)).not.toContain('a-client-secret-value-untagged');
    expect((await getServices().registry.list()).length).toBe(before);

    // Tagged, it is accepted with no warning.
    stack.keyVault.store.updateProperties(untagged, undefined, { tags: TENANT_CREDENTIAL_TAGS });
    const tagged = await call(tenantsAdd, 'POST', 'tenants', {
      body: { ...newTenant(), credential: { kind: 'certificate', secretName: untagged } },
    });
    expect(tagged.status).toBe(201);
    expect(tagged.jsonBody).not.toHaveProperty('warnings');

    // Not in Key Vault yet (onboarding registers the tenant first): accepted, with what to do.
    const missing = `tenant-later-${randomUUID().slice(0, 8)}`;
    const input = { ...newTenant(), enabled: false, credential: { kind: 'secret', secretName: missing } };
    const accepted = await call(tenantsAdd, 'POST', 'tenants', { body: input });
    expect(accepted).toMatchObject({ status: 201, jsonBody: { tenantId: input.tenantId, enabled: false } });
    expect((accepted.jsonBody as { warnings?: string[] }).warnings).toEqual([
      expect.stringMatching(
        new RegExp(
          `^Key Vault has no secret '${missing}' yet: store the tenant's client secret under that name with --tags defender-relay=tenant-credential`,
        ),
      ),
    ]);
    expectNoSecret(accepted);
  });

  it('disables, renames and re-enables a tenant with PATCH, validating the change', async () => {
    const input = newTenant();
    await call(tenantsAdd, 'POST', 'tenants', { body: input });
    const disabled = await call(tenantUpdate, 'PATCH', `tenants/${input.tenantId}`, {
      ...byId(input.tenantId),
      body: { enabled: false, displayName: 'Contoso (paused)' },
    });
    expect(disabled).toMatchObject({
      status: 200,
      jsonBody: { enabled: false, displayName: 'Contoso (paused)', context: 'partner' },
    });
    expect((await getServices().registry.list({ enabledOnly: true })).map((t) => t.tenantId)).not.toContain(
      input.tenantId,
    );

    expect(await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: {} })).toMatchObject({
      status: 400,
      jsonBody: { problems: [expect.stringMatching(/at least one of enabled/)] },
    });
    expect(
      await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { tenantId: randomUUID() } }),
    ).toMatchObject({
      status: 400,
      jsonBody: {
        problems: [
          'tenantId: cannot be changed with PATCH, only enabled, displayName, firstRunLookbackHours, source can (POST /api/tenants replaces a whole tenant)',
        ],
      },
    });
    expect(await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { enabled: 'yes' } })).toMatchObject({
      status: 400,
      jsonBody: { problems: [expect.stringMatching(/^enabled:/)] },
    });
    expect(
      await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { firstRunLookbackHours: 0 } }),
    ).toMatchObject({ status: 400, jsonBody: { problems: [expect.stringMatching(/^firstRunLookbackHours:/)] } });

    const enabled = await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { enabled: true } });
    expect(enabled).toMatchObject({ status: 200, jsonBody: { enabled: true, displayName: 'Contoso (paused)' } });

    // Moving the tenant to Microsoft Graph (its admin granted Graph's permissions instead), and a source that is none.
    const moved = await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { source: 'graph' } });
    expect(moved).toMatchObject({ status: 200, jsonBody: { source: 'graph', displayName: 'Contoso (paused)' } });
    expect(await getServices().registry.get(input.tenantId)).toMatchObject({ source: 'graph' });
    expect(
      await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { source: 'splunk' } }),
    ).toMatchObject({ status: 400, jsonBody: { problems: [expect.stringMatching(/^source:/)] } });
  });

  it('removes a tenant (204), after which it is 404 everywhere', async () => {
    const input = newTenant();
    await call(tenantsAdd, 'POST', 'tenants', { body: input });
    expect(await call(tenantRemove, 'DELETE', '', byId(input.tenantId))).toEqual({ status: 204 });
    for (const [handler, method] of [
      [tenantGet, 'GET'],
      [tenantRemove, 'DELETE'],
      [tenantCheck, 'GET'],
      [tenantConsentLink, 'GET'],
    ] as const) {
      expect(await call(handler, method, '', byId(input.tenantId))).toEqual({
        status: 404,
        jsonBody: { error: `Tenant ${input.tenantId} is not registered` },
      });
    }
    expect(await call(tenantUpdate, 'PATCH', '', { ...byId(input.tenantId), body: { enabled: true } })).toMatchObject({
      status: 404,
    });
  });

  it('answers 400 for a tenant id that is not a GUID', async () => {
    for (const [handler, method] of [
      [tenantGet, 'GET'],
      [tenantRemove, 'DELETE'],
      [tenantCheck, 'GET'],
      [tenantConsentLink, 'GET'],
      [tenantUpdate, 'PATCH'],
    ] as const) {
      const response = await call(handler, method, '', {
        ...byId('fabrikam'),
        ...(method === 'PATCH' ? { body: { enabled: true } } : {}),
      });
      expect(response).toMatchObject({
        status: 400,
        jsonBody: { error: expect.stringMatching(/^'fabrikam' is not a tenant id: a tenant id is a GUID/) },
      });
    }
  });

  it('checks a tenant: 200 with ok and the steps, or ok:false with the cause', async () => {
    const ok = await call(tenantCheck, 'GET', '', byId(demo('partner').tenantId));
    expect(ok.status).toBe(200);
    expect(ok.jsonBody).toMatchObject({
      ok: true,
      tenantId: demo('partner').tenantId,
      token: { tid: demo('partner').tenantId, roles: expect.arrayContaining(['Incident.Read.All']) },
    });
    expect(ok.jsonBody!.steps!.map((s) => s.status)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expectNoSecret(ok);

    // A partner tenant whose admin has not consented yet.
    const pending = newTenant();
    stack.entra.registry.addTenant({ tenantId: pending.tenantId, displayName: pending.displayName });
    await call(tenantsAdd, 'POST', 'tenants', { body: pending });
    const failed = await call(tenantCheck, 'GET', '', byId(pending.tenantId));
    expect(failed).toMatchObject({
      status: 200,
      jsonBody: { ok: false, cause: expect.stringContaining('AADSTS700016') },
    });
    expect(failed.jsonBody!.cause).toContain(`client_id=${pending.clientId}`);
    expectNoSecret(failed);
  });

  it('gives the admin-consent link of a partner tenant, and 409 for an application-context tenant', async () => {
    const partner = demo('partner');
    const link = await call(tenantConsentLink, 'GET', '', byId(partner.tenantId));
    expect(link).toMatchObject({
      status: 200,
      jsonBody: {
        tenantId: partner.tenantId,
        clientId: partner.clientId,
        consentLink: `${stack.entra.url}/common/oauth2/authorize?prompt=consent&client_id=${partner.clientId}&response_type=code`,
        steps: [
          expect.stringMatching(/Global Administrator/),
          expect.any(String),
          expect.stringContaining(`npm run doctor -- --tenant ${partner.tenantId}`),
        ],
      },
    });
    const application = await call(tenantConsentLink, 'GET', '', byId(demo('application').tenantId));
    expect(application).toMatchObject({
      status: 409,
      jsonBody: { error: expect.stringMatching(/uses the application context/) },
    });
  });
});
