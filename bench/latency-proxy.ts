import { existsSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * A TCP proxy that holds every chunk for `oneWayMs` in each direction: a storage service behind it
 * answers `2 × oneWayMs` later than on loopback, as one in the same Azure region does over its
 * network. The benchmark puts both the relay and the raw reference behind the same proxy.
 */
export interface LatencyProxy {
  port: number;
  close(): Promise<void>;
}

/** Chunks leave in the order they came: timers of one duration fire in the order they were set. */
function forwardDelayed(from: Socket, to: Socket, delayMs: number): void {
  from.on('data', (chunk: Buffer) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
}

export async function startLatencyProxy(
  targetPort: number,
  oneWayMs: number,
  targetHost = '127.0.0.1',
): Promise<LatencyProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.setNoDelay(true);
    }
    forwardDelayed(client, upstream, oneWayMs);
    forwardDelayed(upstream, client, oneWayMs);
    const close = () => {
      for (const socket of [client, upstream]) {
        socket.destroy();
        sockets.delete(socket);
      }
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('The latency proxy has no TCP port');
  return {
    port: address.port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The same proxy in a worker thread. In the benchmark's own thread its timers would fire late whenever
 * that thread computes (parsing a Defender page, encoding messages), stretching the relay's round trips
 * beyond the delay asked for, and more than the raw reference's, which computes nothing meanwhile.
 */
export async function startLatencyProxyThread(
  targetPort: number,
  oneWayMs: number,
  targetHost = '127.0.0.1',
): Promise<LatencyProxy> {
  // Compiled, the worker is this file's sibling; run from the TypeScript sources (tests), it is the build's.
  const here = fileURLToPath(import.meta.url);
  const file = here.endsWith('.ts')
    ? resolve(dirname(here), '..', 'dist', 'bench', 'latency-proxy-worker.js')
    : join(dirname(here), 'latency-proxy-worker.js');
  if (!existsSync(file)) throw new Error(`The latency proxy's worker is not built (${file}): run npm run build`);
  const worker = new Worker(file, { workerData: { targetPort, oneWayMs, targetHost } });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (message: { port: number }) => resolve(message.port));
    worker.once('error', reject);
  });
  return {
    port,
    close: async () => {
      await new Promise<void>((resolve) => {
        worker.once('message', () => resolve());
        worker.postMessage('close');
      });
      await worker.terminate();
    },
  };
}
