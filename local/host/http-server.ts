import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpFunction } from './app-loader.js';
import { HOST_VERSION } from './core-api.js';
import type { Invoker } from './invoker.js';
import { matchRoute } from './routes.js';
import type { RpcHttpCookie, RpcHttpData, RpcTypedData } from './worker-contract.js';

const HOST_NOT_RUNNING = 'Function host is not running.';

/** The Functions host's default request body limit (104857600 bytes). */
export const MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024;

export interface AdminInvokeResult {
  status: 202 | 400 | 404;
  message?: string;
}

export interface HttpServerOptions {
  functions: HttpFunction[];
  routePrefix: string;
  invoker: Invoker;
  /** Calls a function now with its trigger input: `POST /admin/functions/{name}` with `{ "input": … }`. */
  adminInvoke: (name: string, input: string) => AdminInvokeResult;
  /** False while the host shuts down: new requests get 503. */
  accepting: () => boolean;
  log: (line: string) => void;
}

export interface RunningHttpServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

class BodyTooLargeError extends Error {}

/**
 * The body the host forwards to the worker: only when Content-Length is > 0 (azure-functions-host
 * GrpcMessageConversionExtensions.ToRpcHttp, `request.ContentLength > 0`). A chunked body is read and
 * dropped: the function sees an empty body (and the Transfer-Encoding header).
 */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_REQUEST_BODY_BYTES) {
      reject(new BodyTooLargeError());
      return;
    }
    if (!(declared > 0)) {
      req.on('end', () => resolve(Buffer.alloc(0)));
      req.on('error', reject);
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BODY_BYTES) {
        reject(new BodyTooLargeError());
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function toRpcRequest(req: IncomingMessage, body: Buffer, params: Record<string, string>): RpcHttpData {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  // A repeated header arrives as its values joined by ',' (ASP.NET's StringValues.ToString(), which
  // GrpcMessageConversionExtensions.ToRpcHttp hands the worker), not Node's ', '.
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (values !== undefined) headers[name] = values.join(',');
  }
  // Repeated query keys arrive comma-joined, as ASP.NET's StringValues.ToString() gives them to the worker.
  const query: Record<string, string> = {};
  for (const key of new Set(url.searchParams.keys())) query[key] = url.searchParams.getAll(key).join(',');
  return {
    method: req.method ?? 'GET',
    url: url.href,
    headers,
    query,
    params,
    body: body.length > 0 ? { bytes: body } : undefined,
  };
}

function typedDataToBuffer(data: RpcTypedData | null | undefined): Buffer {
  if (!data) return Buffer.alloc(0);
  if (data.bytes) return Buffer.from(data.bytes);
  if (typeof data.string === 'string') return Buffer.from(data.string);
  if (typeof data.json === 'string') return Buffer.from(data.json);
  if (typeof data.int === 'number' || typeof data.double === 'number')
    return Buffer.from(String(data.int ?? data.double));
  return Buffer.alloc(0);
}

function toSetCookie(cookie: RpcHttpCookie): string {
  const parts = [`${cookie.name ?? ''}=${cookie.value ?? ''}`];
  if (cookie.domain?.value) parts.push(`Domain=${cookie.domain.value}`);
  if (cookie.path?.value) parts.push(`Path=${cookie.path.value}`);
  if (cookie.expires?.value?.seconds)
    parts.push(`Expires=${new Date(cookie.expires.value.seconds * 1000).toUTCString()}`);
  if (typeof cookie.maxAge?.value === 'number') parts.push(`Max-Age=${cookie.maxAge.value}`);
  if (cookie.secure?.value) parts.push('Secure');
  if (cookie.httpOnly?.value) parts.push('HttpOnly');
  if (cookie.sameSite === 'lax') parts.push('SameSite=Lax');
  else if (cookie.sameSite === 'strict') parts.push('SameSite=Strict');
  else if (cookie.sameSite === 'explicitNone') parts.push('SameSite=None');
  return parts.join('; ');
}

