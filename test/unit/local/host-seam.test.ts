import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { describeFunction } from '../../../local/host/app-loader.js';
import { installCoreApi } from '../../../local/host/core-api.js';
import type { RpcTypedData } from '../../../local/host/worker-contract.js';
import { WorkerInvoker } from '../../../local/host/worker-invoker.js';

/**
 * Pins the worker contract of @azure/functions@4.16.5: what it hands `registerFunction`, and how
 * its programming model converts RPC invocation requests and responses. A library upgrade that
 * changes either fails here first.
 */
const registry = installCoreApi();
const require = createRequire(import.meta.url);
const { app, output, HttpResponse } = require('@azure/functions') as typeof import('@azure/functions');

const received: unknown[] = [];
app.http('getThing', {
  methods: ['GET', 'POST'],
  route: 'things/{id:int}',
  authLevel: 'function',
  handler: async (request, context) => {
    received.push({
      params: request.params,
      q: request.query.get('q'),
      body: await request.text(),
      header: request.headers.get('x-test'),
      name: context.functionName,
    });
    return new HttpResponse({
      status: 201,
      jsonBody: { ok: true },
      headers: { 'x-out': '1' },
      cookies: [{ name: 'c', value: 'v', sameSite: 'Lax' }],
    });
  },
});
app.storageQueue('onMessage', {
  queueName: 'work-items',
  connection: 'MyStorage',
  handler: (message, context) => {
    received.push({ message, type: typeof message, metadata: context.triggerMetadata });
  },
});
app.timer('onTick', {
  schedule: '0 */5 * * * *',
  runOnStartup: true,
  handler: (timer) => {
    received.push(timer);
  },
});
app.storageQueue('withOutput', {
  queueName: 'in-q',
  connection: 'MyStorage',
  extraOutputs: [output.storageQueue({ queueName: 'out-q', connection: 'MyStorage' })],
  handler: () => undefined,
});

const fn = (name: string) => {
  const found = registry.functions.get(name);
  if (!found) throw new Error(`${name} was not registered`);
  return found;
};

