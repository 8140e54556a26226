import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createTokenVerifier } from '../../../local/common/bearer.js';
import { FaultBoard } from '../../../local/common/faults.js';
import { startDefender, type DefenderStandIn, type Incident } from '../../../local/defender/server.js';
import { parseTimestamp } from '../../../local/defender/timestamps.js';
import { createTokenIssuer, type TokenIssuer } from '../../../local/entra/token-issuer.js';

const DEFENDER = 'https://api.security.microsoft.com';
const TENANT_A = '11111111-1111-4111-8111-111111111111';
const TENANT_B = '22222222-2222-4222-8222-222222222222';
const TENANT_UNPROVISIONED = '33333333-3333-4333-8333-333333333333';
const READER_APP = 'aaaaaaaa-0000-4000-8000-000000000001';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let issuer: TokenIssuer;
let faults: FaultBoard;
let defender: DefenderStandIn;
/** Added to the stand-in's clock, so rate-limit tests can let time pass without waiting. */
let clockOffsetMs = 0;
/** What the stand-in logged: an unexpected error (a would-be 500) fails the run. */
const logLines: string[] = [];

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function call(
  path: string,
  options: { token?: string; method?: string; body?: string | object; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(`${defender.url}${path}`, { method: options.method ?? 'GET', headers, body });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const control = (path: string, method = 'GET', body?: object) =>
  fetch(`${defender.controlUrl}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body && JSON.stringify(body),
  });

async function appToken(
  options: { tenantId?: string; clientId?: string; roles?: string[]; audience?: string; lifetimeSeconds?: number } = {},
): Promise<string> {
  const { token } = await issuer.issueAccessToken({
    tenantId: options.tenantId ?? TENANT_A,
    audience: options.audience ?? DEFENDER,
    clientId: options.clientId ?? READER_APP,
    objectId: crypto.randomUUID(),
    roles: options.roles ?? ['Incident.ReadWrite.All', 'AdvancedHunting.Read.All'],
    lifetimeSeconds: options.lifetimeSeconds,
  });
  return token;
}

/** Pages through `GET /api/incidents` as a careful client does: $skip until a short page. */
async function listAll(token: string, filter?: string): Promise<{ incidents: Incident[]; pages: Incident[][] }> {
  const pages: Incident[][] = [];
  for (let skip = 0; ; skip += 100) {
    const query = new URLSearchParams({ $top: '100', $skip: String(skip) });
    if (filter) query.set('$filter', filter);
    const answer = await call(`/api/incidents?${query}`, { token });
    expect(answer.status, answer.text).toBe(200);
    pages.push(answer.json.value);
    if (answer.json.value.length < 100) break;
  }
  return { incidents: pages.flat(), pages };
}

function expectDefenderError(answer: Answer, status: number, code: string, message?: RegExp): void {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.json?.error?.code).toBe(code);
  expect(answer.json.error.target).toMatch(GUID);
  if (message) expect(answer.json.error.message).toMatch(message);
}

beforeAll(async () => {
  issuer = await createTokenIssuer('https://login.local.test');
  faults = new FaultBoard();
  const verifier = createTokenVerifier({
    jwks: () => issuer.jwks(),
    issuerFor: (tid, version) => issuer.issuerFor(tid, version),
  });
  defender = await startDefender({
    tls: inject('tls'),
    verifier,
    faults,
    now: () => Date.now() + clockOffsetMs,
    log: (line) => logLines.push(line),
  });
  expect((await control(`/tenants/${TENANT_A}`, 'POST', { displayName: 'Contoso' })).status).toBe(201);
  expect((await control(`/tenants/${TENANT_B}`, 'POST', { displayName: 'Fabrikam' })).status).toBe(201);
  const seeded = await control(`/tenants/${TENANT_A}/incidents`, 'POST', { count: 1050, seed: 'integration' });
  expect(seeded.status).toBe(201);
  expect((await control(`/tenants/${TENANT_B}/incidents`, 'POST', { count: 30, seed: 'integration' })).status).toBe(
    201,
  );
});

afterAll(async () => {
  await defender?.close();
  expect(logLines.filter((line) => line.includes('unexpected error'))).toEqual([]);
});

beforeEach(async () => {
  await control('/limits/reset', 'POST');
  await control('/faults', 'DELETE');
});

describe('GET /api/incidents', () => {
  it('pages through 1,050 incidents with $top/$skip: every incident exactly once, pages unordered', async () => {
    const token = await appToken();
    const { incidents, pages } = await listAll(token);
    const ids = incidents.map((i) => i.incidentId);
    expect(new Set(ids).size).toBe(ids.length);
    const raw = (await (await control(`/tenants/${TENANT_A}/incidents`)).json()) as { value: Incident[] };
    expect([...ids].sort((a, b) => a - b)).toEqual(raw.value.map((i) => i.incidentId));
    expect(ids.length).toBe(1050);
    const sorted = (page: Incident[]) =>
      page.every((incident, k) => k === 0 || (page[k - 1] as Incident).incidentId < incident.incidentId);
    expect(pages.filter((page) => page.length > 1 && !sorted(page)).length).toBeGreaterThan(0);
  });

  it('cuts pages newest first: an incident changed while a client pages moves to the top, and the rest shift down', async () => {
    const tenant = '55555555-5555-4555-8555-555555555555';
    expect((await control(`/tenants/${tenant}`, 'POST')).status).toBe(201);
    expect((await control(`/tenants/${tenant}/incidents`, 'POST', { count: 250, seed: 'newest-first' })).status).toBe(
      201,
    );
    const tenantToken = await appToken({ tenantId: tenant });
    const page = async (skip: number) =>
      ((await call(`/api/incidents?$top=100&$skip=${skip}`, { token: tenantToken })).json as { value: Incident[] })
        .value;
    const newest = (incidents: Incident[]) =>
      incidents
        .map((i) => i.lastUpdateTime)
        .sort()
        .reverse();
    const [first, second] = [await page(0), await page(100)];
    // Every incident on the first page is at least as new as every one on the second.
    expect(newest(first).at(-1)! >= newest(second)[0]!).toBe(true);

    // After the next page, three incidents the listing has not reached change.
    expect((await control(`/tenants/${tenant}/paging-churn`, 'POST', { perPage: 3, pages: 1 })).status).toBe(201);
    const again = await page(0);
    const changed = (await page(0)).filter((i) => i.tags.includes('changed-while-paging'));
    expect(changed).toHaveLength(3);
    expect(again.some((i) => i.tags.includes('changed-while-paging'))).toBe(false);
    // They now head the list: the first page's last three were pushed onto the second.
    const shifted = await page(100);
    const wasFirstPage = new Set(again.map((i) => i.incidentId));
    expect(shifted.filter((i) => wasFirstPage.has(i.incidentId))).toHaveLength(3);
    expect((await control(`/tenants/${tenant}/paging-churn`, 'DELETE')).status).toBe(204);
    expect((await control(`/tenants/${tenant}/paging-churn`, 'POST', { perPage: 0, pages: 1 })).status).toBe(400);
  });

  it('answers the documented envelope, full incidents, and 100 per page by default', async () => {
    const answer = await call('/api/incidents', { token: await appToken() });
    expect(answer.status).toBe(200);
    expect(answer.json['@odata.context']).toBe(`${defender.url}/api/$metadata#Incidents`);
    expect(answer.json.value).toHaveLength(100);
    const incident = answer.json.value.find((i: Incident) => i.alerts.length > 0) as Incident;
    expect(incident.lastUpdateTime).toMatch(/\.\d{7}Z$/);
    expect(incident.alerts[0]?.entities[0]).toHaveProperty('registryValue');
  });

  it('filters on lastUpdateTime exactly and sees an incident again once it changes', async () => {
    const token = await appToken();
    const raw = ((await (await control(`/tenants/${TENANT_A}/incidents`)).json()) as { value: Incident[] }).value;
    const times = raw.map((i) => i.lastUpdateTime).sort();
    const cutoff = times[Math.floor(times.length * 0.9)] as string;
    const expected = raw
      .filter((i) => (parseTimestamp(i.lastUpdateTime) as bigint) > (parseTimestamp(cutoff) as bigint))
      .map((i) => i.incidentId);
    const { incidents } = await listAll(token, `lastUpdateTime gt ${cutoff}`);
    expect(incidents.map((i) => i.incidentId).sort((a, b) => a - b)).toEqual(expected);

    // Activity in the portal bumps lastUpdateTime: a cursor at the newest time now finds that incident.
    const newest = times[times.length - 1] as string;
    const changedId = (raw[0] as Incident).incidentId;
    expect((await control(`/tenants/${TENANT_A}/incidents/${changedId}`, 'PATCH', { severity: 'High' })).status).toBe(
      200,
    );
    const after = await listAll(token, `lastUpdateTime gt ${newest}`);
    expect(after.incidents.map((i) => i.incidentId)).toEqual([changedId]);
    expect(after.incidents[0]?.severity).toBe('High');
  });

  it('filters on status and assignedTo combined with and', async () => {
    const token = await appToken();
    const { incidents } = await listAll(token, "status eq 'Resolved' and createdTime ge 2000-01-01T00:00:00Z");
    expect(incidents.length).toBeGreaterThan(0);
    expect(incidents.every((i) => i.status === 'Resolved')).toBe(true);
    const someone = incidents.find((i) => i.assignedTo)?.assignedTo as string;
    const assigned = await listAll(token, `assignedTo eq '${someone}'`);
    expect(assigned.incidents.length).toBeGreaterThan(0);
    expect(assigned.incidents.every((i) => i.assignedTo === someone)).toBe(true);
  });

  it('refuses $top above 100 with MaximumBatchSizeExceeded', async () => {
    expectDefenderError(
      await call('/api/incidents?$top=101', { token: await appToken() }),
      400,
      'MaximumBatchSizeExceeded',
      /100/,
    );
  });

  it.each([
    ['$filter=lastUpdateTime gt yesterday', /lastUpdateTime/],
    ["$filter=severity eq 'High'", /severity/],
    ['$filter=lastUpdateTime gt 2020-01-01T00:00:00Z or status eq null', /or/],
    ['$top=-1', /\$top/],
    ['$top=ten', /\$top/],
    ['$skip=1.5', /\$skip/],
    ['$top=10&$top=20', /\$top/],
    ['$orderby=lastUpdateTime desc', /\$orderby/],
  ])('refuses %s with 400 ODataError saying what is wrong', async (query, message) => {
    const url = `/api/incidents?${query
      .split('&')
      .map((pair) => pair.split('=').map(encodeURIComponent).join('='))
      .join('&')}`;
    expectDefenderError(await call(url, { token: await appToken() }), 400, 'ODataError', message);
  });
});

