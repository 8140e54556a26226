import { runAdvancedHunting, type HuntingWindow } from '../defender/advanced-hunting.js';
import { DefenderApiError } from '../defender/errors.js';
import type { HuntingQuota } from '../defender/hunting-quota.js';
import type { ColumnType, Row } from '../defender/hunting-tables.js';
import { KqlError } from '../defender/kql.js';
import { parseTimestamp, ticksFromMs } from '../defender/timestamps.js';
import type { Incident as DefenderIncident } from '../defender/types.js';
import { GraphApiError, badRequest } from './errors.js';

/**
 * `POST /security/runHuntingQuery` (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
 * security-security-runhuntingquery.md): advanced hunting through Graph. The query runs on the Defender
 * stand-in's KQL subset and tables (local/defender/advanced-hunting.ts), over the tenant's hunting data, and
 * is charged to the tenant's advanced hunting CPU quota (local/defender/hunting-quota.ts).
 */

/** `@odata.context` of the answer, after `{base}/v1.0/$metadata` (the page's examples 1 and 2). */
export const HUNTING_RESULTS_CONTEXT = '#microsoft.graph.security.huntingQueryResults';

/**
 * The action's parameters, by the name the v1.0 schema declares (`query`, `timespan`: msgraph-metadata
 * clean_v10_metadata/cleanMetadata.xml, action runHuntingQuery) → the spelling the v1.0 page writes. The v1.0
 * page's requests send `Query`/`Timespan` and are answered 200, the beta page's send `query`: Graph matches the
 * names whatever their case.
 */
const PARAMETERS = { query: 'Query', timespan: 'Timespan' } as const;
type ParameterName = keyof typeof PARAMETERS;

/** "If not provided, the default timespan of 30 days will be used" (the v1.0 page, "Request body"). */
const DEFAULT_TIMESPAN_MS = 30 * 86_400_000;
const TICKS_PER_SECOND = 10_000_000n;
const TICKS_PER_DAY = 86_400n * TICKS_PER_SECOND;
const MAX_SHOWN = 100;

export interface HuntingRequest {
  query: string;
  window: HuntingWindow;
}

/** `huntingQueryResults`: `schema` as `singlePropertySchema` ({name, type}, the v1.0 schema), `results` rows. */
export interface HuntingQueryResults {
  schema: { name: string; type: ColumnType }[];
  results: Row[];
}

/**
 * The body's `Query` (required) and `Timespan` (optional), or 400 BadRequest. A parameter the action does not
 * declare, or one given twice (in two casings), is refused in ODataLib's words (OData/odata.net,
 * ODataParameterReaderCore: "The parameter '…' in the request payload is not a valid parameter for the
 * operation '…'.", "Multiple parameters with the name '…' were found in the request payload.").
 */
export function parseHuntingRequest(body: unknown, now: number): HuntingRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw badRequest('The request body must be a JSON object with the parameter Query (and optionally Timespan).');
  const given = new Map<ParameterName, unknown>();
  for (const [name, value] of Object.entries(body)) {
    // Instance annotations (`@odata.type`, `Query@odata.type`) are not parameters.
    if (name.includes('@')) continue;
    const key = name.toLowerCase();
    if (!(key in PARAMETERS))
      throw badRequest(
        `The parameter '${shown(name)}' in the request payload is not a valid parameter for the operation 'runHuntingQuery'.`,
      );
    if (given.has(key as ParameterName))
      throw badRequest(`Multiple parameters with the name '${key}' were found in the request payload.`);
    given.set(key as ParameterName, value);
  }

  const query = given.get('query');
  if (query === undefined || query === null)
    throw badRequest("The parameter 'Query' is required: the hunting query in Kusto Query Language (KQL).");
  if (typeof query !== 'string') throw badRequest("The parameter 'Query' must be a string.");
  if (query.trim() === '') throw badRequest("The parameter 'Query' must not be empty.");

  const timespan = given.get('timespan');
  if (timespan === undefined || timespan === null)
    return { query, window: { from: ticksFromMs(now - DEFAULT_TIMESPAN_MS), to: ticksFromMs(now) } };
  if (typeof timespan !== 'string')
    throw badRequest("The parameter 'Timespan' must be a string: an ISO 8601 duration or time interval.");
  return { query, window: parseTimespan(timespan, now) };
}

/**
 * The rows' time range for a `Timespan`, in the five forms the v1.0 page lists ("Timespan format examples"):
 * `start/end`, `duration/end`, `start/duration`, a duration back from now (`P30D`), or a start alone (end now).
 * Durations are ISO 8601's `PnYnMnDTnHnMnS` or `PnW`; a date-time without a zone is UTC, as KQL's datetime()
 * reads it. Anything else, or a range that ends before it starts, is 400 BadRequest.
 */
