import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateIncidents } from '../../local/defender/generator.js';
import { loadConfig } from '../../shared/config/config.js';
import { deadLetterQueueOf } from '../../shared/messages/dead-letter.js';
import { enrichDependencies, handleIncidentEvent } from '../../shared/enrich/enrich-handler.js';
import { envelopeFor } from '../../shared/messages/events.js';
import { QUEUE_NAMES } from '../../shared/storage/queues.js';
import { createServices } from '../../shared/services.js';
import { drainQueue } from '../support/queues.js';
import { HostileStage } from './harness.js';

/**
 * Finding 7 of issue 10: a routing file that does not load left the app "healthy" while every event
 * burnt its five attempts into poison, and a JSON syntax error was reported without the file or the
 * line. Each broken file here must make /api/health answer 503 naming the setting, the file, the line
 * (and the field), with no secret; and the enricher must name the same error, without claiming the
 * event or spending anything on it.
 */
interface HealthBody {
  status: string;
  checks: {
    name: string;
    ok: boolean;
    detail: string;
    problems?: { setting?: string; file?: string; line?: number; column?: number; field?: string; message: string }[];
  }[];
}

describe('hostile configuration: a routes file that cannot load', () => {
  let stage: HostileStage;
  let dir: string;
  let good: string[];

  beforeAll(async () => {
    stage = await HostileStage.start();
    dir = mkdtempSync(join(tmpdir(), 'hostile-routes-'));
    good = readFileSync(stage.standIns.routesFile, 'utf8').split('\n');
  }, 60_000);
  afterAll(async () => {
    await stage?.stop();
  });

  /** The demo routes with one line changed; returns the file and the 1-based line changed. */
  function brokenRoutes(name: string, find: RegExp, change: (line: string) => string): { file: string; line: number } {
    const index = good.findIndex((l) => find.test(l));
    expect(index, `${find} in the demo routes`).toBeGreaterThanOrEqual(0);
    const lines = [...good];
    lines[index] = change(lines[index]!);
    const file = join(dir, name);
    writeFileSync(file, lines.join('\n'));
    return { file, line: index + 1 };
  }

  /** GET /api/health through the real handler, in a fresh module graph (the app reads its settings once per process). */
  async function healthWith(
    routesFile: string,
    setting = 'ROUTES_FILE',
  ): Promise<{ status: number; body: HealthBody; text: string }> {
    const before = process.env[setting];
    process.env[setting] = routesFile;
    try {
      vi.resetModules();
      const { health } = (await import('../../functions/health.js')) as typeof import('../../functions/health.js');
      const logs: string[] = [];
      const context = new InvocationContext({
        functionName: 'health',
        logHandler: (_level, ...args) => void logs.push(args.join(' ')),
      });
      const response = await health(
        new HttpRequest({ method: 'GET', url: 'http://localhost:7071/api/health' }),
        context,
      );
      const text = `${JSON.stringify(response.jsonBody)}\n${logs.join('\n')}`;
      expect(stage.leaksIn(text)).toEqual([]);
      return { status: response.status ?? 200, body: response.jsonBody as HealthBody, text };
    } finally {
      process.env[setting] = before;
    }
  }

  const configuration = (body: HealthBody) => body.checks.find((c) => c.name === 'configuration');

  it('health answers 503 naming the setting and the file when ROUTES_FILE names no file (a typo)', async () => {
    const typo = join(dir, 'rotues.json');
    const { status, body } = await healthWith(typo);
    expect(status).toBe(503);
    expect(body.status).toBe('unhealthy');
    expect(configuration(body)).toMatchObject({
      ok: false,
      problems: [{ setting: 'ROUTES_FILE', file: typo, message: expect.stringContaining('ENOENT') }],
    });
    expect(configuration(body)!.detail).toContain(`ROUTES_FILE ${typo}: cannot read the file (ENOENT`);
  });

  it('health answers 503 naming the file, line and column of a JSON syntax error', async () => {
    // A missing comma between two destinations: found where the next one starts.
    const { file, line } = brokenRoutes('syntax.json', /^\s*\},\s*$/, (l) => l.replace(/,\s*$/, ''));
    const { status, body } = await healthWith(file);
    expect(status).toBe(503);
    const check = configuration(body)!;
    expect(check.ok).toBe(false);
    expect(check.problems).toEqual([
      expect.objectContaining({
        setting: 'ROUTES_FILE',
        file,
        line: line + 1,
        message: 'not valid JSON: a comma was expected',
      }),
    ]);
    expect(check.detail).toMatch(
      new RegExp(
        `^ROUTES_FILE ${file.replace(/[.\\/]/g, '\\$&')}:${line + 1}:\\d+: not valid JSON: a comma was expected`,
      ),
    );
  });

  it('health answers 503 naming the file, line and field of a value that is not allowed', async () => {
    const { file, line } = brokenRoutes('field.json', /"High"/, (l) => l.replace('"High"', '"Critical"'));
    const { status, body } = await healthWith(file);
    expect(status).toBe(503);
    const [problem, ...others] = configuration(body)!.problems!;
    expect(others).toEqual([]);
    expect(problem).toMatchObject({
      setting: 'ROUTES_FILE',
      file,
      line,
      field: expect.stringMatching(/^rules\[\d+\] "[\w-]+": match\.severity\[0\]$/),
      message: expect.stringMatching(/^must be one of /),
    });
    expect(configuration(body)!.detail).toContain(`ROUTES_FILE ${file}:${line}:`);
    expect(configuration(body)!.detail).toContain(`${problem!.field}: must be one of`);
  });

  it('health answers 200 with the configuration check passing when the file loads', async () => {
    const { status, body } = await healthWith(stage.standIns.routesFile);
    expect(configuration(body)).toMatchObject({ ok: true });
    expect(status).toBe(200);
  });

  it('the enricher names the file, line and field on the event it cannot route, without claiming it or spending a Defender call', async () => {
    const { file, line } = brokenRoutes('enrich.json', /"High"/, (l) => l.replace('"High"', '"Critical"'));
    const services = createServices(loadConfig({ ...stage.settings, ROUTES_FILE: file }));
    const deps = enrichDependencies(services);
    const tenant = stage.world.tenants.find((t) => t.context === 'application')!;
    const [incident] = generateIncidents({
      tenantId: tenant.tenantId,
      count: 1,
      seed: 'hostile-routes',
      startId: 990_001,
    });
    const envelope = envelopeFor(tenant.tenantId, incident!, 'poll');
    const logs: string[] = [];
    const log = {
      info: (m: string) => logs.push(m),
      warn: (m: string) => logs.push(m),
      error: (m: string) => logs.push(m),
    };

    const tablesBefore = (await stage.snapshot()).tables;
    const outcome = await handleIncidentEvent(envelope, deps, log, { dequeueCount: 1 });
    expect(outcome).toMatchObject({
      status: 'dead-lettered',
      eventId: envelope.eventId,
      reason: expect.stringContaining(`ROUTES_FILE ${file}:${line}:`),
    });
    const logged = logs.find((l) => l.includes(envelope.eventId));
    expect(logged).toMatch(
      new RegExp(
        `ROUTES_FILE ${file.replace(/[.\\/]/g, '\\$&')}:${line}:\\d+: rules\\[\\d+\\] "[\\w-]+": match\\.severity\\[0\\]: must be one of`,
      ),
    );
    expect(services.defender.calls.get(tenant.tenantId) ?? 0).toBe(0);
    // Not claimed, nothing recorded: once the file is fixed, a replay routes it as new.
    expect((await stage.snapshot()).tables).toEqual(tablesBefore);

    const [deadLettered] = (await drainQueue(stage.queues, deadLetterQueueOf(QUEUE_NAMES.incidents))) as {
      reason: string;
      message: { eventId: string };
    }[];
    expect(deadLettered).toMatchObject({
      reason: expect.stringContaining(`${file}:${line}:`),
      message: { eventId: envelope.eventId },
    });
  });

  it('health answers 503 naming file, line and field when the webhook access file grants something it cannot', async () => {
    const access = JSON.parse(readFileSync(stage.settings.WEBHOOK_ACCESS_FILE!, 'utf8')) as {
      callers: { mayPushFor: string[] }[];
    };
    access.callers[0]!.mayPushFor.push('*');
    const file = join(dir, 'webhook-access.json');
    writeFileSync(file, JSON.stringify(access, null, 2));
    const line =
      JSON.stringify(access, null, 2)
        .split('\n')
        .findIndex((l) => l.includes('"*"')) + 1;
    const { status, body } = await healthWith(file, 'WEBHOOK_ACCESS_FILE');
    expect(status).toBe(503);
    expect(configuration(body)).toMatchObject({
      ok: false,
      problems: [
        {
          setting: 'WEBHOOK_ACCESS_FILE',
          file,
          line,
          field: `callers[0].mayPushFor[${access.callers[0]!.mayPushFor.length - 1}]`,
          message: 'must be a GUID',
        },
      ],
    });
  });
});
