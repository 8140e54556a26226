import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ClientSecretCredential } from '@azure/identity';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { FaultBoard, type FaultSpec } from '../../../local/common/faults.js';
import { startHttpsServer, type RunningServer } from '../../../local/common/https-server.js';
import { GRAPH_RESOURCE } from '../../../local/entra/registry.js';
import { startEntra, type EntraStandIn } from '../../../local/entra/server.js';
import { startGraph, type GraphIncident as StoredIncident, type GraphStandIn } from '../../../local/graph/server.js';
import type { TokenSource } from '../../../shared/sources/api-call.js';
import { BudgetSpentError, CallBudget, PUSH_CAP, type ApiCallBudget } from '../../../shared/sources/call-budget.js';
import { PermanentError, RetryableError } from '../../../shared/errors.js';
import {
  GRAPH_BUDGET,
  GRAPH_PAGE_SIZE,
  GraphClient,
  type GraphClientOptions,
  type GraphIncidentPage,
} from '../../../shared/sources/graph/client.js';
import { parseTenant, type Tenant } from '../../../shared/tenants/tenants.js';
import { normalizeTimestamp } from '../../../shared/timestamps.js';

/**
 * The relay's Microsoft Graph client against the Graph stand-in over real HTTPS, with real tokens from the
 * Entra stand-in (client credentials through @azure/identity, as the relay gets them). Hostile answers come
 * from servers of the test's own (a rogue "Graph" at the configured URL, a foreign server that must never
 * be reached).
 */

const SINCE = '2024-01-01T00:00:00Z';
const UNTIL = '2024-02-01T00:00:00Z';
const COUNT_A = 137; // three pages: 50, 50, 37

/** A: read-only listings. W: the tenant tests write to. B: another customer. C: no Graph data. */
const tenantIds = { A: randomUUID(), W: randomUUID(), B: randomUUID(), C: randomUUID() };
const partner = { clientId: randomUUID(), secret: `partner-${randomUUID()}` };
const reader = { clientId: randomUUID(), secret: `reader-${randomUUID()}` };

let entra: EntraStandIn;
let graph: GraphStandIn;
const faults = new FaultBoard();
/** Added to the stand-in's clock: a test's fake sleep moves it, so a throttle window passes without waiting. */
let clockOffsetMs = 0;

const tenantOf = (tenantId: string, displayName = 'Graph tenant'): Tenant =>
  parseTenant({
    tenantId,
    displayName,
    context: 'partner',
    clientId: partner.clientId,
    credential: { kind: 'secret', secretName: 'graph-test' },
  });
const A = tenantOf(tenantIds.A, 'Contoso');
const W = tenantOf(tenantIds.W, 'Woodgrove');
const B = tenantOf(tenantIds.B, 'Fabrikam');
const C = tenantOf(tenantIds.C, 'Litware');

/**
 * Tokens from the Entra stand-in, one credential per tenant, recording what was asked. `stale` hands a
 * tenant's next token out as given (a revoked or wrong one) once; `always` forever.
 */
class EntraTokens implements TokenSource {
  readonly asked: string[] = [];
  readonly invalidated: string[] = [];
  readonly handedOut: { tenantId: string; token: string }[] = [];
  readonly stale = new Map<string, string>();
  readonly always = new Map<string, string>();
  readonly #tokens = new Map<string, Promise<string>>();

  constructor(private readonly app: { clientId: string; secret: string }) {}

  async getToken(tenant: Tenant): Promise<string> {
    this.asked.push(tenant.tenantId);
    const given = this.always.get(tenant.tenantId) ?? this.stale.get(tenant.tenantId);
    this.stale.delete(tenant.tenantId);
    let token = given;
    if (token === undefined) {
      if (!this.#tokens.has(tenant.tenantId)) {
        const credential = new ClientSecretCredential(tenant.tenantId, this.app.clientId, this.app.secret, {
          authorityHost: entra.url,
          disableInstanceDiscovery: true,
        });
        this.#tokens.set(
          tenant.tenantId,
          credential.getToken(`${GRAPH_RESOURCE}/.default`).then((t) => t!.token),
        );
      }
      token = await this.#tokens.get(tenant.tenantId)!;
    }
    this.handedOut.push({ tenantId: tenant.tenantId, token });
    return token;
  }

  invalidate(tenant: Tenant): void {
    this.invalidated.push(tenant.tenantId);
    this.#tokens.delete(tenant.tenantId);
  }
}

let tokens: EntraTokens;
let readerTokens: EntraTokens;

/** Sleeps nothing: records the wait and moves the stand-in's clock by it. */
function fakeSleep(): { sleep: (ms: number) => Promise<void>; slept: number[] } {
  const slept: number[] = [];
  return {
    slept,
    sleep: async (ms) => {
      slept.push(ms);
      clockOffsetMs += ms;
    },
  };
}