describe('rate limits', () => {
  it('answers the 51st call in a minute 429 with Retry-After and the time in the body, then recovers', async () => {
    const clientId = 'aaaaaaaa-0000-4000-8000-000000000051';
    const token = await appToken({ clientId });
    for (let i = 0; i < 50; i += 1) expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
    const throttled = await call('/api/incidents?$top=1', { token });
    expectDefenderError(throttled, 429, 'TooManyRequests', /Rate limit is exceeded\. Try again in \d+ seconds\./);
    const retryAfter = Number(throttled.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(50);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(throttled.json.error.message).toContain(`in ${retryAfter} seconds`);

    // Another app in the same tenant has its own budget.
    expect(
      (
        await call('/api/incidents?$top=1', {
          token: await appToken({ clientId: 'aaaaaaaa-0000-4000-8000-000000000052' }),
        })
      ).status,
    ).toBe(200);

    clockOffsetMs += retryAfter * 1000;
    expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
    const stats = defender.stats.for(TENANT_A, clientId);
    expect(stats).toMatchObject({ calls: 52, throttled: 1, errors: 0, byEndpoint: { listIncidents: 52 } });
  });

  it('counts get-incident calls against the shared 50 a minute as well (the shared quota binds first at the documented limits)', async () => {
    const clientId = 'aaaaaaaa-0000-4000-8000-000000000053';
    const token = await appToken({ clientId });
    for (let i = 0; i < 50; i += 1) expect((await call('/api/incidents/1', { token })).status).toBe(200);
    expectDefenderError(await call('/api/incidents/1', { token }), 429, 'TooManyRequests', /Try again in \d+ seconds/);
    expectDefenderError(await call('/api/incidents?$top=1', { token }), 429, 'TooManyRequests');
  });

  describe('get incident has a quota of its own: 100 a minute and 1,500 an hour, on top of the shared one', () => {
    // A stand-in whose shared quota is raised above get-incident's own, so that the own one shows.
    let raised: DefenderStandIn;
    let raisedOffsetMs = 0;
    const raisedCall = async (path: string, token: string) => {
      const response = await fetch(`${raised.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const text = await response.text();
      return { status: response.status, headers: response.headers, text, json: JSON.parse(text) } as Answer;
    };
    beforeAll(async () => {
      const verifier = createTokenVerifier({
        jwks: () => issuer.jwks(),
        issuerFor: (tid, version) => issuer.issuerFor(tid, version),
      });
      raised = await startDefender({
        tls: inject('tls'),
        verifier,
        faults: new FaultBoard(),
        limits: { perMinute: 100_000, perHour: 1_000_000 },
        now: () => Date.now() + raisedOffsetMs,
      });
      raised.store.provisionTenant(TENANT_A, 'Contoso');
      await fetch(`${raised.controlUrl}/tenants/${TENANT_A}/incidents`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ count: 3, seed: 'own-quota' }),
      });
    });
    afterAll(async () => {
      await raised?.close();
    });

    it('answers the 101st get in a minute 429 with the wait in the body, while listing still works, then recovers', async () => {
      const clientId = 'aaaaaaaa-0000-4000-8000-000000000101';
      const token = await appToken({ clientId });
      for (let i = 0; i < 100; i += 1) expect((await raisedCall('/api/incidents/1', token)).status).toBe(200);
      const throttled = await raisedCall('/api/incidents/1', token);
      expectDefenderError(throttled, 429, 'TooManyRequests', /^Rate limit is exceeded\. Try again in \d+ seconds\.$/);
      const wait = Number(/in (\d+) seconds/.exec(throttled.json.error.message)![1]);
      expect(wait).toBeGreaterThanOrEqual(50);
      expect(wait).toBeLessThanOrEqual(60);
      // Only get incident is throttled: the shared quota has room, and another app has its own.
      expect((await raisedCall('/api/incidents?$top=1', token)).status).toBe(200);
      expect(
        (await raisedCall('/api/incidents/1', await appToken({ clientId: 'aaaaaaaa-0000-4000-8000-000000000102' })))
          .status,
      ).toBe(200);
      raisedOffsetMs += wait * 1000;
      expect((await raisedCall('/api/incidents/1', token)).status).toBe(200);
      expect(raised.stats.for(TENANT_A, clientId)).toMatchObject({ throttled: 1, byEndpoint: { getIncident: 102 } });
    });

    it('answers the 1,501st get in an hour 429 until the oldest call of the hour has left it', async () => {
      const token = await appToken({ clientId: 'aaaaaaaa-0000-4000-8000-000000001500' });
      const firstAt = Date.now() + raisedOffsetMs;
      for (let minute = 0; minute < 15; minute += 1) {
        for (let i = 0; i < 100; i += 1) expect((await raisedCall('/api/incidents/2', token)).status).toBe(200);
        raisedOffsetMs += 61_000;
      }
      const throttled = await raisedCall('/api/incidents/2', token);
      expectDefenderError(throttled, 429, 'TooManyRequests');
      const wait = Number(/in (\d+) seconds/.exec(throttled.json.error.message)![1]);
      // The first call of the hour leaves it an hour after it was made (15 minutes of the stand-in's clock ago, plus the real time the calls took).
      const expected = (firstAt + 3_600_000 - (Date.now() + raisedOffsetMs)) / 1000;
      expect(Math.abs(wait - expected)).toBeLessThan(3);
      raisedOffsetMs += wait * 1000;
      expect((await raisedCall('/api/incidents/2', token)).status).toBe(200);
    }, 60_000);
  });
});

describe('authentication and authorization', () => {
  it('keeps tenants apart: a token for tenant B never sees tenant A', async () => {
    const tokenA = await appToken();
    const tokenB = await appToken({ tenantId: TENANT_B });
    const idsA = new Set((await listAll(tokenA)).incidents.map((i) => i.incidentId));
    const { incidents: incidentsB } = await listAll(tokenB);
    expect(incidentsB).toHaveLength(30);
    expect(incidentsB.every((i) => i.incidentUri.includes(TENANT_B))).toBe(true);
    const onlyInA = [...idsA].find((id) => !incidentsB.some((i) => i.incidentId === id)) as number;
    expectDefenderError(await call(`/api/incidents/${onlyInA}`, { token: tokenB }), 404, 'NotFound');
    expectDefenderError(
      await call(`/api/incidents/${onlyInA}`, { token: tokenB, method: 'PATCH', body: { status: 'Resolved' } }),
      404,
      'NotFound',
    );
  });

  it('refuses a tenant without Defender data with 403 naming the tenant', async () => {
    const token = await appToken({ tenantId: TENANT_UNPROVISIONED });
    expectDefenderError(await call('/api/incidents', { token }), 403, 'Forbidden', new RegExp(TENANT_UNPROVISIONED));
  });

  it.each([
    [
      'list without any incident permission',
      'GET',
      '/api/incidents',
      ['AdvancedHunting.Read.All'],
      /Incident\.Read\.All/,
    ],
    [
      'list with the misspelled role from the docs screenshot',
      'GET',
      '/api/incidents',
      ['Incidents.Read.All'],
      /Incident\.Read\.All/,
    ],
    [
      'update with read-only permission',
      'PATCH',
      '/api/incidents/1',
      ['Incident.Read.All'],
      /Incident\.ReadWrite\.All/,
    ],
    [
      'hunt without AdvancedHunting',
      'POST',
      '/api/advancedhunting/run',
      ['Incident.ReadWrite.All'],
      /AdvancedHunting\.Read\.All/,
    ],
  ])('answers 403 naming the missing permission: %s', async (_name, method, path, roles, message) => {
    const body = method === 'GET' ? undefined : { status: 'Active' };
    expectDefenderError(
      await call(path, { token: await appToken({ roles }), method, body }),
      403,
      'Forbidden',
      message,
    );
  });

  it('accepts delegated permissions in scp (user tokens)', async () => {
    const { token } = await issuer.issueAccessToken({
      tenantId: TENANT_A,
      audience: `${DEFENDER}/`,
      clientId: READER_APP,
      objectId: crypto.randomUUID(),
      scopes: ['Incident.Read'],
      user: { upn: 'analyst@contoso.com', name: 'Analyst' },
    });
    expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
    expectDefenderError(
      await call('/api/incidents/1', { token, method: 'PATCH', body: { status: 'Active' } }),
      403,
      'Forbidden',
      /Incident\.ReadWrite/,
    );
  });

  it('answers 401 Unauthorized for a missing, wrong-audience, expired, forged or unsigned token', async () => {
    const otherIssuer = await createTokenIssuer('https://login.local.test');
    const good = await appToken();
    const [header, payload] = good.split('.') as [string, string, string];
    const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    const tamperedPayload = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), tid: TENANT_B }),
    ).toString('base64url');
    const cases: [string, Record<string, string>][] = [
      ['missing', {}],
      ['not bearer', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
      ['garbage', { authorization: 'Bearer not-a-jwt' }],
      ['wrong audience', { authorization: `Bearer ${await appToken({ audience: 'https://vault.azure.net' })}` }],
      ['expired', { authorization: `Bearer ${await appToken({ lifetimeSeconds: -120 })}` }],
      [
        'other signer',
        {
          authorization: `Bearer ${(await otherIssuer.issueAccessToken({ tenantId: TENANT_A, audience: DEFENDER, clientId: READER_APP, objectId: 'x', roles: ['Incident.Read.All'] })).token}`,
        },
      ],
      ['tampered', { authorization: `Bearer ${header}.${tamperedPayload}.${good.split('.')[2]}` }],
      ['alg none', { authorization: `Bearer ${unsigned}` }],
    ];
    for (const [name, headers] of cases) {
      const answer = await call('/api/incidents', { headers });
      expect(answer.status, name).toBe(401);
      expectDefenderError(answer, 401, 'Unauthorized');
    }
  });
});

describe('GET and PATCH /api/incidents/{id}', () => {
  async function someIncident(
    tenantId = TENANT_A,
    predicate: (i: Incident) => boolean = (i) => i.status === 'Active',
  ): Promise<Incident> {
    const raw = ((await (await control(`/tenants/${tenantId}/incidents`)).json()) as { value: Incident[] }).value;
    return raw.find(predicate) as Incident;
  }

  it('gets one incident, 404 for an unknown id and 400 for a non-integer id', async () => {
    const token = await appToken();
    const incident = await someIncident();
    const answer = await call(`/api/incidents/${incident.incidentId}`, { token });
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual(incident);
    expectDefenderError(await call('/api/incidents/999999999', { token }), 404, 'NotFound');
    expectDefenderError(await call('/api/incidents/abc', { token }), 400, 'InvalidInput');
  });

  it('updates status, classification, determination, tags and comment, and bumps lastUpdateTime', async () => {
    const token = await appToken();
    const before = await someIncident(TENANT_A, (i) => i.status === 'Active' && i.comments.length === 0);
    const answer = await call(`/api/incidents/${before.incidentId}`, {
      token,
      method: 'PATCH',
      body: {
        status: 'Resolved',
        assignedTo: 'soc@contoso.com',
        classification: 'TruePositive',
        determination: 'Malware',
        tags: ['Relay'],
        comment: 'Closed by the relay.',
      },
    });
    expect(answer.status, answer.text).toBe(200);
    const after = answer.json as Incident;
    expect(after).toMatchObject({
      status: 'Resolved',
      assignedTo: 'soc@contoso.com',
      classification: 'TruePositive',
      determination: 'Malware',
      tags: ['Relay'],
    });
    expect(after.comments).toEqual([
      { comment: 'Closed by the relay.', createdBy: READER_APP, createdTime: expect.stringMatching(/\.\d{7}Z$/) },
    ]);
    expect((parseTimestamp(after.lastUpdateTime) as bigint) > (parseTimestamp(before.lastUpdateTime) as bigint)).toBe(
      true,
    );
    expect((await call(`/api/incidents/${before.incidentId}`, { token })).json).toEqual(after);
  });

  it('refuses a determination the update page does not pair with the classification, and leaves the incident unchanged', async () => {
    const token = await appToken();
    const before = await someIncident(TENANT_A, (i) => i.classification === 'Unknown');
    const answer = await call(`/api/incidents/${before.incidentId}`, {
      token,
      method: 'PATCH',
      body: { classification: 'FalsePositive', determination: 'Malware', status: 'Resolved' },
    });
    expectDefenderError(
      answer,
      400,
      'InvalidInput',
      /'Malware' is not valid with classification 'FalsePositive'; valid: Clean, NoEnoughDataToValidate, Other/,
    );
    const unclassified = await call(`/api/incidents/${before.incidentId}`, {
      token,
      method: 'PATCH',
      body: { determination: 'Other' },
    });
    expectDefenderError(unclassified, 400, 'InvalidInput', /not valid with classification 'Unknown'/);
    const retired = await call(`/api/incidents/${before.incidentId}`, {
      token,
      method: 'PATCH',
      body: { classification: 'TruePositive', determination: 'Apt' },
    });
    expectDefenderError(retired, 400, 'InvalidRequestBody', /determination/);
    expect(await someIncident(TENANT_A, (i) => i.incidentId === before.incidentId)).toEqual(before);
  });

  it('takes each classification with its own determinations, and clears a determination the new classification does not take', async () => {
    const token = await appToken();
    const target = await someIncident(TENANT_B, (i) => i.classification === 'Unknown');
    const patch = async (body: Record<string, unknown>) => {
      const answer = await call(`/api/incidents/${target.incidentId}`, { token, method: 'PATCH', body });
      expect(answer.status, answer.text).toBe(200);
      return answer.json as { classification: string; determination: string };
    };
    expect(await patch({ classification: 'FalsePositive', determination: 'NoEnoughDataToValidate' })).toMatchObject({
      classification: 'FalsePositive',
      determination: 'NoEnoughDataToValidate',
    });
    expect(
      await patch({ classification: 'InformationalExpectedActivity', determination: 'SecurityTesting' }),
    ).toMatchObject({ determination: 'SecurityTesting' });
    expect(await patch({ determination: 'Other' })).toMatchObject({
      classification: 'InformationalExpectedActivity',
      determination: 'Other',
    });
    // Other goes with every classification and stays; SecurityTesting would not have.
    expect(await patch({ classification: 'TruePositive' })).toMatchObject({
      classification: 'TruePositive',
      determination: 'Other',
    });
    expect(await patch({ determination: 'Malware' })).toMatchObject({ determination: 'Malware' });
    expect(await patch({ classification: 'FalsePositive' })).toMatchObject({
      classification: 'FalsePositive',
      determination: 'NotAvailable',
    });
  });

  it.each([
    ['an unknown field', { Status: 'Resolved' }, 'InvalidRequestBody', /Status/],
    ['a wrong status', { status: 'Closed' }, 'InvalidRequestBody', /status/],
    ['a wrong type', { tags: 'one' }, 'InvalidRequestBody', /tags/],
    ['an empty object', {}, 'InvalidRequestBody', /empty/],
    ['malformed JSON', '{"status": "Resolved"', 'InvalidRequestBody', /JSON/],
    ['an array', '[]', 'InvalidRequestBody', /object/],
    ['null', 'null', 'InvalidRequestBody', /object/],
    ['no body', '', 'InvalidRequestBody', /empty/],
  ])('refuses %s with 400', async (_name, body, code, message) => {
    const incident = await someIncident();
    expectDefenderError(
      await call(`/api/incidents/${incident.incidentId}`, { token: await appToken(), method: 'PATCH', body }),
      400,
      code,
      message,
    );
  });

  it('attributes a comment to the user for a delegated token', async () => {
    const { token } = await issuer.issueAccessToken({
      tenantId: TENANT_B,
      audience: DEFENDER,
      clientId: READER_APP,
      objectId: crypto.randomUUID(),
      scopes: ['Incident.ReadWrite'],
      user: { upn: 'analyst@fabrikam.com', name: 'Analyst' },
    });
    const incident = await someIncident(TENANT_B, () => true);
    const answer = await call(`/api/incidents/${incident.incidentId}`, {
      token,
      method: 'PATCH',
      body: { comment: 'Looking into it.' },
    });
    expect(answer.status).toBe(200);
    expect(answer.json.comments.at(-1)).toMatchObject({
      comment: 'Looking into it.',
      createdBy: 'analyst@fabrikam.com',
    });
  });
});

describe('POST /api/advancedhunting/run', () => {
  const hunt = async (body: object | string) =>
    call('/api/advancedhunting/run', { token: await appToken(), method: 'POST', body });

  it('runs a where / project / take query over the tenant data and answers Stats, Schema and Results', async () => {
    const answer = await hunt({
      Query:
        'AlertInfo | where Severity == "High" and Timestamp > ago(30d) | project AlertId, Severity, Title | take 5',
    });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.Schema).toEqual([
      { Name: 'AlertId', Type: 'String' },
      { Name: 'Severity', Type: 'String' },
      { Name: 'Title', Type: 'String' },
    ]);
    expect(answer.json.Results.length).toBeGreaterThan(0);
    expect(answer.json.Results.length).toBeLessThanOrEqual(5);
    expect(answer.json.Results.every((row: { Severity: string }) => row.Severity === 'High')).toBe(true);
    expect(answer.json.Stats.dataset_statistics[0].table_row_count).toBe(answer.json.Results.length);
    expect(typeof answer.json.Stats.ExecutionTime).toBe('number');
  });

  it('supports in (…) and limit, and answers every table the stand-in documents', async () => {
    const inQuery = await hunt({
      Query: "DeviceLogonEvents | where ActionType in ('LogonSuccess', 'LogonFailed') | limit 3",
    });
    expect(inQuery.status, inQuery.text).toBe(200);
    expect(inQuery.json.Results.length).toBe(3);
    for (const table of ['DeviceInfo', 'AlertEvidence', 'AlertInfo', 'DeviceLogonEvents']) {
      const answer = await hunt({ Query: `${table} | take 1` });
      expect(answer.status, table).toBe(200);
      expect(Object.keys(answer.json.Results[0])).toEqual(answer.json.Schema.map((c: { Name: string }) => c.Name));
    }
  });

  it('has its own budget of 45 calls per minute, apart from the incidents API', async () => {
    const token = await appToken({ tenantId: TENANT_B, clientId: 'aaaaaaaa-0000-4000-8000-000000000045' });
    const run = () =>
      call('/api/advancedhunting/run', { token, method: 'POST', body: { Query: 'AlertInfo | take 1' } });
    for (let i = 0; i < 45; i += 1) expect((await run()).status).toBe(200);
    const throttled = await run();
    expectDefenderError(throttled, 429, 'TooManyRequests');
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
  });

  describe("the tenant's CPU quota and the 3-minute timeout", () => {
    const TENANT_C = '55555555-5555-4555-8555-555555555555';
    const huntC = async (query = 'AlertInfo | take 3') =>
      call('/api/advancedhunting/run', {
        token: await appToken({ tenantId: TENANT_C, clientId: 'aaaaaaaa-0000-4000-8000-0000000000c0' }),
        method: 'POST',
        body: { Query: query },
      });
    const state = async () =>
      (await (await control(`/tenants/${TENANT_C}/hunting`)).json()) as {
        cpuSecondsPerCycle: number;
        cpuSecondsUsed: number;
        cycleEndsAt: string;
        blocked: boolean;
      };
    const cpuOf = (answer: Answer) => {
      const [h, m, s] = String(answer.json.Stats.resource_usage.cpu['total cpu']).split(':').map(Number) as [
        number,
        number,
        number,
      ];
      return h * 3600 + m * 60 + s;
    };

    beforeAll(async () => {
      expect((await control(`/tenants/${TENANT_C}`, 'POST', { displayName: 'Tailspin' })).status).toBe(201);
      expect((await control(`/tenants/${TENANT_C}/incidents`, 'POST', { count: 40, seed: 'cpu' })).status).toBe(201);
    });
    beforeEach(async () => {
      // Start each test at the start of a 15-minute cycle, so that no cycle ends mid-test.
      const { cycleEndsAt } = await state();
      clockOffsetMs += Date.parse(cycleEndsAt) - (Date.now() + clockOffsetMs) + 1_000;
    });

    it('costs each query CPU deterministically from the rows it scans, and reports it in Stats', async () => {
      const first = await huntC();
      const second = await huntC();
      expect(first.status, first.text).toBe(200);
      expect(cpuOf(first)).toBeGreaterThan(0);
      expect(cpuOf(second)).toBe(cpuOf(first));
      expect(first.json.Stats.ExecutionTime).toBe(cpuOf(first));
      expect((await state()).cpuSecondsUsed).toBeCloseTo(2 * cpuOf(first), 6);
    });

    it('blocks the tenant with 429 and the documented message once 100% of its CPU is used, until the next 15-minute cycle', async () => {
      const cost = cpuOf(await huntC());
      // A quota of 2.5 queries: the one that crosses 100% still runs, the next is blocked.
      expect((await control(`/tenants/${TENANT_C}/hunting`, 'PATCH', { cpuSecondsPerCycle: 2.5 * cost })).status).toBe(
        200,
      );
      expect((await huntC()).status).toBe(200);
      expect((await huntC()).status).toBe(200);
      const blocked = await huntC();
      expectDefenderError(
        blocked,
        429,
        'TooManyRequests',
        /^You have exceeded processing resources allocated to this tenant\. You can run queries again in \d{2}:\d{2}:\d{2}\.$/,
      );
      expect(blocked.headers.get('retry-after')).toBeNull();
      const [h, m, s] = /in (\d{2}):(\d{2}):(\d{2})/.exec(blocked.json.error.message)!.slice(1).map(Number) as [
        number,
        number,
        number,
      ];
      const wait = h * 3600 + m * 60 + s;
      const { cycleEndsAt, blocked: isBlocked } = await state();
      expect(isBlocked).toBe(true);
      expect(Math.abs(wait * 1000 - (Date.parse(cycleEndsAt) - (Date.now() + clockOffsetMs)))).toBeLessThan(2_000);
      expect(wait).toBeGreaterThan(14 * 60);

      // Per tenant: another tenant runs queries; the incidents API is not affected.
      expect((await hunt({ Query: 'AlertInfo | take 1' })).status).toBe(200);
      expect((await call('/api/incidents?$top=1', { token: await appToken({ tenantId: TENANT_C }) })).status).toBe(200);

      clockOffsetMs += (wait - 60) * 1000;
      expect((await huntC()).status).toBe(429);
      clockOffsetMs += 61_000;
      expect((await huntC()).status).toBe(200);
      expect((await state()).blocked).toBe(false);
    });

    it('can be marked spent for the current cycle from the control surface or in-process', async () => {
      expect((await control(`/tenants/${TENANT_C}/hunting`, 'PATCH', { quotaSpent: true })).status).toBe(200);
      expectDefenderError(await huntC(), 429, 'TooManyRequests', /exceeded processing resources/);
      expect((await control(`/tenants/${TENANT_C}/hunting`, 'DELETE')).status).toBe(204);
      expect((await huntC()).status).toBe(200);
      defender.hunting.configure(TENANT_C, { quotaSpent: true });
      expect((await huntC()).status).toBe(429);
      defender.hunting.reset();
      expect((await huntC()).status).toBe(200);
    });

    it('answers a query that runs over three minutes 400 "Query exceeded the timeout period." and charges the three minutes', async () => {
      expect(
        (await control(`/tenants/${TENANT_C}/hunting`, 'PATCH', { nextQueries: { runSeconds: 200 } })).status,
      ).toBe(200);
      const timedOut = await huntC();
      expectDefenderError(timedOut, 400, 'BadRequest', /^Query exceeded the timeout period\.$/);
      expect((await state()).cpuSecondsUsed).toBeGreaterThanOrEqual(180);
      // Only the next query was slow; one just under the limit completes, and says how long it ran.
      defender.hunting.configure(TENANT_C, { nextQueries: { runSeconds: 179, count: 1 } });
      const slow = await huntC();
      expect(slow.status, slow.text).toBe(200);
      expect(slow.json.Stats.ExecutionTime).toBe(179);
      expect((await huntC()).json.Stats.ExecutionTime).toBeLessThan(179);
    });

    it('validates the control requests', async () => {
      expect((await control(`/tenants/${TENANT_C}/hunting`, 'PATCH', { cpuSecondsPerCycle: 0 })).status).toBe(400);
      expect((await control(`/tenants/${TENANT_C}/hunting`, 'PATCH', { nextQueries: { runSeconds: -1 } })).status).toBe(
        400,
      );
      expect((await control(`/tenants/${TENANT_C}/hunting`, 'PATCH', { spend: 'all' })).status).toBe(400);
      expect((await control(`/tenants/${TENANT_UNPROVISIONED}/hunting`)).status).toBe(404);
    });
  });

  it.each([
    [{ query: 'AlertInfo' }, 'MissingRequiredParameter', /Query/],
    [{ Query: 'SecurityEvent | take 1' }, 'BadRequest', /SecurityEvent/],
    [{ Query: 'AlertInfo | where NoSuchColumn == "x"' }, 'BadRequest', /NoSuchColumn/],
    [{ Query: 'AlertInfo | summarize count() by Severity' }, 'BadRequest', /summarize/],
    [{ Query: 'AlertInfo | where Severity == "High' }, 'BadRequest', /unterminated/],
    [{ Query: 42 }, 'InvalidInput', /Query/],
    ['not json', 'InvalidRequestBody', /JSON/],
  ])('refuses %j with 400 %s', async (body, code, message) => {
    expectDefenderError(await hunt(body), 400, code, message);
  });
});

describe('faults', () => {
  const addFault = (body: object) => control('/faults', 'POST', body);

  it.each([
    [500, 'InternalServerError'],
    [503, 'ServiceUnavailable'],
  ])('answers an injected %i in the Defender error shape, once', async (status, code) => {
    expect(
      (
        await addFault({
          target: 'defender',
          spec: { kind: 'status', status },
          times: 1,
          pathContains: '/api/incidents',
        })
      ).status,
    ).toBe(201);
    const token = await appToken();
    expectDefenderError(await call('/api/incidents?$top=1', { token }), status, code);
    expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
  });

  it('answers an injected 429 with Retry-After', async () => {
    await addFault({ target: 'defender', spec: { kind: 'status', status: 429, retryAfterSeconds: 7 }, times: 1 });
    const answer = await call('/api/incidents?$top=1', { token: await appToken() });
    expectDefenderError(answer, 429, 'TooManyRequests', /Try again in 7 seconds/);
    expect(answer.headers.get('retry-after')).toBe('7');
  });

  it('answers an injected 429 that says the wait only in its body, as the API documents it', async () => {
    await addFault({
      target: 'defender',
      spec: { kind: 'status', status: 429, retryAfterSeconds: 4, retryAfterHeader: false },
      times: 1,
    });
    const answer = await call('/api/incidents?$top=1', { token: await appToken() });
    expectDefenderError(answer, 429, 'TooManyRequests', /Try again in 4 seconds/);
    expect(answer.headers.get('retry-after')).toBeNull();
  });

  it('delays, answers a truncated body, and resets the connection', async () => {
    const token = await appToken();
    await addFault({ target: 'defender', spec: { kind: 'delay', ms: 300 }, times: 1 });
    const started = Date.now();
    expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);

    await addFault({ target: 'defender', spec: { kind: 'malformed' }, times: 1 });
    const malformed = await call('/api/incidents?$top=1', { token });
    expect(malformed.status).toBe(200);
    expect(malformed.headers.get('content-type')).toMatch(/application\/json/);
    expect(() => JSON.parse(malformed.text)).toThrow();

    await addFault({ target: 'defender', spec: { kind: 'outage' }, times: 1 });
    await expect(call('/api/incidents?$top=1', { token })).rejects.toThrow();
    expect((await call('/api/incidents?$top=1', { token })).status).toBe(200);
  });

  it('only applies faults to the matching path and target, and lists and clears them', async () => {
    await addFault({ target: 'defender', spec: { kind: 'status', status: 500 }, pathContains: '/advancedhunting' });
    await addFault({ target: 'keyvault', spec: { kind: 'outage' } });
    expect((await call('/api/incidents?$top=1', { token: await appToken() })).status).toBe(200);
    const listed = (await (await control('/faults')).json()) as { faults: { target: string }[] };
    expect(listed.faults.map((f) => f.target).sort()).toEqual(['defender', 'keyvault']);
    expect((await control('/faults?target=keyvault', 'DELETE')).status).toBe(204);
    expect(((await (await control('/faults')).json()) as { faults: unknown[] }).faults).toHaveLength(1);
    expect(faults.take('keyvault', '/secrets/x')).toBeUndefined();
  });
});

describe('malformed requests', () => {
  it.each([
    ['unknown route', 'GET', '/api/alerts', undefined, 404, 'ResourceNotFound'],
    ['path outside the API', 'GET', '/nothing/here', undefined, 404, 'ResourceNotFound'],
    ['wrong method', 'DELETE', '/api/incidents/1', undefined, 405, 'MethodNotAllowed'],
    [
      'oversized body',
      'PATCH',
      '/api/incidents/1',
      JSON.stringify({ comment: 'x'.repeat(1_100_000) }),
      413,
      'RequestEntityTooLarge',
    ],
    ['bad percent-encoding in the filter', 'GET', '/api/incidents?$filter=%E0%A4%A', undefined, 400, 'ODataError'],
    ['bad percent-encoding in the path', 'GET', '/api/incidents/%ZZ', undefined, 400, 'BadRequest'],
    ['huge $skip', 'GET', '/api/incidents?$skip=99999999999999999999', undefined, 400, 'ODataError'],
    ['huge incident id', 'GET', '/api/incidents/99999999999999999999', undefined, 400, 'InvalidInput'],
    [
      'unicode in the filter',
      'GET',
      `/api/incidents?$filter=${encodeURIComponent("assignedTo eq 'ü' and ☃")}`,
      undefined,
      400,
      'ODataError',
    ],
  ])('answers %s (%s %s) in the error shape, never a 500', async (_name, method, path, body, status, code) => {
    const answer = await call(path, { token: await appToken(), method, body });
    expectDefenderError(answer, status, code);
  });
});

describe('the control surface', () => {
  it('validates its input and answers 400 with a message', async () => {
    const bad = await control('/faults', 'POST', { target: 'defender', spec: { kind: 'explode' } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string; message: string } }).error.message).toMatch(/spec/);
    expect((await control(`/tenants/${TENANT_UNPROVISIONED}/incidents`, 'POST', { count: 1, seed: 1 })).status).toBe(
      404,
    );
    expect((await control(`/tenants/${TENANT_A}/incidents`, 'POST', { count: -1, seed: 1 })).status).toBe(400);
  });

  it('seeds explicit incidents (as in the docs), keeps unknown fields, and deletes incidents', async () => {
    const tenant = '44444444-4444-4444-8444-444444444444';
    await control(`/tenants/${tenant}`, 'POST');
    const seeded = await control(`/tenants/${tenant}/incidents`, 'POST', {
      incidents: [
        {
          incidentId: 924565,
          incidentName: 'Ransomware activity',
          createdTime: '2020-09-06T14:46:57.0733333Z',
          status: 'Active',
          severity: 'High',
          systemTags: ['Ransomware'],
        },
        { incidentName: 'Second' },
      ],
    });
    expect(seeded.status).toBe(201);
    const { incidentIds } = (await seeded.json()) as { incidentIds: number[] };
    expect(incidentIds).toEqual([924565, 924566]);
    const token = await appToken({ tenantId: tenant });
    const first = await call('/api/incidents/924565', { token });
    expect(first.json).toMatchObject({
      incidentName: 'Ransomware activity',
      lastUpdateTime: '2020-09-06T14:46:57.0733333Z',
      systemTags: ['Ransomware'],
      alerts: [],
    });
    expect((await control(`/tenants/${tenant}/incidents/924566`, 'DELETE')).status).toBe(204);
    expectDefenderError(await call('/api/incidents/924566', { token }), 404, 'NotFound');
  });

  it('reports calls per tenant, client and endpoint, and resets them', async () => {
    await control('/stats', 'DELETE');
    const clientId = 'aaaaaaaa-0000-4000-8000-00000000057a';
    const token = await appToken({ clientId });
    await call('/api/incidents?$top=1', { token });
    await call('/api/incidents/abc', { token });
    const { clients } = (await (await control('/stats')).json()) as {
      clients: { tenantId: string; clientId: string }[];
    };
    expect(clients.find((c) => c.clientId === clientId)).toEqual({
      tenantId: TENANT_A,
      clientId,
      calls: 2,
      byEndpoint: { listIncidents: 1, getIncident: 1 },
      throttled: 0,
      errors: 1,
    });
  });
});
