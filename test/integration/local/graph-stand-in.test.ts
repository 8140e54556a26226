import { randomUUID } from 'node:crypto';
import { ClientSecretCredential } from '@azure/identity';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { FaultBoard } from '../../../local/common/faults.js';
import { runAdvancedHunting } from '../../../local/defender/advanced-hunting.js';
import { generateIncidents, type GenerateOptions } from '../../../local/defender/generator.js';
import { KqlError } from '../../../local/defender/kql.js';
import { formatTimestamp, parseTimestamp } from '../../../local/defender/timestamps.js';
import { GRAPH_RESOURCE } from '../../../local/entra/registry.js';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { createTokenIssuer } from '../../../local/entra/token-issuer.js';
import {
  startGraph,
  toGraphIncident,
  type GraphAlert,
  type GraphIncident,
  type GraphStandIn,
} from '../../../local/graph/server.js';

/**
 * The Microsoft Graph security API stand-in over real HTTPS, called as the relay's Graph client will call it
 * (fetch with a Bearer token, the base URL apart), with real tokens from the Entra stand-in: app tokens by the
 * client credentials grant through @azure/identity, user tokens by the password grant.
 */

const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SINCE = '2024-01-01T00:00:00Z';
const UNTIL = '2024-02-01T00:00:00Z';

/** A: read-only data for listings. W: the tenant tests write to. B: another customer. C: no Graph data. */
const tenantA = randomUUID();
const tenantW = randomUUID();
const tenantB = randomUUID();
const tenantC = randomUUID();
const COUNT_A = 237;
const partner = { clientId: randomUUID(), secret: `partner-${randomUUID()}` };
const reader = { clientId: randomUUID(), secret: `reader-${randomUUID()}` };
const noRole = { clientId: randomUUID(), secret: `norole-${randomUUID()}` };
const analystRead = { clientId: randomUUID() };
const analystWrite = { clientId: randomUUID() };
const ana = { userPrincipalName: 'ana@tenant-w.test', password: `pw-${randomUUID()}`, displayName: 'Ana Analyst' };

let entra: EntraStandIn;
let graph: GraphStandIn;
const faults = new FaultBoard();
/** Added to the stand-in's clock, so throttling tests can let a minute pass without waiting. */
let clockOffsetMs = 0;
const logLines: string[] = [];

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function call(
  pathOrUrl: string,
  options: { token?: string; method?: string; body?: string | object; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const url = pathOrUrl.startsWith('https://') ? pathOrUrl : `${graph.url}${pathOrUrl}`;
  const response = await fetch(url, { method: options.method ?? 'GET', headers, body });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const control = async (path: string, method = 'GET', body?: object) => {
  const response = await fetch(`${graph.controlUrl}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body && JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
};

const tokens = new Map<string, Promise<string>>();
/** An app token from the Entra stand-in, through the same credential the relay uses. */
function appToken(app: { clientId: string; secret: string }, tenantId: string, scope = `${GRAPH_RESOURCE}/.default`) {
  const key = `${app.clientId}|${tenantId}|${scope}`;
  if (!tokens.has(key)) {
    const credential = new ClientSecretCredential(tenantId, app.clientId, app.secret, {
      authorityHost: entra.url,
      disableInstanceDiscovery: true,
    });
    tokens.set(
      key,
      credential.getToken(scope).then((token) => token!.token),
    );
  }
  return tokens.get(key)!;
}

/** A user token (password grant on the wire) for the analyst, with the client's delegated Graph scope. */
async function userToken(client: { clientId: string }, scope: string): Promise<string> {
  const res = await fetch(`${entra.url}/${tenantW}/oauth2/v2.0/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: client.clientId,
      username: ana.userPrincipalName,
      password: ana.password,
      scope: `${GRAPH_RESOURCE}/${scope}`,
    }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** Follows @odata.nextLink as a client must: the whole URL, as it is. */
async function listAll(token: string, query: string): Promise<{ pages: GraphIncident[][]; answers: Answer[] }> {
  const pages: GraphIncident[][] = [];
  const answers: Answer[] = [];
  let next: string | undefined = `/v1.0/security/incidents${query}`;
  while (next) {
    const answer = await call(next, { token });
    expect(answer.status, answer.text).toBe(200);
    answers.push(answer);
    pages.push(answer.json.value);
    next = answer.json['@odata.nextLink'];
    expect(pages.length).toBeLessThan(100);
  }
  return { pages, answers };
}

const ticksOf = (incident: GraphIncident) => parseTimestamp(incident.lastUpdateDateTime) as bigint;
/** The documented order: the most recent at the top (lastUpdateDateTime, then id, descending). */
const newestFirst = (a: GraphIncident, b: GraphIncident) =>
  ticksOf(a) === ticksOf(b) ? Number(b.id) - Number(a.id) : ticksOf(a) < ticksOf(b) ? 1 : -1;

async function raw(tenantId: string): Promise<GraphIncident[]> {
  return (await control(`/tenants/${tenantId}/incidents`)).json.value as GraphIncident[];
}

function expectGraphError(answer: Answer, status: number, code: string, message?: string | RegExp): void {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.json?.error?.code).toBe(code);
  if (typeof message === 'string') expect(answer.json.error.message).toBe(message);
  else if (message) expect(answer.json.error.message).toMatch(message);
  const inner = answer.json.error.innerError;
  expect(inner.date).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
  expect(inner['request-id']).toMatch(GUID);
  expect(answer.headers.get('request-id')).toBe(inner['request-id']);
  expect(answer.headers.get('client-request-id')).toBe(inner['client-request-id']);
}

/** A query the service's OData validator refuses: 400, empty code, details [], "The query specified …". */
function expectInvalidQuery(answer: Answer, reason?: string | RegExp): void {
  expectGraphError(answer, 400, '');
  expect(answer.json.error.details).toEqual([]);
  expect(answer.json.error.message).toMatch(/^The query specified in the URI is not valid\. /);
  const said = answer.json.error.message.replace('The query specified in the URI is not valid. ', '');
  if (typeof reason === 'string') expect(said).toBe(reason);
  else if (reason) expect(said).toMatch(reason);
}

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls') });
  const r = entra.registry;
  for (const [tenantId, displayName] of [
    [tenantA, 'Contoso'],
    [tenantW, 'Woodgrove'],
    [tenantB, 'Fabrikam'],
    [tenantC, 'Litware'],
  ] as const)
    r.addTenant({ tenantId, displayName });
  for (const [app, name] of [
    [partner, 'MSSP partner app'],
    [reader, 'read-only reporting app'],
    [noRole, 'app without Graph roles'],
  ] as const)
    r.addApp({
      clientId: app.clientId,
      displayName: name,
      homeTenantId: tenantA,
      multiTenant: true,
      secrets: [app.secret],
    });
  for (const tenantId of [tenantA, tenantW, tenantB, tenantC])
    r.grantAppPermissions(tenantId, partner.clientId, GRAPH_RESOURCE, ['SecurityIncident.ReadWrite.All']);
  for (const tenantId of [tenantA, tenantW])
    r.grantAppPermissions(tenantId, reader.clientId, GRAPH_RESOURCE, ['SecurityIncident.Read.All']);
  r.grantAppPermissions(tenantA, reader.clientId, 'https://api.security.microsoft.com', ['Incident.Read.All']);
  r.addUser({ tenantId: tenantW, ...ana });
  for (const [client, scope] of [
    [analystRead, 'SecurityIncident.Read.All'],
    [analystWrite, 'SecurityIncident.ReadWrite.All'],
  ] as const) {
    r.addApp({
      clientId: client.clientId,
      displayName: `analyst CLI (${scope})`,
      homeTenantId: tenantW,
      multiTenant: false,
    });
    r.grantDelegatedPermissions(tenantW, client.clientId, GRAPH_RESOURCE, [scope]);
  }

  graph = await startGraph({
    tls: inject('tls'),
    verifier: entra.verifier,
    faults,
    authorityHost: entra.url,
    now: () => Date.now() + clockOffsetMs,
    log: (line) => logLines.push(line),
  });
  for (const [tenantId, seed] of [
    [tenantA, { count: COUNT_A, seed: 'graph-a', startId: 1 }],
    [tenantW, { count: 40, seed: 'graph-w', startId: 1 }],
    [tenantB, { count: 30, seed: 'graph-b', startId: 900_000 }],
  ] as const) {
    expect((await control(`/tenants/${tenantId}`, 'POST', {})).status).toBe(201);
    const seeded = await control(`/tenants/${tenantId}/incidents`, 'POST', { ...seed, since: SINCE, until: UNTIL });
    expect(seeded.status).toBe(201);
  }
});

afterAll(async () => {
  await graph?.close();
  await entra?.close();
  expect(logLines.filter((line) => line.includes('unexpected error'))).toEqual([]);
});

beforeEach(async () => {
  await control('/throttle/reset', 'POST');
  await control('/faults', 'DELETE');
});

