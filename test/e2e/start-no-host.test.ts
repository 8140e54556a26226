import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueueServiceClient } from '@azure/storage-queue';
import { startLocalStack } from '../support/start-process.js';

/** `npm run start:stack` (--no-host): the stand-ins for an app run by func start, whose .NET host trusts only the system's CAs. */

describe('npm run start:stack (no host, for func start)', () => {
  let stateDir: string;
  let child: ChildProcess;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-nohost-'));
    ({ child } = await startLocalStack(['--no-host', '--state-dir', stateDir, '--quiet', '--no-activity']));
  }, 90_000);

  afterAll(async () => {
    if (child.exitCode === null) {
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGINT');
      await exited;
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("writes func start's usual local storage settings: Azurite on HTTP with a connection string, no identity endpoint", async () => {
    const { Values } = JSON.parse(readFileSync(join(stateDir, 'local.settings.json'), 'utf8')) as {
      Values: Record<string, string>;
    };
    expect(Values.AzureWebJobsStorage).toMatch(
      /^DefaultEndpointsProtocol=http;.*QueueEndpoint=http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1;/,
    );
    expect(Values.IDENTITY_ENDPOINT).toBeUndefined();
    const queues: string[] = [];
    for await (const q of QueueServiceClient.fromConnectionString(Values.AzureWebJobsStorage!).listQueues())
      queues.push(q.name);
    expect(queues).toContain('poll-requests');
  });
});
