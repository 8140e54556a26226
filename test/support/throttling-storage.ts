import { createServer, request as forward, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A storage account that throttles: a pass-through in front of Azurite that answers 429 Too Many
 * Requests, in the service's own error shape, to the requests `throttle` picks, and forwards the rest.
 * The app reaches it through an ordinary connection string, so its real SDK clients (queues, tables,
 * blobs) meet the 429 as they would meet Azure Storage's.
 */
export interface ThrottlingStorage {
  /** A connection string for the same account, through the throttling endpoints. */
  connectionString: string;
  /** Which requests get 429 from now on (`path` without the query, e.g. `/devstoreaccount1/incidents/messages`). */
  throttle(pick: (request: { service: Service; method: string; path: string }) => boolean): void;
  /** Requests answered 429 so far. */
  throttled: number;
  close(): Promise<void>;
}

type Service = 'blob' | 'queue' | 'table';
const ENDPOINT_KEYS: Record<Service, string> = { blob: 'BlobEndpoint', queue: 'QueueEndpoint', table: 'TableEndpoint' };

export async function startThrottlingStorage(azuriteConnectionString: string): Promise<ThrottlingStorage> {
  const parts = new Map(
    azuriteConnectionString
      .split(';')
      .filter(Boolean)
      .map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
  );
  let pick: Parameters<ThrottlingStorage['throttle']>[0] = () => false;
  const servers: Server[] = [];
  const state: ThrottlingStorage = {
    connectionString: '',
    throttle: (p) => void (pick = p),
    throttled: 0,
    close: () =>
      Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined),
  };
  for (const service of Object.keys(ENDPOINT_KEYS) as Service[]) {
    const upstream = new URL(parts.get(ENDPOINT_KEYS[service])!);
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      if (pick({ service, method: req.method ?? 'GET', path })) {
        state.throttled += 1;
        req.resume();
        const message = 'The request was throttled: the account is over its request rate. Retry later.';
        if (service === 'table') {
          res.writeHead(429, {
            'content-type': 'application/json;odata=minimalmetadata',
            'x-ms-error-code': 'TooManyRequests',
          });
          res.end(
            JSON.stringify({ 'odata.error': { code: 'TooManyRequests', message: { lang: 'en-US', value: message } } }),
          );
        } else {
          res.writeHead(429, { 'content-type': 'application/xml', 'x-ms-error-code': 'TooManyRequests' });
          res.end(
            `<?xml version="1.0" encoding="utf-8"?><Error><Code>TooManyRequests</Code><Message>${message}</Message></Error>`,
          );
        }
        return;
      }
      const onward = forward(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      onward.on('error', () => res.destroy());
      req.pipe(onward);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    parts.set(ENDPOINT_KEYS[service], `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`);
  }
  state.connectionString = [...parts].map(([k, v]) => `${k}=${v}`).join(';') + ';';
  return state;
}
