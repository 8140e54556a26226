import { lookup as dnsLookup } from 'node:dns';
import { Agent } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { TokenCredential } from '@azure/identity';
import type { LogsIngestionClient } from '@azure/monitor-ingestion';
import { isRetryable, PermanentError, RetryableError, type FailureContext, type RelayError } from '../../errors.js';
import { isRecord } from '../../sources/defender/incident-types.js';
import { incidentViewOf } from '../../sources/incident-api.js';
import { apiOf } from '../../messages/events.js';
import { redact } from '../../telemetry/redact.js';
import type { NamedDestination } from '../routing.js';
import {
  checkDestinationUrl,
  DestinationBlockedError,
  resolveSafeAddresses,
  type AddressLookup,
  type DestinationPolicy,
  type ResolvedAddress,
} from '../ssrf.js';
import { MAX_FIELD_BYTES, type SentinelRow } from './sentinel-columns.js';
import type { RoutedMessage } from './types.js';
import { retryAfterMs } from './webhook.js';

export {
  SENTINEL_COLUMNS,
  SENTINEL_TABLE_NAME,
  DEFAULT_SENTINEL_STREAM,
  type SentinelRow,
} from './sentinel-columns.js';

export type SentinelDestination = Extract<NamedDestination, { type: 'sentinel' }>;

/**
 * Microsoft Sentinel through the Logs Ingestion API: one row of `DefenderRelayIncidents_CL` per routed
 * incident version (`sentinelRow`), sent with `@azure/monitor-ingestion`'s `LogsIngestionClient` as the
 * app's own identity (the managed identity in Azure), which needs `Monitoring Metrics Publisher` on the
 * data collection rule.
 *
 * One upload per event, not batches across events: the enricher records each destination's delivery of
 * each event before it goes on (exactly-once in effect, `enrich-handler.ts`), and a call that carried
 * several events would succeed or fail for all of them at once, so one event's retry would resend (and
 * duplicate) the rows of the others, or hold them back. The limits leave room: 12,000 calls a minute per
 * rule (Azure Monitor service limits, "Logs Ingestion API"), where the relay makes one call per routed
 * incident version. The SDK still does what batching within the limits needs: it splits an upload into
 * chunks under 1 MB and gzips them, and one row here is far below that (`MAX_FIELD_BYTES` per field).
 */

/** The SDK and its retry policy stay out of the way: the host retries the event (with its back-off), as for webhooks. */
const CLIENT_OPTIONS = {
  retryOptions: { maxRetries: 0 },
  // A redirect would carry the bearer token elsewhere: none is followed (as for webhooks).
  redirectOptions: { maxRetries: 0 },
  userAgentOptions: { userAgentPrefix: 'defender-relay' },
};

/**
 * Logs Ingestion clients by endpoint, built on first use (the SDK is loaded then, not at a cold start),
 * each with a keep-alive pool whose connections go only to addresses the SSRF guard accepted: the
 * host is resolved and checked for every new connection, and the connection uses the checked answer
 * (no second DNS query, so no DNS rebinding), as webhook posts do (`ssrf.ts`).
 */
export class SentinelClients {
  readonly #clients = new Map<string, Promise<LogsIngestionClient>>();

  constructor(
    private readonly credential: TokenCredential,
    private readonly policy: DestinationPolicy,
    private readonly lookup?: AddressLookup,
  ) {}

  clientFor(endpoint: string): Promise<LogsIngestionClient> {
    const key = endpoint.replace(/\/+$/, '').toLowerCase();
    let client = this.#clients.get(key);
    if (!client) {
      const agent = new Agent({ keepAlive: true, maxSockets: 50, lookup: guardedLookup(this.policy, this.lookup) });
      client = import('@azure/monitor-ingestion').then(
        ({ LogsIngestionClient }) => new LogsIngestionClient(endpoint, this.credential, { ...CLIENT_OPTIONS, agent }),
      );
      // A failed import is not remembered: the next event tries again.
      client.catch(() => this.#clients.delete(key));
      this.#clients.set(key, client);
    }
    return client;
  }
}

/** Marks a connection the SSRF guard refused, through the SDK's error (which keeps only `code` and the message). */
const BLOCKED_CODE = 'EDESTINATIONBLOCKED';

/** A `lookup` that resolves, refuses blocked addresses, and answers with the checked ones only. */
export function guardedLookup(policy: DestinationPolicy, lookup?: AddressLookup): LookupFunction {
  const system: AddressLookup = (host) =>
    new Promise((resolve, reject) =>
      dnsLookup(host, { all: true }, (err, answers) =>
        err
          ? reject(err)
          : resolve(answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }) as ResolvedAddress)),
      ),
    );
  return (hostname, options, callback) => {
    resolveSafeAddresses(hostname, policy, lookup ?? system).then(
      (addresses) => {
        if (options.all) {
          (callback as unknown as (err: null, all: ResolvedAddress[]) => void)(null, addresses);
          return;
        }
        const chosen = addresses.find((a) => a.family === options.family) ?? addresses[0]!;
        callback(null, chosen.address, chosen.family);
      },
      (err: unknown) => {
        const failure = err as NodeJS.ErrnoException;
        if (err instanceof DestinationBlockedError) failure.code = BLOCKED_CODE;
        callback(failure, '', 4);
      },
    );
  };
}

