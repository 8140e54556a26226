import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { badRequest, tooLarge } from './errors.js';
import type { StreamColumn } from './rules.js';

const gunzipAsync = promisify(gunzip);

/**
 * "Maximum size of API call: 1 MB, both compressed and uncompressed data" (Azure Monitor service limits,
 * "Logs Ingestion API": https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api).
 * Read as 1,000,000 bytes, the SDK's own reading (@azure/monitor-ingestion 1.2.0
 * `src/utils/splitDataToChunksHelper.ts`, `maxBytes = 1000000`): the stricter one, so that what passes here
 * passes in Azure.
 */
export const MAX_CALL_BYTES = 1_000_000;

/** "Maximum size for field values: 64 KB. Fields longer than 64 KB are truncated." (same table). */
export const MAX_FIELD_BYTES = 64 * 1024;

/**
 * What happened to a row on its way into the table, beyond the HTTP answer: the service answers 204 for
 * what it accepted and deals with the rows afterwards, writing what went wrong to the rule's error log
 * (`DCRLogErrors`, "Log Ingestion API calls … with payload containing malformed data" and "over any
 * ingestion limits": MicrosoftDocs azure-monitor-docs `articles/azure-monitor/data-collection/data-collection-monitor.md`).
 * The stand-in keeps them for tests: `undeclared-column` (a property the stream does not declare: the
 * transformation never sees it, so it is not stored), `missing-column` (stored empty), `type-mismatch`
 * (a value of another type: stored empty), `field-truncated` (over 64 KB), `not-an-array` (the body is
 * no array: nothing is ingested), `not-an-object` (an array item that is no object: dropped).
 */
export type ProblemKind =
  'undeclared-column' | 'missing-column' | 'type-mismatch' | 'field-truncated' | 'not-an-array' | 'not-an-object';

export interface RowProblem {
  kind: ProblemKind;
  /** Index of the row in the call's array, when the problem is a row's. */
  row?: number;
  column?: string;
  message: string;
}

/** Reads the body as sent, refusing it once it passes the 1 MB a call may carry. */
export async function readRawBody(req: IncomingMessage, limit = MAX_CALL_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge(`more than ${limit} bytes sent`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The body as text. The SDK always gzips with `Content-Encoding: gzip` (@azure/monitor-ingestion 1.2.0
 * `src/gZippingPolicy.ts`, and `upload` passes `contentEncoding: "gzip"`); plain JSON is taken too (the
 * header is optional: logs-ingestion-api-overview.md, "Headers"). Inflated under the same 1 MB.
 */
export async function decodeBody(raw: Buffer, contentEncoding: string | undefined, limit = MAX_CALL_BYTES) {
  const encoding = (contentEncoding ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return raw.toString('utf8');
  if (encoding !== 'gzip')
    throw badRequest('UnsupportedContentEncoding', `Content-Encoding '${encoding}' is not supported; use gzip.`);
  try {
    return (await gunzipAsync(raw, { maxOutputLength: limit })).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw tooLarge(`more than ${limit} bytes once inflated`);
    throw badRequest('InvalidContent', 'The gzip body could not be inflated.');
  }
}

/**
 * The rows of a call. The body is "the array of objects matching the schema defined by the provided stream"
 * (swagger `DataCollectionRules.json`, `Upload`); text that is not JSON is refused (400). A body that is JSON
 * but no array is answered 204 and nothing is ingested, as users found the service does
 * (Azure/azure-sdk-for-python#32562: "The log ingestion API can return 204 but no log entry is created. One
 * possible cause for this is that the json body parameter is not an array").
 */
export function parseRows(text: string): { rows: Record<string, unknown>[]; problems: RowProblem[] } {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw badRequest('InvalidJson', 'The request body is not valid JSON.');
  }
  if (!Array.isArray(body))
    return {
      rows: [],
      problems: [{ kind: 'not-an-array', message: 'The body is not a JSON array: nothing was ingested.' }],
    };
  const rows: Record<string, unknown>[] = [];
  const problems: RowProblem[] = [];
  body.forEach((item: unknown, row) => {
    if (item !== null && typeof item === 'object' && !Array.isArray(item)) rows.push(item as Record<string, unknown>);
    else problems.push({ kind: 'not-an-object', row, message: `Row ${row} is not a JSON object: dropped.` });
  });
  return { rows, problems };
}

const INT32 = 2 ** 31;
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** Whether a JSON value is of the declared type (null is of every type: an empty value). */
export function valueFits(type: StreamColumn['type'], value: unknown): boolean {
  if (value === null) return true;
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'datetime':
      return typeof value === 'string' && ISO_DATETIME.test(value) && !Number.isNaN(Date.parse(value));
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && value >= -INT32 && value < INT32;
    case 'long':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'real':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'dynamic':
      return true;
  }
}

function cut(text: string, limit: number): string {
  let out = text.slice(0, limit);
  while (Buffer.byteLength(out) > limit) out = out.slice(0, -1);
  return out;
}

/**
 * A row as the rule's stream carries it into the table: the declared columns only, each value checked
 * against its type (a mismatch is stored empty), a missing one empty, a field over 64 KB truncated (a
 * dynamic value then becomes its truncated JSON text, no longer an object).
 */
export function shapeRow(
  raw: Record<string, unknown>,
  columns: readonly StreamColumn[],
  row: number,
): { stored: Record<string, unknown>; problems: RowProblem[] } {
  const problems: RowProblem[] = [];
  const declared = new Map(columns.map((c) => [c.name, c]));
  for (const name of Object.keys(raw))
    if (!declared.has(name))
      problems.push({
        kind: 'undeclared-column',
        row,
        column: name,
        message: `Column '${name}' is not declared in the stream: its value is not stored.`,
      });
  const stored: Record<string, unknown> = {};
  for (const { name, type } of columns) {
    if (!(name in raw)) {
      problems.push({
        kind: 'missing-column',
        row,
        column: name,
        message: `Column '${name}' is missing: stored empty.`,
      });
      stored[name] = null;
      continue;
    }
    const value = raw[name];
    if (!valueFits(type, value)) {
      problems.push({
        kind: 'type-mismatch',
        row,
        column: name,
        message: `Column '${name}' is declared ${type} but the value is ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}: stored empty.`,
      });
      stored[name] = null;
      continue;
    }
    const asText =
      typeof value === 'string' ? value : type === 'dynamic' && value !== null ? JSON.stringify(value) : undefined;
    if (asText !== undefined && Buffer.byteLength(asText) > MAX_FIELD_BYTES) {
      problems.push({
        kind: 'field-truncated',
        row,
        column: name,
        message: `Column '${name}' holds ${Buffer.byteLength(asText)} bytes, over the 64 KB a field may hold: truncated.`,
      });
      stored[name] = cut(asText, MAX_FIELD_BYTES);
      continue;
    }
    stored[name] = value;
  }
  return { stored, problems };
}
