import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { TenantStatusStore, TENANT_STATUS_TABLE } from '../../shared/tenants/tenant-status.js';
import { waitForFlowSettled } from '../support/flow-tally.js';
import { startLocalStack } from '../support/start-process.js';

/**
 * `npm start` as a user leaves it running: the simulated SOC keeps acting in every demo tenant (each in
 * its own API's stand-in), and the stack keeps running and relaying what changed. The other e2e runs end
 * or disable the activity first; this one runs it every second, so that a move that breaks the stack
 * (as one did for the tenant read through Graph) breaks this test within seconds.
 */
describe('npm start with the simulated SOC at work', () => {
  let stateDir: string;
  let tlsDir: string;
  let child: ChildProcess;
  let output: () => string;
  let info: StackInfo;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-activity-'));
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-e2e-activity-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    const stack = await startLocalStack(['--port', '0', '--state-dir', stateDir, '--quiet', '--activity-every', '1'], {
      ...process.env,
      ...stackTlsEnv(tlsDir),
    });
    child = stack.child;
    output = () => stack.output;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
  }, 90_000);

  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  it("keeps running while the SOC acts in every demo tenant, and relays each tenant's new versions", async () => {
    const first = await waitForFlowSettled(info, 130, 60_000);
    expect(first.eventsIn).toBeGreaterThanOrEqual(130);
    const status = new TenantStatusStore(
      TableClient.fromConnectionString(info.storage.connectionString, TENANT_STATUS_TABLE, {
        allowInsecureConnection: true,
      }),
    );
    const eventsIn = async (tenantId: string) => (await status.get(tenantId)).eventsEnqueued;
    const before = new Map<string, number>();
    for (const tenant of info.tenants) before.set(tenant.tenantId, await eventsIn(tenant.tenantId));

    // Six moves in each tenant (a new incident every third): then each tenant is polled now, not at the minute.
    await new Promise((r) => setTimeout(r, 6_000));
    expect(child.exitCode, output()).toBeNull();
    for (const tenant of info.tenants) {
      const res = await fetch(`${info.host}/api/tenants/${tenant.tenantId}/poll`, { method: 'POST' });
      expect(res.status, tenant.displayName).toBe(202);
    }
    const grown = async () => {
      const behind: string[] = [];
      for (const tenant of info.tenants)
        if ((await eventsIn(tenant.tenantId)) <= before.get(tenant.tenantId)!) behind.push(tenant.displayName);
      return behind;
    };
    await expect.poll(grown, { timeout: 30_000, interval: 1_000 }).toEqual([]);
    expect(info.tenants.map((t) => t.source)).toContain('graph');

    const tally = await waitForFlowSettled(info, first.eventsIn + info.tenants.length, 30_000);
    expect(tally).toMatchObject({ pending: 0, deadLettered: 0, processed: tally.eventsIn });
    expect(child.exitCode, output()).toBeNull();
  }, 120_000);
});
