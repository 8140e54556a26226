import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { deadLetter } from '../../shared/messages/dead-letter.js';
import { MessageSender } from '../../shared/storage/queues.js';
import { TENANT_STATUS_TABLE } from '../../shared/tenants/tenant-status.js';
import { browserRequired, chromiumPath, launchChromium } from '../support/browser.js';
import { waitForFlowSettled } from '../support/flow-tally.js';
import { routedDefenderEvent } from '../support/queues.js';
import { startLocalStack } from '../support/start-process.js';

/**
 * The status page in a real browser against `npm start`: what it shows is what storage holds, and its
 * replay button moves a dead letter back. The screenshot is kept in reports/status-page.png.
 */
const repo = resolve(import.meta.dirname, '..', '..');
const SCREENSHOT = join(repo, 'reports', 'status-page.png');

describe.runIf(chromiumPath || browserRequired)('status page in Chromium, against npm start', () => {
  let stateDir: string;
  let tlsDir: string;
  let child: ChildProcess;
  let startOutput: () => string;
  let info: StackInfo;
  let browser: Browser;
  let page: Page;
  let queues: QueueServiceClient;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-status-'));
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-status-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    const [stack, launched] = await Promise.all([
      startLocalStack(['--port', '0', '--state-dir', stateDir, '--quiet', '--no-activity'], {
        ...process.env,
        ...stackTlsEnv(tlsDir),
      }),
      launchChromium(),
    ]);
    child = stack.child;
    startOutput = () => stack.output;
    browser = launched;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
    queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
    // Both demo tenants polled and every event routed: the figures stand still while the page is read.
    await waitForFlowSettled(info, 130, 45_000);
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  // A queue nothing has failed into may not exist yet: the page shows 0 for it, as it holds nothing.
  const depth = async (queue: string) => {
    const client = queues.getQueueClient(queue);
    return (await client.exists()) ? ((await client.getProperties()).approximateMessagesCount ?? 0) : 0;
  };
  const cell = (selector: string) => page.locator(selector).first().innerText();

  it("shows each demo tenant with the events storage counted for it, and the queues' depths", async () => {
    expect(startOutput(), 'npm start says where the page is').toContain(`Status page: ${info.host}/api/status`);
    const response = await page.goto(`${info.host}/api/status`);
    expect(response?.status()).toBe(200);
    expect(await page.title()).toBe('defender-relay status');
    const statusTable = TableClient.fromConnectionString(info.storage.connectionString, TENANT_STATUS_TABLE, {
      allowInsecureConnection: true,
    });
    for (const tenant of info.tenants) {
      const row = `tr[data-tenant-id="${tenant.tenantId}"]`;
      const stored = await statusTable.getEntity<{ eventsEnqueued: number; lastOutcome: string }>(
        'status',
        tenant.tenantId,
      );
      expect(await cell(`${row} td:first-child`)).toContain(tenant.displayName);
      expect(Number(await cell(`${row} [data-field="events-all"]`))).toBe(stored.eventsEnqueued);
      expect(Number(await cell(`${row} [data-field="events-24h"]`))).toBe(stored.eventsEnqueued);
      expect(stored.eventsEnqueued).toBeGreaterThan(0);
      expect(await cell(`${row} [data-field="outcome"]`)).toBe(stored.lastOutcome);
      // The budget of the tenant's own API: Defender's 45/min and 1400/h, Graph's 135/min and 8000/h.
      expect(await cell(`${row} [data-field="budget"]`)).toMatch(
        tenant.source === 'graph' ? /^\d+\/135, \d+\/8000$/ : /^\d+\/45, \d+\/1400$/,
      );
    }
    // The queues as storage holds them. The schedule keeps running (a tick enqueues a poll request per
    // tenant, gone a moment later): the page, reloaded, and storage agree at a quiet moment.
    const queueNames = ['incidents', 'incidents-poison', 'incidents-deadletter', 'poll-requests'];
    const disagreeing = async () => {
      await page.reload();
      const differ: string[] = [];
      for (const queue of queueNames) {
        const shown = Number(await cell(`tr[data-queue="${queue}"] td.n`));
        const held = await depth(queue);
        if (shown !== held) differ.push(`${queue}: page ${shown}, storage ${held}`);
      }
      return differ;
    };
    await expect.poll(disagreeing, { timeout: 30_000, interval: 1_000 }).toEqual([]);
    // Nothing secret on the page.
    const text = await page.content();
    for (const secret of [info.appIdentity.clientSecret, ...info.demoApps.map((a) => a.clientSecret)])
      expect(text).not.toContain(secret);
    for (const tenant of info.tenants) expect(text).not.toContain(tenant.pushKey);
  });

  it('lists a dead letter with its reason, and its replay button moves it back onto incidents', async () => {
    const cs = info.storage.connectionString;
    const event = await routedDefenderEvent(queues, 'routed-archive');
    expect(event, 'a routed Defender incident among the first 32').toBeDefined();
    const sender = new MessageSender(queues, async () => BlobServiceClient.fromConnectionString(cs));
    await deadLetter(sender, 'incidents', event!, 'browser test: the SIEM answered 503 for an hour');

    await page.goto(`${info.host}/api/status`);
    expect(await cell('tr[data-queue="incidents-deadletter"] td.n')).toBe('1');
    const deadLetters = page.locator('#dead-letters tbody tr');
    expect(await deadLetters.count()).toBe(1);
    expect(await deadLetters.first().innerText()).toContain('the SIEM answered 503 for an hour');
    expect(await deadLetters.first().innerText()).toContain(event!.eventId);
    mkdirSync(join(repo, 'reports'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.selectOption('#replay select[name="source"]', 'deadletter');
    await Promise.all([page.waitForURL(/replayed=1/), page.click('#replay button[type="submit"]')]);
    expect(await page.locator('#replay-notice').innerText()).toContain('Replay moved 1 event(s)');
    expect(await cell('tr[data-queue="incidents-deadletter"] td.n')).toBe('0');
    expect(await depth('incidents-deadletter')).toBe(0);
    // Already delivered once: the enricher takes it off incidents and routes it nowhere again.
    await expect.poll(() => depth('incidents'), { timeout: 20_000, interval: 500 }).toBe(0);
    // Reloading the page after the replay does not replay again (post/redirect/get).
    const reload = await page.reload();
    expect(reload?.request().method()).toBe('GET');
  }, 60_000);
});
