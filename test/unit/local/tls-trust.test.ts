import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startHttpsServer, type RunningServer } from '../../../local/common/https-server.js';
import { createLocalCa } from '../../../local/common/tls.js';

describe('the local CA', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startHttpsServer(inject('tls'), (_req, res) => res.end('ok'));
  });
  afterAll(() => server.close());

  it('is trusted by the test workers through NODE_EXTRA_CA_CERTS, with no rejectUnauthorized override', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      request(`${server.url}/`, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(text));
      })
        .on('error', reject)
        .end();
    });
    expect(body).toBe('ok');
  });

  it('is refused by a client that trusts another CA', async () => {
    const error = await new Promise<Error>((resolve) => {
      request(`${server.url}/`, { ca: createLocalCa('some other CA').caCertPem }, () => resolve(new Error('connected')))
        .on('error', resolve)
        .end();
    });
    expect(error.message).not.toBe('connected');
  });
});
