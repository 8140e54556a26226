import {
  context,
  createTraceState,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Context,
  type Link,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';
import { failureCategory } from '../errors.js';
import { traceContextSchema, type IncidentEnvelope, type TraceContextFields } from '../messages/events.js';
import { DIMENSIONS } from './telemetry-names.js';

/**
 * Traces: one incident version is one trace, from the poll (or push) that enqueued it, through the
 * queue hops, to each destination. Its context travels in the event envelope as W3C `traceparent`
 * (and `tracestate`), validated by events.ts:
 *
 *   poll tenant (child of the host's invocation)
 *     ┆ linked from
 *   enqueue incident (a new trace per version) ─ envelope ─► enrich incident ─► deliver <destination>
 *                                                             └─► Defender <api>   (each attempt;
 *                                                                 Graph <api> for a tenant read through Graph)
 *
 * A retried, poisoned or replayed event keeps its envelope, so its attempts join the same trace. The
 * host's own invocation span (the Functions instrumentation makes it the active context) is linked.
 * Only `@opentelemetry/api` here: until telemetry.ts starts the SDK every span is the API's no-op,
 * and no message gets trace fields. Attributes are ids, names from configuration and categories:
 * never incident content, a secret, a token or a URL.
 */
export const TRACER_NAME = 'defender-relay';

const EVENT_ID = 'relay.event_id';
const DEQUEUE_COUNT = 'relay.dequeue_count';
const AI_OPERATION_NAME = 'ai.operation.name';
const HTTP_STATUS = 'http.response.status_code';

/** The trace fields for a message sent from within `span` (none when it is the API's no-op). */
function traceFieldsOf(span: Span): TraceContextFields {
  const spanContext = span.spanContext();
  if (!isSpanContextValid(spanContext)) return {};
  const flags = spanContext.traceFlags & TraceFlags.SAMPLED ? '01' : '00';
  const traceparent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
  const tracestate = spanContext.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** The span a message names as its parent (remote), or undefined when it names none in W3C's form. */
function parentOf(message: unknown): Context | undefined {
  const parsed = traceContextSchema.safeParse(message);
  if (!parsed.success || !parsed.data.traceparent) return undefined;
  const [, traceId, spanId, flags] = parsed.data.traceparent.split('-') as [string, string, string, string];
  const { tracestate } = parsed.data;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    traceState: tracestate ? createTraceState(tracestate) : undefined,
  });
}

/** A link to the span active now (the host's invocation), when there is one. */
function linkToActive(): Link[] {
  const active = trace.getActiveSpan()?.spanContext();
  return active && isSpanContextValid(active) ? [{ context: active }] : [];
}

/**
 * Runs `work` in a new span, active for what it calls, and ends the span when `work` settles. A
 * failure marks the span with its category only: an error's message may quote a service's answer.
 */
