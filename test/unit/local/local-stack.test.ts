import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensurePortFree, lockStateDir } from '../../../local/stack.js';

/** What a newcomer meets when a stack is already running, or a port is taken. */
describe('the local stack: one per state directory, and a free port', () => {
  it('refuses a second stack on the same state directory, naming the running one and the way out', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-state-'));
    const release = lockStateDir(dir);
    expect(() => lockStateDir(dir)).toThrow(
      new RegExp(
        `A local stack is already running from ${dir.replace(/[.\\/]/g, '\\$&')} \\(process ${process.pid}, started .*\\): stop it first .* --state-dir <another folder>`,
      ),
    );
    release();
    lockStateDir(dir)();
  });

  it('takes over a lock its process left behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-state-'));
    // A process that has exited: its pid is free.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    }).stdout;
    writeFileSync(join(dir, 'stack.lock'), JSON.stringify({ pid: Number(gone), startedAt: '2026-01-01T00:00:00Z' }));
    const release = lockStateDir(dir);
    expect(() => lockStateDir(dir)).toThrow(/already running/);
    release();
  });

  it('stack:check says where it looked and how to point it at a stack, instead of a stack trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-state-'));
    const script = join(import.meta.dirname, '..', '..', '..', 'dist', 'local', 'check-stack.js');
    const missing = spawnSync(process.execPath, [script, '--state-dir', dir], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe(
      `error: No local stack found: ${join(dir, 'stack.json')} does not exist. Start one with npm start (or npm run start:stack); if it runs with --state-dir <dir>, check it with npm run stack:check -- --state-dir <dir>.\n`,
    );
    writeFileSync(join(dir, 'stack.json'), '{ not json');
    const broken = spawnSync(process.execPath, [script, '--state-dir', dir], { encoding: 'utf8' });
    expect(broken.status).toBe(2);
    expect(broken.stderr).toMatch(/is not a stack file npm start wrote .*start the stack again with npm start\.\n$/);
  });

  it('names a port in use and how to choose another', async () => {
    const holder: Server = createServer();
    await new Promise<void>((done) => holder.listen(0, '127.0.0.1', () => done()));
    const port = (holder.address() as { port: number }).port;
    try {
      await expect(ensurePortFree(port)).rejects.toThrow(
        `Port ${port} is in use (another npm start, func start or app?): stop what holds it, or choose another port with npm start -- --port <port> (or FUNCTIONS_PORT).`,
      );
    } finally {
      holder.close();
    }
    await expect(ensurePortFree(port)).resolves.toBeUndefined();
  });
});