function writeResponse(res: ServerResponse, http: RpcHttpData | null | undefined): void {
  // A handler that returns nothing sets no response: the host answers 200 with no body
  // (azure-functions-host src/WebJobs.Script.WebHost/Middleware/FunctionInvocationMiddleware.cs: `new OkResult()`).
  if (!http) {
    sendEmpty(res, 200);
    return;
  }
  const status = Number(http.statusCode ?? 200) || 200;
  const body = typedDataToBuffer(http.body);
  for (const [name, value] of Object.entries(http.headers ?? {})) res.setHeader(name, value);
  const cookies = (http.cookies ?? []).map(toSetCookie);
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  const allowsBody = status !== 204 && status !== 304 && status >= 200;
  if (allowsBody) res.setHeader('content-length', body.length);
  res.writeHead(status);
  res.end(allowsBody ? body : undefined);
}

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-length': 0 }).end();
}

export async function startHttpServer(options: HttpServerOptions, port: number): Promise<RunningHttpServer> {
  // The real host adds one ASP.NET Route per function, in the order of the function names, to a
  // RouteCollection, which takes the first route that matches (azure-webjobs-sdk-extensions
  // src/WebJobs.Extensions.Http/Routing/WebJobsRouteBuilder.cs `Build`; azure-functions-host
  // src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs): no precedence between templates.
  const routes = options.functions;
  const prefix = options.routePrefix === '' ? '/' : `/${options.routePrefix}/`;

  const handleAdmin = async (req: IncomingMessage, res: ServerResponse, name: string): Promise<void> => {
    if (req.method !== 'POST') return sendEmpty(res, 405);
    let input = '';
    try {
      // An empty body binds no FunctionInvocation, which the controller answers 400 before looking up the function.
      const json = JSON.parse((await readBody(req)).toString('utf8')) as { input?: unknown } | null;
      if (json === null || typeof json !== 'object') throw new Error('not an object');
      input =
        json.input === undefined || json.input === null
          ? ''
          : typeof json.input === 'string'
            ? json.input
            : JSON.stringify(json.input);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('The body must be JSON: { "input": "..." }');
      return;
    }
    const result = options.adminInvoke(decodeURIComponent(name), input);
    if (result.message) res.writeHead(result.status, { 'content-type': 'text/plain' }).end(result.message);
    else sendEmpty(res, result.status);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    // The real host's status endpoint: handy to wait for readiness.
    if (/^\/admin\/host\/status\/?$/i.test(path) && req.method === 'GET') {
      const body = JSON.stringify({ state: options.accepting() ? 'Running' : 'Stopping', version: HOST_VERSION });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    // While stopping, as the host's availability check answers (HostAvailabilityCheckMiddleware.cs).
    if (!options.accepting()) {
      res
        .writeHead(503, {
          'content-type': 'text/plain; charset=utf-8',
          'content-length': Buffer.byteLength(HOST_NOT_RUNNING),
        })
        .end(HOST_NOT_RUNNING);
      return;
    }
    const admin = /^\/admin\/functions\/([^/]+)\/?$/i.exec(path);
    if (admin) return handleAdmin(req, res, admin[1]!);

    if (!(path.toLowerCase() + '/').startsWith(prefix.toLowerCase())) return sendEmpty(res, 404);
    const below = path.slice(prefix.length).replace(/^\/+/, '');
    const method = (req.method ?? 'GET').toUpperCase();
    for (const fn of routes) {
      if (fn.methods.length > 0 && !fn.methods.includes(method)) continue;
      const params = matchRoute(fn.route, below);
      if (!params) continue;

      let body: Buffer;
      try {
        body = await readBody(req);
      } catch (error) {
        return sendEmpty(res, error instanceof BodyTooLargeError ? 413 : 400);
      }
      const outcome = await options.invoker.invoke(fn, {
        reason: `This function was programmatically called via the host APIs.`,
        data: { http: toRpcRequest(req, body, params) },
      });
      // Failures are logged by the invoker; the caller gets a bare 500, never a stack.
      if (!outcome.succeeded) return sendEmpty(res, 500);
      return writeResponse(res, outcome.response.returnValue?.http);
    }
    return sendEmpty(res, 404);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      options.log(`[error] HTTP request failed: ${(error as Error).message}`);
      if (!res.headersSent) sendEmpty(res, 500);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
