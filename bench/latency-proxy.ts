import { connect, createServer, type Server, type Socket } from 'node:net';

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