/** A budget of the Graph limits that records what the client tells it. */
class SpyBudget implements ApiCallBudget {
  readonly inner = new CallBudget(GRAPH_BUDGET);
  readonly taken: { tenantId: string; budgetClass?: string; api?: string }[] = [];
  readonly throttledCalls: { tenantId: string; retryAfterMs: number; api: string }[] = [];
  waitTime(tenantId: string): number {
    return this.inner.waitTime(tenantId);
  }
  async take(tenantId: string, maxWaitMs?: number, budgetClass?: 'poll' | 'analyst' | 'push', api?: string) {
    this.taken.push({ tenantId, budgetClass, api });
    return this.inner.take(tenantId, maxWaitMs, budgetClass);
  }
  async throttled(tenantId: string, retryAfterMs: number, api: string): Promise<void> {
    this.throttledCalls.push({ tenantId, retryAfterMs, api });
  }
}

function clientFor(options: Partial<GraphClientOptions> = {}): GraphClient {
  return new GraphClient({ apiUrl: graph.url, tokens, sleep: async () => undefined, ...options });
}

async function control(path: string, method = 'GET', body?: object) {
  const response = await fetch(`${graph.controlUrl}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body && JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

async function stored(tenantId: string): Promise<StoredIncident[]> {
  return (await control(`/tenants/${tenantId}/incidents`)).json.value as StoredIncident[];
}

async function storedOne(tenantId: string, id: string): Promise<StoredIncident> {
  return (await control(`/tenants/${tenantId}/incidents/${id}`)).json as StoredIncident;
}

/** Calls the stand-in received from the partner app for the tenant. */
const standInCalls = (tenantId: string, clientId: string = partner.clientId) => graph.stats.for(tenantId, clientId);

async function listAll(
  client: GraphClient,
  tenant: Tenant,
  since = SINCE,
  options: { maxPages?: number; skip?: number; nextLink?: string } = {},
): Promise<GraphIncidentPage[]> {
  const pages: GraphIncidentPage[] = [];
  for await (const page of client.incidentPagesSince(tenant, since, options)) pages.push(page);
  return pages;
}

async function failureOf(work: Promise<unknown> | (() => Promise<unknown>)): Promise<Error> {
  const promise = typeof work === 'function' ? work() : work;
  const outcome = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome, 'expected a failure').toBeInstanceOf(Error);
  return outcome as Error;
}

/** A server of the test's own; `answer` decides what it says, every request is recorded. */
interface RecordingServer extends RunningServer {
  requests: { method: string; url: string; authorization?: string; body: string }[];
}

async function startRecordingServer(
  answer: (req: IncomingMessage, res: ServerResponse, self: RunningServer) => void = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":[]}');
  },
): Promise<RecordingServer> {
  const requests: RecordingServer['requests'] = [];
  // The handler runs only once the server listens, so it always finds the server here.
  const running: { server?: RunningServer } = {};
  running.server = await startHttpsServer(inject('tls'), async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body });
    answer(req, res, running.server!);
  });
  return Object.assign(running.server, { requests });
}

beforeAll(async () => {
  entra = await startEntra({ tls: inject('tls') });
  const r = entra.registry;
  for (const tenant of [A, W, B, C]) r.addTenant({ tenantId: tenant.tenantId, displayName: tenant.displayName });
  for (const [app, name] of [
    [partner, 'MSSP partner app'],
    [reader, 'read-only reporting app'],
  ] as const)
    r.addApp({
      clientId: app.clientId,
      displayName: name,
      homeTenantId: tenantIds.A,
      multiTenant: true,
      secrets: [app.secret],
    });
  for (const tenant of [A, W, B, C])
    r.grantAppPermissions(tenant.tenantId, partner.clientId, GRAPH_RESOURCE, ['SecurityIncident.ReadWrite.All']);
  r.grantAppPermissions(tenantIds.W, reader.clientId, GRAPH_RESOURCE, ['SecurityIncident.Read.All']);

  graph = await startGraph({
    tls: inject('tls'),
    verifier: entra.verifier,
    faults,
    authorityHost: entra.url,
    now: () => Date.now() + clockOffsetMs,
  });
  for (const [tenant, seed] of [
    [A, { count: COUNT_A, seed: 'graph-client-a', startId: 1 }],
    [W, { count: 12, seed: 'graph-client-w', startId: 5000 }],
    [B, { count: 30, seed: 'graph-client-b', startId: 900_000 }],
  ] as const) {
    expect((await control(`/tenants/${tenant.tenantId}`, 'POST', {})).status).toBe(201);
    const seeded = await control(`/tenants/${tenant.tenantId}/incidents`, 'POST', {
      ...seed,
      since: SINCE,
      until: UNTIL,
    });
    expect(seeded.status).toBe(201);
  }
});

afterAll(async () => {
  await graph?.close();
  await entra?.close();
});

beforeEach(async () => {
  tokens = new EntraTokens(partner);
  readerTokens = new EntraTokens(reader);
  faults.clear();
  graph.throttle.reset();
  graph.stats.reset();
});

describe('GraphClient: the tenant token goes to the configured Graph only (hostile links first)', () => {
  let foreign: RecordingServer;
  beforeAll(async () => {
    foreign = await startRecordingServer();
  });
  afterAll(async () => {
    await foreign?.close();
  });
  beforeEach(() => {
    foreign.requests.length = 0;
  });

  it('refuses a continuation to another origin or another path before any request or token', async () => {
    const client = clientFor();
    const graphUrl = new URL(graph.url);
    const hostile = [
      `${foreign.url}/v1.0/security/incidents?$skiptoken=abc`,
      `//localhost:${foreign.port}/v1.0/security/incidents`,
      `http://${graphUrl.host}/v1.0/security/incidents?$skiptoken=abc`,
      `https://127.0.0.1:${graphUrl.port}/v1.0/security/incidents`,
      `https://user:secret@${graphUrl.host}/v1.0/security/incidents`,
      `${graph.url}/v1.0/users`,
      `${graph.url}/v1.0/security/incidents/../../users?$top=5`,
      `${graph.url}/v1.0/security/incidents/17`,
      `${graph.url}/v1.0/security/incidents/17/comments`,
      `${graph.url}/v1.0/security/incidentsX`,
      `${graph.url}/v1.0/security/alerts_v2`,
      `${graph.url}/beta/security/incidents`,
      `/v1.0/security/incidents?$skiptoken=abc`,
      '',
      'javascript:alert(1)',
    ];
    for (const nextLink of hostile) {
      const err = await failureOf(listAll(client, W, SINCE, { nextLink }));
      expect(err, nextLink).toBeInstanceOf(PermanentError);
      expect(err.message).toMatch(
        new RegExp(
          `^Refused a nextLink from the continuation it was given to .*: the tenant's token goes only to ${graph.url}/v1\\.0/security/incidents \\(tenant ${W.tenantId}, listIncidents\\)$`,
        ),
      );
      // Where it led, never what it carried.
      expect(err.message).not.toContain('skiptoken');
      expect(err.message).not.toContain('secret');
    }
    expect(foreign.requests).toEqual([]);
    expect(tokens.asked).toEqual([]);
    expect(standInCalls(W.tenantId).calls).toBe(0);
    expect(client.calls.size).toBe(0);
  });

  describe('from a rogue Graph at the configured URL', () => {
    let rogue: RecordingServer;
    /** What the rogue answers to the incidents list. */
    let listAnswer: (res: ServerResponse, self: RunningServer) => void;
    beforeAll(async () => {
      rogue = await startRecordingServer((_req, res, self) => listAnswer(res, self));
    });
    afterAll(async () => {
      await rogue?.close();
    });
    beforeEach(() => {
      rogue.requests.length = 0;
    });
    const page = (nextLink: string) =>
      JSON.stringify({
        value: [{ id: '1', lastUpdateDateTime: '2024-01-02T00:00:00Z', status: 'active' }],
        '@odata.nextLink': nextLink,
      });

    it('refuses a nextLink to another origin or path before handing the page over, and the foreign server hears nothing', async () => {
      const client = clientFor({ apiUrl: `${rogue.url}/` });
      for (const link of [
        `${foreign.url}/v1.0/security/incidents?$skiptoken=stolen`,
        `https://localhost:${foreign.port}/v1.0/security/incidents`,
        `${rogue.url}/v1.0/me/messages`,
        `${rogue.url}/v1.0/security/incidents/%2e%2e/%2e%2e/users`,
      ]) {
        listAnswer = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(page(link));
        const yielded: GraphIncidentPage[] = [];
        const err = await failureOf(async () => {
          for await (const p of client.incidentPagesSince(W, SINCE)) yielded.push(p);
        });
        expect(err, link).toBeInstanceOf(PermanentError);
        expect(err.message).toMatch(/^Refused a nextLink from Microsoft Graph's answer to /);
        expect(err.message).toContain(`(tenant ${W.tenantId}, listIncidents)`);
        // The page whose link is refused is not handed over: no caller can keep the link to resume from.
        expect(yielded).toEqual([]);
      }
      expect(foreign.requests).toEqual([]);
      // Every request with the token went to the configured origin, to the incidents collection.
      expect(rogue.requests).toHaveLength(4);
      for (const request of rogue.requests) {
        expect(request.url).toMatch(
          /^\/v1\.0\/security\/incidents\?\$expand=alerts&\$filter=lastUpdateDateTime%20ge%20/,
        );
        expect(request.authorization).toMatch(/^Bearer ey/);
      }
    });

    it('never follows a redirect with the token: a 3xx is refused as an answer', async () => {
      const client = clientFor({ apiUrl: rogue.url });
      for (const status of [301, 302, 307, 308]) {
        listAnswer = (res) => res.writeHead(status, { location: `${foreign.url}/v1.0/security/incidents` }).end();
        const err = await failureOf(listAll(client, W));
        expect(err).toBeInstanceOf(PermanentError);
        expect(err.message).toBe(`Microsoft Graph rejected the call (${status}) (tenant ${W.tenantId}, listIncidents)`);
      }
      expect(foreign.requests).toEqual([]);
    });

    it('follows a link back to the collection on the same origin, whatever its case, and stops a link that loops', async () => {
      const client = clientFor({ apiUrl: rogue.url });
      let served = 0;
      listAnswer = (res, self) => {
        served += 1;
        const body =
          served === 1
            ? page(`${self.url}/V1.0/Security/Incidents?$skiptoken=2`)
            : JSON.stringify({ value: [{ id: '2', lastUpdateDateTime: '2024-01-03T00:00:00Z' }] });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      };
      const pages = await listAll(client, W);
      expect(pages.map((p) => p.incidents.map((i) => i.id))).toEqual([['1'], ['2']]);
      expect(rogue.requests[1]!.url).toBe('/V1.0/Security/Incidents?$skiptoken=2');

      // A link that leads back to a page this listing read would page for ever: refused (retryable).
      listAnswer = (res, self) =>
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(page(`${self.url}/v1.0/security/incidents?$skiptoken=same`));
      const err = await failureOf(
        listAll(client, W, SINCE, { nextLink: `${rogue.url}/v1.0/security/incidents?$skiptoken=same` }),
      );
      expect(err).toBeInstanceOf(RetryableError);
      expect(err.message).toContain('nextLink leads back to a page this listing has already read');
    });

    it('refuses a listing that is not a page of incidents, naming what is wrong and not what it said', async () => {
      const client = clientFor({ apiUrl: rogue.url, maxRetries: 0 });
      for (const [body, said] of [
        ['{"value":"x"}', 'value: '],
        ['{"value":[{"id":"1"}]}', 'value.0.lastUpdateDateTime: '],
        [
          '{"value":[{"id":"1","lastUpdateDateTime":"yesterday-evil"}]}',
          'value.0.lastUpdateDateTime: must be an ISO 8601 UTC timestamp',
        ],
        ['{"value":[],"@odata.nextLink":42}', '@odata.nextLink: '],
        ['[]', 'the body: '],
      ] as const) {
        listAnswer = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        const err = await failureOf(listAll(client, W));
        expect(err).toBeInstanceOf(RetryableError);
        expect(err.message).toContain(`Microsoft Graph answered the incident list with ${said}`);
        expect(err.message).not.toContain('evil');
      }
    });
    it("reads a hunting answer in either of the page's column spellings as Defender's shape, and refuses one that is not a result", async () => {
      const client = clientFor({ apiUrl: rogue.url, maxRetries: 0 });
      const results = [{ Timestamp: '2024-03-26T09:39:50.7688641Z', FileName: 'cmd.exe' }];
      for (const column of [
        { name: 'Timestamp', type: 'DateTime' },
        { Name: 'Timestamp', Type: 'DateTime' },
      ]) {
        listAnswer = (res) =>
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ schema: [column, { name: 'FileName', type: 'String' }], results }));
        expect(await client.runHuntingQuery(W, 'DeviceProcessEvents | limit 1')).toEqual({
          Schema: [
            { Name: 'Timestamp', Type: 'DateTime' },
            { Name: 'FileName', Type: 'String' },
          ],
          Results: results,
        });
      }
      const [sent] = rogue.requests.slice(-1);
      expect(sent).toMatchObject({ method: 'POST', url: '/v1.0/security/runHuntingQuery' });
      expect(JSON.parse(sent!.body)).toEqual({ Query: 'DeviceProcessEvents | limit 1' });
      for (const [body, said] of [
        ['{"schema":[],"results":"evil"}', 'results: '],
        ['{"schema":[{"name":"A"}],"results":[]}', 'schema.0: a column without its name or type'],
        ['{"value":[]}', 'schema: '],
      ] as const) {
        listAnswer = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        const err = await failureOf(client.runHuntingQuery(W, 'DeviceProcessEvents'));
        expect(err).toBeInstanceOf(RetryableError);
        expect(err.message).toContain(`Microsoft Graph answered the hunting query with ${said}`);
        expect(err.message).not.toContain('evil');
      }
    });
  });

  it('refuses an incident id that is not decimal digits before any request or token', async () => {
    const client = clientFor();
    for (const id of [
      '1/../../users',
      '12a',
      '-1',
      '',
      ' 1',
      '1 ',
      '１２',
      '1?$expand=*',
      '1#x',
      '%31',
      '99999999999999999999',
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      2 ** 60,
    ] as (string | number)[]) {
      for (const call of [
        () => client.getIncident(W, id),
        () => client.updateIncident(W, id, { status: 'active' }),
        () => client.addComment(W, id, 'x'),
      ]) {
        const err = await failureOf(call);
        expect(err, String(id)).toBeInstanceOf(PermanentError);
        expect(err.message).toMatch(
          /^A Microsoft Graph incident id is decimal digits, not .*: nothing was sent \(tenant /,
        );
      }
    }
    expect(tokens.asked).toEqual([]);
    expect(standInCalls(W.tenantId).calls).toBe(0);
  });

  it("uses each tenant's own token for its calls, also when tenants' calls interleave", async () => {
    const client = clientFor();
    const [a, b, w] = await Promise.all([listAll(client, A), listAll(client, B), listAll(client, W)]);
    for (const [tenant, pages] of [
      [A, a],
      [B, b],
      [W, w],
    ] as const) {
      // The stand-in picks the tenant by the token's tid: another tenant's token would list that tenant's incidents.
      for (const incident of pages.flatMap((p) => p.incidents)) expect(incident.tenantId).toBe(tenant.tenantId);
      expect(standInCalls(tenant.tenantId).calls).toBe(client.calls.get(tenant.tenantId));
    }
    for (const { tenantId, token } of tokens.handedOut) {
      const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { tid: string };
      expect(claims.tid).toBe(tenantId);
    }
    expect(new Set(tokens.handedOut.map((t) => t.token)).size).toBe(3);
  });
});

