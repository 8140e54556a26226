import { HttpRequest, type HttpRequestInit } from '@azure/functions';

/**
 * What the Functions host does with a request before the Node.js worker sees it, for tests that call
 * a handler directly:
 * - A client that knows its body sends `Content-Length` (fetch, curl and the Azure SDKs do): one is
 *   added unless the test sets its own or sends the body chunked (`chunked: true`).
 * - The host forwards a body only when `Content-Length` is > 0 (azure-functions-host
 *   src/WebJobs.Script.Grpc/MessageExtensions/GrpcMessageConversionExtensions.cs, `ToRpcHttp`:
 *   `if (request.Body != null && request.ContentLength > 0)`): a chunked request arrives with its
 *   `Transfer-Encoding` header and an empty body.
 * - Kestrel refuses a `Content-Length` that is not one non-negative integer with 400 before any
 *   function runs (RFC 9110 section 8.6): `{ refused: 400 }`.
 */
export function hostHttpRequest(
  init: HttpRequestInit,
  options: { chunked?: boolean } = {},
): HttpRequest | { refused: 400 } {
  const headers: Record<string, string> = { ...init.headers };
  const lengthHeader = Object.keys(headers).find((name) => name.toLowerCase() === 'content-length');
  const bytes =
    init.body?.bytes ?? (init.body?.string !== undefined ? Buffer.from(init.body.string, 'utf8') : undefined);
  if (options.chunked) {
    if (lengthHeader) delete headers[lengthHeader];
    headers['transfer-encoding'] = 'chunked';
    return new HttpRequest({ ...init, headers, body: undefined });
  }
  if (lengthHeader === undefined) {
    if (bytes !== undefined) headers['content-length'] = String(bytes.length);
    return new HttpRequest({ ...init, headers, body: bytes !== undefined && bytes.length > 0 ? init.body : undefined });
  }
  const declared = headers[lengthHeader]!.trim();
  if (refusedByHost(headers)) return { refused: 400 };
  return new HttpRequest({ ...init, headers, body: Number(declared) > 0 ? init.body : undefined });
}

/** Whether Kestrel refuses these headers before any function runs (a Content-Length that is not a number). */
export function refusedByHost(headers: Record<string, string> = {}): boolean {
  const length = Object.entries(headers).find(([name]) => name.toLowerCase() === 'content-length')?.[1];
  return length !== undefined && !/^\d+$/.test(length.trim());
}

/** `hostHttpRequest` for a request the host takes (a test's own well-formed request). */
export function deliveredRequest(init: HttpRequestInit, options: { chunked?: boolean } = {}): HttpRequest {
  const request = hostHttpRequest(init, options);
  if (!(request instanceof HttpRequest))
    throw new Error('The Functions host would refuse this request (its Content-Length is not a number).');
  return request;
}
