import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * `npm start` with routing rules that do not load: the app's start-up check refuses them in the host,
 * and npm start exits non-zero with the reason (file, line, field) even with --quiet, leaving nothing
 * running.
 */
const repo = resolve(import.meta.dirname, '..', '..');

describe('npm start refuses what it cannot run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-routes-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses to start, naming the file, the line and the field', async () => {
    const lines = readFileSync(join(repo, 'local/demo-routes.json'), 'utf8').split('\n');
    const index = lines.findIndex((l) => l.includes('"severity": ["High"]'));
    lines[index] = lines[index]!.replace('"High"', '"Critical"');
    const routes = join(dir, 'routes.json');
    writeFileSync(routes, lines.join('\n'));

    const child = spawn(
      process.execPath,
      [
        'dist/local/start.js',
        '--port',
        '0',
        '--state-dir',
        join(dir, 'state'),
        '--quiet',
        '--no-activity',
        '--routes',
        routes,
      ],
      { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
    clearTimeout(killer);

    expect(code, output).toBe(1);
    expect(output).not.toMatch(/Ready in/);
    expect(output).toContain(
      'Could not start the local stack: The local Functions host exited during start-up (code 1):',
    );
    expect(output).toMatch(
      new RegExp(
        `ROUTES_FILE ${routes.replace(/[.\\/]/g, '\\$&')}:${index + 1}:\\d+: rules\\[\\d+\\] "high-to-soc": match\\.severity\\[0\\]: must be one of`,
      ),
    );
  }, 90_000);

  it.each([
    ['0', "--activity-every is seconds from 0.5 to 3600, not '0'."],
    ['soon', "--activity-every is seconds from 0.5 to 3600, not 'soon'."],
    ['-5', "Option '--activity-every' argument is ambiguous."],
  ])(
    'refuses --activity-every %s before starting anything, saying why',
    async (every, said) => {
      const child = spawn(
        process.execPath,
        ['dist/local/start.js', '--activity-every', every, '--state-dir', join(dir, 'never')],
        {
          cwd: repo,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
      expect(code, output).toBe(1);
      expect(output.split('\n')[0]).toBe(said);
      expect(output).not.toMatch(/\n\s+at /); // no stack trace
      expect(existsSync(join(dir, 'never')), 'no state written').toBe(false);
    },
    30_000,
  );
});