describe('GraphClient listing', () => {
  const version = (i: { id: string; lastUpdateDateTime: string }) =>
    `${i.id}|${normalizeTimestamp(i.lastUpdateDateTime)}`;

  it('pages over more than 50 incidents through @odata.nextLink with their alerts, nothing lost or twice', async () => {
    const client = clientFor();
    const pages = await listAll(client, A);
    const all = pages.flatMap((p) => p.incidents);
    expect(pages.map((p) => p.incidents.length)).toEqual([50, 50, 37]);
    expect(pages.map((p) => p.nextSkip)).toEqual([50, 100, 137]);
    expect(pages.map((p) => p.last)).toEqual([false, false, true]);
    expect(pages[2]!.nextLink).toBeUndefined();
    for (const p of pages.slice(0, 2)) expect(new URL(p.nextLink!).pathname).toBe('/v1.0/security/incidents');
    expect(new Set(all.map((i) => i.id)).size).toBe(COUNT_A);
    expect(all.map((i) => i.id).sort()).toEqual((await stored(A.tenantId)).map((i) => i.id).sort());
    // $expand=alerts: every incident holds its alerts (possibly none), as the enricher needs.
    for (const incident of all) expect(Array.isArray(incident.alerts)).toBe(true);
    expect(all.some((i) => (i.alerts ?? []).length > 0)).toBe(true);
    expect(standInCalls(A.tenantId)).toMatchObject({ calls: 3, byEndpoint: { listIncidents: 3 }, errors: 0 });
    expect(client.calls.get(A.tenantId)).toBe(3);
    expect(GRAPH_PAGE_SIZE).toBe(50);
  });

  it('lists exactly the incidents updated at or after `since`, to the 7th fractional digit', async () => {
    const client = clientFor();
    const incidents = (await stored(A.tenantId)).sort((x, y) =>
      normalizeTimestamp(x.lastUpdateDateTime) < normalizeTimestamp(y.lastUpdateDateTime) ? -1 : 1,
    );
    const boundary = incidents[80]!.lastUpdateDateTime;
    const expected = incidents.filter((i) => normalizeTimestamp(i.lastUpdateDateTime) >= normalizeTimestamp(boundary));
    const listed = (await listAll(client, A, boundary)).flatMap((p) => p.incidents);
    expect(listed.map((i) => i.id).sort()).toEqual(expected.map((i) => i.id).sort());
    expect(listed.map((i) => i.id)).toContain(incidents[80]!.id);
    // One tick (100 ns) later leaves the boundary incident out.
    const ticks = normalizeTimestamp(boundary);
    const later = `${ticks.slice(0, 20)}${String(Number(ticks.slice(20, 27)) + 1).padStart(7, '0')}Z`;
    const fewer = (await listAll(client, A, later)).flatMap((p) => p.incidents);
    expect(fewer.map((i) => i.id)).not.toContain(incidents[80]!.id);
    expect(listed.length).toBeGreaterThan(50);
  });

  it('stops after maxPages with the link to go on from, and resumes from it losing nothing', async () => {
    const client = clientFor();
    const [first, ...none] = await listAll(client, A, SINCE, { maxPages: 1 });
    expect(none).toEqual([]);
    expect(first).toMatchObject({ nextSkip: 50, last: false });
    const rest = await listAll(client, A, 'ignored: the link holds the filter', {
      nextLink: first!.nextLink,
      skip: first!.nextSkip,
    });
    expect(rest.map((p) => p.nextSkip)).toEqual([100, 137]);
    const ids = [first!, ...rest].flatMap((p) => p.incidents.map((i) => i.id));
    expect(ids.length).toBe(COUNT_A);
    expect(new Set(ids).size).toBe(COUNT_A);
    expect(await listAll(client, A, SINCE, { maxPages: 0 })).toEqual([]);
  });

  it('yields a version listed on two pages of one listing once (an update shifts the pages)', async () => {
    const client = clientFor();
    const listing = client.incidentPagesSince(A, SINCE);
    const first = (await listing.next()).value as GraphIncidentPage;
    const lastOfFirst = first.incidents.at(-1)!;
    // An incident of a later page changes: it moves to the top (newest first), and the first page's last slides onto the second.
    const moved = (await stored(A.tenantId)).find((i) => !first.incidents.some((f) => f.id === i.id))!;
    expect((await control(`/tenants/${A.tenantId}/incidents/${moved.id}`, 'PATCH', { severity: 'high' })).status).toBe(
      200,
    );
    const rest: GraphIncidentPage[] = [];
    for await (const page of listing) rest.push(page);
    expect(rest[0]!.incidents.map((i) => i.id)).not.toContain(lastOfFirst.id);
    const all = [first, ...rest].flatMap((p) => p.incidents);
    expect(new Set(all.map(version)).size).toBe(all.length);
    expect(all.filter((i) => i.id === lastOfFirst.id)).toHaveLength(1);
    // 137 listed, one of them twice: 136 yielded. The moved incident is listed by neither version: its new
    // one is after this listing's first page, which the next poll (from its checkpoint) reads.
    expect(rest.at(-1)!.nextSkip).toBe(COUNT_A);
    expect(all).toHaveLength(COUNT_A - 1);
    expect(all.map((i) => i.id)).not.toContain(moved.id);
  });

  it('sends Prefer: include-unknown-enum-members, so evolvable members come as they are', async () => {
    const client = clientFor();
    const seeded = await control(`/tenants/${W.tenantId}/incidents`, 'POST', {
      incidents: [{ status: 'awaitingAction', lastUpdateDateTime: '2024-01-20T00:00:00Z', severity: 'high' }],
    });
    const [id] = seeded.json.incidentIds as string[];
    expect((await client.getIncident(W, id!)).status).toBe('awaitingAction');
    const listed = (await listAll(client, W)).flatMap((p) => p.incidents).find((i) => i.id === id);
    expect(listed?.status).toBe('awaitingAction');
    // What a client without the header would see.
    const token = await tokens.getToken(W);
    const plain = await fetch(`${graph.url}/v1.0/security/incidents/${id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await plain.json()) as { status: string }).status).toBe('unknownFutureValue');
  });
});

describe('GraphClient get, update, comment', () => {
  it('gets an incident with its alerts, without the response metadata', async () => {
    const client = clientFor();
    const [one] = await stored(W.tenantId);
    const incident = await client.getIncident(W, Number(one!.id));
    expect(incident).toMatchObject({ id: one!.id, lastUpdateDateTime: one!.lastUpdateDateTime, tenantId: W.tenantId });
    expect(incident['@odata.type']).toBe('#microsoft.graph.security.incident');
    expect(incident).not.toHaveProperty('@odata.context');
    expect(incident.alerts).toHaveLength((one!.alerts ?? []).length);
    expect(await client.getIncident(W, one!.id)).toEqual(incident);
  });

  it('updates status, classification and tags (PATCH), answered with the updated incident', async () => {
    const client = clientFor();
    const [, one] = await stored(W.tenantId);
    const updated = await client.updateIncident(W, one!.id, {
      status: 'inProgress',
      classification: 'truePositive',
      determination: 'malware',
      customTags: ['relay', 'triaged'],
    });
    expect(updated).toMatchObject({
      id: one!.id,
      status: 'inProgress',
      classification: 'truePositive',
      customTags: ['relay', 'triaged'],
    });
    expect(normalizeTimestamp(updated.lastUpdateDateTime) > normalizeTimestamp(one!.lastUpdateDateTime)).toBe(true);
    expect(await storedOne(W.tenantId, one!.id)).toMatchObject({
      status: 'inProgress',
      customTags: ['relay', 'triaged'],
    });
    expect(standInCalls(W.tenantId).byEndpoint).toEqual({ updateIncident: 1 });
  });

  it('adds a comment (POST comments) once, and returns every comment of the incident', async () => {
    const client = clientFor();
    const [, , one] = await stored(W.tenantId);
    const before = (one!.comments ?? []).length;
    const comments = (await client.addComment(W, one!.id, 'Routed to the SOC by the relay')) as {
      comment: string;
      createdByDisplayName: string;
    }[];
    expect(comments).toHaveLength(before + 1);
    expect(comments.at(-1)).toMatchObject({ comment: 'Routed to the SOC by the relay' });
    expect((await storedOne(W.tenantId, one!.id)).comments).toHaveLength(before + 1);
  });

  it("says Graph's own words when an incident is unknown, and does not retry", async () => {
    const client = clientFor();
    const err = (await failureOf(client.getIncident(W, 424242))) as PermanentError;
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toBe(
      `Microsoft Graph rejected the call (404): NotFound The incident '424242' was not found. (tenant ${W.tenantId}, getIncident 424242)`,
    );
    expect(err).toMatchObject({ status: 404, code: 'NotFound', tenantId: W.tenantId, operation: 'getIncident 424242' });
    // Another tenant's incident is as unknown.
    const [ofB] = await stored(B.tenantId);
    expect(await failureOf(client.getIncident(W, ofB!.id))).toMatchObject({ status: 404 });
    expect(standInCalls(W.tenantId).calls).toBe(2);
  });
});

describe('GraphClient failures', () => {
  const fault = (spec: FaultSpec, times = 1, pathContains = '/security/incidents') =>
    faults.add('graph', spec, times, pathContains);

  it('waits out a 429 Retry-After, tells the budget (one hold for all of /security), and goes on', async () => {
    const { sleep, slept } = fakeSleep();
    const budget = new SpyBudget();
    const client = clientFor({ sleep, budget });
    fault({ kind: 'status', status: 429, retryAfterSeconds: 7 });
    const [one] = await stored(W.tenantId);
    const incident = await client.getIncident(W, one!.id);
    expect(incident.id).toBe(one!.id);
    expect(slept).toEqual([7_000]);
    expect(budget.throttledCalls).toEqual([{ tenantId: W.tenantId, retryAfterMs: 7_000, api: 'security' }]);
    expect(budget.taken).toEqual([
      { tenantId: W.tenantId, budgetClass: 'poll', api: 'security' },
      { tenantId: W.tenantId, budgetClass: 'poll', api: 'security' },
    ]);
    expect(standInCalls(W.tenantId)).toMatchObject({ calls: 2, throttled: 1 });
  });

  it("rides out the stand-in's own limiter (150 a minute per app per tenant) by its Retry-After", async () => {
    const { sleep, slept } = fakeSleep();
    const client = clientFor({ sleep });
    await control('/throttle', 'PATCH', { perAppPerTenantPerMinute: 2 });
    try {
      const pages = await listAll(client, A);
      expect(pages.flatMap((p) => p.incidents)).toHaveLength(COUNT_A);
      expect(slept.length).toBeGreaterThanOrEqual(1);
      for (const ms of slept) expect(ms).toBeGreaterThanOrEqual(1_000);
      expect(standInCalls(A.tenantId).throttled).toBe(slept.length);
    } finally {
      await control('/throttle', 'PATCH', { perAppPerTenantPerMinute: 150 });
    }
  });

  it('gives a 429 back at once when its wait is longer than the client waits, and backs off when no wait is said', async () => {
    const { sleep, slept } = fakeSleep();
    const budget = new SpyBudget();
    const client = clientFor({ sleep, budget, maxWaitMs: 30_000, random: () => 0.5 });
    fault({ kind: 'status', status: 429, retryAfterSeconds: 120 });
    const err = (await failureOf(listAll(client, W))) as RetryableError;
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ status: 429, code: 'TooManyRequests', retryAfterMs: 120_000 });
    expect(err.message).toBe(
      `Microsoft Graph throttled the call (429): Please retry again later. (tenant ${W.tenantId}, listIncidents)`,
    );
    expect(slept).toEqual([]);
    expect(budget.throttledCalls).toEqual([{ tenantId: W.tenantId, retryAfterMs: 120_000, api: 'security' }]);

    fault({ kind: 'status', status: 429, retryAfterHeader: false }, 2);
    expect((await listAll(client, W)).length).toBeGreaterThan(0);
    expect(slept).toEqual([375, 750]); // back-off 500 ms, 1 s, half of it jittered
    expect(budget.throttledCalls).toHaveLength(1);
  });

  it('retries 5xx and dropped connections with back-off and jitter, then gives up naming the tenant and the call', async () => {
    const { sleep, slept } = fakeSleep();
    const client = clientFor({ sleep, random: () => 0, maxRetries: 3 });
    fault({ kind: 'status', status: 503 }, 1);
    fault({ kind: 'outage' }, 1);
    fault({ kind: 'status', status: 500 }, 1);
    const [one] = await stored(W.tenantId);
    expect((await client.getIncident(W, one!.id)).id).toBe(one!.id);
    expect(slept).toEqual([250, 500, 1_000]);

    fault({ kind: 'status', status: 500 }, 4);
    const err = (await failureOf(client.getIncident(W, one!.id))) as RetryableError;
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toBe(
      `Microsoft Graph failed (500 generalException) (tenant ${W.tenantId}, getIncident ${one!.id})`,
    );
    expect(err).toMatchObject({ status: 500, code: 'generalException' });

    fault({ kind: 'malformed' }, 4);
    const malformed = await failureOf(client.getIncident(W, one!.id));
    expect(malformed.message).toBe(
      `Microsoft Graph answered with a body that is not JSON (tenant ${W.tenantId}, getIncident ${one!.id})`,
    );
  });

  it('times out a slow answer; a comment it timed out on is not sent again', async () => {
    const client = clientFor({ timeoutMs: 200, maxRetries: 2 });
    const [, , , one] = await stored(W.tenantId);
    const before = (one!.comments ?? []).length;
    fault({ kind: 'delay', ms: 600 }, 1, '/comments');
    const err = await failureOf(client.addComment(W, one!.id, 'slow'));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toBe(
      `Microsoft Graph did not answer within 0.2 s (tenant ${W.tenantId}, addComment ${one!.id})`,
    );
    // Sent once: no second comment can follow the first, whether or not Graph went on to add it.
    expect(client.calls.get(W.tenantId)).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(((await storedOne(W.tenantId, one!.id)).comments ?? []).length).toBeLessThanOrEqual(before + 1);

    // A read is sent again.
    fault({ kind: 'delay', ms: 600 }, 1);
    expect((await client.getIncident(W, one!.id)).id).toBe(one!.id);
    expect(client.calls.get(W.tenantId)).toBe(3);
  });

  it("renews a refused token once (401), and gives up on a second refusal with Graph's words", async () => {
    const client = clientFor();
    const [one] = await stored(W.tenantId);
    tokens.stale.set(W.tenantId, 'revoked-token');
    expect((await client.getIncident(W, one!.id)).id).toBe(one!.id);
    expect(tokens.invalidated).toEqual([W.tenantId]);
    expect(tokens.asked).toEqual([W.tenantId, W.tenantId]);

    tokens.always.set(W.tenantId, 'revoked-token');
    const err = (await failureOf(client.getIncident(W, one!.id))) as PermanentError;
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toBe(
      `Microsoft Graph refused the token (401): IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or JWE Compact Serialization Format. (tenant ${W.tenantId}, getIncident ${one!.id})`,
    );
    expect(err).toMatchObject({ status: 401, code: 'InvalidAuthenticationToken' });
    expect(tokens.invalidated).toEqual([W.tenantId, W.tenantId]);
    expect(standInCalls('(unauthenticated)', '(unauthenticated)').calls).toBe(3);
  });

  it("names a missing permission (403) in Graph's words, at once and for good", async () => {
    const client = clientFor({ tokens: readerTokens });
    const [one] = await stored(W.tenantId);
    expect((await client.getIncident(W, one!.id)).id).toBe(one!.id); // reading is granted
    const err = (await failureOf(client.updateIncident(W, one!.id, { status: 'resolved' }))) as PermanentError;
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toBe(
      `Microsoft Graph denied the call (403), a permission is missing: Forbidden Missing application roles. API required roles: SecurityIncident.ReadWrite.All, application roles: SecurityIncident.Read.All. (tenant ${W.tenantId}, updateIncident ${one!.id})`,
    );
    expect(err).toMatchObject({ status: 403, code: 'Forbidden' });
    expect(standInCalls(W.tenantId, reader.clientId).byEndpoint).toEqual({ getIncident: 1, updateIncident: 1 });
    // A tenant without the security API is refused alike.
    const none = await failureOf(listAll(clientFor(), C));
    expect(none).toBeInstanceOf(PermanentError);
    expect(none.message).toContain('Microsoft Graph denied the call (403), a permission is missing: Forbidden Tenant');
  });
});

describe('GraphClient budget classes', () => {
  it('gives views per class sharing budget, tokens and call counters; a push never waits for the budget', async () => {
    let now = 1_000_000;
    const budget = new CallBudget(
      GRAPH_BUDGET,
      () => now,
      async (ms) => {
        now += ms;
      },
    );
    const client = clientFor({ budget });
    const push = client.withBudgetClass('push');
    const analyst = push.withBudgetClass('analyst');
    expect([client.budgetClass, push.budgetClass, analyst.budgetClass]).toEqual(['poll', 'push', 'analyst']);
    expect(push.budget).toBe(client.budget);
    expect(client.withBudgetClass('push')).toBe(push);
    expect(analyst.withBudgetClass('poll')).toBe(client);
    const [one] = await stored(W.tenantId);
    for (let i = 0; i < PUSH_CAP.perMinute; i++) await push.getIncident(W, one!.id);
    const err = await failureOf(push.getIncident(W, one!.id));
    expect(err).toBeInstanceOf(BudgetSpentError);
    expect(err.message).toBe(
      `The tenant's Microsoft Graph API call budget for pushed incidents is spent for the next 60 s (tenant ${W.tenantId})`,
    );
    expect(now).toBe(1_000_000); // nothing waited
    expect(standInCalls(W.tenantId).calls).toBe(PUSH_CAP.perMinute); // and nothing sent
    await client.getIncident(W, one!.id);
    await analyst.getIncident(W, one!.id);
    expect(client.calls.get(W.tenantId)).toBe(PUSH_CAP.perMinute + 2);
    expect(push.calls).toBe(client.calls);
    expect(tokens.asked.every((t) => t === W.tenantId)).toBe(true);
  });

  it("has a budget under Graph's 150 requests a minute per app per tenant, with the analysts' reserve and the push cap", () => {
    expect(GRAPH_BUDGET.perMinute).toBeLessThan(150);
    expect(GRAPH_BUDGET.perHour).toBeLessThanOrEqual(GRAPH_BUDGET.perMinute * 60);
    expect(GRAPH_BUDGET.service).toBe('graph');
    expect(GRAPH_BUDGET.shares).toEqual({ analystReserve: expect.any(Object), pushCap: PUSH_CAP });
    expect(() => new CallBudget(GRAPH_BUDGET)).not.toThrow();
  });
});
