/**
 * The one definition of a Microsoft Sentinel row: the columns of the custom table
 * `DefenderRelayIncidents_CL`, in order, with their types. The destination builds rows of exactly these
 * columns (`sentinel.ts`), the data collection rule declares them as its input stream and the table
 * as its schema (`infra/core/sentinel.bicep`, held equal by `test/infra/sentinel-columns.test.ts`), and
 * the Logs Ingestion stand-in checks what arrives against them (`local/logs-ingestion/`).
 *
 * Types are those a stream declaration takes (`string`, `int`, `long`, `real`, `boolean`, `dynamic`,
 * `datetime`: MicrosoftDocs/azure-monitor-docs `articles/azure-monitor/data-collection/
 * data-collection-rule-structure.md`, "Data types"), which a Log Analytics table takes too.
 *
 * The customer's tenant is `CustomerTenantId`, not `TenantId`: `TenantId` (like `Type`) is a column name
 * Log Analytics reserves (it holds the workspace's id in every table): "The following are reserved column
 * names: Type, TenantId, …" (MicrosoftDocs/azure-docs `articles/azure-monitor/logs/
 * logs-ingestion-api-overview.md`, "Supported tables"). Its display name goes with it: `CustomerTenantName`.
 */

/** The custom table (a Log Analytics table, not a Storage one). */
export const SENTINEL_TABLE_NAME = 'DefenderRelayIncidents_CL';
/** The stream the data collection rule declares and the destination sends to by default. */
export const DEFAULT_SENTINEL_STREAM = `Custom-${SENTINEL_TABLE_NAME}`;

export type SentinelColumnType = 'string' | 'int' | 'long' | 'real' | 'boolean' | 'dynamic' | 'datetime';

export interface SentinelColumn {
  name: string;
  type: SentinelColumnType;
  /** What the column holds, for the table's schema (shown in Log Analytics) and the README. */
  description: string;
}

export const SENTINEL_COLUMNS = [
  { name: 'TimeGenerated', type: 'datetime', description: 'When the relay sent this row (UTC).' },
  {
    name: 'EventId',
    type: 'string',
    description:
      'The incident version routed (tenant, incident id and lastUpdateTime): a retried delivery may repeat it, so deduplicate on it.',
  },
  { name: 'CustomerTenantId', type: 'string', description: "The customer's Entra tenant id the incident belongs to." },
  { name: 'CustomerTenantName', type: 'string', description: "The customer tenant's display name, when known." },
  { name: 'IncidentId', type: 'long', description: 'The Defender XDR incident id.' },
  { name: 'IncidentName', type: 'string', description: "The incident's name in Defender XDR." },
  { name: 'LastUpdateTime', type: 'datetime', description: "The incident version's lastUpdateTime." },
  {
    name: 'Severity',
    type: 'string',
    description: "The incident's severity (Informational, Low, Medium, High, UnSpecified).",
  },
  { name: 'Status', type: 'string', description: "The incident's status (Active, InProgress, Resolved, Redirected)." },
  { name: 'Classification', type: 'string', description: "The incident's classification." },
  { name: 'Determination', type: 'string', description: "The incident's determination." },
  { name: 'Priority', type: 'int', description: "The relay's priority score, 0 to 100." },
  { name: 'PriorityReasons', type: 'dynamic', description: 'Each contribution to the priority score (strings).' },
  { name: 'MitreTechniques', type: 'dynamic', description: 'Distinct MITRE ATT&CK technique ids of the alerts.' },
  {
    name: 'MitreTactics',
    type: 'dynamic',
    description: 'The ATT&CK tactics among the alert categories, as {id, name}, in the matrix order.',
  },
  { name: 'AlertCount', type: 'int', description: 'Alerts in the incident.' },
  { name: 'ActiveAlertCount', type: 'int', description: 'Alerts with status New or InProgress.' },
  { name: 'UserCount', type: 'int', description: 'Distinct users among the alert entities.' },
  { name: 'DeviceCount', type: 'int', description: 'Distinct devices among the alerts.' },
  { name: 'IpCount', type: 'int', description: 'Distinct IP addresses among the alert entities.' },
  { name: 'UrlCount', type: 'int', description: 'Distinct URLs among the alert entities.' },
  { name: 'FileHashCount', type: 'int', description: 'Distinct files (by hash) among the alert entities.' },
  { name: 'MailboxCount', type: 'int', description: 'Distinct mailboxes among the alert entities.' },
  { name: 'PortalUrl', type: 'string', description: 'The incident in the Microsoft Defender portal.' },
  { name: 'ServiceSources', type: 'dynamic', description: 'Distinct service sources of the alerts.' },
  { name: 'Route', type: 'string', description: 'The routing rule that sent the incident here (or default).' },
  {
    name: 'IncidentApi',
    type: 'string',
    description:
      'The API the incident was read from, and so the shape of Incident: defender (Defender XDR) or graph (Microsoft Graph).',
  },
  {
    name: 'Incident',
    type: 'dynamic',
    description: 'The incident as its API returned it (reduced when IncidentTruncated is true).',
  },
  {
    name: 'IncidentTruncated',
    type: 'boolean',
    description:
      'True when the incident was too large for one column (64 KB) and Incident holds a reduced copy: its fields without comments, and a summary of its alerts.',
  },
] as const satisfies readonly SentinelColumn[];

export type SentinelColumnName = (typeof SENTINEL_COLUMNS)[number]['name'];

type ValueOf<T extends SentinelColumnType> = T extends 'string' | 'datetime'
  ? string | null
  : T extends 'int' | 'long' | 'real'
    ? number | null
    : T extends 'boolean'
      ? boolean | null
      : unknown;

/** One row of `DefenderRelayIncidents_CL`: every column, each with a value of its type (null when unknown). */
export type SentinelRow = {
  [C in (typeof SENTINEL_COLUMNS)[number] as C['name']]: ValueOf<C['type']>;
};

/**
 * The service truncates a field longer than 64 KB ("Maximum size for field values: 64 KB. Fields longer
 * than 64 KB are truncated.", Azure Monitor service limits, "Logs Ingestion API":
 * https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api, whose table
 * is the include `azure-monitor-limits-custom-logs.md`; older copies in MicrosoftDocs/azure-docs said 32 KB).
 * A truncated dynamic value is no longer JSON, so the destination keeps every value within it; 64,000
 * bytes holds under either reading of "KB".
 */
export const MAX_FIELD_BYTES = 64_000;

/**
 * "Maximum size of API call: 1 MB, both compressed and uncompressed data" (same table). The SDK splits an
 * upload into chunks of under 1,000,000 bytes of JSON (@azure/monitor-ingestion 1.2.0
 * `src/utils/splitDataToChunksHelper.ts`); one row of this table stays far below it (its fields are capped).
 */
export const MAX_CALL_BYTES = 1_000_000;
