import { inspect } from 'node:util';
import { TableServiceClient, TableClient } from '@azure/data-tables';
import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { QueueServiceClient } from '@azure/storage-queue';
import { expect, inject, vi } from 'vitest';
import { AZURITE_KEY, startAzurite, type RunningAzurite } from '../../local/azurite.js';
import { FaultBoard } from '../../local/common/faults.js';
import { createDemoWorld, type DemoWorld } from '../../local/demo.js';
import { appSettingsFor, registerDemoTenants, startStandIns, type StandIns } from '../../local/stack.js';
import { hostHttpRequest } from '../support/host-request.js';

/**
 * The hostile-input suite's stage: the stand-ins with the demo world, an Azurite of its own (the app's
 * real queue and table names), the process settings the function handlers read, and every log line
 * the handlers and anything else in the process write. Requests are made by calling the handlers
 * with constructed `HttpRequest`s, as the host would, many at a time.
 */
/**
 * How many generated requests a suite sends: all of them, or a quarter under the mutation run (Stryker
 * sets STRYKER_MUTATOR_WORKER), which runs the suite once per mutant it covers: enough for every kind of case to come up.
 */
export function generatedRequests(count: number): number {
  return process.env.STRYKER_MUTATOR_WORKER === undefined ? count : Math.ceil(count / 4);
}

/** A hostile request is refused at once; one still running after this counts as a failure (a hang, or retries of a doomed call). */
const ANSWER_TIMEOUT_MS = 3_000;

export type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

export interface HostileCase {
  /** What the case tries, for the failure report. */
  note: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  params?: Record<string, string>;
  body?: { string: string } | { bytes: Uint8Array };
}

export interface Answer {
  status: number;
  /** The answer as text (body and headers), for the secret scan; `threw: …` when the handler threw. */
  text: string;
  /** The Functions host answered (400) and never called the handler. */
  refusedByHost?: boolean;
}

export interface Failure {
  index: number;
  note: string;
  input: string;
  status: number;
  answer: string;
}

export class HostileStage {
  readonly logs: string[] = [];
  /** Secret values by name; a name is reported, never the value. */
  readonly secrets = new Map<string, string>();
  readonly queues: QueueServiceClient;
  readonly tables: TableServiceClient;

  private constructor(
    readonly world: DemoWorld,
    readonly standIns: StandIns,
    readonly azurite: RunningAzurite,
    readonly settings: Record<string, string>,
    private readonly restoreEnv: NodeJS.ProcessEnv,
  ) {
    this.queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
    this.tables = TableServiceClient.fromConnectionString(azurite.connectionString, { allowInsecureConnection: true });
    const w = world;
    const named: [string, string][] = [
      ['app identity secret', w.appIdentity.clientSecret],
      ['relay API secret', w.relayApi.clientSecret],
      ['webhook client secret', w.webhookClient.clientSecret],
      ['webhook HMAC key', w.webhookHmacKey],
      ...w.tenants.map((t): [string, string] => [`${t.displayName} push key`, t.pushKey.key]),
      ['SIEM HMAC key', w.siemHmacKey],
      ['analyst password', w.analyst.password],
      ['Azurite account key', AZURITE_KEY],
      ...w.apps.map((a): [string, string] => [`${a.name} secret`, a.clientSecret]),
    ];
    for (const [name, value] of named) this.secrets.set(name, value);
  }