describe('tokens Entra issues for Microsoft Graph', () => {
  it('issues v1 tokens whose aud is the URI or the app id the scope named, with the granted roles; both are accepted', async () => {
    const byUri = await appToken(partner, tenantA);
    const byAppId = await appToken(partner, tenantA, `${GRAPH_APP_ID}/.default`);
    const claims = decodeJwt(byUri);
    expect(claims).toMatchObject({
      aud: 'https://graph.microsoft.com',
      ver: '1.0',
      tid: tenantA,
      appid: partner.clientId,
      iss: `https://sts.windows.net/${tenantA}/`,
      roles: ['SecurityIncident.ReadWrite.All'],
    });
    expect(decodeJwt(byAppId).aud).toBe(GRAPH_APP_ID);
    for (const token of [byUri, byAppId])
      expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);
  });

  it('exposes only the security incidents and advanced hunting permissions for Graph', () => {
    expect(() =>
      entra.registry.grantAppPermissions(tenantA, noRole.clientId, GRAPH_RESOURCE, ['User.Read.All']),
    ).toThrow(
      "exposes no application permission 'User.Read.All'; it exposes: SecurityIncident.Read.All, SecurityIncident.ReadWrite.All, ThreatHunting.Read.All.",
    );
    expect(() =>
      entra.registry.grantDelegatedPermissions(tenantW, analystRead.clientId, GRAPH_RESOURCE, [
        'ThreatHunting.ReadWrite.All',
      ]),
    ).toThrow(
      "exposes no delegated permission 'ThreatHunting.ReadWrite.All'; it exposes: SecurityIncident.Read.All, SecurityIncident.ReadWrite.All, ThreatHunting.Read.All.",
    );
  });
});

describe('GET /v1.0/security/incidents', () => {
  it('pages through @odata.nextLink: every incident once, at most 50 a page, newest first across pages', async () => {
    const token = await appToken(partner, tenantA);
    const { pages, answers } = await listAll(token, '?$top=50');
    const all = pages.flat();
    expect(all.map((i) => i.id).sort()).toEqual((await raw(tenantA)).map((i) => i.id).sort());
    expect(new Set(all.map((i) => i.id)).size).toBe(COUNT_A);
    expect(pages.map((p) => p.length)).toEqual([50, 50, 50, 50, 37]);
    expect([...all].sort(newestFirst).map((i) => i.id)).toEqual(all.map((i) => i.id));
    for (const [k, answer] of answers.entries()) {
      expect(answer.json['@odata.context']).toBe(`${graph.url}/v1.0/$metadata#security/incidents`);
      expect(answer.headers.get('content-type')).toMatch(/^application\/json;odata\.metadata=minimal/);
      const next = answer.json['@odata.nextLink'] as string | undefined;
      if (k === answers.length - 1) {
        expect(next).toBeUndefined();
        continue;
      }
      const url = new URL(next!);
      expect(url.origin).toBe(graph.url);
      expect(url.pathname).toBe('/v1.0/security/incidents');
      // The original query options and an opaque $skiptoken; no $skip to edit.
      expect([...url.searchParams.keys()]).toEqual(['$top', '$skiptoken']);
      expect(url.searchParams.get('$top')).toBe('50');
    }
    for (const incident of all) {
      expect(incident).toMatchObject({ '@odata.type': '#microsoft.graph.security.incident', tenantId: tenantA });
      expect(typeof incident.id).toBe('string');
      expect(incident).not.toHaveProperty('alerts');
    }
  });

  it('cuts pages of 50 without $top, counts with $count=true on every page, and skips with $skip', async () => {
    const token = await appToken(partner, tenantA);
    const { pages, answers } = await listAll(token, '?$count=true');
    expect(pages.map((p) => p.length)).toEqual([50, 50, 50, 50, 37]);
    for (const answer of answers) expect(answer.json['@odata.count']).toBe(COUNT_A);
    const ordered = pages.flat();
    const skipped = await call('/v1.0/security/incidents?$skip=10&$top=5', { token });
    expect(skipped.json.value.map((i: GraphIncident) => i.id)).toEqual(ordered.slice(10, 15).map((i) => i.id));
    expect(skipped.json['@odata.count']).toBeUndefined();
    const empty = await call('/v1.0/security/incidents?$top=0', { token });
    expect(empty.json.value).toEqual([]);
    expect(empty.json['@odata.nextLink']).toBeUndefined();
  });

  it('refuses $top over 50 as the service does: 400, empty code, details [], innerError with the request ids', async () => {
    const token = await appToken(partner, tenantA);
    const clientRequestId = randomUUID();
    const answer = await call('/v1.0/security/incidents?$top=51', {
      token,
      headers: { 'client-request-id': clientRequestId },
    });
    expectInvalidQuery(
      answer,
      "The limit of '50' for Top query has been exceeded. The value from the incoming request is '51'.",
    );
    expect(answer.json.error.innerError['client-request-id']).toBe(clientRequestId);
    expect((await call('/v1.0/security/incidents?$top=50', { token })).status).toBe(200);
  });

  it('filters on lastUpdateDateTime to the 7th fractional digit (ge, gt, lt, le), across pages', async () => {
    const token = await appToken(partner, tenantA);
    const incidents = (await raw(tenantA)).sort(newestFirst);
    const pivot = incidents[120]!;
    const ids = async (filter: string) =>
      (await listAll(token, `?$top=50&$filter=${encodeURIComponent(filter)}`)).pages.flat().map((i) => i.id);
    const expected = (keep: (ticks: bigint) => boolean) => incidents.filter((i) => keep(ticksOf(i))).map((i) => i.id);
    const t = ticksOf(pivot);
    expect(await ids(`lastUpdateDateTime ge ${pivot.lastUpdateDateTime}`)).toEqual(expected((x) => x >= t));
    expect(await ids(`lastUpdateDateTime gt ${pivot.lastUpdateDateTime}`)).toEqual(expected((x) => x > t));
    expect(await ids(`lastUpdateDateTime lt ${pivot.lastUpdateDateTime}`)).toEqual(expected((x) => x < t));
    expect(await ids(`lastUpdateDateTime le ${pivot.lastUpdateDateTime}`)).toEqual(expected((x) => x <= t));
    expect((await ids(`lastUpdateDateTime ge ${pivot.lastUpdateDateTime}`)).length).toBeGreaterThan(100);
    const lower = incidents[200]!;
    expect(
      await ids(
        `lastUpdateDateTime ge ${lower.lastUpdateDateTime} and lastUpdateDateTime lt ${pivot.lastUpdateDateTime}`,
      ),
    ).toEqual(expected((x) => x >= ticksOf(lower) && x < t));
    // An offset is the same instant: 2024-01-10T12:00:00+02:00 is 10:00Z.
    expect(await ids('lastUpdateDateTime ge 2024-01-10T12:00:00+02:00')).toEqual(
      expected((x) => x >= (parseTimestamp('2024-01-10T10:00:00Z') as bigint)),
    );
  });

  it('filters on the other documented properties with eq, ne, in, not, or and parentheses', async () => {
    const token = await appToken(partner, tenantA);
    const incidents = (await raw(tenantA)).sort(newestFirst);
    const check = async (filter: string, keep: (i: GraphIncident) => boolean) => {
      const got = (await listAll(token, `?$filter=${encodeURIComponent(filter)}`)).pages.flat().map((i) => i.id);
      const want = incidents.filter(keep).map((i) => i.id);
      expect(want.length, filter).toBeGreaterThan(0);
      expect(got, filter).toEqual(want);
    };
    await check("status eq 'active' or status eq 'inProgress'", (i) => ['active', 'inProgress'].includes(i.status));
    await check('assignedTo eq null', (i) => i.assignedTo === null);
    await check("severity in ('high', 'medium')", (i) => ['high', 'medium'].includes(i.severity));
    await check("not (classification eq 'unknown')", (i) => i.classification !== 'unknown');
    await check(
      "determination ne 'unknown' and classification eq 'truePositive'",
      (i) => i.determination !== 'unknown' && i.classification === 'truePositive',
    );
    await check(
      "(status eq 'resolved' or status eq 'redirected') and createdDateTime lt 2024-01-15T00:00:00Z",
      (i) =>
        ['resolved', 'redirected'].includes(i.status) &&
        ticksOf({ ...i, lastUpdateDateTime: i.createdDateTime }) < (parseTimestamp('2024-01-15T00:00:00Z') as bigint),
    );
    await check("'high' eq severity", (i) => i.severity === 'high');
    const analyst = incidents.find((i) => i.assignedTo)!.assignedTo!;
    await check(`assignedTo eq '${analyst}'`, (i) => i.assignedTo === analyst);
  });

  it('moves an incident changed while a client pages to the top: the rest shift down a place, and the next poll gets the change', async () => {
    const token = await appToken(partner, tenantW);
    const before = (await raw(tenantW)).sort(newestFirst);
    const checkpoint = before[0]!.lastUpdateDateTime;
    const first = await call('/v1.0/security/incidents?$top=10', { token });
    // Portal activity on an incident the listing has not reached yet.
    const changed = before[30]!;
    const patched = await control(`/tenants/${tenantW}/incidents/${changed.id}`, 'PATCH', {
      assignedTo: 'soc@woodgrove.test',
    });
    expect(patched.status).toBe(200);
    const rest: GraphIncident[] = [];
    let next: string | undefined = first.json['@odata.nextLink'];
    while (next) {
      const page = await call(next, { token });
      rest.push(...page.json.value);
      next = page.json['@odata.nextLink'];
    }
    const seen = [...first.json.value, ...rest].map((i: GraphIncident) => i.id);
    // $skip paging: the changed incident went ahead of the cursor (this listing misses its new version), and
    // the tenth incident, pushed down a place, is listed again.
    expect(new Set(seen)).toEqual(new Set(before.filter((i) => i.id !== changed.id).map((i) => i.id)));
    expect(seen.filter((id) => id === before[9]!.id)).toHaveLength(2);
    const since = await call(
      `/v1.0/security/incidents?$filter=${encodeURIComponent(`lastUpdateDateTime gt ${checkpoint}`)}`,
      { token },
    );
    expect(since.json.value.map((i: GraphIncident) => i.id)).toEqual([changed.id]);
    expect(since.json.value[0].assignedTo).toBe('soc@woodgrove.test');
  });
});