function inSpan<T>(name: string, options: SpanOptions, parent: Context, work: (span: Span) => Promise<T>): Promise<T> {
  return trace.getTracer(TRACER_NAME).startActiveSpan(name, options, parent, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      markFailed(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

function markFailed(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR });
  span.setAttribute('error.type', failureCategory(err));
}

/** Says how a span's work ended: its outcome (a category), and a failure (its category) when it failed without throwing. */
export function describeOutcome(span: Span, outcome: string, failure?: unknown): void {
  span.setAttribute(DIMENSIONS.outcome, outcome);
  if (failure !== undefined) markFailed(span, failure);
}

/** One poll run of a tenant, in the trace of the invocation that runs it. */
export function tracePollRun<T>(tenantId: string, work: (span: Span) => Promise<T>): Promise<T> {
  return inSpan(
    'poll tenant',
    { kind: SpanKind.INTERNAL, attributes: { [DIMENSIONS.tenant]: tenantId } },
    context.active(),
    work,
  );
}

/**
 * Sending an incident event: a new trace for the version (linked to the poll run or push that sends
 * it), whose context `send` gets in the envelope. An envelope that already names a trace stays in it.
 */
export function traceEnqueue<T>(
  envelope: IncidentEnvelope,
  send: (traced: IncidentEnvelope) => Promise<T>,
): Promise<T> {
  const own = parentOf(envelope);
  return inSpan(
    'enqueue incident',
    {
      kind: SpanKind.PRODUCER,
      root: !own,
      links: own ? [] : linkToActive(),
      attributes: {
        [DIMENSIONS.tenant]: envelope.tenantId,
        [DIMENSIONS.source]: envelope.source,
        [EVENT_ID]: envelope.eventId,
      },
    },
    own ?? context.active(),
    (span) => send({ ...envelope, ...traceFieldsOf(span) }),
  );
}

/**
 * Enriching and routing one event from the queue: in the trace its envelope names (read leniently,
 * before the envelope is validated, so that even a refused event is seen in its trace), linked to the
 * host's invocation; a message naming none starts in the invocation's trace.
 */
export function traceEnrich<T>(message: unknown, dequeueCount: number, work: (span: Span) => Promise<T>): Promise<T> {
  const parent = parentOf(message);
  return inSpan(
    'enrich incident',
    {
      kind: SpanKind.CONSUMER,
      links: parent ? linkToActive() : [],
      // The exporter names a request by this tag and, for a span that is not SERVER, only takes it from an
      // attribute: without it the request has no name (monitor-opentelemetry-exporter utils/spanUtils.ts).
      attributes: { [DEQUEUE_COUNT]: dequeueCount, [AI_OPERATION_NAME]: 'enrich incident' },
    },
    parent ?? context.active(),
    work,
  );
}

/** What the enrich span (the active one) says of its event once the envelope is read. */
export function describeEnrichSpan(envelope: Pick<IncidentEnvelope, 'tenantId' | 'eventId'>): void {
  trace.getActiveSpan()?.setAttributes({ [DIMENSIONS.tenant]: envelope.tenantId, [EVENT_ID]: envelope.eventId });
}

/**
 * One delivery to a destination, a child of the enrich span; `deliver` gets the delivery's trace
 * fields, for the message (or request) it sends, so that what consumes it can join the trace.
 */
export function traceDelivery<T>(
  /** `type`: the destination's; a queue's send is a PRODUCER span, a drop an INTERNAL one, anything else (an HTTP call) a CLIENT span. */
  delivery: { route: string; destination: string; type: string },
  deliver: (fields: TraceContextFields) => Promise<T>,
): Promise<T> {
  const kind =
    delivery.type === 'queue' ? SpanKind.PRODUCER : delivery.type === 'drop' ? SpanKind.INTERNAL : SpanKind.CLIENT;
  return inSpan(
    `deliver ${delivery.destination}`,
    {
      kind,
      attributes: { [DIMENSIONS.route]: delivery.route, [DIMENSIONS.destination]: delivery.destination },
    },
    context.active(),
    (span) => deliver(traceFieldsOf(span)),
  );
}

/** One attempt of a Defender API call (`api`: listIncidents, getIncident, …); `answered` records its HTTP status. */
export function traceDefenderCall<T>(
  tenantId: string,
  api: string,
  call: (answered: (status: number) => void) => Promise<T>,
): Promise<T> {
  return traceApiCall('Defender', tenantId, api, call);
}

/** One attempt of a Microsoft Graph security API call (span `Graph <api>`: listIncidents, getIncident, …). */
export function traceGraphCall<T>(
  tenantId: string,
  api: string,
  call: (answered: (status: number) => void) => Promise<T>,
): Promise<T> {
  return traceApiCall('Graph', tenantId, api, call);
}

function traceApiCall<T>(
  service: string,
  tenantId: string,
  api: string,
  call: (answered: (status: number) => void) => Promise<T>,
): Promise<T> {
  return inSpan(
    `${service} ${api}`,
    { kind: SpanKind.CLIENT, attributes: { [DIMENSIONS.tenant]: tenantId } },
    context.active(),
    (span) => call((status) => span.setAttribute(HTTP_STATUS, status)),
  );
}
