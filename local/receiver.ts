import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { startHttpsServer } from './common/https-server.js';
import type { KeyAndCert } from './common/tls.js';

/**
 * A tiny HTTPS webhook receiver standing in for a SIEM, Teams or Slack: it records every POST,
 * verifies the relay's `X-Relay-Signature` when it knows the key (as a SIEM would, written from the
 * documented format rather than the relay's code), and can be told to fail or to stall.
 */

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The body parsed as JSON (the raw text when it is not JSON). */
  body: unknown;
  rawBody: string;
  /** With a key: whether the signature verified; without one: undefined. */
  signatureValid?: boolean;
  /** What the receiver answered. */
  status: number;
  receivedAt: string;
}

export interface ReceiverOptions {
  tls: KeyAndCert;
  /** When set, requests must carry a valid `X-Relay-Signature`; others get 401. */
  hmacKey?: string;
  /** Answer `failStatus` to the next N requests. */
  failTimes?: number;
  failStatus?: number;
  /** Reject signatures whose timestamp is further than this from now (seconds; default 300). */
  toleranceSeconds?: number;
}

export interface RunningReceiver {
  url: string;
  /** Every request so far, in order (failed and refused ones included). */
  requests: ReceivedRequest[];
  /** Requests that were answered 2xx. */
  accepted(): ReceivedRequest[];
  /** Answer `status` (default 500, with `headers`, e.g. Retry-After or Location) to the next `times` requests; `Infinity` for "fails forever". */
  setFailures(times: number, status?: number, headers?: Record<string, string>): void;
  /** Wait this long before answering each request, or (`afterHeaders`) before finishing the answer's body (to exercise the relay's timeout). */
  setDelay(ms: number, options?: { afterHeaders?: boolean }): void;
  /** Resolves once `count` requests have been accepted (rejects after `timeoutMs`). */
  waitForAccepted(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

const SIGNATURE = /^t=(\d+),v1=([0-9a-f]{64})$/;

function verify(
  header: string | string[] | undefined,
  key: string,
  rawBody: Buffer,
  toleranceSeconds: number,
): boolean {
  const match = typeof header === 'string' ? SIGNATURE.exec(header) : null;
  if (!match) return false;
  const timestamp = Number(match[1]);
  if (Math.abs(Date.now() / 1000 - timestamp) > toleranceSeconds) return false;
  const expected = createHmac('sha256', key).update(`${timestamp}.`).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'));
}

export async function startReceiver(options: ReceiverOptions): Promise<RunningReceiver> {
  const requests: ReceivedRequest[] = [];
  let failuresLeft = options.failTimes ?? 0;
  let failStatus = options.failStatus ?? 500;
  let failHeaders: Record<string, string> = {};
  let delayMs = 0;
  let delayAfterHeaders = false;
  const waiters = new Set<() => void>();
  const accepted = () => requests.filter((r) => r.status >= 200 && r.status < 300);

  const server = await startHttpsServer(options.tls, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const rawBody = raw.toString('utf8');
      let body: unknown = rawBody;
      try {
        body = JSON.parse(rawBody) as unknown;
      } catch {
        // Recorded as text.
      }
      const signatureValid =
        options.hmacKey === undefined
          ? undefined
          : verify(req.headers['x-relay-signature'], options.hmacKey, raw, options.toleranceSeconds ?? 300);
      let status = 200;
      let headers: Record<string, string> = {};
      if (failuresLeft > 0) {
        failuresLeft -= 1;
        status = failStatus;
        headers = failHeaders;
      } else if (req.method !== 'POST') status = 405;
      else if (signatureValid === false) status = 401;
      const record: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '/',
        headers: req.headers,
        body,
        rawBody,
        signatureValid,
        status,
        receivedAt: new Date().toISOString(),
      };
      requests.push(record);
      const answerBody = JSON.stringify(
        status < 300 ? { ok: true } : { error: status === 401 ? 'bad signature' : 'failure requested' },
      );
      const finish = () => {
        if (res.destroyed) return;
        res.end(answerBody.slice(1));
        for (const wake of waiters) wake();
      };
      const answer = () => {
        if (res.destroyed) return;
        res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
        res.write(answerBody.slice(0, 1));
        if (delayMs > 0 && delayAfterHeaders) setTimeout(finish, delayMs);
        else finish();
      };
      if (delayMs > 0 && !delayAfterHeaders) setTimeout(answer, delayMs);
      else answer();
    });
  });

  return {
    url: server.url,
    requests,
    accepted,
    setFailures(times, status = 500, headers = {}) {
      failuresLeft = times;
      failStatus = status;
      failHeaders = headers;
    },
    setDelay(ms, delayOptions = {}) {
      delayMs = ms;
      delayAfterHeaders = delayOptions.afterHeaders ?? false;
    },
    waitForAccepted(count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (accepted().length < count) return;
          cleanup();
          resolve(accepted());
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `The receiver at ${server.url} got ${accepted().length} of ${count} expected requests within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    close: () => server.close(),
  };
}

/**
 * The demo routing rules with the named destinations pointed at running receivers: the routes file
 * holds placeholder URLs (valid, on localhost), the local stack swaps in each receiver's URL.
 */
export function withReceiverUrls(
  routes: { destinations: Record<string, Record<string, unknown>> } & Record<string, unknown>,
  urls: Record<string, string>,
): typeof routes {
  const destinations = Object.fromEntries(
    Object.entries(routes.destinations).map(([name, destination]) => {
      const url = urls[name];
      if (url === undefined) return [name, destination];
      const path = typeof destination.url === 'string' ? new URL(destination.url).pathname : '/';
      return [name, { ...destination, url: `${url}${path}` }];
    }),
  );
  return { ...routes, destinations };
}
