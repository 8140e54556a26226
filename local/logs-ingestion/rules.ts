import { randomBytes } from 'node:crypto';

/**
 * The data collection rules the stand-in knows: an immutable id (`dcr-` and 32 hex digits, what the API's
 * URL names) and the streams it declares, each with its columns. Declaring a rule here stands in for
 * deploying one: what ARM would refuse, this refuses with an `Error` (names and types below).
 */

/** A stream declaration's types (MicrosoftDocs/azure-monitor-docs `articles/azure-monitor/data-collection/data-collection-rule-structure.md`, "Data types"). */
export const COLUMN_TYPES = ['string', 'int', 'long', 'real', 'boolean', 'dynamic', 'datetime'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

export interface StreamColumn {
  name: string;
  type: ColumnType;
}

export interface DataCollectionRule {
  immutableId: string;
  name: string;
  /** Stream name → its declared columns, in order. */
  streams: ReadonlyMap<string, readonly StreamColumn[]>;
}

/**
 * "Column names must start with a letter and can consist of up to 45 alphanumeric characters and the
 * characters _ and -. The following are reserved column names: Type, TenantId, resource, resourceid,
 * resourcename, resourcetype, subscriptionid, tenanted." (MicrosoftDocs/azure-docs
 * `articles/azure-monitor/logs/logs-ingestion-api-overview.md`, "Supported tables").
 */
const COLUMN_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,44}$/;
const RESERVED = [
  'type',
  'tenantid',
  'resource',
  'resourceid',
  'resourcename',
  'resourcetype',
  'subscriptionid',
  'tenanted',
];
/** "Each stream is an object whose key represents the stream name, which must begin with Custom-" (data-collection-rule-structure.md). */
const STREAM_NAME = /^Custom-[A-Za-z0-9_]+$/;
export const IMMUTABLE_ID = /^dcr-[0-9a-f]{32}$/;

export function newImmutableId(): string {
  return `dcr-${randomBytes(16).toString('hex')}`;
}

/** Checks a declaration as deploying it would; throws naming every problem. */
export function declareRule(input: {
  name: string;
  immutableId?: string;
  streamDeclarations: Record<string, { columns: readonly StreamColumn[] }>;
}): DataCollectionRule {
  const problems: string[] = [];
  const immutableId = input.immutableId ?? newImmutableId();
  if (!IMMUTABLE_ID.test(immutableId)) problems.push(`immutable id ${immutableId} is not dcr- and 32 hex digits`);
  const streams = new Map<string, StreamColumn[]>();
  for (const [stream, { columns }] of Object.entries(input.streamDeclarations)) {
    if (!STREAM_NAME.test(stream)) problems.push(`stream ${stream}: a stream name must begin with Custom-`);
    const seen = new Set<string>();
    for (const column of columns) {
      if (!COLUMN_NAME.test(column.name))
        problems.push(`stream ${stream}: column ${column.name} is not a valid column name`);
      if (RESERVED.includes(column.name.toLowerCase()))
        problems.push(`stream ${stream}: column ${column.name} is a reserved column name`);
      if (!(COLUMN_TYPES as readonly string[]).includes(column.type))
        problems.push(
          `stream ${stream}: column ${column.name} has type ${column.type}, not one of ${COLUMN_TYPES.join(', ')}`,
        );
      if (seen.has(column.name.toLowerCase()))
        problems.push(`stream ${stream}: column ${column.name} is declared twice`);
      seen.add(column.name.toLowerCase());
    }
    streams.set(
      stream,
      columns.map(({ name, type }) => ({ name, type })),
    );
  }
  if (streams.size === 0) problems.push('the rule declares no stream');
  if (problems.length > 0) throw new Error(`Data collection rule ${input.name} is invalid: ${problems.join('; ')}`);
  return { immutableId, name: input.name, streams };
}