const EVIDENCE_TYPES = [
  'deviceEvidence',
  'userEvidence',
  'ipEvidence',
  'urlEvidence',
  'fileEvidence',
  'processEvidence',
  'mailboxEvidence',
  'analyzedMessageEvidence',
  'mailClusterEvidence',
  'registryValueEvidence',
  'securityGroupEvidence',
  'cloudApplicationEvidence',
].map((name) => `#microsoft.graph.security.${name}`);

describe('$expand=alerts', () => {
  it('lists incidents with their alerts and typed evidence; merged incidents have none', async () => {
    const token = await appToken(partner, tenantA);
    const { pages, answers } = await listAll(token, '?$expand=alerts');
    expect(answers[0]!.json['@odata.context']).toBe(`${graph.url}/v1.0/$metadata#security/incidents(alerts())`);
    expect(new URL(answers[0]!.json['@odata.nextLink']).searchParams.get('$expand')).toBe('alerts');
    const incidents = pages.flat();
    expect(incidents).toHaveLength(COUNT_A);
    const seenTypes = new Set<string>();
    for (const incident of incidents) {
      if (incident.status === 'redirected') {
        expect(incident.redirectIncidentId).toMatch(/^\d+$/);
        expect(incident.alerts).toEqual([]);
        continue;
      }
      expect(incident.alerts.length).toBeGreaterThan(0);
      for (const alert of incident.alerts as (GraphAlert & { '@odata.type': string })[]) {
        expect(alert['@odata.type']).toBe('#microsoft.graph.security.alert');
        expect(alert.incidentId).toBe(incident.id);
        expect(alert.tenantId).toBe(tenantA);
        expect(alert.alertWebUrl).toBe(`https://security.microsoft.com/alerts/${alert.id}?tid=${tenantA}`);
        expect(alert.serviceSource).toMatch(/^microsoft|^azureAd/);
        expect(['new', 'inProgress', 'resolved']).toContain(alert.status);
        for (const evidence of alert.evidence) {
          expect(EVIDENCE_TYPES).toContain(evidence['@odata.type']);
          expect(evidence.createdDateTime).toMatch(/^\d{4}-\d{2}-\d{2}T/);
          expect(['unknown', 'suspicious', 'malicious', 'noThreatsFound']).toContain(evidence.verdict);
          seenTypes.add(evidence['@odata.type']);
          if (evidence['@odata.type'] === '#microsoft.graph.security.deviceEvidence') {
            expect(evidence.mdeDeviceId).toMatch(/^[0-9a-f]{40}$/);
            expect(evidence.deviceDnsName).toContain('.');
          }
          if (evidence['@odata.type'] === '#microsoft.graph.security.userEvidence')
            expect(evidence.userAccount.userPrincipalName).toContain('@');
          if (evidence['@odata.type'] === '#microsoft.graph.security.processEvidence')
            expect(evidence.imageFile.fileName).toMatch(/\.exe$/);
        }
      }
    }
    expect([...seenTypes].sort()).toEqual([...EVIDENCE_TYPES].sort());
  });

  it('describes the same incidents as the Defender stand-in seeded alike: the Defender → Graph mapping, field for field', async () => {
    const defender = generateIncidents({
      tenantId: tenantA,
      count: COUNT_A,
      seed: 'graph-a',
      startId: 1,
      since: new Date(SINCE),
      until: new Date(UNTIL),
    });
    const stored = await raw(tenantA);
    expect(stored).toEqual(defender.map((incident) => toGraphIncident(incident, tenantA)));
    const d = defender.find((i) => i.alerts.length > 1)!;
    const g = stored.find((i) => i.id === String(d.incidentId))!;
    expect(g).toMatchObject({
      displayName: d.incidentName,
      createdDateTime: d.createdTime,
      lastUpdateDateTime: d.lastUpdateTime,
      customTags: d.tags,
      incidentWebUrl: d.incidentUri,
    });
    expect(g.alerts.map((a) => a.id)).toEqual(d.alerts.map((a) => a.alertId));
    expect(g.alerts.map((a) => a.mitreTechniques)).toEqual(d.alerts.map((a) => a.mitreTechniques));
    expect(g.alerts.map((a) => a.evidence.length)).toEqual(d.alerts.map((a) => a.devices.length + a.entities.length));
  });

  it('gets one incident with its alerts, or selected properties only', async () => {
    const token = await appToken(partner, tenantA);
    const incident = (await raw(tenantA)).find((i) => i.alerts.length > 0)!;
    const full = await call(`/v1.0/security/incidents/${incident.id}?$expand=alerts`, { token });
    expect(full.json['@odata.context']).toBe(`${graph.url}/v1.0/$metadata#security/incidents(alerts())/$entity`);
    expect(full.json.alerts.map((a: GraphAlert) => a.id)).toEqual(incident.alerts.map((a) => a.id));
    const selected = await call(`/v1.0/security/incidents/${incident.id}?$select=id,status,lastUpdateDateTime`, {
      token,
    });
    expect(selected.json).toEqual({
      '@odata.context': `${graph.url}/v1.0/$metadata#security/incidents(id,status,lastUpdateDateTime)/$entity`,
      '@odata.type': '#microsoft.graph.security.incident',
      id: incident.id,
      lastUpdateDateTime: incident.lastUpdateDateTime,
      status: incident.status,
    });
  });
});

describe('GET /v1.0/security/incidents/{id}', () => {
  it("gets the caller's incident; an unknown id or another tenant's is 404 NotFound, alike", async () => {
    const token = await appToken(partner, tenantA);
    const incident = (await raw(tenantA))[5]!;
    const answer = await call(`/v1.0/security/incidents/${incident.id}`, { token });
    expect(answer.status).toBe(200);
    expect(answer.json['@odata.context']).toBe(`${graph.url}/v1.0/$metadata#security/incidents/$entity`);
    expect(answer.json).toMatchObject({ id: incident.id, displayName: incident.displayName, tenantId: tenantA });
    expect(answer.json).not.toHaveProperty('alerts');
    const unknown = await call('/v1.0/security/incidents/123456789', { token });
    expectGraphError(unknown, 404, 'NotFound', "The incident '123456789' was not found.");
    const foreign = (await raw(tenantB))[0]!;
    const theirs = await call(`/v1.0/security/incidents/${foreign.id}`, { token });
    expectGraphError(theirs, 404, 'NotFound', `The incident '${foreign.id}' was not found.`);
    expect(theirs.text).not.toContain(foreign.displayName);
    expectInvalidQuery(
      await call(`/v1.0/security/incidents/${incident.id}?$top=1`, { token }),
      'The requested resource is not a collection. Query options $filter, $orderby, $count, $skip, and $top can be applied only on collections.',
    );
  });
});

describe('PATCH /v1.0/security/incidents/{id}', () => {
  it('updates the documented properties (the page writes enums in PascalCase), bumps lastUpdateDateTime, and answers lower-camel', async () => {
    const token = await appToken(partner, tenantW);
    const incident = (await raw(tenantW)).find((i) => i.status === 'active')!;
    const answer = await call(`/v1.0/security/incidents/${incident.id}`, {
      token,
      method: 'PATCH',
      body: {
        status: 'Resolved',
        classification: 'TruePositive',
        determination: 'MultiStagedAttack',
        assignedTo: 'KaiC@woodgrove.test',
        customTags: ['Demo', 'Relay'],
      },
    });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json).toMatchObject({
      '@odata.context': `${graph.url}/v1.0/$metadata#security/incidents/$entity`,
      id: incident.id,
      status: 'resolved',
      classification: 'truePositive',
      determination: 'multiStagedAttack',
      assignedTo: 'KaiC@woodgrove.test',
      customTags: ['Demo', 'Relay'],
      lastModifiedBy: partner.clientId,
      displayName: incident.displayName,
    });
    expect(ticksOf(answer.json)).toBeGreaterThan(ticksOf(incident));
    const read = await call(`/v1.0/security/incidents/${incident.id}`, { token });
    expect(read.json.status).toBe('resolved');
    const since = await call(
      `/v1.0/security/incidents?$filter=${encodeURIComponent(`lastUpdateDateTime gt ${incident.lastUpdateDateTime} and status eq 'resolved'`)}`,
      { token },
    );
    expect(since.json.value.map((i: GraphIncident) => i.id)).toContain(incident.id);
    const cleared = await call(`/v1.0/security/incidents/${incident.id}`, {
      token,
      method: 'PATCH',
      body: { assignedTo: null },
    });
    expect(cleared.json.assignedTo).toBeNull();
  });

  it.each([
    [
      { displayName: 'renamed' },
      "The property 'displayName' cannot be updated: the updatable properties of an incident are assignedTo, classification, determination, status, customTags.",
    ],
    [{ severity: 'high' }, /^The property 'severity' cannot be updated/],
    [{ resolvingComment: 'done' }, /^The property 'resolvingComment' cannot be updated/],
    [
      { tags: ['x'] },
      "The property 'tags' does not exist on type 'microsoft.graph.security.incident'. Make sure to only use property names that are defined by the type.",
    ],
    [
      { status: 'awaitingAction' },
      /^Invalid value "awaitingAction" for property 'status': use one of active, resolved, inProgress, redirected\.$/,
    ],
    [{ classification: 'bogus' }, /^Invalid value "bogus" for property 'classification'/],
    [{ customTags: 'Demo' }, /^Invalid value for property 'customTags'/],
    [{ assignedTo: 42 }, /^Invalid value for property 'assignedTo'/],
    [{}, /^The request body sets no property to update/],
    [[], /^The request body must be a JSON object/],
    [
      '{"status": "resolved"',
      'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.',
    ],
  ])('refuses %j with 400 BadRequest and changes nothing', async (body, message) => {
    const token = await appToken(partner, tenantW);
    const incident = (await raw(tenantW))[3]!;
    const answer = await call(`/v1.0/security/incidents/${incident.id}`, { token, method: 'PATCH', body });
    expectGraphError(answer, 400, 'BadRequest', message);
    expect((await control(`/tenants/${tenantW}/incidents/${incident.id}`)).json).toEqual(incident);
  });

  it('refuses a read-only app 403 with the roles the update needs and the roles it has', async () => {
    const token = await appToken(reader, tenantW);
    const incident = (await raw(tenantW))[4]!;
    const answer = await call(`/v1.0/security/incidents/${incident.id}`, {
      token,
      method: 'PATCH',
      body: { status: 'resolved' },
    });
    expectGraphError(
      answer,
      403,
      'Forbidden',
      'Missing application roles. API required roles: SecurityIncident.ReadWrite.All, application roles: SecurityIncident.Read.All.',
    );
    expect((await call(`/v1.0/security/incidents/${incident.id}`, { token })).status).toBe(200);
  });
});

