import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { spawnHost, uniqueName, type HostProcess } from '../../fixtures/host-app/harness.js';

const storage = inject('storage');
const baseEnv = {
  AzureWebJobsStorage: storage.connectionString,
  FIXTURE_QUEUE: uniqueName('host-http-in'),
  FIXTURE_RESULTS_QUEUE: uniqueName('host-http-results'),
  // Once a year: the timer must not fire during these tests.
  FIXTURE_SCHEDULE: '0 0 0 1 1 *',
  FIXTURE_ROUTE: 'fixture',
  FIXTURE_OVERRIDDEN: 'from the environment',
};

let host: HostProcess;
beforeAll(async () => {
  host = await spawnHost({ env: baseEnv });
});
afterAll(async () => {
  await host?.stop();
});

describe('local host: HTTP triggers', () => {
  it('lists every function the app registered, once it listens', async () => {
    // Entry points load in sorted order (http.js, queue.js, timer.js), so 'tick' is listed last.
    await host.waitForLine(/^ {2}tick: timerTrigger/);
    const listing = host.lines
      .slice(host.lines.findIndex((l) => l.startsWith('Host ready:')) + 1)
      .filter((l) => /^ {2}\w+: \w+Trigger /.test(l));
    expect(listing.map((l) => l.trim().split(':')[0]).sort()).toEqual([
      'aCatchAll',
      'boom',
      'crash',
      'deleteItemByName',
      'echo',
      'getItem',
      'greet',
      'itemByName',
      'nothing',
      'recordMessage',
      'settingRoute',
      'slow',
      'tick',
      'worker',
    ]);
    expect(host.lines.join('\n')).toContain(`getItem: httpTrigger [GET] ${host.url}/api/items/{id:int}/{*rest}`);
    expect(host.lines.filter((l) => /authLevel 'function': keys are not enforced/.test(l))).toHaveLength(1);
  });

  it('puts a function whose route the real host refuses in error, and runs the others', async () => {
    await host.waitForLine(/^ {2}tick: timerTrigger/);
    const inError = (name: string) =>
      host.lines
        .find((l) => l.includes(`The '${name}' function is in error: `))
        ?.replace(/^.*function is in error: /, '');
    const builtIn = 'The specified route conflicts with one or more built in routes.';
    expect(inError('adminRoute')).toBe(builtIn);
    expect(inError('administrationRoute')).toBe(builtIn);
    expect(inError('runtimeRoute')).toBe(builtIn);
    expect(inError('echoClash')).toBe("The route specified conflicts with the route defined by function 'echo'.");
    expect(inError('boomClash')).toBe("The route specified conflicts with the route defined by function 'boom'.");
    expect(host.lines).toContain(`  adminRoute: in error: ${builtIn}`);
    expect(inError('deleteItemByName')).toBeUndefined();

    expect((await fetch(`${host.url}/api/admin/replay`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${host.url}/api/administration`)).status).toBe(404);
    expect((await fetch(`${host.url}/api/runtime/status`)).status).toBe(404);
    // The functions registered first keep their routes; the same route with other methods is served.
    expect((await fetch(`${host.url}/api/echo`, { method: 'PUT', body: 'x' })).status).toBe(201);
    expect((await fetch(`${host.url}/api/boom`)).status).toBe(500);
    expect(await (await fetch(`${host.url}/api/items/widget`, { method: 'DELETE' })).json()).toEqual({
      deleted: 'widget',
    });
    expect(await (await fetch(`${host.url}/api/items/w1dget`)).json()).toEqual({ name: 'w1dget' });
  });

  it('routes by template: params, constraints, catch-all, query', async () => {
    const response = await fetch(`${host.url}/api/items/42/a/b%20c?q=x&tag=1&tag=2`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      id: '42',
      rest: 'a/b c',
      q: 'x',
      tags: '1,2',
      method: 'GET',
      url: `${host.url}/api/items/42/a/b%20c?q=x&tag=1&tag=2`,
    });
    // {id:int} does not take 'abc', so the plain {name} route does; an int goes to the constrained one.
    expect(await (await fetch(`${host.url}/api/items/abc-1`)).json()).toEqual({ name: 'abc-1' });
    // Routes are tried in function-name order and the first match wins, as the real host's
    // RouteCollection does: aCatchAll (items/{name:alpha}/{*rest}) comes before itemByName.
    expect(await (await fetch(`${host.url}/api/items/abc`)).json()).toEqual({ caughtBy: 'aCatchAll', name: 'abc' });
    expect(await (await fetch(`${host.url}/api/items/abc/d/e`)).json()).toEqual({ caughtBy: 'aCatchAll', name: 'abc' });
    expect(await (await fetch(`${host.url}/api/items/7`)).json()).toMatchObject({ id: '7', rest: null });
    expect(await (await fetch(`${host.url}/api/greet`)).json()).toMatchObject({ name: null });
    expect(await (await fetch(`${host.url}/api/GREET/bob`)).json()).toMatchObject({ name: 'bob' });
  });

  it('matches methods case-insensitively and answers 404 otherwise', async () => {
    expect((await fetch(`${host.url}/api/echo`, { method: 'POST', body: 'x' })).status).toBe(201);
    expect((await fetch(`${host.url}/api/echo`, { method: 'PUT', body: 'x' })).status).toBe(201);
    expect((await fetch(`${host.url}/api/echo`, { method: 'DELETE' })).status).toBe(404);
    expect((await fetch(`${host.url}/api/echo`)).status).toBe(404);
    expect((await fetch(`${host.url}/api/nothing-here`)).status).toBe(404);
    expect((await fetch(`${host.url}/items/42`)).status).toBe(404);
  });

  it('passes the body through as bytes and returns status, headers and cookies', async () => {
    const payload = Buffer.from([0, 1, 2, 250, 251, 252]);
    const response = await fetch(`${host.url}/api/echo`, {
      method: 'POST',
      body: payload,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('x-echo-content-type')).toBe('application/octet-stream');
    expect(response.headers.get('x-echo-length')).toBe('6');
    expect(response.headers.get('set-cookie')).toBe('seen=yes; Path=/; HttpOnly');
    expect(Buffer.from(await response.arrayBuffer())).toEqual(payload);
  });

  it('hands over a repeated header as its values joined by a comma, as ASP.NET does', async () => {
    const echoed = await new Promise<string | undefined>((resolve, reject) => {
      const req = httpRequest(`${host.url}/api/echo`, { method: 'POST', headers: { 'content-length': '0' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.headers['x-echo-tag'] as string | undefined));
      });
      // Two header lines with the same name.
      req.setHeader('x-tag', ['first', 'second']);
      req.on('error', reject);
      req.end();
    });
    expect(echoed).toBe('first,second');
  });

  it('forwards a body only when Content-Length declares it: a chunked body arrives empty, as in Azure', async () => {
    const chunked = await new Promise<{ status: number; length: string | undefined }>((resolve, reject) => {
      const req = httpRequest(
        `${host.url}/api/echo`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, length: res.headers['x-echo-length'] as string | undefined }),
          );
        },
      );
      req.on('error', reject);
      req.write('{"id":');
      req.end('1}');
    });
    expect(chunked).toEqual({ status: 201, length: '0' });
    const declared = await fetch(`${host.url}/api/echo`, {
      method: 'POST',
      body: '{"id":1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(declared.headers.get('x-echo-length')).toBe('8');
  });

  it('answers 200 with an empty body when the handler returns nothing, as the real host does', async () => {
    const response = await fetch(`${host.url}/api/nothing`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe('0');
    expect(await response.text()).toBe('');
  });

  it('answers 500 without the error or stack when the handler throws, and logs it', async () => {
    const after = host.lines.length;
    const response = await fetch(`${host.url}/api/boom`);
    expect(response.status).toBe(500);
    expect(await response.text()).toBe('');
    await host.waitForLine(/Executed 'Functions\.boom' \(Failed, Id=[0-9a-f-]+, Duration=\d+ms\)/, { after });
    await host.waitForLine(/Error: kaboom: this message and its stack must not reach the caller/, { after });
  });

  it('rejects a body over 100 MB with 413 before reading it', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${host.url}/api/echo`,
        { method: 'POST', headers: { 'content-length': String(100 * 1024 * 1024 + 1) } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write('only a little');
    });
    expect(status).toBe(413);
  });

  it('resolves %SETTING% in routes and applies local.settings.json under the environment', async () => {
    expect(await (await fetch(`${host.url}/api/fixture/ping`)).text()).toBe('pong');
    expect(await (await fetch(`${host.url}/api/greet`)).json()).toEqual({
      name: null,
      greeting: 'hello from local.settings.json',
      overridden: 'from the environment',
    });
  });

  it('accepts an HTTP function through the admin API but cannot bind its trigger, as in Azure; refuses an empty body first', async () => {
    expect(await (await fetch(`${host.url}/admin/host/status`)).json()).toMatchObject({ state: 'Running' });
    const after = host.lines.length;
    expect((await fetch(`${host.url}/admin/functions/getItem`, { method: 'POST', body: '{"input":"x"}' })).status).toBe(
      202,
    );
    await host.waitForLine(
      /Exception binding parameter 'httpTrigger[0-9a-f]*'\. Microsoft\.Azure\.WebJobs\.Extensions\.Http: An HttpRequest is required\./,
      { after },
    );
    expect(host.lines.slice(after).some((l) => l.includes("Executed 'Functions.getItem' (Failed"))).toBe(true);
    // The binding fails before the function starts: it never runs.
    expect(host.lines.slice(after).some((l) => l.includes("Executing 'Functions.getItem'"))).toBe(false);
    expect((await fetch(`${host.url}/admin/functions/nope`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await fetch(`${host.url}/admin/functions/nope`, { method: 'POST' })).status).toBe(400);
  });

  it('puts a function whose %SETTING% is missing in error, naming it and the setting, and runs the others', async () => {
    const partial = await spawnHost({ env: { ...baseEnv, FIXTURE_SCHEDULE: undefined, FIXTURE_ROUTE: undefined } });
    try {
      await partial.waitForLine(/^ {2}tick: in error: /);
      expect(partial.lines).toContain(
        "  tick: in error: Microsoft.Azure.WebJobs.Host: Error indexing method 'Functions.tick'. Microsoft.Azure.WebJobs.Host: '%FIXTURE_SCHEDULE%' does not resolve to a value. ('schedule' refers to app setting 'FIXTURE_SCHEDULE', which is not set.)",
      );
      expect(
        partial.lines.some(
          (l) =>
            l.includes("The 'settingRoute' function is in error: ") &&
            l.includes("'%FIXTURE_ROUTE%' does not resolve to a value."),
        ),
      ).toBe(true);
      expect((await fetch(`${partial.url}/api/greet`)).status).toBe(200);
      expect((await fetch(`${partial.url}/admin/functions/tick`, { method: 'POST', body: '{}' })).status).toBe(404);
    } finally {
      await partial.stop();
    }
  });

  it("puts a queue function whose connection is missing in error, in the host's words, and runs the others", async () => {
    const partial = await spawnHost({ env: { ...baseEnv, AzureWebJobsStorage: undefined } });
    try {
      await partial.waitForLine(/^ {2}recordMessage: in error: /);
      expect(partial.lines).toContain(
        "  recordMessage: in error: Microsoft.Azure.WebJobs.Host: Error indexing method 'Functions.recordMessage'. Microsoft.Azure.WebJobs.Host.Storage: " +
          "Storage account connection string 'AzureWebJobsAzureWebJobsStorage' does not exist. Make sure that it is a defined App Setting.",
      );
      expect((await fetch(`${partial.url}/api/greet`)).status).toBe(200);
      expect((await fetch(`${partial.url}/admin/functions/recordMessage`, { method: 'POST', body: '{}' })).status).toBe(
        404,
      );
    } finally {
      await partial.stop();
    }
  });

  it('on SIGTERM finishes in-flight invocations, refuses new ones, runs the appTerminate hooks and exits 0', async () => {
    const after = host.lines.length;
    const inFlight = fetch(`${host.url}/api/slow?ms=1500`);
    await host.waitForLine(
      /Executing 'Functions\.slow' \(Reason='This function was programmatically called via the host APIs\.'/,
      { after },
    );
    const exit = host.stop('SIGTERM');
    await host.waitForLine(/SIGTERM received/, { after });
    const refused = await fetch(`${host.url}/api/greet`);
    expect(refused.status).toBe(503);
    expect(await refused.text()).toBe('Function host is not running.');
    // The admin API still answers while the host drains, saying so.
    expect(((await (await fetch(`${host.url}/admin/host/status`)).json()) as { state: string }).state).toBe('Stopping');
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('done');
    expect(await exit).toBe(0);
    // appTerminate hooks run last, after the in-flight invocation, with the hookData appStart hooks left.
    const finished = host.lines.findIndex((l, i) => i >= after && /Executed 'Functions\.slow' \(Succeeded/.test(l));
    const terminated = host.lines.findIndex(
      (l, i) => i >= after && l.includes('fixture appTerminate hook ran: startedBy=appStart'),
    );
    expect(finished).toBeGreaterThan(-1);
    expect(terminated).toBeGreaterThan(finished);
  });
});