/** Sends the routed message as one row. Throws `RetryableError` (429 with its Retry-After, 5xx, timeouts, network) or `PermanentError`. */
export async function deliverToSentinel(
  destination: SentinelDestination,
  message: RoutedMessage,
  deps: { clients: SentinelClients; policy: DestinationPolicy & { timeoutMs: number }; now?: () => Date },
): Promise<{ status: number; incidentTruncated: boolean }> {
  const row = sentinelRow(message, deps.now?.() ?? new Date());
  let context: FailureContext = {
    tenantId: message.tenantId,
    operation: `deliver to Sentinel destination "${destination.name}"`,
  };
  const signal = AbortSignal.timeout(deps.policy.timeoutMs);
  try {
    const host = checkDestinationUrl(destination.endpoint, deps.policy).host;
    context = {
      ...context,
      operation: `deliver to Sentinel destination "${destination.name}" (${host}, rule ${destination.ruleId}, stream ${destination.streamName})`,
    };
    const client = await deps.clients.clientFor(destination.endpoint);
    await client.upload(destination.ruleId, destination.streamName, [row], { abortSignal: signal, maxConcurrency: 1 });
    return { status: 204, incidentTruncated: row.IncidentTruncated === true };
  } catch (err) {
    throw classifyIngestionFailure(err, context, signal, deps.policy.timeoutMs);
  }
}

/** The Logs Ingestion API's error body: `{ "error": { "code", "message" } }` (swagger `Azure.Core.Foundations.ErrorResponse`). */
interface ServiceFailure {
  name?: string;
  code?: string;
  message?: string;
  statusCode?: number;
  response?: { headers?: { get(name: string): string | undefined } };
}

/** What a failed upload means for the event: retried later (429, 5xx, timeouts, network) or dead-lettered with the service's reason. */
export function classifyIngestionFailure(
  err: unknown,
  context: FailureContext,
  deadline?: AbortSignal,
  timeoutMs?: number,
): RelayError {
  if (err instanceof DestinationBlockedError)
    return new PermanentError(
      `Destination refused by the SSRF guard: ${err.message}`,
      { ...context, code: 'DestinationBlocked' },
      { cause: err },
    );
  // `upload` gathers each chunk's failure into an AggregateLogsUploadError; one row is one chunk.
  const aggregate = err as { name?: string; errors?: { cause?: unknown }[] };
  const cause = aggregate?.name === 'AggregateLogsUploadError' ? aggregate.errors?.[0]?.cause : err;
  const e = (cause ?? {}) as ServiceFailure;
  const said = e.message ? `: ${redact(e.message.replace(/\s+/g, ' ').trim().slice(0, 300))}` : '';
  if (deadline?.aborted || e.name === 'AbortError' || e.name === 'TimeoutError')
    return new RetryableError(
      `The Logs Ingestion API did not answer within ${timeoutMs ?? '?'} ms`,
      { ...context, code: 'Timeout' },
      { cause: err },
    );
  if (e.code === BLOCKED_CODE)
    return new PermanentError(
      `Destination refused by the SSRF guard${said}`,
      { ...context, code: 'DestinationBlocked' },
      { cause: err },
    );
  // The app's identity could not get a token (the SDK asks before it sends): that error says whether to retry.
  if (typeof e.name === 'string' && /Credential|AuthenticationError/.test(e.name)) {
    const why = `The app's identity could not get a token for Azure Monitor (${e.name})${said}`;
    return isRetryable(cause)
      ? new RetryableError(why, { ...context, code: e.name }, { cause: err })
      : new PermanentError(why, { ...context, code: e.name }, { cause: err });
  }
  const status = e.statusCode;
  if (status === undefined) {
    if (typeof e.code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/.test(e.code))
      return new PermanentError(
        `TLS to the Logs Ingestion endpoint failed (${e.code}): its certificate is not trusted for this host`,
        { ...context, code: e.code },
        { cause: err },
      );
    return new RetryableError(
      `Could not reach the Logs Ingestion endpoint (${e.code ?? 'network error'})${said}`,
      { ...context, code: e.code },
      { cause: err },
    );
  }
  const failure = { ...context, status, code: e.code };
  if (status === 408 || status === 429 || status >= 500)
    return new RetryableError(
      `The Logs Ingestion API answered ${status}${e.code ? ` ${e.code}` : ''}${said}`,
      { ...failure, retryAfterMs: retryAfterMs(e.response?.headers?.get('retry-after')) },
      { cause: err },
    );
  return new PermanentError(
    `The Logs Ingestion API refused the row with ${status}${e.code ? ` ${e.code}` : ''}${said}${HINTS[status] ?? ''}`,
    failure,
    { cause: err },
  );
}