  static async start(): Promise<HostileStage> {
    const world = createDemoWorld();
    const [standIns, azurite] = await Promise.all([
      startStandIns({ tls: inject('tls'), faults: new FaultBoard(), world }),
      startAzurite({ extentMemoryLimitMb: 256 }),
    ]);
    await registerDemoTenants(world, azurite.connectionString);
    const settings = appSettingsFor(world, azurite.connectionString, standIns);
    const restoreEnv = { ...process.env };
    // The handlers build their services from the process's settings, as in the Functions host.
    Object.assign(process.env, settings);
    const stage = new HostileStage(world, standIns, azurite, settings, restoreEnv);
    // Whatever reaches the console (SDK warnings, a stray console.log) is captured and scanned too.
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      vi.spyOn(console, method).mockImplementation(
        (...args: unknown[]) =>
          void stage.logs.push(args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 6 }))).join(' ')),
      );
    }
    return stage;
  }

  async stop(): Promise<void> {
    vi.restoreAllMocks();
    process.env = this.restoreEnv;
    await Promise.all([this.standIns.close(), this.azurite.stop()]);
  }

  /** A token or signature minted for the run is a secret from then on. */
  remember(name: string, value: string): string {
    this.secrets.set(name, value);
    return value;
  }

  registeredTenantIds(): string[] {
    return this.world.tenants.map((t) => t.tenantId);
  }

  /** Whether a route value would name a registered tenant once trimmed and lower-cased (a legitimate call, not a hostile one). */
  namesRegisteredTenant(value: string): boolean {
    return this.registeredTenantIds().includes(value.trim().toLowerCase());
  }

  async call(handler: Handler, c: HostileCase): Promise<Answer> {
    const request = hostHttpRequest({
      method: c.method,
      url: `http://localhost:7071${c.path}`,
      headers: wireHeaders(c.headers ?? {}),
      params: c.params ?? {},
      body: c.body,
    });
    if (!(request instanceof HttpRequest))
      return {
        status: request.refused,
        text: 'refused by the host before any function runs: Content-Length is not a number',
        refusedByHost: true,
      };
    const context = new InvocationContext({
      functionName: 'hostile',
      logHandler: (level, ...args) =>
        void this.logs.push(
          `${level}: ${args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 6 }))).join(' ')}`,
        ),
    });
    let timer: NodeJS.Timeout | undefined;
    const tooSlow = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS);
    });
    try {
      const response = await Promise.race([handler(request, context), tooSlow]);
      const body =
        response.jsonBody !== undefined
          ? JSON.stringify(response.jsonBody)
          : typeof response.body === 'string'
            ? response.body
            : '';
      return { status: response.status ?? 200, text: `${body}\n${JSON.stringify(response.headers ?? {})}` };
    } catch (err) {
      return { status: 500, text: `threw: ${inspect(err, { depth: 4 })}` };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs the cases `concurrency` at a time; returns those whose answer `acceptable` refuses. After
   * `maxFailures` it stops sending: a broken endpoint is reported in seconds, not after 1,000 slow answers.
   */
  async run(
    handler: Handler,
    cases: HostileCase[],
    acceptable: (status: number, c: HostileCase) => boolean,
    concurrency = 16,
    maxFailures = 10,
  ): Promise<{ failures: Failure[]; answers: Answer[]; statuses: Record<number, number> }> {
    const answers: Answer[] = [];
    const failures: Failure[] = [];
    const statuses: Record<number, number> = {};
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < cases.length && failures.length < maxFailures) {
          const index = next++;
          const c = cases[index]!;
          const answer = await this.call(handler, c);
          answers.push(answer);
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
          // The host's own refusal (a Content-Length that is not a number) never reached the handler: nothing to judge.
          if (!answer.refusedByHost && !acceptable(answer.status, c))
            failures.push({
              index,
              note: c.note,
              input: describeCase(c),
              status: answer.status,
              answer: answer.text.slice(0, 600),
            });
        }
      }),
    );
    return { failures, answers, statuses };
  }

  /** Names of the secrets found in `text` (never the values). */
  leaksIn(text: string): string[] {
    return [...this.secrets].filter(([, value]) => value.length >= 8 && text.includes(value)).map(([name]) => name);
  }

  /** Messages in every queue and every row of every table (keys and ETags), to prove a run changed nothing. */
  async snapshot(): Promise<{ queues: Record<string, number>; tables: Record<string, string[]> }> {
    const queues: Record<string, number> = {};
    for await (const q of this.queues.listQueues())
      queues[q.name] = (await this.queues.getQueueClient(q.name).getProperties()).approximateMessagesCount ?? 0;
    const tables: Record<string, string[]> = {};
    for await (const t of this.tables.listTables()) {
      const client = TableClient.fromConnectionString(this.azurite.connectionString, t.name!, {
        allowInsecureConnection: true,
      });
      const rows: string[] = [];
      for await (const e of client.listEntities()) rows.push(`${e.partitionKey}|${e.rowKey}|${e.etag}`);
      // A table created empty on first use is not a change of state.
      if (rows.length > 0) tables[t.name!] = rows.sort();
    }
    return { queues, tables };
  }
}

