import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLatencyProxy, startLatencyProxyThread, type LatencyProxy } from '../../../bench/latency-proxy.js';

describe("the benchmark's latency proxy", () => {
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => res.end(`echo:${body}`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  // The benchmark runs it in a worker thread (its timers keep time while the benchmark computes); that needs the build.
  it.each([
    ['in this thread', startLatencyProxy],
    ['in a worker thread', startLatencyProxyThread],
  ])(
    'adds its delay each way to a round trip and passes the bytes through unchanged, in order (%s)',
    async (_, start) => {
      let proxy: LatencyProxy | undefined;
      try {
        proxy = await start(port, 25);
        const body = 'x'.repeat(200_000);
        const direct = Date.now();
        expect(await (await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body })).text()).toBe(`echo:${body}`);
        const directMs = Date.now() - direct;
        const started = Date.now();
        expect(await (await fetch(`http://127.0.0.1:${proxy.port}/`, { method: 'POST', body })).text()).toBe(
          `echo:${body}`,
        );
        const proxiedMs = Date.now() - started;
        // A new connection (SYN/ACK is not delayed, the first bytes are), the request, the answer: at least one round trip of 50 ms.
        expect(proxiedMs).toBeGreaterThanOrEqual(50);
        expect(proxiedMs - directMs).toBeLessThan(1_000);
      } finally {
        await proxy?.close();
      }
    },
  );
});