describe('POST /v1.0/security/incidents/{id}/comments', () => {
  it('adds a comment and answers every comment of the incident; the author is the app, or the signed-in user', async () => {
    const incident = (await raw(tenantW)).find((i) => i.comments.length === 0)!;
    const appAnswer = await call(`/v1.0/security/incidents/${incident.id}/comments`, {
      token: await appToken(partner, tenantW),
      method: 'POST',
      body: { '@odata.type': 'microsoft.graph.security.alertComment', comment: 'Triaged by the relay' },
    });
    expect(appAnswer.status, appAnswer.text).toBe(200);
    expect(appAnswer.json['@odata.context']).toBe(
      `${graph.url}/v1.0/$metadata#security/incidents('${incident.id}')/comments`,
    );
    expect(appAnswer.json.value).toEqual([
      {
        comment: 'Triaged by the relay',
        createdByDisplayName: partner.clientId,
        createdDateTime: expect.stringMatching(/Z$/),
      },
    ]);
    const userAnswer = await call(`/v1.0/security/incidents/${incident.id}/comments`, {
      token: await userToken(analystWrite, 'SecurityIncident.ReadWrite.All'),
      method: 'POST',
      body: { comment: 'Confirmed with the user.' },
    });
    expect(userAnswer.status, userAnswer.text).toBe(200);
    expect(userAnswer.json.value.map((c: { createdByDisplayName: string }) => c.createdByDisplayName)).toEqual([
      partner.clientId,
      ana.userPrincipalName,
    ]);
    const stored = (await control(`/tenants/${tenantW}/incidents/${incident.id}`)).json as GraphIncident;
    expect(stored.comments).toHaveLength(2);
    expect(stored.lastModifiedBy).toBe(ana.userPrincipalName);
    expect(ticksOf(stored)).toBeGreaterThan(ticksOf(incident));
  });

  it.each([
    [{ comment: '' }, "The parameter 'comment' is required: a non-empty string."],
    [{ note: 'x' }, /^The parameter 'note' is not taken/],
    [
      { '@odata.type': 'microsoft.graph.security.incident', comment: 'x' },
      /^The @odata.type "microsoft.graph.security.incident" is not/,
    ],
  ])('refuses %j with 400 BadRequest', async (body, message) => {
    const incident = (await raw(tenantW))[6]!;
    const answer = await call(`/v1.0/security/incidents/${incident.id}/comments`, {
      token: await appToken(partner, tenantW),
      method: 'POST',
      body,
    });
    expectGraphError(answer, 400, 'BadRequest', message);
  });
});

describe('authentication and permissions', () => {
  it('answers 401 InvalidAuthenticationToken, with Graph challenge, for a missing, malformed, wrong-audience, expired or forged token', async () => {
    const expired = await entra.issuer.issueAccessToken({
      tenantId: tenantA,
      audience: GRAPH_RESOURCE,
      clientId: partner.clientId,
      objectId: randomUUID(),
      roles: ['SecurityIncident.ReadWrite.All'],
      lifetimeSeconds: -120,
    });
    const stranger = await createTokenIssuer(entra.url);
    const forged = await stranger.issueAccessToken({
      tenantId: tenantA,
      audience: GRAPH_RESOURCE,
      clientId: partner.clientId,
      objectId: randomUUID(),
      roles: ['SecurityIncident.ReadWrite.All'],
    });
    const defenderToken = await appToken(reader, tenantA, 'https://api.security.microsoft.com/.default');
    const cases: [Record<string, string>, string][] = [
      [{}, 'Access token is empty.'],
      [
        { authorization: 'Bearer not-a-jwt' },
        'IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or JWE Compact Serialization Format.',
      ],
      [{ authorization: `Bearer ${defenderToken}` }, 'Access token validation failure. Invalid audience.'],
      [{ authorization: `Bearer ${expired.token}` }, 'Lifetime validation failed, the token is expired.'],
      [{ authorization: `Bearer ${forged.token}` }, 'Access token validation failure.'],
      [
        { authorization: 'Basic dXNlcjpwYXNz' },
        'IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or JWE Compact Serialization Format.',
      ],
    ];
    for (const [headers, message] of cases) {
      const answer = await call('/v1.0/security/incidents', { headers });
      expectGraphError(answer, 401, 'InvalidAuthenticationToken', message);
      expect(answer.headers.get('www-authenticate')).toBe(
        `Bearer realm="", authorization_uri="${entra.url}/common/oauth2/authorize", client_id="${GRAPH_APP_ID}"`,
      );
      expect(answer.text).not.toContain(tenantA);
    }
  });

  it('refuses an app without the roles 403 as the security API words it', async () => {
    const answer = await call('/v1.0/security/incidents', { token: await appToken(noRole, tenantA) });
    expectGraphError(
      answer,
      403,
      'Forbidden',
      'Missing application roles. API required roles: SecurityIncident.Read.All,SecurityIncident.ReadWrite.All, application roles: .',
    );
  });

  it('takes the delegated permissions in scp: a user may read with SecurityIncident.Read.All, and not write', async () => {
    const token = await userToken(analystRead, 'SecurityIncident.Read.All');
    expect(decodeJwt(token)).toMatchObject({
      scp: 'SecurityIncident.Read.All',
      upn: ana.userPrincipalName,
      tid: tenantW,
    });
    const list = await call('/v1.0/security/incidents?$top=3', { token });
    expect(list.status).toBe(200);
    expect(list.json.value.every((i: GraphIncident) => i.tenantId === tenantW)).toBe(true);
    const answer = await call(`/v1.0/security/incidents/${list.json.value[0].id}`, {
      token,
      method: 'PATCH',
      body: { status: 'resolved' },
    });
    expectGraphError(
      answer,
      403,
      'Forbidden',
      "Missing scope permissions on the request. API requires one of 'SecurityIncident.ReadWrite.All'. Scopes on the request 'SecurityIncident.Read.All'",
    );
  });

  it('refuses a tenant the stand-in has no data for with 403 naming it', async () => {
    const answer = await call('/v1.0/security/incidents', { token: await appToken(partner, tenantC) });
    expectGraphError(answer, 403, 'Forbidden', new RegExp(`^Tenant ${tenantC} has no Microsoft 365 Defender data`));
  });
});

describe('throttling: 150 requests a minute per app per tenant', () => {
  it('answers the 151st call in a minute 429 TooManyRequests with Retry-After and recovers once the minute has passed', async () => {
    const token = await appToken(partner, tenantA);
    await control('/stats', 'DELETE');
    for (let i = 0; i < 150; i += 1) {
      const answer = await call('/v1.0/security/incidents?$top=1&$select=id', { token });
      expect(answer.status, `call ${i + 1}`).toBe(200);
    }
    const throttled = await call('/v1.0/security/incidents?$top=1', { token });
    expectGraphError(throttled, 429, 'TooManyRequests', 'Please retry again later.');
    expect(throttled.json.error.innerError).toMatchObject({
      code: '429',
      message: 'Please retry after',
      status: '429',
    });
    const retryAfter = Number(throttled.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Per app per tenant: another app of the tenant, and the same app in another tenant, still get through.
    expect((await call('/v1.0/security/incidents?$top=1', { token: await appToken(reader, tenantA) })).status).toBe(
      200,
    );
    expect((await call('/v1.0/security/incidents?$top=1', { token: await appToken(partner, tenantB) })).status).toBe(
      200,
    );
    clockOffsetMs += retryAfter * 1000 + 1000;
    expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);
    const stats = (await control('/stats')).json.clients as {
      tenantId: string;
      clientId: string;
      calls: number;
      throttled: number;
    }[];
    expect(stats.find((s) => s.tenantId === tenantA && s.clientId === partner.clientId)).toMatchObject({
      calls: 152,
      throttled: 1,
    });
  });

  it('takes other numbers from the control surface, and goes back to the documented ones', async () => {
    expect((await control('/throttle')).json).toEqual({ perAppPerTenantPerMinute: 150, perAppPerSecond: 2000 });
    expect((await control('/throttle', 'PATCH', { perAppPerTenantPerMinute: 3 })).json.perAppPerTenantPerMinute).toBe(
      3,
    );
    try {
      const token = await appToken(partner, tenantB);
      for (let i = 0; i < 3; i += 1)
        expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);
      expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(429);
    } finally {
      await control('/throttle', 'PATCH', { perAppPerTenantPerMinute: 150 });
    }
  });
});

