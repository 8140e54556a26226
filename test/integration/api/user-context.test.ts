import { randomUUID } from 'node:crypto';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { ClientSecretCredential, UsernamePasswordCredential } from '@azure/identity';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { generateIncidents } from '../../../local/defender/generator.js';
import { DEFENDER_RESOURCE, RELAY_USER_SCOPE } from '../../../local/demo.js';
import { registerDemoTenants } from '../../../local/stack.js';
import { loadConfig } from '../../../shared/config/config.js';
import { SIGNING_KEYS_UNAVAILABLE_MESSAGE } from '../../../shared/api/entra-token.js';
import { createServices, type Services } from '../../../shared/services.js';
import {
  listIncidentsForAnalyst,
  updateIncidentForAnalyst,
  type AnalystResponse,
} from '../../../shared/api/user-incidents.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * The user context end to end: the analyst signs in with the real SDK (ROPC against the Entra
 * stand-in), calls the analyst endpoints' handlers, and the relay acts on-behalf-of the analyst
 * against the Defender stand-in with the real OnBehalfOfCredential.
 */
describe('user context: analyst endpoints acting on-behalf-of the signed-in analyst', () => {
  let stack: TestStandIns;
  let services: Services;
  let logs: string[];
  const issuedTokens: string[] = [];

  beforeAll(async () => {
    stack = await startTestStandIns();
    await registerDemoTenants(stack.world, inject('storage').connectionString);
    services = createServices(loadConfig(stack.appSettings));
  }, 60_000);
  afterAll(() => stack?.close());
  beforeEach(() => {
    logs = [];
    stack.faults.clear();
  });

  const fabrikam = () => stack.world.tenants.find((t) => t.tenantId === stack.world.analyst.tenantId)!;
  const northwind = () => stack.world.tenants.find((t) => t.tenantId !== stack.world.analyst.tenantId)!;
  const authority = () => ({ authorityHost: stack.entra.url, disableInstanceDiscovery: true });

  async function signIn(
    user: { tenantId: string; userPrincipalName: string; password: string } = stack.world.analyst,
  ): Promise<string> {
    const credential = new UsernamePasswordCredential(
      user.tenantId,
      stack.world.analystClient.clientId,
      user.userPrincipalName,
      user.password,
      authority(),
    );
    const { token } = await credential.getToken(`${stack.world.relayApi.identifierUri}/${RELAY_USER_SCOPE}`);
    issuedTokens.push(token);
    return token;
  }

  /** A user in `tenantId` who may sign in to the relay API; the relay API gets `defenderScopes` there (none: no consent). */
  function analystIn(tenantId: string, defenderScopes: string[] = []) {
    const { registry } = stack.entra;
    const user = {
      tenantId,
      userPrincipalName: `analyst-${randomUUID().slice(0, 8)}@${tenantId.slice(0, 8)}.example`,
      password: randomUUID(),
      displayName: 'Test analyst',
    };
    registry.addUser(user);
    registry.consent(tenantId, stack.world.relayApi.clientId);
    registry.grantDelegatedPermissions(
      tenantId,
      stack.world.analystClient.clientId,
      stack.world.relayApi.identifierUri,
      [RELAY_USER_SCOPE],
    );
    if (defenderScopes.length > 0)
      registry.grantDelegatedPermissions(tenantId, stack.world.relayApi.clientId, DEFENDER_RESOURCE, defenderScopes);
    return user;
  }

  /** A new tenant, registered in the relay and in Defender, whose admin granted the relay API only `defenderScopes`. */
  async function tenantGranting(defenderScopes: string[]) {
    const tenantId = randomUUID();
    stack.entra.registry.addTenant({ tenantId, displayName: 'Contoso Read-Only' });
    stack.defender.store.provisionTenant(tenantId, 'Contoso Read-Only');
    const [incidentId] = stack.defender.store.upsert(tenantId, generateIncidents({ tenantId, count: 5, seed: 7 }));
    await services.registry.put({
      tenantId,
      displayName: 'Contoso Read-Only',
      context: 'application',
      clientId: randomUUID(),
      credential: { kind: 'secret', secretName: 'unused-by-analysts' },
    });
    return { tenantId, incidentId: incidentId!, user: analystIn(tenantId, defenderScopes) };
  }

  function context(): InvocationContext {
    return new InvocationContext({ logHandler: (_level, ...args) => logs.push(args.map(String).join(' ')) });
  }

  const list = (token: string | undefined, query = '') =>
    listIncidentsForAnalyst(
      new HttpRequest({
        method: 'GET',
        url: `http://localhost/api/incidents${query}`,
        headers: token ? { authorization: `Bearer ${token}` } : {},
      }),
      services.userContext,
      context(),
    );

  const patch = (token: string, tenantId: string, incidentId: number | string, body: unknown) =>
    updateIncidentForAnalyst(
      new HttpRequest({
        method: 'PATCH',
        url: `http://localhost/api/incidents/${tenantId}/${incidentId}`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: { string: JSON.stringify(body) },
        params: { tenantId, incidentId: String(incidentId) },
      }),
      services.userContext,
      context(),
    );

  const bodyOf = (r: AnalystResponse) => r.jsonBody as Record<string, unknown>;
  const incidentsOf = (r: AnalystResponse) =>
    bodyOf(r).incidents as { incidentId: number; status: string; assignedTo: string | null; lastUpdateTime: string }[];
  const expectNoTokenLogged = () => {
    for (const line of logs) {
      expect(line).not.toMatch(/eyJ[\w-]+\./);
      for (const token of issuedTokens) expect(line).not.toContain(token.slice(-20));
    }
  };

  it('lists only the analyst’s tenant’s incidents, a page at a time', async () => {
    const token = await signIn();
    const response = await list(token, '?top=100');
    expect(response.status).toBe(200);
    expect(bodyOf(response)).toMatchObject({ tenantId: fabrikam().tenantId, top: 100, skip: 0 });
    const ids = incidentsOf(response)
      .map((i) => i.incidentId)
      .sort();
    expect(ids).toEqual(
      stack.defender.store
        .list(fabrikam().tenantId)
        .map((i) => i.incidentId)
        .sort(),
    );
    const northwindIds = new Set(stack.defender.store.list(northwind().tenantId).map((i) => i.incidentId));
    expect(ids.some((id) => northwindIds.has(id))).toBe(false);

    const first = await list(token, '?top=10');
    const second = await list(token, '?top=10&skip=10');
    expect(incidentsOf(first)).toHaveLength(10);
    expect(bodyOf(second)).toMatchObject({ top: 10, skip: 10 });
    const overlap = incidentsOf(first).filter((a) => incidentsOf(second).some((b) => b.incidentId === a.incidentId));
    expect(overlap).toEqual([]);
    expectNoTokenLogged();
  });

  it('filters by status, assignee (me) and update time, as Defender filters', async () => {
    const token = await signIn();
    const all = stack.defender.store.list(fabrikam().tenantId);
    const [mine] = all.filter((i) => i.status === 'Active');
    stack.defender.store.update(
      fabrikam().tenantId,
      mine!.incidentId,
      (i) => void (i.assignedTo = stack.world.analyst.userPrincipalName),
    );

    const active = await list(token, '?status=Active&top=100');
    expect(active.status).toBe(200);
    expect(incidentsOf(active).length).toBe(
      stack.defender.store.list(fabrikam().tenantId).filter((i) => i.status === 'Active').length,
    );
    expect(incidentsOf(active).every((i) => i.status === 'Active')).toBe(true);

    const assigned = await list(token, '?assignedTo=me');
    expect(incidentsOf(assigned).map((i) => i.incidentId)).toContain(mine!.incidentId);
    expect(incidentsOf(assigned).every((i) => i.assignedTo === stack.world.analyst.userPrincipalName)).toBe(true);

    const since = new Date(Date.now() - 3 * 24 * 3600_000).toISOString();
    const recent = await list(token, `?updatedSince=${encodeURIComponent(since)}&top=100`);
    const expected = stack.defender.store
      .list(fabrikam().tenantId)
      .filter((i) => new Date(i.lastUpdateTime) >= new Date(since));
    expect(
      incidentsOf(recent)
        .map((i) => i.incidentId)
        .sort(),
    ).toEqual(expected.map((i) => i.incidentId).sort());

    // A quote in a value stays inside its OData literal: Defender sees a name, not a filter clause.
    const injected = await list(token, `?assignedTo=${encodeURIComponent("x' or status eq 'Active")}`);
    expect(injected.status).toBe(200);
    expect(incidentsOf(injected)).toEqual([]);
  });

  it('answers 400 listing every problem of a bad query, without calling Defender', async () => {
    const token = await signIn();
    const listCalls = () =>
      stack.defender.stats.for(fabrikam().tenantId, stack.world.relayApi.clientId).byEndpoint.listIncidents;
    const before = listCalls();
    expect(before).toBeGreaterThan(0);
    const response = await list(token, '?status=Open&top=500&skip=-1&updatedSince=yesterday&sort=asc');
    expect(response.status).toBe(400);
    const problems = (bodyOf(response).problems as string[]).join('\n');
    for (const name of ['status', 'top', 'skip', 'updatedSince', 'sort']) expect(problems).toContain(name);
    expect(listCalls()).toBe(before);
  });

  it('assigns an incident to the analyst and adds a comment as the analyst; the audit log names fields, not the comment', async () => {
    const token = await signIn();
    const tenantId = fabrikam().tenantId;
    const target = stack.defender.store.list(tenantId).find((i) => i.status === 'Active')!;
    const comment = `Looking into it ${randomUUID()}`;
    const response = await patch(token, tenantId, target.incidentId, {
      assignedTo: 'me',
      status: 'InProgress',
      comment,
      tags: ['triage'],
    });
    expect(response.status).toBe(200);
    expect(bodyOf(response)).toMatchObject({
      incidentId: target.incidentId,
      assignedTo: stack.world.analyst.userPrincipalName,
      status: 'InProgress',
      tags: ['triage'],
    });

    const stored = stack.defender.store.get(tenantId, target.incidentId)!;
    expect(stored).toMatchObject({
      assignedTo: stack.world.analyst.userPrincipalName,
      status: 'InProgress',
      tags: ['triage'],
    });
    expect(stored.comments!.at(-1)).toMatchObject({ comment, createdBy: stack.world.analyst.userPrincipalName });

    const audit = logs.find((l) => l.includes(`Incident ${target.incidentId}`))!;
    expect(audit).toContain(stack.world.analyst.userPrincipalName);
    expect(audit).toContain(tenantId);
    expect(audit).toContain('status, assignedTo, tags, comment');
    expect(logs.join('\n')).not.toContain(comment);
    expectNoTokenLogged();
  });

  it('passes on an update the update page allows: FalsePositive with Clean', async () => {
    const token = await signIn();
    const tenantId = fabrikam().tenantId;
    const target = stack.defender.store
      .list(tenantId)
      .find((i) => i.classification !== 'TruePositive' && i.status !== 'Resolved')!;
    const answer = await patch(token, tenantId, target.incidentId, {
      classification: 'FalsePositive',
      determination: 'Clean',
      status: 'Resolved',
    });
    expect(answer.status).toBe(200);
    expect(stack.defender.store.get(tenantId, target.incidentId)).toMatchObject({
      classification: 'FalsePositive',
      determination: 'Clean',
      status: 'Resolved',
    });
  });

  it('refuses a determination that does not go with the classification (400) and leaves the incident unchanged', async () => {
    const token = await signIn();
    const tenantId = fabrikam().tenantId;
    const target = stack.defender.store.list(tenantId).find((i) => i.classification !== 'TruePositive')!;
    const before = structuredClone(stack.defender.store.get(tenantId, target.incidentId));

    const local = await patch(token, tenantId, target.incidentId, {
      classification: 'FalsePositive',
      determination: 'Malware',
    });
    expect(local.status).toBe(400);
    expect(JSON.stringify(bodyOf(local))).toContain('Malware does not go with classification FalsePositive');

    // Without a classification in the body, Defender judges against the incident's own, and its 400 is passed on.
    const remote = await patch(token, tenantId, target.incidentId, { determination: 'Malware' });
    expect(remote.status).toBe(400);
    expect(String(bodyOf(remote).error)).toContain(
      `'Malware' is not valid with classification '${target.classification}'`,
    );
    expect(stack.defender.store.get(tenantId, target.incidentId)).toEqual(before);
  });

  it('validates the update: unknown fields, a long comment, a bad id → 400; another tenant in the path → 403; unknown incident → 404', async () => {
    const token = await signIn();
    const tenantId = fabrikam().tenantId;
    const id = stack.defender.store.list(tenantId)[0]!.incidentId;

    const unknown = await patch(token, tenantId, id, { Status: 'Resolved', severity: 'Low' });
    expect(unknown.status).toBe(400);
    expect(JSON.stringify(bodyOf(unknown))).toMatch(/Status.*severity/);
    expect((await patch(token, tenantId, id, { comment: 'x'.repeat(1001) })).status).toBe(400);
    expect((await patch(token, tenantId, id, { tags: 'urgent' })).status).toBe(400);
    expect((await patch(token, tenantId, 'abc', { status: 'Resolved' })).status).toBe(400);

    const otherTenant = await patch(token, northwind().tenantId, id, { status: 'Resolved' });
    expect(otherTenant.status).toBe(403);
    expect(String(bodyOf(otherTenant).error)).toContain(northwind().tenantId);

    const missing = await patch(token, tenantId, 999_999_999, { status: 'Resolved' });
    expect(missing.status).toBe(404);
  });

  it('refuses tokens that are not an analyst’s token for the relay API', async () => {
    expect((await list(undefined)).status).toBe(401);

    const { webhookClient } = stack.world;
    const appOnly = (
      await new ClientSecretCredential(
        webhookClient.tenantId,
        webhookClient.clientId,
        webhookClient.clientSecret,
        authority(),
      ).getToken(webhookClient.scope)
    ).token;
    issuedTokens.push(appOnly);
    const appResponse = await list(appOnly);
    expect(appResponse.status).toBe(403);
    expect(String(bodyOf(appResponse).error)).toContain('acts for a signed-in user');

    const user = stack.entra.registry.user(stack.world.analyst.userPrincipalName)!;
    const claims = {
      tenantId: user.tenantId,
      clientId: stack.world.analystClient.clientId,
      objectId: user.objectId,
      scopes: [RELAY_USER_SCOPE],
      user: { upn: user.userPrincipalName, name: user.displayName },
    };
    const otherAudience = await stack.entra.issuer.issueAccessToken({
      ...claims,
      audience: 'api://someone-else',
      version: 2,
    });
    const otherResponse = await list(otherAudience.token);
    expect(otherResponse.status).toBe(401);
    expect(String(bodyOf(otherResponse).error)).toContain('audience');

    const expired = await stack.entra.issuer.issueAccessToken({
      ...claims,
      audience: stack.world.relayApi.clientId,
      version: 2,
      lifetimeSeconds: -600,
    });
    const expiredResponse = await list(expired.token);
    expect(expiredResponse.status).toBe(401);
    expect(String(bodyOf(expiredResponse).error)).toContain('expired');

    const noScope = await stack.entra.issuer.issueAccessToken({
      ...claims,
      scopes: ['something_else'],
      audience: stack.world.relayApi.clientId,
      version: 2,
    });
    const noScopeResponse = await list(noScope.token);
    expect(noScopeResponse.status).toBe(403);
    expect(String(bodyOf(noScopeResponse).error)).toContain(RELAY_USER_SCOPE);
    issuedTokens.push(otherAudience.token, expired.token, noScope.token);
    expectNoTokenLogged();
  });

  describe('token versions: the relay API registration decides v1.0 (the default) or v2.0', () => {
    const claimsOf = (token: string) =>
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    /** The analyst's token as the stand-in issues it: v1.0, the registration leaving accessTokenAcceptedVersion null. */
    async function genuineV1(): Promise<Record<string, unknown>> {
      const claims = claimsOf(await signIn());
      expect(claims).toMatchObject({
        ver: '1.0',
        iss: `https://sts.windows.net/${fabrikam().tenantId}/`,
        aud: stack.world.relayApi.identifierUri,
        appid: stack.world.analystClient.clientId,
        upn: stack.world.analyst.userPrincipalName,
      });
      expect(claims.azp).toBeUndefined();
      expect(claims.preferred_username).toBeUndefined();
      return claims;
    }
    async function signed(claims: Record<string, unknown>): Promise<string> {
      const token = await stack.entra.issuer.signClaims(claims);
      issuedTokens.push(token);
      return token;
    }

    it('refuses an analyst token carrying the issuer of the other version, validly signed (401)', async () => {
      const claims = await genuineV1();
      const tenantId = fabrikam().tenantId;
      for (const token of [
        await signed({ ...claims, iss: `${stack.entra.url}/${tenantId}/v2.0` }),
        await signed({
          ...claims,
          ver: '2.0',
          azp: claims.appid,
          appid: undefined,
          aud: stack.world.relayApi.clientId,
        }),
      ]) {
        const response = await list(token);
        expect(response.status).toBe(401);
        expect(String(bodyOf(response).error)).toContain('issuer form of its version');
      }
      expectNoTokenLogged();
    });

    it('never takes the user of a v1.0 token from preferred_username (a v2.0 claim): without upn, "me" names nobody (400)', async () => {
      const { upn: _upn, unique_name: _uniqueName, ...claims } = await genuineV1();
      const token = await signed({ ...claims, preferred_username: 'someone-else@fabrikam.example' });
      const response = await list(token, '?assignedTo=me');
      expect(response.status).toBe(400);
      expect(JSON.stringify(bodyOf(response))).toContain("'me' needs");
    });

    it('serves the analyst token as issued (v1.0): the user from upn, "me" resolved, Defender called on their behalf', async () => {
      await genuineV1();
      const tenantId = fabrikam().tenantId;
      const [mine] = stack.defender.store.list(tenantId);
      stack.defender.store.update(
        tenantId,
        mine!.incidentId,
        (i) => void (i.assignedTo = stack.world.analyst.userPrincipalName),
      );
      const response = await list(await signIn(), '?assignedTo=me&top=100');
      expect(response.status).toBe(200);
      expect(incidentsOf(response).map((i) => i.incidentId)).toContain(mine!.incidentId);
      expect(incidentsOf(response).every((i) => i.assignedTo === stack.world.analyst.userPrincipalName)).toBe(true);
    });

    it('serves v2.0 analyst tokens once the registration sets accessTokenAcceptedVersion 2: aud = the client id, the user from preferred_username', async () => {
      stack.entra.registry.setAccessTokenVersion(stack.world.relayApi.clientId, 2);
      try {
        const token = await signIn();
        const claims = claimsOf(token);
        expect(claims).toMatchObject({
          ver: '2.0',
          aud: stack.world.relayApi.clientId,
          azp: stack.world.analystClient.clientId,
          preferred_username: stack.world.analyst.userPrincipalName,
        });
        expect(claims.upn).toBeUndefined();
        const tenantId = fabrikam().tenantId;
        const target = stack.defender.store.list(tenantId).find((i) => i.status === 'Active')!;
        const response = await patch(token, tenantId, target.incidentId, { assignedTo: 'me' });
        expect(response.status).toBe(200);
        expect(stack.defender.store.get(tenantId, target.incidentId)!.assignedTo).toBe(
          stack.world.analyst.userPrincipalName,
        );
        const mine = await list(token, '?assignedTo=me&top=100');
        expect(mine.status).toBe(200);
        expect(incidentsOf(mine).map((i) => i.incidentId)).toContain(target.incidentId);
      } finally {
        stack.entra.registry.setAccessTokenVersion(stack.world.relayApi.clientId, 1);
      }
      expectNoTokenLogged();
    });
  });

  it('refuses an analyst of a tenant the relay does not serve (403)', async () => {
    const tenantId = randomUUID();
    stack.entra.registry.addTenant({ tenantId, displayName: 'Unregistered Ltd' });
    const token = await signIn(analystIn(tenantId, ['Incident.ReadWrite']));
    const response = await list(token);
    expect(response.status).toBe(403);
    expect(String(bodyOf(response).error)).toContain(`${tenantId} is not registered`);
  });

  it('refuses an analyst of a tenant that is disabled in the relay (403)', async () => {
    const disabled = await tenantGranting(['Incident.ReadWrite']);
    await services.registry.setEnabled(disabled.tenantId, false);
    const response = await list(await signIn(disabled.user));
    expect(response.status).toBe(403);
    expect(String(bodyOf(response).error)).toContain('disabled');
  });

  it('explains missing delegated consent for Defender (AADSTS65001) as 403', async () => {
    const token = await signIn(analystIn(northwind().tenantId));
    const response = await list(token);
    expect(response.status).toBe(403);
    const error = String(bodyOf(response).error);
    expect(error).toContain('AADSTS65001');
    expect(error).toContain('consent');
    expect(error).toContain(northwind().tenantId);
    expect(stack.defender.stats.for(northwind().tenantId, stack.world.relayApi.clientId).calls).toBe(0);
    expectNoTokenLogged();
  });

  it('lets an analyst with only Incident.Read list, and refuses the update naming Incident.ReadWrite', async () => {
    const readOnly = await tenantGranting(['Incident.Read']);
    const token = await signIn(readOnly.user);
    const listed = await list(token);
    expect(listed.status).toBe(200);
    expect(incidentsOf(listed)).toHaveLength(5);

    const before = structuredClone(stack.defender.store.get(readOnly.tenantId, readOnly.incidentId));
    const response = await patch(token, readOnly.tenantId, readOnly.incidentId, { status: 'Resolved' });
    expect(response.status).toBe(403);
    expect(String(bodyOf(response).error)).toContain('delegated permission Incident.ReadWrite');
    // Refused by the relay's own scp check: Defender never saw the call.
    expect(
      stack.defender.stats.for(readOnly.tenantId, stack.world.relayApi.clientId).byEndpoint.updateIncident,
    ).toBeUndefined();
    expect(stack.defender.store.get(readOnly.tenantId, readOnly.incidentId)).toEqual(before);
  });

  it('retries Defender 503s and answers 200; a 429 longer than it waits becomes 503 with Retry-After', async () => {
    const token = await signIn();
    await list(token, '?top=1'); // warm: the on-behalf-of token is cached
    stack.faults.add('defender', { kind: 'status', status: 503 }, 2, '/api/incidents');
    const recovered = await list(token, '?top=5');
    expect(recovered.status).toBe(200);
    expect(incidentsOf(recovered)).toHaveLength(5);
    expect(stack.faults.list()).toEqual([]);

    // On a tenant of its own: the 429 holds that tenant's incident list for two minutes.
    const held = await tenantGranting(['Incident.Read']);
    const heldToken = await signIn(held.user);
    expect((await list(heldToken, '?top=1')).status).toBe(200);
    stack.faults.add('defender', { kind: 'status', status: 429, retryAfterSeconds: 120 }, 1, '/api/incidents');
    const throttled = await list(heldToken, '?top=5');
    expect(throttled.status).toBe(503);
    expect(throttled.headers).toEqual({ 'Retry-After': '120' });
    // The next click within the Retry-After is answered without calling Defender (every instance knows).
    const listedBefore = stack.defender.stats.for(held.tenantId, stack.world.relayApi.clientId).byEndpoint
      .listIncidents;
    expect(listedBefore).toBeGreaterThanOrEqual(2);
    const again = await list(heldToken, '?top=5');
    expect(again.status).toBe(503);
    expect(Number(again.headers?.['Retry-After'])).toBeGreaterThan(100);
    expect(stack.defender.stats.for(held.tenantId, stack.world.relayApi.clientId).byEndpoint.listIncidents).toBe(
      listedBefore,
    );
    // Another tenant's analysts are not held back.
    expect((await list(token, '?top=1')).status).toBe(200);
    expectNoTokenLogged();
  });

  it('answers 503 when Entra ID is unreachable for the exchange', async () => {
    const token = await signIn();
    stack.faults.add('entra', { kind: 'outage' }, Infinity, '/oauth2/v2.0/token');
    try {
      const response = await list(token);
      expect(response.status).toBe(503);
      expect(String(bodyOf(response).error)).toContain('Entra ID could not be reached');
    } finally {
      stack.faults.clear();
    }
    expect((await list(token)).status).toBe(200);
  });

  it("answers 503 with Retry-After, not 401, when Entra ID's signing keys cannot be fetched to verify the analyst's token; the log says so", async () => {
    const token = await signIn();
    // An instance that has not fetched the keys yet.
    const cold = createServices(loadConfig(stack.appSettings));
    const listOn = () =>
      listIncidentsForAnalyst(
        new HttpRequest({
          method: 'GET',
          url: 'http://localhost/api/incidents',
          headers: { authorization: `Bearer ${token}` },
        }),
        cold.userContext,
        context(),
      );
    for (const [fault, reason] of [
      [{ kind: 'outage' }, /no answer/],
      [{ kind: 'status', status: 503, retryAfterSeconds: 0 }, /HTTP 503/],
    ] as const) {
      stack.faults.add('entra', fault, Infinity, '/discovery/');
      try {
        logs = [];
        const response = await listOn();
        expect(response.status).toBe(503);
        expect(bodyOf(response).error).toBe(SIGNING_KEYS_UNAVAILABLE_MESSAGE);
        expect(response.headers).toEqual({ 'Retry-After': '10' });
        expect(logs.join('\n')).toContain(
          `Entra ID's signing keys could not be fetched from ${stack.entra.url}/${fabrikam().tenantId}/discovery/keys`,
        );
        expect(logs.join('\n')).toMatch(reason);
      } finally {
        stack.faults.clear();
      }
    }
    expect((await listOn()).status).toBe(200);
  });

  it('answers 401 to a token of a tenant Entra ID does not know (its keys are refused, not unavailable)', async () => {
    const stranger = await stack.entra.issuer.issueAccessToken({
      tenantId: randomUUID(),
      audience: stack.world.relayApi.identifierUri,
      clientId: stack.world.analystClient.clientId,
      objectId: randomUUID(),
      scopes: [RELAY_USER_SCOPE],
      user: { upn: 'someone@elsewhere.example', name: 'Someone' },
    });
    const response = await list(stranger.token);
    expect(response.status).toBe(401);
    expect(response.headers).toBeUndefined();
  });

  it('exchanges a user’s token once and reuses the Defender token for later calls', async () => {
    await signIn(); // the app identity's Key Vault token and the relay API secret are warm after earlier calls
    await list(await signIn(), '?top=1');
    const token = await signIn();
    const tokenRequests: string[] = [];
    const take = stack.faults.take.bind(stack.faults);
    stack.faults.take = (target, path) => {
      if (target === 'entra' && path.endsWith('/oauth2/v2.0/token')) tokenRequests.push(path);
      return take(target, path);
    };
    const exchangesBefore = services.userContext.exchanges;
    try {
      expect((await list(token, '?top=1')).status).toBe(200);
      expect((await list(token, '?top=2')).status).toBe(200);
      const target = stack.defender.store.list(fabrikam().tenantId)[1]!;
      expect((await patch(token, fabrikam().tenantId, target.incidentId, { tags: ['cached'] })).status).toBe(200);
    } finally {
      stack.faults.take = take;
    }
    expect(services.userContext.exchanges - exchangesBefore).toBe(1);
    expect(tokenRequests).toHaveLength(1);
  });

  it('re-reads the relay API secret once when Entra refuses it (rotation) and carries on', async () => {
    const { relayApi } = stack.world;
    const rotated = `rotated-${randomUUID()}`;
    stack.entra.registry.addSecret(relayApi.clientId, rotated);
    await stack.keyVault.store.setSecret(stack.appSettings.RELAY_API_SECRET_NAME!, rotated);
    stack.entra.registry.removeSecret(relayApi.clientId, relayApi.clientSecret);
    const readsBefore = services.secretCache.reads;
    const response = await list(await signIn(), '?top=1');
    expect(response.status).toBe(200);
    expect(services.secretCache.reads - readsBefore).toBe(1);
    expectNoTokenLogged();
    expect(logs.join('\n')).not.toContain(rotated);
  });
});