const HINTS: Record<number, string> = {
  401: ' (the token was refused: is the endpoint in the cloud whose audience the SDK asks for, https://monitor.azure.com?)',
  403: " (grant the app's identity Monitoring Metrics Publisher on the data collection rule; a new assignment can take up to 30 minutes to apply, then replay the dead letters)",
  404: ' (no data collection rule with this immutable id at this endpoint, or no such stream in it: check ruleId and streamName against the deployment outputs)',
  413: ' (a call over the 1 MB limit)',
};

// ---------------------------------------------------------------------------------------------------------------------
// The row

const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
const text = (value: unknown): string | null =>
  typeof value === 'string' ? capText(value) : typeof value === 'number' ? String(value) : null;
const count = (value: unknown): number | null =>
  typeof value === 'number' && Number.isFinite(value) ? Math.trunc(value) : null;
const bytesOf = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? 'null');

/** A string cut (on a character boundary) so that it fits in a field, marked with a trailing ellipsis. */
export function capText(value: string, limit = MAX_FIELD_BYTES): string {
  if (Buffer.byteLength(value) <= limit) return value;
  let cut = value.slice(0, limit);
  while (Buffer.byteLength(cut) > limit - 3) cut = cut.slice(0, Math.floor(cut.length * 0.9));
  return `${cut}…`;
}

/** A list with as many of its first items as fit in a field (as JSON). */
function capList<T>(items: T[], limit = MAX_FIELD_BYTES): T[] {
  if (bytesOf(items) <= limit) return items;
  let low = 0;
  let high = items.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (bytesOf(items.slice(0, mid)) <= limit) low = mid;
    else high = mid - 1;
  }
  return items.slice(0, low);
}

function entityCounts(enrichment: Record<string, unknown>) {
  const entities = isRecord(enrichment.entities) ? enrichment.entities : {};
  const totals = isRecord(entities.totals) ? entities.totals : {};
  const of = (kind: string) => count(totals[kind]) ?? (Array.isArray(entities[kind]) ? entities[kind].length : null);
  return {
    UserCount: of('users'),
    DeviceCount: of('devices'),
    IpCount: of('ips'),
    UrlCount: of('urls'),
    FileHashCount: of('fileHashes'),
    MailboxCount: of('mailboxes'),
  };
}

/**
 * The row of `DefenderRelayIncidents_CL` for a routed message: the columns of `SENTINEL_COLUMNS`, every
 * one present (null when unknown), each value within the service's 64 KB per field, the incident whole
 * when it fits and reduced (`IncidentTruncated: true`) when it does not.
 */
