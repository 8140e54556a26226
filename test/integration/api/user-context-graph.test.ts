import { randomUUID } from 'node:crypto';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { UsernamePasswordCredential } from '@azure/identity';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { generateIncidents } from '../../../local/defender/generator.js';
import { DEFENDER_RESOURCE, GRAPH_RESOURCE, RELAY_USER_SCOPE } from '../../../local/demo.js';
import { generateGraphIncidents } from '../../../local/graph/server.js';
import { registerDemoTenants } from '../../../local/stack.js';
import { loadConfig } from '../../../shared/config/config.js';
import { createServices, type Services } from '../../../shared/services.js';
import {
  listIncidentsForAnalyst,
  updateIncidentForAnalyst,
  type AnalystResponse,
} from '../../../shared/api/user-incidents.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * The analyst endpoints for a tenant read through Microsoft Graph, end to end: the analyst signs in with
 * the real SDK (ROPC against the Entra stand-in), the relay exchanges that token on-behalf-of the analyst
 * for a Graph token with the real OnBehalfOfCredential, and calls the Graph stand-in. Woodgrove is the demo
 * world's Graph tenant (consented to the partner app for Graph roles only); its analyst, and the relay
 * API's delegated permission to Graph there, are this file's own set-up.
 */
describe('user context through Microsoft Graph: the analyst endpoints for a Graph tenant', () => {
  let stack: TestStandIns;
  let services: Services;
  let logs: string[];
  const issuedTokens: string[] = [];
  /** Every call the relay sent to an incident API: where, and the token's audience, tenant and scopes. */
  const sent: { origin: string; path: string; method: string; aud: string; tid: string; scp: string }[] = [];
  const realFetch = globalThis.fetch;

  let woodgrove: { tenantId: string; displayName: string };
  let woodgroveAnalyst: { tenantId: string; userPrincipalName: string; password: string };
  /** A second Graph tenant whose incident ids are none of Woodgrove's, nor any Defender tenant's. */
  let tailspin: { tenantId: string; ids: string[] };

  beforeAll(async () => {
    stack = await startTestStandIns();
    await registerDemoTenants(stack.world, inject('storage').connectionString);
    services = createServices(loadConfig(stack.appSettings));
    globalThis.fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : input.toString());
      const origins = [new URL(stack.graph.url).origin, new URL(stack.defender.url).origin];
      if (origins.includes(url.origin)) {
        const headers = new Headers(init?.headers);
        const claims = decodeJwt(headers.get('authorization')!.replace(/^Bearer /, ''));
        sent.push({
          origin: url.origin,
          path: url.pathname,
          method: init?.method ?? 'GET',
          aud: String(claims.aud),
          tid: String(claims.tid),
          scp: String(claims.scp ?? ''),
        });
      }
      return realFetch(input, init);
    };
    const demo = stack.world.tenants.find((t) => t.source === 'graph')!;
    woodgrove = { tenantId: demo.tenantId, displayName: demo.displayName };
    woodgroveAnalyst = analystIn(woodgrove.tenantId, { graph: ['SecurityIncident.ReadWrite.All'] });
    tailspin = await graphTenant('Tailspin Toys', { graph: ['SecurityIncident.ReadWrite.All'] }, 900_000_000);
  }, 60_000);
  afterAll(() => {
    globalThis.fetch = realFetch;
    return stack?.close();
  });
  beforeEach(() => {
    logs = [];
    stack.faults.clear();
  });

  const fabrikam = () => stack.world.tenants.find((t) => t.tenantId === stack.world.analyst.tenantId)!;
  const partnerApp = () => stack.world.apps.find((a) => a.multiTenant)!;
  const relayClientId = () => stack.world.relayApi.clientId;
  const graphStats = (tenantId: string) => stack.graph.stats.for(tenantId, relayClientId());
  const defenderStats = (tenantId: string) => stack.defender.stats.for(tenantId, relayClientId());
  const graphOrigin = () => new URL(stack.graph.url).origin;
  const defenderOrigin = () => new URL(stack.defender.url).origin;

  async function signIn(user: { tenantId: string; userPrincipalName: string; password: string }): Promise<string> {
    const credential = new UsernamePasswordCredential(
      user.tenantId,
      stack.world.analystClient.clientId,
      user.userPrincipalName,
      user.password,
      { authorityHost: stack.entra.url, disableInstanceDiscovery: true },
    );
    const { token } = await credential.getToken(`${stack.world.relayApi.identifierUri}/${RELAY_USER_SCOPE}`);
    issuedTokens.push(token);
    return token;
  }

  /** A user in `tenantId` who may sign in to the relay API; the relay API gets the delegated permissions given, per API. */
  function analystIn(tenantId: string, grants: { graph?: string[]; defender?: string[] }) {
    const { registry } = stack.entra;
    const user = {
      tenantId,
      userPrincipalName: `analyst-${randomUUID().slice(0, 8)}@${tenantId.slice(0, 8)}.example`,
      password: randomUUID(),
      displayName: 'Graph test analyst',
    };
    registry.addUser(user);
    registry.consent(tenantId, relayClientId());
    registry.grantDelegatedPermissions(
      tenantId,
      stack.world.analystClient.clientId,
      stack.world.relayApi.identifierUri,
      [RELAY_USER_SCOPE],
    );
    if (grants.graph?.length)
      registry.grantDelegatedPermissions(tenantId, relayClientId(), GRAPH_RESOURCE, grants.graph);
    if (grants.defender?.length)
      registry.grantDelegatedPermissions(tenantId, relayClientId(), DEFENDER_RESOURCE, grants.defender);
    return user;
  }

  /** A new partner tenant read through Graph (seeded in the Graph stand-in), registered in the relay. */
  async function graphTenant(displayName: string, grants: { graph?: string[]; defender?: string[] }, startId?: number) {
    const tenantId = randomUUID();
    stack.entra.registry.addTenant({ tenantId, displayName });
    stack.graph.store.provisionTenant(tenantId, displayName);
    const ids = stack.graph.store.upsert(tenantId, generateGraphIncidents({ tenantId, count: 5, seed: 11, startId }));
    await services.registry.put({
      tenantId,
      displayName,
      context: 'partner',
      source: 'graph',
      clientId: partnerApp().clientId,
      credential: { kind: 'secret', secretName: 'partner-app-client-secret' },
    });
    return { tenantId, ids, user: analystIn(tenantId, grants) };
  }

  function context(): InvocationContext {
    return new InvocationContext({ logHandler: (_level, ...args) => logs.push(args.map(String).join(' ')) });
  }

  const list = (token: string, query = '') =>
    listIncidentsForAnalyst(
      new HttpRequest({
        method: 'GET',
        url: `http://localhost/api/incidents${query}`,
        headers: { authorization: `Bearer ${token}` },
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

  type Listed = { id: string; tenantId: string; status: string; assignedTo: string | null; alerts?: unknown[] };
  const bodyOf = (r: AnalystResponse) => r.jsonBody as Record<string, unknown>;
  const incidentsOf = (r: AnalystResponse) => bodyOf(r).incidents as Listed[];
  const expectNoTokenLogged = () => {
    for (const line of logs) {
      expect(line).not.toMatch(/eyJ[\w-]+\./);
      for (const token of issuedTokens) expect(line).not.toContain(token.slice(-20));
    }
  };
  /** Every token the relay sent was for the API it was sent to, and for the tenant given. */
  const expectTokensMatchTheirApi = () => {
    for (const call of sent) {
      if (call.origin === graphOrigin()) expect(call.aud).toBe(GRAPH_RESOURCE);
      else expect(call.aud).toBe(DEFENDER_RESOURCE);
    }
  };

  describe('hostile: tenants and APIs stay apart', () => {
    it('never sends a Defender token to Graph nor a Graph token to Defender, for one analyst token as its tenant moves between sources', async () => {
      // A tenant both APIs hold (seeded alike), whose admin granted the relay API both delegated permissions.
      const tenantId = randomUUID();
      const displayName = 'Litware (moving)';
      stack.entra.registry.addTenant({ tenantId, displayName });
      const generate = { tenantId, count: 5, seed: 5 };
      stack.defender.store.provisionTenant(tenantId, displayName);
      stack.defender.store.upsert(tenantId, generateIncidents(generate));
      stack.graph.store.provisionTenant(tenantId, displayName);
      stack.graph.store.upsert(tenantId, generateGraphIncidents(generate));
      const registration = {
        tenantId,
        displayName,
        context: 'partner',
        clientId: partnerApp().clientId,
        credential: { kind: 'secret', secretName: 'partner-app-client-secret' },
      } as const;
      await services.registry.put({ ...registration, source: 'defender' });
      const user = analystIn(tenantId, {
        graph: ['SecurityIncident.ReadWrite.All'],
        defender: ['Incident.ReadWrite'],
      });
      const token = await signIn(user);
      const sentBefore = sent.length;
      const exchangesBefore = services.userContext.exchanges;

      const throughDefender = await list(token);
      expect(throughDefender.status).toBe(200);
      expect(bodyOf(throughDefender).api).toBe('defender');

      // The registry moves the tenant to Graph: the cached Defender token must not be what Graph gets.
      await services.registry.put({ ...registration, source: 'graph' });
      const throughGraph = await list(token);
      expect(throughGraph.status).toBe(200);
      expect(bodyOf(throughGraph).api).toBe('graph');
      expect(incidentsOf(throughGraph).map((i) => i.id)).toHaveLength(5);
      expect((await patch(token, tenantId, incidentsOf(throughGraph)[0]!.id, { tags: ['moved'] })).status).toBe(200);

      // And back: the Defender token is still cached for Defender, and only for Defender.
      await services.registry.put({ ...registration, source: 'defender' });
      expect((await list(token)).status).toBe(200);

      // One exchange per API, each token kept to its own.
      expect(services.userContext.exchanges - exchangesBefore).toBe(2);
      const calls = sent.slice(sentBefore);
      expect(calls.filter((c) => c.origin === graphOrigin()).length).toBeGreaterThanOrEqual(2);
      expect(calls.filter((c) => c.origin === defenderOrigin()).length).toBe(2);
      for (const call of calls) {
        expect(call.tid).toBe(tenantId);
        expect(call.aud).toBe(call.origin === graphOrigin() ? GRAPH_RESOURCE : DEFENDER_RESOURCE);
        expect(call.scp).toBe(call.origin === graphOrigin() ? 'SecurityIncident.ReadWrite.All' : 'Incident.ReadWrite');
      }
      // Neither API ever refused a token (a token for the other API would be a 401 there).
      expect(graphStats(tenantId).errors).toBe(0);
      expect(defenderStats(tenantId).errors).toBe(0);
      expectTokensMatchTheirApi();
      expectNoTokenLogged();
    });

    it('lists only the Graph analyst’s own tenant’s incidents, as Graph gives them', async () => {
      const token = await signIn(woodgroveAnalyst);
      const response = await list(token, '?top=50');
      expect(response.status).toBe(200);
      expect(bodyOf(response)).toMatchObject({ tenantId: woodgrove.tenantId, api: 'graph', top: 50, skip: 0 });
      const incidents = incidentsOf(response);
      expect(incidents.map((i) => i.id).sort()).toEqual(
        stack.graph.store
          .list(woodgrove.tenantId)
          .map((i) => i.id)
          .sort(),
      );
      expect(incidents.every((i) => i.tenantId === woodgrove.tenantId)).toBe(true);
      expect(incidents.some((i) => tailspin.ids.includes(i.id))).toBe(false);
      // Graph's shape: string ids, lower-camel enums, the alerts expanded.
      expect(incidents.every((i) => typeof i.id === 'string' && Array.isArray(i.alerts))).toBe(true);
      expect(incidents.every((i) => /^[a-z]/.test(i.status))).toBe(true);
      // Defender was not asked, and no call went out for another tenant.
      expect(defenderStats(woodgrove.tenantId).calls).toBe(0);
      expect(sent.filter((c) => c.origin === graphOrigin()).every((c) => c.tid !== fabrikam().tenantId)).toBe(true);
      expectTokensMatchTheirApi();
      expectNoTokenLogged();
    });

    it('refuses a Graph analyst’s update of another tenant’s incident: another tenant in the path (403), another Graph tenant’s id (404)', async () => {
      const token = await signIn(woodgroveAnalyst);
      const defenderTarget = stack.defender.store.list(fabrikam().tenantId)[0]!;
      const defenderBefore = structuredClone(defenderTarget);
      const graphUpdatesBefore = graphStats(woodgrove.tenantId).byEndpoint.updateIncident ?? 0;

      for (const other of [fabrikam().tenantId, tailspin.tenantId]) {
        const response = await patch(token, other, defenderTarget.incidentId, { status: 'Resolved' });
        expect(response.status).toBe(403);
        expect(String(bodyOf(response).error)).toContain(`cannot change incidents of tenant ${other}`);
      }
      expect(stack.defender.store.get(fabrikam().tenantId, defenderTarget.incidentId)).toEqual(defenderBefore);

      // Its own tenant in the path, another Graph tenant's incident id: Graph answers for the token's tenant only.
      const foreignId = tailspin.ids[0]!;
      const foreignBefore = structuredClone(stack.graph.store.get(tailspin.tenantId, foreignId));
      const missing = await patch(token, woodgrove.tenantId, foreignId, { status: 'Resolved', comment: 'mine now' });
      expect(missing.status).toBe(404);
      expect(String(bodyOf(missing).error)).toContain('No such incident');
      expect(stack.graph.store.get(tailspin.tenantId, foreignId)).toEqual(foreignBefore);
      expect(graphStats(tailspin.tenantId).byEndpoint.updateIncident).toBeUndefined();
      expect(graphStats(woodgrove.tenantId).byEndpoint.updateIncident).toBe(graphUpdatesBefore + 1);
      expect(graphStats(woodgrove.tenantId).byEndpoint.createComment).toBeUndefined();
      expectTokensMatchTheirApi();
    });

    it('keeps a Defender analyst on Defender: a Graph tenant in the path is 403, a Graph tenant’s id is Defender’s 404', async () => {
      const token = await signIn(stack.world.analyst);
      const foreignId = tailspin.ids[1]!;
      const foreignBefore = structuredClone(stack.graph.store.get(tailspin.tenantId, foreignId));
      const woodgroveTarget = stack.graph.store.list(woodgrove.tenantId)[0]!;
      const woodgroveBefore = structuredClone(woodgroveTarget);

      const otherPath = await patch(token, woodgrove.tenantId, woodgroveTarget.id, { status: 'Resolved' });
      expect(otherPath.status).toBe(403);
      const ownPath = await patch(token, fabrikam().tenantId, foreignId, { status: 'Resolved' });
      expect(ownPath.status).toBe(404);
      const listed = await list(token);
      expect(bodyOf(listed)).toMatchObject({ api: 'defender', tenantId: fabrikam().tenantId });

      expect(stack.graph.store.get(tailspin.tenantId, foreignId)).toEqual(foreignBefore);
      expect(stack.graph.store.get(woodgrove.tenantId, woodgroveTarget.id)).toEqual(woodgroveBefore);
      // Fabrikam's analyst never reached Graph.
      expect(graphStats(fabrikam().tenantId).calls).toBe(0);
      expect(sent.filter((c) => c.tid === fabrikam().tenantId).every((c) => c.origin === defenderOrigin())).toBe(true);
      expectTokensMatchTheirApi();
    });

    it('lets an analyst with only SecurityIncident.Read.All list, and refuses the update naming SecurityIncident.ReadWrite.All (403)', async () => {
      const readOnly = await graphTenant('Adatum (read-only)', { graph: ['SecurityIncident.Read.All'] });
      const token = await signIn(readOnly.user);
      const listed = await list(token);
      expect(listed.status).toBe(200);
      expect(incidentsOf(listed)).toHaveLength(5);

      const id = readOnly.ids[0]!;
      const before = structuredClone(stack.graph.store.get(readOnly.tenantId, id));
      for (const body of [{ status: 'Resolved' }, { comment: 'only a comment' }]) {
        const response = await patch(token, readOnly.tenantId, id, body);
        expect(response.status).toBe(403);
        const error = String(bodyOf(response).error);
        expect(error).toContain(
          'The delegated permission SecurityIncident.ReadWrite.All to Microsoft Graph is missing',
        );
        expect(error).toContain('SecurityIncident.Read.All');
        expect(error).toContain(readOnly.tenantId);
      }
      // Refused by the relay's own scp check: Graph never saw a write (nor the read a comment alone starts with).
      const stats = graphStats(readOnly.tenantId);
      expect(stats.byEndpoint.updateIncident).toBeUndefined();
      expect(stats.byEndpoint.createComment).toBeUndefined();
      expect(stats.byEndpoint.getIncident).toBeUndefined();
      expect(stack.graph.store.get(readOnly.tenantId, id)).toEqual(before);
    });

    it('explains a Graph tenant whose admin granted the relay API only Defender’s delegated permissions (AADSTS65001, 403 naming Graph’s)', async () => {
      const defenderOnly = await graphTenant('Proseware (Defender consent only)', { defender: ['Incident.ReadWrite'] });
      const token = await signIn(defenderOnly.user);
      const response = await list(token);
      expect(response.status).toBe(403);
      const error = String(bodyOf(response).error);
      expect(error).toContain('AADSTS65001');
      expect(error).toContain('no delegated consent to Microsoft Graph');
      expect(error).toContain('SecurityIncident.Read.All');
      expect(error).toContain(defenderOnly.tenantId);
      // Nothing was sent anywhere: not to Graph without a token, and not Defender's token to Defender either.
      expect(graphStats(defenderOnly.tenantId).calls).toBe(0);
      expect(defenderStats(defenderOnly.tenantId).calls).toBe(0);
      expectNoTokenLogged();
    });

    it('answers 400 to a page over Graph’s 50 and to a bad query, without a token exchange or a call to Graph', async () => {
      const token = await signIn(woodgroveAnalyst);
      const listsBefore = graphStats(woodgrove.tenantId).byEndpoint.listIncidents ?? 0;
      const exchangesBefore = services.userContext.exchanges;
      const tooMany = await list(token, '?top=100');
      expect(tooMany.status).toBe(400);
      expect(JSON.stringify(bodyOf(tooMany))).toContain(
        'top: must be between 1 and 50 for a tenant read through Microsoft Graph',
      );
      const bad = await list(token, '?status=active&sort=asc');
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bodyOf(bad))).toMatch(/status.*sort|sort.*status/);
      expect(graphStats(woodgrove.tenantId).byEndpoint.listIncidents ?? 0).toBe(listsBefore);
      expect(services.userContext.exchanges).toBe(exchangesBefore);
    });
  });

  describe('round trip against the Graph stand-in', () => {
    it('pages by skip and filters by status, assignee (me) and update time, in Graph’s terms', async () => {
      const token = await signIn(woodgroveAnalyst);
      const tenantId = woodgrove.tenantId;
      const first = await list(token, '?top=10');
      const second = await list(token, '?top=10&skip=10');
      expect(incidentsOf(first)).toHaveLength(10);
      expect(bodyOf(second)).toMatchObject({ api: 'graph', top: 10, skip: 10 });
      expect(incidentsOf(second)).toHaveLength(10);
      const overlap = incidentsOf(first).filter((a) => incidentsOf(second).some((b) => b.id === a.id));
      expect(overlap).toEqual([]);

      const [mine] = stack.graph.store.list(tenantId).filter((i) => i.status === 'active');
      stack.graph.store.update(tenantId, mine!.id, (i) => void (i.assignedTo = woodgroveAnalyst.userPrincipalName));

      const active = await list(token, '?status=Active');
      expect(active.status).toBe(200);
      expect(
        incidentsOf(active)
          .map((i) => i.id)
          .sort(),
      ).toEqual(
        stack.graph.store
          .list(tenantId)
          .filter((i) => i.status === 'active')
          .map((i) => i.id)
          .sort(),
      );

      const assigned = await list(token, '?assignedTo=me');
      expect(incidentsOf(assigned).map((i) => i.id)).toEqual([mine!.id]);

      const since = new Date(Date.now() - 3 * 24 * 3600_000).toISOString();
      const recent = await list(token, `?updatedSince=${encodeURIComponent(since)}`);
      expect(
        incidentsOf(recent)
          .map((i) => i.id)
          .sort(),
      ).toEqual(
        stack.graph.store
          .list(tenantId)
          .filter((i) => new Date(i.lastUpdateDateTime) >= new Date(since))
          .map((i) => i.id)
          .sort(),
      );

      // A quote in a value stays inside its literal: Graph sees a name, not a clause.
      const injected = await list(token, `?assignedTo=${encodeURIComponent("x' or status eq 'active")}`);
      expect(injected.status).toBe(200);
      expect(incidentsOf(injected)).toEqual([]);
      expectTokensMatchTheirApi();
    });

    it('assigns, resolves, tags and comments as the analyst through Graph; the audit log names fields, not the comment', async () => {
      const token = await signIn(woodgroveAnalyst);
      const tenantId = woodgrove.tenantId;
      const target = stack.graph.store
        .list(tenantId)
        .find((i) => i.status !== 'resolved' && i.status !== 'redirected')!;
      const comment = `Benign, closing ${randomUUID()}`;
      const before = graphStats(tenantId).byEndpoint;
      const response = await patch(token, tenantId, target.id, {
        assignedTo: 'me',
        status: 'Resolved',
        classification: 'FalsePositive',
        determination: 'Clean',
        tags: ['triage', 'graph'],
        comment,
      });
      expect(response.status).toBe(200);
      // Graph's incident as Graph answered it, with the comments its comments endpoint answered.
      const body = bodyOf(response);
      expect(body).toMatchObject({
        id: target.id,
        assignedTo: woodgroveAnalyst.userPrincipalName,
        status: 'resolved',
        classification: 'falsePositive',
        determination: 'notMalicious',
        customTags: ['triage', 'graph'],
      });
      expect((body.comments as unknown[]).at(-1)).toMatchObject({
        comment,
        createdByDisplayName: woodgroveAnalyst.userPrincipalName,
      });

      const stored = stack.graph.store.get(tenantId, target.id)!;
      expect(stored).toMatchObject({
        assignedTo: woodgroveAnalyst.userPrincipalName,
        status: 'resolved',
        classification: 'falsePositive',
        determination: 'notMalicious',
        customTags: ['triage', 'graph'],
        lastModifiedBy: woodgroveAnalyst.userPrincipalName,
      });
      expect(stored.comments.at(-1)).toMatchObject({
        comment,
        createdByDisplayName: woodgroveAnalyst.userPrincipalName,
      });
      // One PATCH and one comment; no read.
      const after = graphStats(tenantId).byEndpoint;
      expect((after.updateIncident ?? 0) - (before.updateIncident ?? 0)).toBe(1);
      expect((after.createComment ?? 0) - (before.createComment ?? 0)).toBe(1);
      expect(after.getIncident ?? 0).toBe(before.getIncident ?? 0);

      const audit = logs.find((l) => l.includes(`Incident ${target.id}`))!;
      expect(audit).toContain(woodgroveAnalyst.userPrincipalName);
      expect(audit).toContain(tenantId);
      expect(audit).toContain('status, assignedTo, classification, determination, tags, comment');
      expect(logs.join('\n')).not.toContain(comment);
      expectTokensMatchTheirApi();
      expectNoTokenLogged();
    });

    it('adds a comment alone through the comments endpoint and answers the incident with it, fields untouched', async () => {
      const token = await signIn(woodgroveAnalyst);
      const tenantId = woodgrove.tenantId;
      const target = stack.graph.store.list(tenantId)[3]!;
      const before = structuredClone(target);
      const statsBefore = graphStats(tenantId).byEndpoint;
      const comment = `Looking into it ${randomUUID()}`;
      const response = await patch(token, tenantId, target.id, { comment });
      expect(response.status).toBe(200);
      const body = bodyOf(response);
      expect(body).toMatchObject({ id: target.id, status: before.status, customTags: before.customTags });
      expect((body.comments as { comment: string }[]).map((c) => c.comment)).toContain(comment);
      const stored = stack.graph.store.get(tenantId, target.id)!;
      expect(stored.comments).toHaveLength(before.comments.length + 1);
      expect(stored).toMatchObject({ status: before.status, assignedTo: before.assignedTo });
      const after = graphStats(tenantId).byEndpoint;
      expect(after.updateIncident ?? 0).toBe(statsBefore.updateIncident ?? 0);
      expect((after.createComment ?? 0) - (statsBefore.createComment ?? 0)).toBe(1);
    });

    it('says the fields were set when Graph then fails the comment, so a resend adds it once', async () => {
      const token = await signIn(woodgroveAnalyst);
      const tenantId = woodgrove.tenantId;
      const target = stack.graph.store.list(tenantId).find((i) => i.status === 'active')!;
      stack.faults.add('graph', { kind: 'status', status: 403 }, 1, '/comments');
      const comment = `Taking it ${randomUUID()}`;
      const failed = await patch(token, tenantId, target.id, { status: 'InProgress', comment });
      expect(failed.status).toBe(502);
      expect(String(bodyOf(failed).error)).toContain(
        `Incident ${target.id} was updated (status), but Microsoft Graph did not add the comment`,
      );
      expect(stack.graph.store.get(tenantId, target.id)).toMatchObject({ status: 'inProgress' });
      expect(stack.graph.store.get(tenantId, target.id)!.comments.some((c) => c.comment === comment)).toBe(false);

      const resent = await patch(token, tenantId, target.id, { status: 'InProgress', comment });
      expect(resent.status).toBe(200);
      expect(stack.graph.store.get(tenantId, target.id)!.comments.filter((c) => c.comment === comment)).toHaveLength(1);
      expect(logs.join('\n')).not.toContain(comment);
    });

    it('passes Graph’s 404 on as 404, and validates the body as for Defender (400) without calling Graph', async () => {
      const token = await signIn(woodgroveAnalyst);
      const tenantId = woodgrove.tenantId;
      const id = stack.graph.store.list(tenantId)[0]!.id;
      expect((await patch(token, tenantId, 999_999_999, { status: 'Resolved' })).status).toBe(404);
      expect((await patch(token, tenantId, 999_999_998, { comment: 'nobody' })).status).toBe(404);
      const updatesBefore = graphStats(tenantId).byEndpoint.updateIncident ?? 0;
      const unknown = await patch(token, tenantId, id, { customTags: ['x'], status: 'resolved' });
      expect(unknown.status).toBe(400);
      expect(JSON.stringify(bodyOf(unknown))).toMatch(/customTags|status/);
      const mismatched = await patch(token, tenantId, id, {
        classification: 'FalsePositive',
        determination: 'Malware',
      });
      expect(mismatched.status).toBe(400);
      expect((await patch(token, tenantId, 'abc', { status: 'Resolved' })).status).toBe(400);
      expect(graphStats(tenantId).byEndpoint.updateIncident ?? 0).toBe(updatesBefore);
    });

    it('spends the analysts’ share of the tenant’s Graph budget, never Defender’s', async () => {
      const token = await signIn(woodgroveAnalyst);
      const graphTake = vi.spyOn(services.graph.budget, 'take');
      const defenderTake = vi.spyOn(services.defender.budget, 'take');
      try {
        expect((await list(token, '?top=1')).status).toBe(200);
        expect(graphTake).toHaveBeenCalledWith(woodgrove.tenantId, expect.any(Number), 'analyst', 'security');
        expect(graphTake.mock.calls.every(([, , budgetClass]) => budgetClass === 'analyst')).toBe(true);
        expect(defenderTake).not.toHaveBeenCalled();
      } finally {
        graphTake.mockRestore();
        defenderTake.mockRestore();
      }
    });

    it('retries Graph 503s; a 429 longer than it waits becomes 503 with Retry-After, held for the tenant only', async () => {
      const token = await signIn(woodgroveAnalyst);
      await list(token, '?top=1'); // warm: the on-behalf-of token is cached
      stack.faults.add('graph', { kind: 'status', status: 503 }, 2, '/v1.0/security/incidents');
      const recovered = await list(token, '?top=5');
      expect(recovered.status).toBe(200);
      expect(incidentsOf(recovered)).toHaveLength(5);
      expect(stack.faults.list()).toEqual([]);

      // On a tenant of its own: the 429 holds that tenant's Graph calls for two minutes.
      const held = await graphTenant('Fourth Coffee (throttled)', { graph: ['SecurityIncident.Read.All'] });
      const heldToken = await signIn(held.user);
      expect((await list(heldToken, '?top=1')).status).toBe(200);
      stack.faults.add('graph', { kind: 'status', status: 429, retryAfterSeconds: 120 }, 1, '/v1.0/security/incidents');
      const throttled = await list(heldToken, '?top=5');
      expect(throttled.status).toBe(503);
      expect(String(bodyOf(throttled).error)).toContain('Microsoft Graph is busy or unavailable');
      expect(throttled.headers).toEqual({ 'Retry-After': '120' });
      const listedBefore = graphStats(held.tenantId).byEndpoint.listIncidents;
      const again = await list(heldToken, '?top=5');
      expect(again.status).toBe(503);
      expect(Number(again.headers?.['Retry-After'])).toBeGreaterThan(100);
      expect(graphStats(held.tenantId).byEndpoint.listIncidents).toBe(listedBefore);
      // Another tenant's analysts are not held back.
      expect((await list(token, '?top=1')).status).toBe(200);
      expectNoTokenLogged();
    });
  });
});