/**
 * Header values as they can arrive over the wire: UTF-8 bytes read as Latin-1 (what Node does with
 * raw header bytes), without NUL, CR or LF (which the HTTP parser refuses before any handler runs).
 */
function wireHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).map(([name, value]) => [
      name,
      Buffer.from(value, 'utf8')
        .toString('latin1')
        .replace(/[\0\r\n]/g, ' '),
    ]),
  );
}

/** A short, printable description of a case (huge values cut). */
export function describeCase(c: HostileCase): string {
  const cut = (s: string) => (s.length > 160 ? `${s.slice(0, 160)}… (${s.length} chars)` : s);
  const body = c.body === undefined ? '' : 'string' in c.body ? cut(c.body.string) : `<${c.body.bytes.length} bytes>`;
  return `${c.method} ${cut(c.path)} params=${cut(JSON.stringify(c.params ?? {}))} headers=${cut(JSON.stringify(c.headers ?? {}))} body=${JSON.stringify(body)}`;
}

/** Every message in every queue: what a run must not have added to. */
export const totalMessages = (snapshot: { queues: Record<string, number> }) =>
  Object.values(snapshot.queues).reduce((a, b) => a + b, 0);

/**
 * Runs the cases and checks what every hostile request must leave true: the answer `acceptable`
 * allows (a 4xx, unless said otherwise), no secret in any answer or log line, no message in any
 * queue, no row changed in any table; `unchanged` adds a check of its own (e.g. Defender's incidents).
 */
export async function expectHostileAnswers(
  stage: HostileStage,
  name: string,
  handler: Handler,
  cases: HostileCase[],
  acceptable: (status: number, c: HostileCase) => boolean,
  unchanged: () => unknown = () => undefined,
): Promise<Record<number, number>> {
  const logsBefore = stage.logs.length;
  const before = await stage.snapshot();
  const outsideBefore = JSON.stringify(unchanged());
  const { failures, answers, statuses } = await stage.run(handler, cases, acceptable);
  const serverErrors = Object.entries(statuses)
    .filter(([status]) => Number(status) >= 500)
    .reduce((n, [, count]) => n + count, 0);
  process.stdout.write(
    `hostile: ${name}: ${answers.length} generated requests, answers ${JSON.stringify(statuses)}, 5xx ${serverErrors}\n`,
  );
  expect(
    failures,
    `${name}: answers that are not what a hostile request should get (statuses ${JSON.stringify(statuses)})`,
  ).toEqual([]);
  expect(answers).toHaveLength(cases.length);
  const leaks = answers.flatMap((a, i) => stage.leaksIn(a.text).map((secret) => `answer ${i}: ${secret}`));
  leaks.push(
    ...stage.logs.slice(logsBefore).flatMap((line) => stage.leaksIn(line).map((secret) => `log line: ${secret}`)),
  );
  expect(leaks, `${name}: secrets in answers or logs`).toEqual([]);
  const after = await stage.snapshot();
  expect(totalMessages(after), `${name}: messages enqueued`).toBe(0);
  expect(after.tables, `${name}: tables changed`).toEqual(before.tables);
  expect(JSON.stringify(unchanged()), `${name}: state outside the relay changed`).toBe(outsideBefore);
  return statuses;
}