export function sentinelRow(message: RoutedMessage, now: Date): SentinelRow {
  const { enrichment } = message;
  // The columns read a Graph incident in the Defender shape; the Incident column keeps it as Graph gave it.
  const incident = incidentViewOf(message, message.incident);
  const mitre = isRecord(enrichment.mitre) ? enrichment.mitre : {};
  const tactics = Array.isArray(mitre.tactics) ? mitre.tactics.filter(isRecord) : [];
  const fitted = fitIncident(message.incident);
  return {
    TimeGenerated: now.toISOString(),
    EventId: message.eventId,
    CustomerTenantId: message.tenantId,
    CustomerTenantName: text(enrichment.tenantDisplayName),
    IncidentId: message.incidentId,
    IncidentName: text(incident.incidentName),
    LastUpdateTime: message.lastUpdateTime,
    Severity: text(incident.severity),
    Status: text(incident.status),
    Classification: text(incident.classification),
    Determination: text(incident.determination),
    Priority: count(enrichment.priority),
    PriorityReasons: capList(strings(enrichment.priorityReasons).map((r) => capText(r, 1024))),
    MitreTechniques: capList(strings(mitre.techniques)),
    MitreTactics: capList(tactics.map((t) => ({ id: text(t.id), name: text(t.name) }))),
    AlertCount: count(enrichment.alertCount),
    ActiveAlertCount: count(enrichment.activeAlertCount),
    ...entityCounts(enrichment),
    PortalUrl: text(enrichment.portalUrl),
    ServiceSources: capList(strings(enrichment.serviceSources)),
    Route: message.route.name,
    IncidentApi: apiOf(message),
    Incident: fitted.value,
    IncidentTruncated: fitted.truncated,
  };
}

/** What a reduced incident keeps of each alert (Defender's names, and Graph's where they differ). */
const ALERT_SUMMARY_FIELDS = [
  'alertId',
  'id',
  'firstActivityDateTime',
  'lastActivityDateTime',
  'title',
  'severity',
  'status',
  'category',
  'serviceSource',
  'detectionSource',
  'mitreTechniques',
  'firstActivity',
  'lastActivity',
] as const;

/** Longest string a reduced incident keeps whole; nested values larger than `MAX_NESTED_BYTES` are left out. */
const MAX_KEPT_TEXT = 2048;
const MAX_NESTED_BYTES = 4096;

function shrink(value: unknown): unknown {
  if (typeof value === 'string') return capText(value, MAX_KEPT_TEXT);
  if (value !== null && typeof value === 'object' && bytesOf(value) > MAX_NESTED_BYTES)
    return `(left out: ${bytesOf(value)} bytes)`;
  return value;
}

/**
 * The incident as the `Incident` column holds it: whole when its JSON fits in a field; otherwise reduced,
 * so that the service never truncates it into text that is no longer JSON: its own fields (long strings
 * cut, large nested values and `comments` left out), its alerts as summaries (`ALERT_SUMMARY_FIELDS`),
 * as many as fit, and `truncatedByRelay` saying what was left out. The whole incident stays in the routed
 * message's other destinations (a queue keeps it by claim-check).
 */
export function fitIncident(
  incident: Record<string, unknown>,
  limit = MAX_FIELD_BYTES,
): { value: Record<string, unknown>; truncated: boolean } {
  const originalBytes = bytesOf(incident);
  if (originalBytes <= limit) return { value: incident, truncated: false };
  const { alerts, comments: _comments, ...fields } = incident;
  const alertList = Array.isArray(alerts) ? alerts.filter(isRecord) : [];
  const summaries = alertList.map((alert) =>
    Object.fromEntries(ALERT_SUMMARY_FIELDS.filter((f) => f in alert).map((f) => [f, shrink(alert[f])])),
  );
  const reduced = (kept: number) => ({
    ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, shrink(v)])),
    alerts: summaries.slice(0, kept),
    truncatedByRelay: {
      originalBytes,
      limitBytes: limit,
      alertCount: alertList.length,
      alertsKept: kept,
      leftOut:
        'comments; alert evidence (devices, entities) and other alert fields; nested values over 4096 bytes; text past 2048 characters',
    },
  });
  if (bytesOf(reduced(0)) <= limit) {
    let low = 0;
    let high = summaries.length;
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (bytesOf(reduced(mid)) <= limit) low = mid;
      else high = mid - 1;
    }
    return { value: reduced(low), truncated: true };
  }
  // Even its own fields are too large (hundreds of them): keep what identifies it.
  const identity = ['incidentId', 'incidentName', 'severity', 'status', 'createdTime', 'lastUpdateTime'];
  return {
    value: {
      ...Object.fromEntries(identity.filter((k) => k in fields).map((k) => [k, shrink(fields[k])])),
      truncatedByRelay: {
        originalBytes,
        limitBytes: limit,
        alertCount: alertList.length,
        alertsKept: 0,
        leftOut: 'everything but the fields that identify the incident',
      },
    },
    truncated: true,
  };
}
