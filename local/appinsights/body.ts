import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { IngestionError } from './errors.js';

const gunzipAsync = promisify(gunzip);

/**
 * The stand-in's own ceiling on one request, sent and inflated: Microsoft documents the limits of an item
 * (64 KB) and of a batch (64,000 items), not of a request, and a local process must stay bounded whatever
 * a client sends. 16 MiB holds any batch the exporter sends (a span processor's batch is 512 spans of a
 * few kB). Over it: 413, and the connection is closed, as the rest of the body is never read.
 */
export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

const tooLarge = () =>
  new IngestionError(413, 'Request Entity Too Large', 0, {
    connection: 'close',
  });

/** Reads the raw body, refusing it once it passes the ceiling. */
export async function readRawBody(req: IncomingMessage, limit = MAX_REQUEST_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The body as text. The exporter gzips what it sends to Azure Monitor's own domains, with
 * `Content-Encoding: gzip` (@azure/monitor-opentelemetry-exporter 1.0.0-beta.47
 * `src/platform/nodejs/gzipHttpClient.ts`; its README, "Request compression"); a local endpoint gets plain
 * JSON, but gzip is taken too, inflated under the same ceiling (a small bomb cannot grow past it). Any other
 * encoding is refused (400): the stand-in claims no other.
 */
export async function decodeBody(raw: Buffer, contentEncoding: string | undefined, limit = MAX_REQUEST_BYTES) {
  const encoding = (contentEncoding ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return raw.toString('utf8');
  if (encoding !== 'gzip') throw new IngestionError(400, `Unsupported Content-Encoding '${encoding}'`);
  try {
    return (await gunzipAsync(raw, { maxOutputLength: limit })).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge();
    throw new IngestionError(400, 'The gzip body could not be inflated');
  }
}