describe('faults', () => {
  it('answers injected 5xx and 429 in Graph error shape, for as many calls as asked, on the paths asked', async () => {
    const token = await appToken(partner, tenantA);
    expect(
      (await control('/faults', 'POST', { spec: { kind: 'status', status: 503, retryAfterSeconds: 7 }, times: 1 }))
        .status,
    ).toBe(201);
    const unavailable = await call('/v1.0/security/incidents', { token });
    expectGraphError(unavailable, 503, 'serviceNotAvailable');
    expect(unavailable.headers.get('retry-after')).toBe('7');
    expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);

    await control('/faults', 'POST', { spec: { kind: 'status', status: 500 }, times: 1, pathContains: '/comments' });
    expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);
    const incident = (await raw(tenantA))[0]!;
    const failed = await call(`/v1.0/security/incidents/${incident.id}/comments`, {
      token,
      method: 'POST',
      body: { comment: 'x' },
    });
    expectGraphError(failed, 500, 'generalException', 'An unspecified error has occurred.');

    await control('/faults', 'POST', { spec: { kind: 'status', status: 429, retryAfterSeconds: 3 }, times: 1 });
    const throttled = await call('/v1.0/security/incidents', { token });
    expectGraphError(throttled, 429, 'TooManyRequests');
    expect(throttled.headers.get('retry-after')).toBe('3');
  });

  it('cuts a body short, or drops the connection; faults for the other stand-ins leave Graph alone', async () => {
    const token = await appToken(partner, tenantA);
    await control('/faults', 'POST', { spec: { kind: 'malformed' }, times: 1 });
    const cut = await call('/v1.0/security/incidents', { token });
    expect(cut.status).toBe(200);
    expect(cut.json).toBeUndefined();
    await control('/faults', 'POST', { spec: { kind: 'outage' }, times: 1 });
    await expect(
      fetch(`${graph.url}/v1.0/security/incidents`, { headers: { authorization: `Bearer ${token}` } }),
    ).rejects.toThrow();
    faults.add('defender', { kind: 'status', status: 500 });
    try {
      expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);
    } finally {
      faults.clear('defender');
    }
    expect((await control('/faults')).json.faults).toEqual([]);
  });
});