export function parseTimespan(text: string, now: number): HuntingWindow {
  const invalid = (why: string) =>
    badRequest(
      `The parameter 'Timespan' is not valid: '${shown(text)}' ${why}. Give an ISO 8601 duration (P30D), start/end, ` +
        'duration/end, start/duration, or a start date-time.',
    );
  const parts = text.split('/');
  if (parts.length > 2) throw invalid('has more than two parts');
  const [first = '', second] = parts;
  let window: HuntingWindow | undefined;
  if (second === undefined) {
    const duration = parseDuration(first);
    const start = duration ? undefined : parseDateTime(first);
    const end = ticksFromMs(now);
    if (duration) window = span(shift(end, duration, -1), end);
    else if (start !== undefined) window = { from: start, to: end };
  } else {
    const [startDuration, endDuration] = [parseDuration(first), parseDuration(second)];
    const [start, end] = [parseDateTime(first), parseDateTime(second)];
    if (start !== undefined && end !== undefined) window = { from: start, to: end };
    else if (startDuration && end !== undefined) window = span(shift(end, startDuration, -1), end);
    else if (start !== undefined && endDuration) window = span(start, shift(start, endDuration, 1));
  }
  if (!window) throw invalid('is not an ISO 8601 duration or time interval');
  if (window.from > window.to) throw invalid('ends before it starts');
  return window;
}

/**
 * Runs the query over the tenant's hunting data within the request's window and answers `huntingQueryResults`.
 * The tenant's advanced hunting CPU quota is checked first, then the query, then the time it ran, as the
 * Defender stand-in does for `/api/advancedhunting/run`: "Each tenant is allocated CPU resources"
 * (MicrosoftDocs/defender-docs defender-xdr/api-advanced-hunting.md, "Quotas and resource allocation" 4): the
 * quota is the tenant's, whichever API runs its queries.
 */
export function runHuntingQuery(
  source: readonly DefenderIncident[],
  quota: HuntingQuota,
  tenantId: string,
  request: HuntingRequest,
  now: number,
): HuntingQueryResults {
  admitToQuota(quota, tenantId, now);
  try {
    const response = runAdvancedHunting(
      source,
      request.query,
      now,
      (rowsScanned) => quota.run(tenantId, rowsScanned),
      request.window,
    );
    return {
      schema: response.Schema.map(({ Name, Type }) => ({ name: Name, type: Type })),
      results: response.Results,
    };
  } catch (err) {
    if (err instanceof KqlError) throw badRequest(err.message);
    // The timeout: 400 BadRequest "Query exceeded the timeout period." (hunting-quota.ts), in Graph's shape.
    if (err instanceof DefenderApiError) throw new GraphApiError(err.status, err.code, err.message);
    throw err;
  }
}

/**
 * Over the tenant's CPU quota: 429 TooManyRequests with the Defender stand-in's message, advanced hunting's
 * own ("You have exceeded processing resources allocated to this tenant. You can run queries again in
 * <duration>.", MicrosoftDocs/defender-docs defender-xdr/advanced-hunting-errors.md, "CPU throttling"), and,
 * as every Graph 429 does, `Retry-After` in seconds (concepts/throttling.md: "All the resources and APIs
 * described in the Service-specific limits provide a Retry-After header except where indicated"): the wait
 * until the next 15-minute cycle, the same wait the message gives.
 */
function admitToQuota(quota: HuntingQuota, tenantId: string, now: number): void {
  try {
    quota.admit(tenantId);
  } catch (err) {
    if (!(err instanceof DefenderApiError) || err.status !== 429) throw err;
    const waitSeconds = Math.max(1, Math.ceil((Date.parse(quota.state(tenantId).cycleEndsAt) - now) / 1000));
    throw new GraphApiError(429, 'TooManyRequests', err.message, { 'Retry-After': String(waitSeconds) });
  }
}

interface Duration {
  /** Calendar months (years × 12 + months): their length depends on where they start. */
  months: number;
  /** Weeks, days, hours, minutes and seconds, in 100 ns ticks. */
  ticks: bigint;
}

const DURATION =
  /^P(?:(\d+)W|(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:[.,](\d+))?S)?)?)$/;

function parseDuration(text: string): Duration | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  const [, weeks, years, months, days, hours, minutes, seconds, fraction] = match;
  const whole = (value: string | undefined) => BigInt(value ?? '0');
  const ticks =
    whole(weeks) * 7n * TICKS_PER_DAY +
    whole(days) * TICKS_PER_DAY +
    whole(hours) * 3600n * TICKS_PER_SECOND +
    whole(minutes) * 60n * TICKS_PER_SECOND +
    whole(seconds) * TICKS_PER_SECOND +
    BigInt((fraction ?? '').slice(0, 7).padEnd(7, '0'));
  return { months: Number(years ?? 0) * 12 + Number(months ?? 0), ticks };
}

/** An ISO 8601 date or date-time; one without a zone is UTC (KQL's datetime() reads it so, kql.ts likewise). */
function parseDateTime(text: string): bigint | undefined {
  const zoned = /T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text) ? `${text}Z` : text;
  return parseTimestamp(zoned);
}

/** `anchor` moved by `duration` forwards (1) or backwards (-1); undefined past the dates a Date can hold. */
function shift(anchor: bigint, duration: Duration, direction: 1 | -1): bigint | undefined {
  let ticks = anchor;
  if (duration.months !== 0) {
    const ticksPerMs = TICKS_PER_SECOND / 1000n;
    const date = new Date(Number(anchor / ticksPerMs));
    date.setUTCMonth(date.getUTCMonth() + direction * duration.months);
    if (Number.isNaN(date.getTime())) return undefined;
    ticks = BigInt(date.getTime()) * ticksPerMs + (anchor % ticksPerMs);
  }
  return ticks + BigInt(direction) * duration.ticks;
}

function span(from: bigint | undefined, to: bigint | undefined): HuntingWindow | undefined {
  return from === undefined || to === undefined ? undefined : { from, to };
}

/** A client's text in a message, cut short. */
function shown(text: string): string {
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}…` : text;
}
