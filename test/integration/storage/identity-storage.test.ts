import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startAzurite, type RunningAzurite } from '../../../local/azurite.js';
import { MissingConnectionError, resolveStorageConnection } from '../../../local/host/storage-connection.js';
import { appSettingsFor, assignAppIdentity, type IdentityBasedStorage } from '../../../local/stack.js';
import { readStackTls, writeStackTls } from '../../../local/stack-tls.js';
import { loadConfig } from '../../../shared/config/config.js';
import { createServices } from '../../../shared/services.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * The configuration Azure runs (infra/app/api.bicep): Storage reached with the app's user-assigned
 * managed identity through App Service's identity endpoint, by the host's triggers and by the app's own
 * clients, against Azurite serving HTTPS and taking bearer tokens.
 */
describe('identity-based storage', () => {
  let stack: TestStandIns;
  let azurite: RunningAzurite;
  let tlsDir: string;
  let storage: IdentityBasedStorage;
  const saved = { IDENTITY_ENDPOINT: process.env.IDENTITY_ENDPOINT, IDENTITY_HEADER: process.env.IDENTITY_HEADER };

  beforeAll(async () => {
    tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-identity-storage-'));
    writeStackTls(tlsDir, inject('tls'));
    const files = readStackTls(tlsDir);
    [stack, azurite] = await Promise.all([
      startTestStandIns(),
      startAzurite({ extentMemoryLimitMb: 64, https: { certPath: files.certPath, keyPath: files.keyPath } }),
    ]);
    const identity = assignAppIdentity(stack.world, stack.entra, stack.keyVault);
    storage = {
      blobUrl: azurite.blobUrl,
      queueUrl: azurite.queueUrl,
      tableUrl: azurite.tableUrl,
      managedIdentityClientId: identity.clientId,
    };
    // What App Service puts in the app's environment; @azure/identity reads it from there.
    process.env.IDENTITY_ENDPOINT = stack.entra.msi.endpoint;
    process.env.IDENTITY_HEADER = stack.entra.msi.header;
  }, 60_000);

  afterAll(async () => {
    Object.assign(process.env, saved);
    for (const [name, value] of Object.entries(saved)) if (value === undefined) delete process.env[name];
    await Promise.all([stack?.close(), azurite?.stop()]);
    rmSync(tlsDir, { recursive: true, force: true });
  });

  const hostSettings = (clientId: string) => ({
    AzureWebJobsStorage__credential: 'managedidentity',
    AzureWebJobsStorage__clientId: clientId,
    AzureWebJobsStorage__queueServiceUri: storage.queueUrl,
    AzureWebJobsStorage__blobServiceUri: storage.blobUrl,
  });

  it("lets the host's queue trigger and timer status reach Storage with the identity its settings name", async () => {
    const connection = resolveStorageConnection('AzureWebJobsStorage', hostSettings(storage.managedIdentityClientId));
    const queue = connection.queues().getQueueClient(`identity-${randomUUID().slice(0, 8)}`);
    await queue.create();
    await queue.sendMessage('hello');
    const [received] = (await queue.receiveMessages()).receivedMessageItems;
    expect(received?.messageText).toBe('hello');
    const container = connection.blobs().getContainerClient(`identity-${randomUUID().slice(0, 8)}`);
    await container.create();
    await container.getBlockBlobClient('timers/status').upload('{}', 2);
    expect((await container.getBlockBlobClient('timers/status').downloadToBuffer()).toString()).toBe('{}');
  });

  it("gives the app's own queue, table and blob clients the identity's tokens (no connection string, no secret)", async () => {
    const settings = appSettingsFor(stack.world, storage, stack);
    expect(settings.AzureWebJobsStorage).toBeUndefined();
    expect(settings.AZURE_CLIENT_SECRET).toBeUndefined();
    const services = createServices(loadConfig(settings));
    const name = `identity${randomUUID().slice(0, 8)}`;
    await services.storage.queues.getQueueClient(name).create();
    await services.storage.table(name).createTable();
    await services.storage.table(name).createEntity({ partitionKey: 'p', rowKey: 'r', value: 1 });
    expect((await services.storage.table(name).getEntity<{ value: number }>('p', 'r')).value).toBe(1);
    await (await services.storage.blobs()).getContainerClient(name).create();
  });

  it('fails, naming the cause, when the identity the settings name is not assigned to the app', async () => {
    const connection = resolveStorageConnection('AzureWebJobsStorage', hostSettings(randomUUID()));
    await expect(connection.queues().getQueueClient('never').create()).rejects.toThrow(
      /Unable to load the proper Managed Identity/,
    );
  });

  it('refuses a call without a token: the account takes no anonymous caller', async () => {
    const res = await fetch(`${storage.queueUrl}?comp=list`);
    expect(res.status).toBe(403);
  });

  it("looks for AzureWebJobs<connection> first, says which setting is missing in the host's words, and which endpoint a connection lacks", () => {
    expect(() => resolveStorageConnection('OtherStorage', hostSettings(storage.managedIdentityClientId))).toThrow(
      MissingConnectionError,
    );
    // The host names the prefixed setting, which it looks for first: 'AzureWebJobsAzureWebJobsStorage' for connection 'AzureWebJobsStorage'.
    expect(() => resolveStorageConnection('OtherStorage', {})).toThrow(
      "Storage account connection string 'AzureWebJobsOtherStorage' does not exist. Make sure that it is a defined App Setting.",
    );
    expect(() => resolveStorageConnection('AzureWebJobsStorage', {})).toThrow(
      "Storage account connection string 'AzureWebJobsAzureWebJobsStorage' does not exist.",
    );
    expect(
      resolveStorageConnection('MyStorage', {
        AzureWebJobsMyStorage__accountName: 'prefixed',
        MyStorage__accountName: 'plain',
      }).queues().url,
    ).toBe('https://prefixed.queue.core.windows.net');
    expect(resolveStorageConnection('MyStorage', { MyStorage__accountName: 'plain' }).queues().url).toBe(
      'https://plain.queue.core.windows.net',
    );
    // No connection named: the host's storage, AzureWebJobsStorage.
    expect(resolveStorageConnection('', { AzureWebJobsStorage__accountName: 'hoststore' }).blobs().url).toBe(
      'https://hoststore.blob.core.windows.net/',
    );
    // An empty value counts as unset, as everywhere in the host.
    expect(() => resolveStorageConnection('AzureWebJobsStorage', { AzureWebJobsStorage: '' })).toThrow(
      MissingConnectionError,
    );
    const queueOnly = resolveStorageConnection('AzureWebJobsStorage', {
      AzureWebJobsStorage__queueServiceUri: storage.queueUrl,
      AzureWebJobsStorage__credential: 'managedidentity',
    });
    expect(() => queueOnly.blobs()).toThrow('AzureWebJobsStorage__blobServiceUri');
    expect(
      resolveStorageConnection('AzureWebJobsStorage', { AzureWebJobsStorage__accountName: 'relaystore' }).queues().url,
    ).toBe('https://relaystore.queue.core.windows.net');
  });
});
