import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StackInfo } from '../../local/stack.js';
import { stackTlsEnv, writeStackTls } from '../../local/stack-tls.js';
import { routedMessageFor } from '../../shared/route/destinations/index.js';
import { deriveEnrichment } from '../../shared/enrich/enrichment.js';
import { envelopeFor } from '../../shared/messages/events.js';
import { signatureHeader } from '../../shared/api/webhook-signature.js';
import { expectedDeliveries, waitForFlowSettled } from '../support/flow-tally.js';
import { startLocalStack } from '../support/start-process.js';

/**
 * examples/consumer, run as a user would run their copy: its own Functions host (the local host, as
 * `func start` in that folder), beside `npm start`, reading the relay's `routed-high` queue with the
 * managed identity and answering the relay's webhook format.
 */
const repo = resolve(import.meta.dirname, '..', '..');
const CONSUMER = join(repo, 'examples', 'consumer');
const EVENTS_TABLE = 'relayconsumerevents';
const DOCS_INCIDENT = (
  JSON.parse(readFileSync(join(repo, 'test', 'fixtures', 'incidents', 'docs-example.json'), 'utf8')) as {
    value: Record<string, unknown>[];
  }
).value[0]!;

/** A routed message as the relay builds one (its own functions), for an incident version of the documented example. */
function routedMessage(tenantId: string, incidentId: number, lastUpdateTime: string) {
  const incident = { ...DOCS_INCIDENT, incidentId, lastUpdateTime };
  const enrichment = deriveEnrichment(incident, { tenantId, tenantDisplayName: 'Fabrikam' });
  return routedMessageFor(
    envelopeFor(tenantId, incident, 'poll'),
    incident,
    enrichment,
    { name: 'high-to-soc' },
    'siem',
  );
}

describe('the example consumer against npm start', () => {
  let stateDir: string;
  let tlsDir: string;
  let relay: ChildProcess;
  let consumer: ChildProcess;
  let consumerUrl: string;
  let output = '';
  let info: StackInfo;
  let hmacKey: string;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'defender-relay-consumer-'));
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-consumer-tls-'));
    writeStackTls(tlsDir, inject('tls'));
    const stack = await startLocalStack(['--port', '0', '--state-dir', stateDir, '--quiet', '--no-activity'], {
      ...process.env,
      ...stackTlsEnv(tlsDir),
    });
    relay = stack.child;
    info = JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as StackInfo;
    const relaySettings = (
      JSON.parse(readFileSync(join(stateDir, 'local.settings.json'), 'utf8')) as { Values: Record<string, string> }
    ).Values;
    hmacKey = info.webhookHmacKey;
    // The consumer's settings as its local.settings.example.json describes them, pointing at the stack:
    // the relay's account through a managed identity (the stack's one identity stands in for the consumer's).
    const env = {
      ...process.env,
      NODE_EXTRA_CA_CERTS: relaySettings.NODE_EXTRA_CA_CERTS,
      IDENTITY_ENDPOINT: relaySettings.IDENTITY_ENDPOINT,
      IDENTITY_HEADER: relaySettings.IDENTITY_HEADER,
      AZURE_CLIENT_ID: relaySettings.AZURE_CLIENT_ID,
      FUNCTIONS_WORKER_RUNTIME: 'node',
      RELAY_QUEUE: 'routed-high',
      RelayStorage__queueServiceUri: relaySettings.AzureWebJobsStorage__queueServiceUri,
      RelayStorage__credential: 'managedidentity',
      RelayStorage__clientId: relaySettings.AZURE_CLIENT_ID,
      RELAY_BLOB_SERVICE_URI: relaySettings.AzureWebJobsStorage__blobServiceUri,
      CONSUMER_TABLE_SERVICE_URI: relaySettings.AzureWebJobsStorage__tableServiceUri,
      RELAY_WEBHOOK_HMAC_KEY: hmacKey,
    };
    consumer = spawn(process.execPath, ['dist/local/host/main.js', '--app', CONSUMER, '--port', '0'], {
      cwd: repo,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    consumerUrl = await new Promise<string>((ready, fail) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /Host ready: (\S+)/.exec(output);
        if (match) ready(match[1]!);
      };
      consumer.stdout!.on('data', onData);
      consumer.stderr!.on('data', onData);
      consumer.once('exit', (code) => fail(new Error(`the consumer's host exited (${code}):\n${output}`)));
    });
    await waitForFlowSettled(info, 130, 45_000);
  }, 120_000);

  afterAll(() => {
    for (const child of [consumer, relay]) if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
  });

  const events = () =>
    TableClient.fromConnectionString(info.storage.connectionString, EVENTS_TABLE, { allowInsecureConnection: true });
  async function handledEventIds(): Promise<string[]> {
    const ids: string[] = [];
    try {
      for await (const row of events().listEntities()) ids.push(row.rowKey!);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
    return ids.sort();
  }
  const handledLines = (eventId: string) => output.split(eventId).length - 1;

  it('handles every message the relay routed to routed-high, each once, and leaves the queue empty', async () => {
    const { expected } = await expectedDeliveries(info, join(stateDir, 'routes.json'));
    const routedHigh = [...(expected.get('soc-queue') ?? [])].sort();
    expect(routedHigh.length).toBeGreaterThan(0);
    await expect.poll(handledEventIds, { timeout: 30_000, interval: 500 }).toEqual(routedHigh);
    const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
    expect((await queues.getQueueClient('routed-high').getProperties()).approximateMessagesCount).toBe(0);
    for (const eventId of routedHigh) expect(output).toContain(`${eventId}: handled`);
  }, 60_000);

  it('skips a message delivered again (the same eventId), handling it once', async () => {
    const [eventId] = await handledEventIds();
    const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
    // A copy of a handled message, as a queue redelivers one whose first run died after its work.
    const [tenantId, incidentId, ...time] = eventId!.split(':');
    const message = routedMessage(tenantId!, Number(incidentId), time.join(':'));
    await queues.getQueueClient('routed-high').sendMessage(Buffer.from(JSON.stringify(message)).toString('base64'));
    await expect.poll(() => output.includes(`${eventId}: already handled, skipped`), { timeout: 20_000 }).toBe(true);
    expect(handledLines(`${eventId}: handled`)).toBe(1);
  }, 30_000);

  it("takes the relay's signed webhook and refuses an unsigned or altered one", async () => {
    const routedBody = routedMessage(info.tenants[0]!.tenantId, 4_200_001, new Date().toISOString());
    const body = JSON.stringify(routedBody);
    const post = (headers: Record<string, string>, text = body) =>
      fetch(`${consumerUrl}/api/relay-webhook`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-relay-event-id': routedBody.eventId, ...headers },
        body: text,
      });
    expect((await post({})).status).toBe(401);
    expect((await post({ 'x-relay-signature': signatureHeader('another key', body) })).status).toBe(401);
    expect((await post({ 'x-relay-signature': signatureHeader(hmacKey, body) }, body.replace('{', '{ '))).status).toBe(
      401,
    );
    expect((await post({ 'x-relay-signature': signatureHeader(hmacKey, body) })).status).toBe(204);
    expect(await handledEventIds()).toContain(routedBody.eventId);
    // Signed again and sent again: handled once.
    expect((await post({ 'x-relay-signature': signatureHeader(hmacKey, body) })).status).toBe(204);
    expect(handledLines(`${routedBody.eventId}: handled`)).toBe(1);
  }, 30_000);
});