describe('the @azure/functions-core seam', () => {
  it('receives the programming model of the pinned library', () => {
    expect(registry.programmingModel()).toMatchObject({ name: '@azure/functions', version: '4.16.5' });
  });

  it('receives HTTP metadata with trigger options and the $return http output', () => {
    const { metadata } = fn('getThing');
    const [triggerName] = Object.keys(metadata.bindings);
    expect(triggerName).toMatch(/^httpTrigger[0-9a-f]+$/);
    expect(metadata).toEqual({
      name: 'getThing',
      bindings: {
        [triggerName!]: {
          name: triggerName,
          type: 'httpTrigger',
          direction: 'in',
          authLevel: 'function',
          methods: ['GET', 'POST'],
          route: 'things/{id:int}',
          properties: { supportsDeferredBinding: 'false' },
        },
        // The key is '$return'; the binding keeps the generated output name.
        $return: { name: expect.stringMatching(/^httpOutput[0-9a-f]+$/), type: 'http', direction: 'out' },
      },
      retryOptions: undefined,
    });
  });

  it('receives queue and timer metadata as the host reads it', () => {
    expect(Object.values(fn('onMessage').metadata.bindings)).toEqual([
      expect.objectContaining({
        type: 'queueTrigger',
        direction: 'in',
        queueName: 'work-items',
        connection: 'MyStorage',
      }),
    ]);
    expect(Object.values(fn('onTick').metadata.bindings)).toEqual([
      expect.objectContaining({ type: 'timerTrigger', direction: 'in', schedule: '0 */5 * * * *', runOnStartup: true }),
    ]);
  });

  it('refuses bindings other than the trigger, naming the function', () => {
    expect(() => describeFunction(fn('withOutput'))).toThrow(
      /Function 'withOutput'.*queue.*not supported by the local host/,
    );
    expect(describeFunction(fn('onMessage'))).toMatchObject({
      trigger: 'queue',
      queueName: 'work-items',
      connectionSetting: 'MyStorage',
    });
  });

  // What the worker process does with the host's InvocationRequest (local/host/worker-process.ts).
  const invoker = new WorkerInvoker(registry);
  let invocations = 0;
  const invoke = async (
    name: string,
    input: { data: RpcTypedData; triggerMetadata?: Record<string, RpcTypedData> },
  ) => {
    const triggerName = Object.keys(fn(name).metadata.bindings).find((binding) =>
      /trigger/i.test(fn(name).metadata.bindings[binding]!.type ?? ''),
    )!;
    const request = {
      invocationId: `test-${++invocations}`,
      functionId: name,
      inputData: [{ name: triggerName, data: input.data }],
      triggerMetadata: input.triggerMetadata ?? {},
    };
    return invoker.invoke(request, () => undefined);
  };

  it('turns an RPC http request into HttpRequest and the response back into RPC http', async () => {
    received.length = 0;
    // Bytes cross the host's IPC channel as Uint8Array (structured clone), as protobuf bytes do.
    const response = await invoke('getThing', {
      data: {
        http: {
          method: 'POST',
          url: 'http://localhost:7071/api/things/7?q=x',
          headers: { 'x-test': 'yes', 'content-type': 'text/plain' },
          query: { q: 'x' },
          params: { id: '7' },
          body: { bytes: new Uint8Array(Buffer.from('payload')) },
        },
      },
    });
    expect(received).toEqual([{ params: { id: '7' }, q: 'x', body: 'payload', header: 'yes', name: 'getThing' }]);
    const http = response.returnValue?.http;
    expect(http).toMatchObject({ statusCode: '201', headers: { 'x-out': '1', 'content-type': 'application/json' } });
    expect(http?.cookies).toEqual([expect.objectContaining({ name: 'c', value: 'v', sameSite: 'lax' })]);
    expect(Buffer.from(http!.body!.bytes!).toString()).toBe('{"ok":true}');
  });

  it('JSON-parses a queue message string and camel-cases trigger metadata', async () => {
    received.length = 0;
    await invoke('onMessage', {
      data: { string: '{"a":1}' },
      triggerMetadata: {
        DequeueCount: { int: 2 },
        Id: { string: 'm1' },
        InsertionTime: { json: '"2026-01-01T00:00:00Z"' },
      },
    });
    expect(received).toEqual([
      {
        message: { a: 1 },
        type: 'object',
        metadata: { dequeueCount: 2, id: 'm1', insertionTime: '2026-01-01T00:00:00Z' },
      },
    ]);
  });

  it('camel-cases the PascalCase timer payload the host sends', async () => {
    received.length = 0;
    await invoke('onTick', {
      data: {
        json: JSON.stringify({
          Schedule: { AdjustForDST: true },
          ScheduleStatus: { Last: 'a', Next: 'b', LastUpdated: 'c' },
          IsPastDue: false,
        }),
      },
    });
    expect(received).toEqual([
      {
        schedule: { adjustForDST: true },
        scheduleStatus: { last: 'a', next: 'b', lastUpdated: 'c' },
        isPastDue: false,
      },
    ]);
  });

  it('gives appStart and appTerminate hooks one app-level hookData, as the worker does', async () => {
    const seen: unknown[] = [];
    const start = app.hook.appStart((context) => {
      context.hookData.startedBy = 'appStart';
      seen.push(context.hookData);
    });
    const terminate = app.hook.appTerminate((context) => {
      seen.push(context.hookData);
    });
    await invoker.runAppHooks('appStart');
    await invoker.runAppHooks('appTerminate');
    start.dispose();
    terminate.dispose();
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(seen[0]);
    expect(seen[1]).toEqual({ startedBy: 'appStart' });
  });

  it('runs pre- and post-invocation hooks registered through the library', async () => {
    const seen: string[] = [];
    const pre = app.hook.preInvocation((context) => {
      seen.push(`pre:${context.invocationContext.functionName}`);
    });
    const post = app.hook.postInvocation((context) => {
      seen.push(`post:${String(context.error)}:${String(context.result)}`);
      // As in the worker: the hook data and the context cannot be replaced.
      expect(() => Object.assign(context, { hookData: {} })).toThrow(/read only/);
      expect(() => Object.assign(context, { invocationContext: {} })).toThrow(/read only/);
    });
    await invoke('onMessage', { data: { string: 'x' } });
    pre.dispose();
    post.dispose();
    await invoke('onMessage', { data: { string: 'x' } });
    // The worker starts error and result at null (InvocationHandler.ts); onMessage returns nothing.
    expect(seen).toEqual(['pre:onMessage', 'post:null:undefined']);
  });
});
