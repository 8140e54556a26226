import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { describe, expect, inject, it } from 'vitest';
import { IDLE_CONNECTION_SECONDS } from '../../../local/azurite.js';

/**
 * Azurite keeps idle connections open as Azure Storage does (minutes), not for its default 5 s: a
 * pooled connection reused after a pause is not reset under the client (local/azurite.ts).
 */
function get(url: URL, agent: HttpAgent): Promise<{ status?: number; reused: boolean }> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { agent }, (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('Azurite connections', () => {
  it('keeps a connection idle for longer than its default 5 s, so the pool reuses it', async () => {
    expect(IDLE_CONNECTION_SECONDS).toBeGreaterThanOrEqual(60);
    const url = new URL(`${inject('storage').queueUrl}?comp=list`);
    const options = { keepAlive: true, maxSockets: 1 };
    const agent = url.protocol === 'https:' ? new HttpsAgent(options) : new HttpAgent(options);
    try {
      const first = await get(url, agent);
      expect(first.status).toBeGreaterThanOrEqual(200);
      expect(first.reused).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      const second = await get(url, agent);
      expect(second.status).toBe(first.status);
      expect(second.reused, 'the connection was closed while idle').toBe(true);
    } finally {
      agent.destroy();
    }
  }, 15_000);
});