describe('tenant isolation', () => {
  it("never shows one tenant's incidents to another's token, by list, get, update or comment", async () => {
    const tokenA = await appToken(partner, tenantA);
    const tokenB = await appToken(partner, tenantB);
    const idsA = new Set((await raw(tenantA)).map((i) => i.id));
    const idsB = new Set((await raw(tenantB)).map((i) => i.id));
    const listedA = (await listAll(tokenA, '')).pages.flat();
    const listedB = (await listAll(tokenB, '')).pages.flat();
    expect(new Set(listedA.map((i) => i.id))).toEqual(idsA);
    expect(new Set(listedB.map((i) => i.id))).toEqual(idsB);
    expect(listedB.every((i) => i.tenantId === tenantB)).toBe(true);
    const theirs = (await raw(tenantB))[2]!;
    expect((await call(`/v1.0/security/incidents/${theirs.id}`, { token: tokenA })).status).toBe(404);
    expect(
      (
        await call(`/v1.0/security/incidents/${theirs.id}`, {
          token: tokenA,
          method: 'PATCH',
          body: { status: 'resolved' },
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await call(`/v1.0/security/incidents/${theirs.id}/comments`, {
          token: tokenA,
          method: 'POST',
          body: { comment: 'x' },
        })
      ).status,
    ).toBe(404);
    expect((await control(`/tenants/${tenantB}/incidents/${theirs.id}`)).json).toEqual(theirs);
  });

  it("refuses a nextLink replayed with another tenant's token, altered, or sent with other options", async () => {
    const tokenA = await appToken(partner, tenantA);
    const first = await call(
      `/v1.0/security/incidents?$top=5&$filter=${encodeURIComponent("status ne 'redirected'")}`,
      { token: tokenA },
    );
    const next = first.json['@odata.nextLink'] as string;
    expect((await call(next, { token: tokenA })).status).toBe(200);
    const reason = 'Unable to parse the skiptoken value. Skiptoken value should always be server generated.';
    const replayed = await call(next, { token: await appToken(partner, tenantB) });
    expectInvalidQuery(replayed, reason);
    expect(replayed.json.value).toBeUndefined();
    const url = new URL(next);
    const token = url.searchParams.get('$skiptoken')!;
    const variants = [
      next.replace(encodeURIComponent(token), encodeURIComponent(`${token.slice(0, -2)}AA`)),
      `${graph.url}/v1.0/security/incidents?$top=5&$skiptoken=${encodeURIComponent(token)}`,
      `${next}&$skip=3`,
      next.replace('%24top=5', '').replace('$top=5', '$top=6'),
      `${graph.url}/v1.0/security/incidents?$skiptoken=garbage`,
    ];
    for (const variant of variants) expectInvalidQuery(await call(variant, { token: tokenA }), reason);
  });
});

describe('hostile and malformed input', () => {
  it.each([
    [
      '$filter=' + encodeURIComponent("lastUpdateDateTime ge '2024-01-01T00:00:00Z'"),
      "A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind 'GreaterThanOrEqual'.",
    ],
    [
      '$filter=' + encodeURIComponent('lastUpdateDateTime ge 2024-01-01'),
      "A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.Date' for operator kind 'GreaterThanOrEqual'.",
    ],
    [
      '$filter=' + encodeURIComponent('lastUpdateDateTime ge 2024-01-01T00:00:00'),
      /^Unrecognized 'Edm.DateTimeOffset' literal '2024-01-01T00:00:00'/,
    ],
    [
      '$filter=' + encodeURIComponent('lastUpdateDateTime ge 2024-13-45T00:00:00Z'),
      /^Unrecognized 'Edm.DateTimeOffset' literal/,
    ],
    [
      '$filter=' + encodeURIComponent("status eq 'Active'"),
      "The string 'Active' is not a valid enumeration type constant.",
    ],
    [
      '$filter=' + encodeURIComponent("displayName eq 'x'"),
      "The property 'displayName' cannot be used in the $filter query option.",
    ],
    [
      '$filter=' + encodeURIComponent('foo eq 1'),
      "Could not find a property named 'foo' on type 'microsoft.graph.security.incident'.",
    ],
    ['$filter=' + encodeURIComponent("startswith(assignedTo,'a')"), /^Function 'startswith' is not allowed/],
    ['$filter=' + encodeURIComponent("(status eq 'active'"), /^'\)' or operator expected at position 19 in/],
    ['$filter=' + encodeURIComponent('status eq'), /^Expression expected at position 9 in/],
    ['$filter=' + encodeURIComponent('status'), 'The $filter expression must evaluate to a single boolean value.'],
    ['$filter=' + encodeURIComponent("assignedTo eq 'abc"), /^There is an unterminated string literal at position 14/],
    ['$filter=' + encodeURIComponent("status eq 'active' && true"), /^Syntax error at position 19 in/],
    [
      '$filter=' + encodeURIComponent('severity eq 3'),
      /^A binary operator with incompatible types was detected\. Found operand types 'microsoft\.graph\.security\.alertSeverity' and 'Edm\.Int32'/,
    ],
    ['$filter=', "The value for OData query '$filter' cannot be empty."],
    [
      '$top=-1',
      "Invalid value '-1' for $top query option found. The $top query option requires a non-negative integer value.",
    ],
    ['$top=abc', /^Invalid value 'abc' for \$top/],
    ['$top=99999999999', /^Invalid value '99999999999' for \$top/],
    ['$skip=1.5', /^Invalid value '1.5' for \$skip/],
    ['$top=5&$top=6', "Query option '$top' was specified more than once, but it must be specified at most once."],
    ['$count=maybe', "'maybe' is not a valid count option."],
    ['$expand=evidence', "Could not find a property named 'evidence' on type 'microsoft.graph.security.incident'."],
    [
      '$expand=comments',
      "Property 'comments' on type 'microsoft.graph.security.incident' is not a navigation property or complex property. Only navigation properties can be expanded.",
    ],
    ['$expand=' + encodeURIComponent('alerts($top=1)'), /^The stand-in does not take options or paths inside \$expand/],
    ['$select=nope', "Could not find a property named 'nope' on type 'microsoft.graph.security.incident'."],
    [
      '$orderby=' + encodeURIComponent('createdDateTime desc'),
      "Query option 'OrderBy' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.",
    ],
    ['$search=ransomware', /^Query option 'Search' is not allowed/],
    ['$foo=1', "The query parameter '$foo' is not supported."],
  ])('refuses ?%s with 400 and the OData reason', async (query, reason) => {
    const answer = await call(`/v1.0/security/incidents?${query}`, { token: await appToken(partner, tenantA) });
    expectInvalidQuery(answer, reason);
  });

  it('bounds a huge or deeply nested $filter (400), and survives a URL too long to read', async () => {
    const token = await appToken(partner, tenantA);
    const clauses = Array.from(
      { length: 200 },
      (_, i) => `lastUpdateDateTime ge 2024-01-01T00:00:${String(i % 60).padStart(2, '0')}Z`,
    );
    const huge = clauses.join(' or ');
    expect(huge.length).toBeGreaterThan(9000);
    expectInvalidQuery(
      await call(`/v1.0/security/incidents?$filter=${encodeURIComponent(huge)}`, { token }),
      "The node count limit of '100' has been exceeded. To increase the limit, set the 'MaxNodeCount' property on EnableQueryAttribute or ODataValidationSettings.",
    );
    const nested = `${'('.repeat(900)}status eq 'active'${')'.repeat(900)}`;
    expectInvalidQuery(
      await call(`/v1.0/security/incidents?$filter=${encodeURIComponent(nested)}`, { token }),
      'The recursion limit has been exceeded.',
    );
    const notNot = `${'not '.repeat(900)}(status eq 'active')`;
    expect((await call(`/v1.0/security/incidents?$filter=${encodeURIComponent(notNot)}`, { token })).status).toBe(400);
    const tooLong = await call(`/v1.0/security/incidents?$filter=${'x'.repeat(40_000)}`, { token });
    expect(tooLong.status).toBeGreaterThanOrEqual(400);
    expect(tooLong.status).toBeLessThan(500);
    expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(200);
  });

  it('answers unknown paths, versions and methods in Graph error shape, and a body over 1 MB 413', async () => {
    const token = await appToken(partner, tenantA);
    expectGraphError(
      await call('/v1.0/security/incidents/1/evidence', { token }),
      400,
      'BadRequest',
      "Resource not found for the segment 'evidence'.",
    );
    expectGraphError(
      await call('/v1.0/security/incidentz', { token }),
      400,
      'BadRequest',
      "Resource not found for the segment 'incidentz'.",
    );
    expectGraphError(await call('/v1.0/security/alerts_v2', { token }), 501, 'NotImplemented');
    expectGraphError(await call('/v1.0/users', { token }), 501, 'NotImplemented');
    expectGraphError(await call('/v2.0/security/incidents', { token }), 400, 'BadRequest', 'Invalid version: v2.0');
    expectGraphError(await call('/beta/security/incidents', { token }), 501, 'NotImplemented');
    expectGraphError(await call('/v1.0/security/incidents/1', { token, method: 'DELETE' }), 405, 'MethodNotAllowed');
    expectGraphError(
      await call('/v1.0/security/incidents', { token, method: 'POST', body: {} }),
      405,
      'MethodNotAllowed',
    );
    const incident = (await raw(tenantW))[7]!;
    const big = await call(`/v1.0/security/incidents/${incident.id}`, {
      token: await appToken(partner, tenantW),
      method: 'PATCH',
      body: JSON.stringify({ customTags: ['x'.repeat(1_100_000)] }),
    });
    expectGraphError(big, 413, 'RequestEntityTooLarge');
    const longId = await call(`/v1.0/security/incidents/${'9'.repeat(5000)}`, { token });
    expectGraphError(longId, 404, 'NotFound');
    expect(longId.text.length).toBeLessThan(1000);
  });
});

describe('evolvable enums (Prefer: include-unknown-enum-members)', () => {
  it('writes awaitingAction as unknownFutureValue unless the client asks for the new members', async () => {
    const seeded = await control(`/tenants/${tenantW}/incidents`, 'POST', {
      incidents: [{ status: 'awaitingAction', displayName: 'Defender Experts need your action', severity: 'high' }],
    });
    expect(seeded.status).toBe(201);
    const [id] = seeded.json.incidentIds as string[];
    const token = await appToken(partner, tenantW);
    expect((await call(`/v1.0/security/incidents/${id}`, { token })).json.status).toBe('unknownFutureValue');
    const asked = await call(`/v1.0/security/incidents/${id}`, {
      token,
      headers: { prefer: 'include-unknown-enum-members' },
    });
    expect(asked.json).toMatchObject({
      id,
      status: 'awaitingAction',
      displayName: 'Defender Experts need your action',
      tenantId: tenantW,
    });
  });
});

describe('control surface', () => {
  it('seeds incidents as the Defender API writes them, mapped to Graph, and counts calls per tenant, client and endpoint', async () => {
    const tenant = randomUUID();
    expect((await control(`/tenants/${tenant}`, 'POST', { displayName: 'Tailspin' })).status).toBe(201);
    const defender = generateIncidents({
      tenantId: tenant,
      count: 3,
      seed: 'mapped',
      startId: 500,
      since: new Date(SINCE),
      until: new Date(UNTIL),
    });
    const seeded = await control(`/tenants/${tenant}/incidents`, 'POST', { defenderIncidents: defender });
    expect(seeded.json.incidentIds).toEqual(defender.map((i) => String(i.incidentId)));
    expect(await raw(tenant)).toEqual(defender.map((i) => toGraphIncident(i, tenant)));
    expect((await control('/tenants')).json.tenants).toContainEqual({
      tenantId: tenant,
      displayName: 'Tailspin',
      incidentCount: 3,
    });

    await control('/stats', 'DELETE');
    const token = await appToken(partner, tenantW);
    const incident = (await raw(tenantW))[8]!;
    await call('/v1.0/security/incidents?$top=1', { token });
    await call(`/v1.0/security/incidents/${incident.id}`, { token });
    await call(`/v1.0/security/incidents/${incident.id}`, {
      token,
      method: 'PATCH',
      body: { customTags: ['counted'] },
    });
    await call(`/v1.0/security/incidents/${incident.id}/comments`, {
      token,
      method: 'POST',
      body: { comment: 'counted' },
    });
    await call('/v1.0/security/incidents?$top=99', { token });
    await call('/v1.0/security/incidents');
    const clients = (await control('/stats')).json.clients;
    expect(clients).toContainEqual({
      tenantId: tenantW,
      clientId: partner.clientId,
      calls: 5,
      byEndpoint: { listIncidents: 2, getIncident: 1, updateIncident: 1, createComment: 1 },
      throttled: 0,
      errors: 1,
    });
    expect(clients).toContainEqual(expect.objectContaining({ tenantId: '(unauthenticated)', errors: 1 }));
  });
});

describe('POST /v1.0/security/runHuntingQuery', () => {
  /** H: the tenant hunted in; I: another customer of the same partner, with telemetry of its own. */
  const tenantH = randomUUID();
  const tenantI = randomUUID();
  const hunter = { clientId: randomUUID(), secret: `hunter-${randomUUID()}` };
  const huntingCli = { clientId: randomUUID() };
  const hana = { userPrincipalName: 'hana@tenant-h.test', password: `pw-${randomUUID()}`, displayName: 'Hana Hunter' };
  const DAY_MS = 86_400_000;
  const seededAt = Date.now();
  const daysAgo = (days: number) => new Date(seededAt - days * DAY_MS);
  /** Hunting keeps 30 days: these end a day ago, so neither PT1H nor P1D reaches them and the default finds all. */
  const recent: Record<string, GenerateOptions> = {
    [tenantH]: { tenantId: tenantH, count: 30, seed: 'hunt-h', startId: 1, since: daysAgo(20), until: daysAgo(1) },
    [tenantI]: {
      tenantId: tenantI,
      count: 30,
      seed: 'hunt-i',
      startId: 700_000,
      since: daysAgo(20),
      until: daysAgo(1),
    },
  };
  /** Older than the 30 days hunting keeps: no Timespan reaches them. */
  const stale: GenerateOptions = {
    tenantId: tenantH,
    count: 5,
    seed: 'hunt-h-stale',
    startId: 500,
    since: daysAgo(60),
    until: daysAgo(40),
  };
  const expectedAlertIds = (tenantId: string) =>
    generateIncidents(recent[tenantId]!)
      .flatMap((incident) => incident.alerts ?? [])
      .map((alert) => alert.alertId)
      .sort();

  const hunt = (token: string, body: object | string) =>
    call('/v1.0/security/runHuntingQuery', { token, method: 'POST', body });
  const cpuSecondsUsed = async (tenantId: string) =>
    (await control(`/tenants/${tenantId}/hunting`)).json.cpuSecondsUsed as number;
  const alertIdsOf = (answer: Answer) =>
    (answer.json.results as { AlertId: string }[]).map((row) => row.AlertId).sort();

  /** A user token (password grant) for Hana in tenant H, through a client with the delegated scope. */
  async function hanaToken(): Promise<string> {
    const res = await fetch(`${entra.url}/${tenantH}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'password',
        client_id: huntingCli.clientId,
        username: hana.userPrincipalName,
        password: hana.password,
        scope: `${GRAPH_RESOURCE}/ThreatHunting.Read.All`,
      }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  beforeAll(async () => {
    const r = entra.registry;
    r.addTenant({ tenantId: tenantH, displayName: 'Northwind' });
    r.addTenant({ tenantId: tenantI, displayName: 'Tailwind' });
    r.addApp({
      clientId: hunter.clientId,
      displayName: 'MSSP hunting app',
      homeTenantId: tenantA,
      multiTenant: true,
      secrets: [hunter.secret],
    });
    for (const tenantId of [tenantH, tenantI])
      r.grantAppPermissions(tenantId, hunter.clientId, GRAPH_RESOURCE, ['ThreatHunting.Read.All']);
    r.grantAppPermissions(tenantH, partner.clientId, GRAPH_RESOURCE, ['SecurityIncident.ReadWrite.All']);
    r.addUser({ tenantId: tenantH, ...hana });
    r.addApp({
      clientId: huntingCli.clientId,
      displayName: 'analyst hunting CLI',
      homeTenantId: tenantH,
      multiTenant: false,
    });
    r.grantDelegatedPermissions(tenantH, huntingCli.clientId, GRAPH_RESOURCE, ['ThreatHunting.Read.All']);
    // Seeded through the control surface, as generated seeds are: the tenant's incidents and its hunting data.
    for (const options of [recent[tenantH]!, stale, recent[tenantI]!]) {
      expect((await control(`/tenants/${options.tenantId}`, 'POST', {})).status).toBe(201);
      const seeded = await control(`/tenants/${options.tenantId}/incidents`, 'POST', {
        count: options.count,
        seed: options.seed,
        startId: options.startId,
        since: options.since!.toISOString(),
        until: options.until!.toISOString(),
      });
      expect(seeded.status).toBe(201);
    }
  });

  it('refuses a token without ThreatHunting.Read.All 403 in Graph words, for an app or a user, and charges nothing', async () => {
    const app = await hunt(await appToken(partner, tenantH), { Query: 'AlertInfo' });
    expectGraphError(
      app,
      403,
      'Forbidden',
      'Missing application roles. API required roles: ThreatHunting.Read.All, application roles: SecurityIncident.ReadWrite.All.',
    );
    const user = await hunt(await userToken(analystRead, 'SecurityIncident.Read.All'), { Query: 'AlertInfo' });
    expectGraphError(
      user,
      403,
      'Forbidden',
      "Missing scope permissions on the request. API requires one of 'ThreatHunting.Read.All'. Scopes on the request 'SecurityIncident.Read.All'",
    );
    expect(app.text).not.toContain('AlertId');
    expect(await cpuSecondsUsed(tenantH)).toBe(0);
    expect(await cpuSecondsUsed(tenantW)).toBe(0);
  });

  it("answers rows of the caller's tenant only: another tenant's alerts and devices never appear, even asked for by value", async () => {
    const [tokenH, tokenI] = [await appToken(hunter, tenantH), await appToken(hunter, tenantI)];
    const alertsH = await hunt(tokenH, { Query: 'AlertInfo' });
    const alertsI = await hunt(tokenI, { Query: 'AlertInfo' });
    expect(alertIdsOf(alertsH)).toEqual(expectedAlertIds(tenantH));
    expect(alertIdsOf(alertsI)).toEqual(expectedAlertIds(tenantI));
    const idsOfI = new Set(expectedAlertIds(tenantI));
    expect(idsOfI.size).toBeGreaterThan(0);
    expect(alertIdsOf(alertsH).filter((id) => idsOfI.has(id))).toEqual([]);

    // Asked for by a value only tenant I has, tenant H's token finds nothing; tenant I's finds it.
    const alertOfI = [...idsOfI][0]!;
    const byId = `AlertInfo | where AlertId == "${alertOfI}"`;
    expect((await hunt(tokenH, { Query: byId })).json.results).toEqual([]);
    expect(alertIdsOf(await hunt(tokenI, { Query: byId }))).toEqual([alertOfI]);
    const devicesOf = (options: GenerateOptions) =>
      new Set(
        generateIncidents(options).flatMap((i) =>
          (i.alerts ?? []).flatMap((a) => (a.devices ?? []).map((d) => d.mdatpDeviceId)),
        ),
      );
    const devicesH = devicesOf(recent[tenantH]!);
    const onlyI = [...devicesOf(recent[tenantI]!)].filter((id) => !devicesH.has(id));
    expect(onlyI.length).toBeGreaterThan(0);
    const evidenceH = await hunt(tokenH, { Query: 'AlertEvidence | where EntityType == "Machine"' });
    expect(evidenceH.status, evidenceH.text).toBe(200);
    expect(evidenceH.json.results.length).toBeGreaterThan(0);
    for (const row of evidenceH.json.results as { DeviceId: string }[]) expect(onlyI).not.toContain(row.DeviceId);
    const byDevice = `AlertEvidence | where DeviceId == "${onlyI[0]}"`;
    expect((await hunt(tokenH, { Query: byDevice })).json.results).toEqual([]);
    expect((await hunt(tokenI, { Query: byDevice })).json.results.length).toBeGreaterThan(0);
  });

  it('answers 200 with the documented huntingQueryResults: @odata.context, schema of {name, type}, results, no Stats', async () => {
    const token = await appToken(hunter, tenantH);
    const answer = await hunt(token, { Query: 'AlertInfo | project Timestamp, AlertId, Severity | take 3' });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^application\/json;odata\.metadata=minimal/);
    expect(Object.keys(answer.json)).toEqual(['@odata.context', 'schema', 'results']);
    expect(answer.json['@odata.context']).toBe(
      `${graph.url}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults`,
    );
    expect(answer.json.schema).toEqual([
      { name: 'Timestamp', type: 'DateTime' },
      { name: 'AlertId', type: 'String' },
      { name: 'Severity', type: 'String' },
    ]);
    expect(answer.json.results).toHaveLength(3);
    for (const row of answer.json.results) {
      expect(Object.keys(row)).toEqual(['Timestamp', 'AlertId', 'Severity']);
      expect(row.Timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$/);
      expect(expectedAlertIds(tenantH)).toContain(row.AlertId);
    }
    // The namespace-qualified name the Graph SDKs send answers alike; another method is 405.
    const qualified = await call('/v1.0/security/microsoft.graph.security.runHuntingQuery', {
      token,
      method: 'POST',
      body: { Query: 'AlertInfo | project Timestamp, AlertId, Severity | take 3' },
    });
    expect(qualified.status, qualified.text).toBe(200);
    expect(qualified.json).toEqual(answer.json);
    expectGraphError(await call('/v1.0/security/runHuntingQuery', { token }), 405, 'MethodNotAllowed');
    expectGraphError(
      await call('/v1.0/security/runHuntingQuery/more', { token, method: 'POST', body: { Query: 'AlertInfo' } }),
      400,
      'BadRequest',
      "Resource not found for the segment 'more'.",
    );
  });

  it('takes Query and Timespan in any casing (the v1.0 page writes Query, the beta page query), each once', async () => {
    const token = await appToken(hunter, tenantH);
    const upper = await hunt(token, { Query: 'AlertInfo | project AlertId' });
    const lower = await hunt(token, { query: 'AlertInfo | project AlertId' });
    expect(upper.status, upper.text).toBe(200);
    expect(lower.status, lower.text).toBe(200);
    expect(alertIdsOf(upper)).toEqual(expectedAlertIds(tenantH));
    expect(lower.json).toEqual(upper.json);
    for (const body of [
      { query: 'AlertInfo', timespan: 'PT1H' },
      { QUERY: 'AlertInfo', TimeSpan: 'PT1H' },
    ]) {
      const narrowed = await hunt(token, body);
      expect(narrowed.status, narrowed.text).toBe(200);
      expect(narrowed.json.results).toEqual([]);
    }
    expectGraphError(
      await hunt(token, { Query: 'AlertInfo', query: 'DeviceInfo' }),
      400,
      'BadRequest',
      "Multiple parameters with the name 'query' were found in the request payload.",
    );
    expectGraphError(
      await hunt(token, { Query: 'AlertInfo', Timespans: 'P1D' }),
      400,
      'BadRequest',
      "The parameter 'Timespans' in the request payload is not a valid parameter for the operation 'runHuntingQuery'.",
    );
  });

  it.each([
    ['no Query', {}, /^The parameter 'Query' is required/],
    ['only a Timespan', { Timespan: 'P1D' }, /^The parameter 'Query' is required/],
    ['a null Query', { Query: null }, /^The parameter 'Query' is required/],
    ['an empty Query', { Query: '' }, "The parameter 'Query' must not be empty."],
    ['a blank Query', { Query: ' \n\t ' }, "The parameter 'Query' must not be empty."],
    ['a number', { Query: 42 }, "The parameter 'Query' must be a string."],
    ['an array', { Query: ['AlertInfo'] }, "The parameter 'Query' must be a string."],
    ['an object', { Query: { table: 'AlertInfo' } }, "The parameter 'Query' must be a string."],
    ['a JSON array body', '["AlertInfo"]', /^The request body must be a JSON object/],
    ['a JSON string body', '"AlertInfo"', /^The request body must be a JSON object/],
    ['a body that is not JSON', 'AlertInfo | take 1', /^Unable to read JSON request payload/],
    ['an empty body', '', /^Unable to read JSON request payload/],
  ] as const)('refuses %s with 400 BadRequest, and charges nothing', async (_what, body, message) => {
    const answer = await hunt(await appToken(hunter, tenantH), body);
    expectGraphError(answer, 400, 'BadRequest', message);
    expect(await cpuSecondsUsed(tenantH)).toBe(0);
  });

  it.each([
    'NoSuchTable',
    'AlertInfo | summarize count() by Severity',
    'AlertInfo | where',
    'AlertInfo | where Title == "unterminated',
    'AlertInfo | take -1',
  ])('answers %j, which the KQL subset refuses, 400 BadRequest with its reason, and charges nothing', async (query) => {
    let reason: string | undefined;
    try {
      runAdvancedHunting([], query, Date.now(), () => ({ runSeconds: 0, cpuSeconds: 0 }));
    } catch (err) {
      expect(err).toBeInstanceOf(KqlError);
      reason = (err as KqlError).message;
    }
    expect(reason).toBeDefined();
    expectGraphError(await hunt(await appToken(hunter, tenantH), { Query: query }), 400, 'BadRequest', reason);
    expect(await cpuSecondsUsed(tenantH)).toBe(0);
  });

  it('narrows the rows to the Timespan: back from now, start/end, duration/end, start/duration or a start alone, within the 30 days kept', async () => {
    const token = await appToken(hunter, tenantH);
    const rowsIn = async (timespan?: string) => {
      const answer = await hunt(token, {
        Query: 'AlertInfo | project Timestamp, AlertId',
        ...(timespan === undefined ? {} : { Timespan: timespan }),
      });
      expect(answer.status, answer.text).toBe(200);
      return alertIdsOf(answer);
    };
    const all = (await hunt(token, { Query: 'AlertInfo | project Timestamp, AlertId' })).json.results as {
      Timestamp: string;
      AlertId: string;
    }[];
    // The stale alerts (40-60 days old) are not there, whatever the Timespan asks.
    expect(all.map((row) => row.AlertId).sort()).toEqual(expectedAlertIds(tenantH));
    expect(await rowsIn('P30D')).toEqual(expectedAlertIds(tenantH));
    expect(await rowsIn('P90D')).toEqual(expectedAlertIds(tenantH));
    expect(await rowsIn(`${daysAgo(90).toISOString()}/${daysAgo(30).toISOString()}`)).toEqual([]);
    // The recent alerts end a day before the seeding.
    expect(await rowsIn('PT1H')).toEqual([]);
    expect(await rowsIn('P1D')).toEqual([]);

    // A boundary between two alerts' times, so that no row sits on it.
    const times = [...new Set(all.map((row) => parseTimestamp(row.Timestamp)!))].sort((a, b) => (a < b ? -1 : 1));
    expect(times.length).toBeGreaterThan(4);
    const half = Math.floor(times.length / 2);
    const boundary = (times[half - 1]! + times[half]!) / 2n;
    const at = formatTimestamp(boundary);
    const twoDays = 2n * BigInt(DAY_MS) * 10_000n;
    const idsWhere = (keep: (ticks: bigint) => boolean) =>
      all
        .filter((row) => keep(parseTimestamp(row.Timestamp)!))
        .map((row) => row.AlertId)
        .sort();
    const before = idsWhere((t) => t <= boundary);
    const after = idsWhere((t) => t >= boundary);
    expect(before.length).toBeGreaterThan(0);
    expect(after.length).toBeGreaterThan(0);
    expect(await rowsIn(`${formatTimestamp(times[0]!)}/${at}`)).toEqual(before);
    expect(await rowsIn(`${at}/${new Date(seededAt).toISOString()}`)).toEqual(after);
    expect(await rowsIn(at)).toEqual(after);
    expect(await rowsIn(`P2D/${at}`)).toEqual(idsWhere((t) => t >= boundary - twoDays && t <= boundary));
    expect(await rowsIn(`${at}/P2D`)).toEqual(idsWhere((t) => t >= boundary && t <= boundary + twoDays));
    expect(await rowsIn(`${at}/PT0S`)).toEqual([]);
    // A date-time without a zone is UTC; an offset is honoured.
    expect(await rowsIn(at.slice(0, -1))).toEqual(after);
    const inParis = new Date(Number(boundary / 10_000n) + 3_600_000).toISOString().replace('Z', '+01:00');
    expect(await rowsIn(`${formatTimestamp(times[0]!)}/${inParis}`)).toEqual(
      idsWhere((t) => t <= (boundary / 10_000n) * 10_000n),
    );
  });

  it.each([
    'yesterday',
    '30d',
    'P',
    'PT',
    'P1H',
    'P1DT',
    '-P1D',
    'P1W2D',
    ' P1D',
    '',
    'P1D/P2D',
    'P1D/',
    '/P1D',
    'a/b/c',
    '2024-02-30T00:00:00Z',
    '2024-02-01T00:00:00Z/2024-01-01T00:00:00Z',
    '2999-01-01T00:00:00Z',
    `P${'9'.repeat(400)}Y`,
    42,
    ['P1D'],
  ])('refuses the Timespan %j with 400 BadRequest, and charges nothing', async (timespan) => {
    const answer = await hunt(await appToken(hunter, tenantH), { Query: 'AlertInfo', Timespan: timespan });
    expectGraphError(answer, 400, 'BadRequest', /^The parameter 'Timespan' (is not valid|must be a string)/);
    expect(answer.text.length).toBeLessThan(1000);
    expect(await cpuSecondsUsed(tenantH)).toBe(0);
  });

  it("takes a user's delegated ThreatHunting.Read.All in scp, and answers the user's tenant's rows", async () => {
    const token = await hanaToken();
    expect(decodeJwt(token)).toMatchObject({
      scp: 'ThreatHunting.Read.All',
      upn: hana.userPrincipalName,
      tid: tenantH,
    });
    const answer = await hunt(token, { Query: 'AlertInfo | project AlertId' });
    expect(answer.status, answer.text).toBe(200);
    expect(alertIdsOf(answer)).toEqual(expectedAlertIds(tenantH));
  });

  it('blocks the tenant 429 TooManyRequests with Retry-After once its hunting CPU quota is spent, until the next 15-minute cycle', async () => {
    const token = await appToken(hunter, tenantH);
    expect((await hunt(token, { Query: 'AlertInfo' })).status).toBe(200);
    expect(await cpuSecondsUsed(tenantH)).toBeGreaterThan(0);
    expect((await control(`/tenants/${tenantH}/hunting`, 'PATCH', { quotaSpent: true })).json.blocked).toBe(true);

    const blocked = await hunt(token, { Query: 'AlertInfo' });
    expectGraphError(
      blocked,
      429,
      'TooManyRequests',
      /^You have exceeded processing resources allocated to this tenant\. You can run queries again in \d{2}:\d{2}:\d{2}\.$/,
    );
    const retryAfter = Number(blocked.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(15 * 60);
    const [, hh, mm, ss] = /in (\d{2}):(\d{2}):(\d{2})\.$/.exec(blocked.json.error.message)!;
    expect(Math.abs(Number(hh) * 3600 + Number(mm) * 60 + Number(ss) - retryAfter)).toBeLessThanOrEqual(1);
    // A bad query is not looked at while the tenant is blocked (the quota comes first, as on the Defender API).
    expect((await hunt(token, { Query: 'NoSuchTable' })).status).toBe(429);

    // The quota is the tenant's: another tenant hunts on, and the tenant's incidents API is not hunting's.
    expect((await hunt(await appToken(hunter, tenantI), { Query: 'AlertInfo | take 1' })).status).toBe(200);
    expect((await call('/v1.0/security/incidents?$top=1', { token: await appToken(partner, tenantH) })).status).toBe(
      200,
    );
    clockOffsetMs += retryAfter * 1000;
    const next = await hunt(token, { Query: 'AlertInfo | take 1' });
    expect(next.status, next.text).toBe(200);
  });

  it('stops a query that would run over three minutes: 400 BadRequest, charged the three minutes it ran', async () => {
    const token = await appToken(hunter, tenantH);
    await control(`/tenants/${tenantH}/hunting`, 'PATCH', { nextQueries: { runSeconds: 181 } });
    expectGraphError(
      await hunt(token, { Query: 'AlertInfo' }),
      400,
      'BadRequest',
      'Query exceeded the timeout period.',
    );
    expect(await cpuSecondsUsed(tenantH)).toBe(180);
    expect((await hunt(token, { Query: 'AlertInfo | take 1' })).status).toBe(200);
  });

  it("counts against the security API's budget per app per tenant, throttled before the permission is checked", async () => {
    await control('/stats', 'DELETE');
    await control('/throttle', 'PATCH', { perAppPerTenantPerMinute: 2 });
    try {
      const token = await appToken(hunter, tenantI);
      expect((await hunt(token, { Query: 'AlertInfo | take 1' })).status).toBe(200);
      // The hunting app may not list incidents (403), but the call counts.
      expect((await call('/v1.0/security/incidents?$top=1', { token })).status).toBe(403);
      const spent = await cpuSecondsUsed(tenantI);
      const throttled = await hunt(token, { Query: 'AlertInfo' });
      expectGraphError(throttled, 429, 'TooManyRequests', 'Please retry again later.');
      expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await cpuSecondsUsed(tenantI)).toBe(spent);
      expect((await control('/stats')).json.clients).toContainEqual({
        tenantId: tenantI,
        clientId: hunter.clientId,
        calls: 3,
        byEndpoint: { runHuntingQuery: 2, listIncidents: 1 },
        throttled: 1,
        errors: 1,
      });
    } finally {
      await control('/throttle', 'PATCH', { perAppPerTenantPerMinute: 150 });
    }
  });
});
