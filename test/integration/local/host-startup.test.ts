import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { spawnHost, spawnHostExpectingFailure, uniqueName } from '../../fixtures/host-app/harness.js';

/**
 * Start-up failures of the local host: an appStart hook that throws stops the host before any
 * trigger runs (the Node.js worker fails its init the same way, and the real host then runs no
 * function), and the app's own start-up check refuses configuration that cannot load, naming the
 * file, the line and the field.
 */
const storage = inject('storage');
const REPO = resolve(import.meta.dirname, '../../..');

describe('local host: start-up', () => {
  it('refuses to start when an entry point fails to load, naming the file as the worker does', async () => {
    const { code, output } = await spawnHostExpectingFailure({
      env: {
        AzureWebJobsStorage: storage.connectionString,
        FIXTURE_QUEUE: uniqueName('host-import-in'),
        FIXTURE_SCHEDULE: '0 0 0 1 1 *',
        FIXTURE_ROUTE: 'fixture',
        FIXTURE_IMPORT_THROWS: 'broken at import',
      },
    });
    expect(code).toBe(1);
    expect(output).toContain(
      'Host failed to start: Worker was unable to load entry point "functions/hooks.js": broken at import',
    );
  });

  it("refuses to start when an appStart hook throws, with the hook's message, before any trigger runs", async () => {
    const { code, output } = await spawnHostExpectingFailure({
      env: {
        AzureWebJobsStorage: storage.connectionString,
        FIXTURE_QUEUE: uniqueName('host-start-in'),
        FIXTURE_RESULTS_QUEUE: uniqueName('host-start-results'),
        FIXTURE_SCHEDULE: '0 0 0 1 1 *',
        FIXTURE_ROUTE: 'fixture',
        FIXTURE_RUN_ON_STARTUP: 'true',
        FIXTURE_APPSTART_THROWS: 'the start-up check found a problem',
      },
    });
    expect(code).toBe(1);
    expect(output).toContain(
      'Host failed to start: Initializing worker process failed: an appStart hook threw: the start-up check found a problem',
    );
    expect(output).not.toMatch(/Host ready|Executing 'Functions\./);
  });

  describe("the app's configuration check", () => {
    const dir = mkdtempSync(join(tmpdir(), 'host-routes-'));
    const demo = readFileSync(join(REPO, 'local/demo-routes.json'), 'utf8').split('\n');
    const appEnv = (routesFile: string) => ({
      FUNCTIONS_WORKER_RUNTIME: 'node',
      AzureWebJobsStorage: storage.connectionString,
      KEY_VAULT_URL: 'https://localhost:1/',
      POLL_SCHEDULE: '0 0 0 1 1 *',
      ROUTES_FILE: routesFile,
      DESTINATION_ALLOWED_HOSTS: 'localhost',
    });
    function withLine(name: string, find: RegExp, change: (line: string) => string): { file: string; line: number } {
      const index = demo.findIndex((l) => find.test(l));
      const lines = [...demo];
      lines[index] = change(lines[index]!);
      const file = join(dir, name);
      writeFileSync(file, lines.join('\n'));
      return { file, line: index + 1 };
    }

    it('starts the app with every function running: no route the real host would refuse', async () => {
      const host = await spawnHost({ appDir: REPO, env: appEnv(join(REPO, 'local/demo-routes.json')) });
      try {
        // Entry points load in sorted order: updateIncident is listed last.
        await host.waitForLine(/^ {2}updateIncident: /);
        const listed = host.lines.filter((l) => /^ {2}\w+: \w+Trigger /.test(l));
        expect(host.lines.filter((l) => /function is in error|: in error: /.test(l))).toEqual([]);
        expect(listed.find((l) => l.startsWith('  replayIncidents:'))).toBe(
          `  replayIncidents: httpTrigger [POST] ${host.url}/api/replay`,
        );
        // Each file in functions/ registers the function it is named after, but the hook files (startupCheck and
        // telemetry: appStart hooks only), which register none.
        const files = readdirSync(join(REPO, 'functions'))
          .filter((f) => f.endsWith('.ts') && !['startupCheck.ts', 'telemetry.ts'].includes(f))
          .map((f) => f.replace(/\.ts$/, ''));
        expect(listed.map((l) => l.trim().split(':')[0]).sort()).toEqual(files.sort());
      } finally {
        await host.stop();
      }
    });

    it('refuses a routes file with a field that is not allowed, naming the file, line and field', async () => {
      const { file, line } = withLine('field.json', /"severity": \["High"\]/, (l) => l.replace('"High"', '"Critical"'));
      const { code, output } = await spawnHostExpectingFailure({ appDir: REPO, env: appEnv(file) });
      expect(code).toBe(1);
      expect(output).toMatch(
        new RegExp(
          `ROUTES_FILE ${file.replace(/[.\\/]/g, '\\$&')}:${line}:\\d+: rules\\[\\d+\\] "high-to-soc": match\\.severity\\[0\\]: must be one of`,
        ),
      );
      expect(output).not.toMatch(/Host ready|Executing 'Functions\./);
    });

    it('refuses a routes file with a JSON syntax error, naming the file and the line', async () => {
      const { file, line } = withLine('syntax.json', /"archive": \{/, (l) => `${l},`);
      const { code, output } = await spawnHostExpectingFailure({ appDir: REPO, env: appEnv(file) });
      expect(code).toBe(1);
      expect(output).toContain(`ROUTES_FILE ${file}:${line}:`);
      expect(output).toMatch(/not valid JSON: a property name in double quotes was expected/);
    });

    it('refuses a setting that is not valid, naming the setting', async () => {
      const { code, output } = await spawnHostExpectingFailure({
        appDir: REPO,
        env: { ...appEnv(join(REPO, 'local/demo-routes.json')), DESTINATION_TIMEOUT_MS: 'soon' },
      });
      expect(code).toBe(1);
      expect(output).toContain('DESTINATION_TIMEOUT_MS: must be a whole number');
      expect(output).not.toMatch(/Host ready/);
    });

    it('refuses a ROUTES_FILE that names no file', async () => {
      const missing = join(dir, 'rotues.json');
      const { code, output } = await spawnHostExpectingFailure({ appDir: REPO, env: appEnv(missing) });
      expect(code).toBe(1);
      expect(output).toContain(
        `ROUTES_FILE ${missing}: cannot read the file (ENOENT: it does not exist); set ROUTES_FILE`,
      );
    });
  });
});
