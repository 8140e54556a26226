import { createServer, type Server } from 'node:https';
import type { RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeyAndCert } from './tls.js';

/** A running HTTPS server on loopback. */
export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/**
 * Starts an HTTPS server on 127.0.0.1. Port 0 (the default) lets the OS choose a free port,
 * so parallel stacks and CI runs never collide. The URL uses `localhost`, which the certificate names.
 */
export async function startHttpsServer(tls: KeyAndCert, listener: RequestListener, port = 0): Promise<RunningServer> {
  const server = createServer({ key: tls.key, cert: tls.cert }, listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  return {
    url: `https://localhost:${actualPort}`,
    port: actualPort,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
