import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TokenVerifier } from '../common/bearer.js';
import { startHttpsServer } from '../common/https-server.js';
import type { KeyAndCert } from '../common/tls.js';
import { authenticate, RoleAssignments, type ComponentRole } from './auth.js';
import { decodeBody, readRawBody } from './body.js';
import { CONTROL_PREFIX, handleControl } from './control.js';
import { IngestionError, v2WithToken, unauthorized } from './errors.js';
import { LIVE_PATHS, notSubscribed } from './live.js';
import { TelemetryStore } from './store.js';
import { parseItems, track } from './track.js';

export { AZURE_MONITOR_RESOURCE } from './auth.js';
export { TelemetryStore, type RecordedItem, type TelemetrySummary, type MetricTotals } from './store.js';

export interface AppInsightsStandIn {
  /** `https://localhost:PORT`: the ingestion endpoint and the live endpoint both (the connection string names it twice). */
  url: string;
  /** The component's instrumentation key (a GUID): every envelope's `iKey` must be this one. */
  instrumentationKey: string;
  /** `InstrumentationKey=…;IngestionEndpoint=…/;LiveEndpoint=…/`, as the portal shows a component's. */
  connectionString: string;
  /** `${url}/_control`: what arrived (see control.ts). */
  controlUrl: string;
  /** The component's tenant: only tokens its directory issued are accepted. */
  tenantId: string;
  telemetry: TelemetryStore;
  /** Assigns a role on the component to a principal, identified as tokens identify it (`oid`). */
  grant(principalObjectId: string, role?: ComponentRole): void;
  revoke(principalObjectId: string): void;
  /** The latest requests to the ingestion and live endpoints, with their answers (oldest first). */
  requests(): IngestionRequest[];
  close(): Promise<void>;
}

export interface IngestionRequest {
  method: string;
  path: string;
  status: number;
  reason?: string;
  /** Why a request was refused, in the stand-in's words (e.g. \`missing\`, \`wrong_audience\`, \`wrong_tenant\`). */
  refusal?: string;
  itemsReceived?: number;
  itemsAccepted?: number;
  /** The caller's object id, once its token was accepted. */
  oid?: string;
}

export interface AppInsightsOptions {
  tls: KeyAndCert;
  verifier: TokenVerifier;
  tenantId: string;
  /** Defaults to a new GUID. */
  instrumentationKey?: string;
  port?: number;
  /** Most items kept for queries (totals are kept apart and never dropped). */
  maxItems?: number;
  /** One line per request: method, path, status, items, caller oid. Never telemetry content or tokens. */
  log?: (line: string) => void;
}

const MAX_REQUEST_LOG = 1000;
const TRACK_PATH = '/v2.1/track';
/** The older track path: the service refuses an authenticated call to it (see errors.ts `v2WithToken`). */
const V2_TRACK_PATH = '/v2/track';

/** The connection string of a component whose endpoints are `url` (a trailing slash, as Azure writes them). */
export function connectionStringFor(instrumentationKey: string, url: string): string {
  return `InstrumentationKey=${instrumentationKey};IngestionEndpoint=${url}/;LiveEndpoint=${url}/`;
}

/**
 * Starts an HTTPS Application Insights ingestion endpoint with local authentication disabled (Entra tokens
 * only, as `infra/` deploys the component), for the real `@azure/monitor-opentelemetry-exporter` and distro,
 * which need nothing changed but the connection string.
 */
export async function startAppInsights(options: AppInsightsOptions): Promise<AppInsightsStandIn> {
  const instrumentationKey = (options.instrumentationKey ?? randomUUID()).toLowerCase();
  const roles = new RoleAssignments();
  const telemetry = new TelemetryStore(options.maxItems);
  const requestLog: IngestionRequest[] = [];
  const auth = { verifier: options.verifier, tenantId: options.tenantId, roles };

  function remember(entry: IngestionRequest): void {
    requestLog.push(entry);
    if (requestLog.length > MAX_REQUEST_LOG) requestLog.shift();
    const items = entry.itemsReceived === undefined ? '' : ` items ${entry.itemsAccepted}/${entry.itemsReceived}`;
    options.log?.(
      `appinsights ${entry.method} ${entry.path} ${entry.status}${items}${entry.oid ? ` oid=${entry.oid}` : ''}`,
    );
  }

  function send(
    res: ServerResponse,
    status: number,
    body: unknown,
    reason?: string,
    headers: Record<string, string> = {},
  ) {
    const text = body === undefined ? '' : JSON.stringify(body);
    const allHeaders = {
      'x-ms-request-id': randomUUID(),
      ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}),
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    };
    if (reason) res.writeHead(status, reason, allHeaders);
    else res.writeHead(status, allHeaders);
    res.end(text);
  }

  async function ingest(
    req: IncomingMessage,
    path: string,
    query: URLSearchParams,
  ): Promise<IngestionRequest & { body: unknown; headers?: Record<string, string> }> {
    const method = req.method ?? 'GET';
    // The body is read (bounded) before anything else, so that a refusal leaves the connection usable.
    const raw = await readRawBody(req);
    if (method !== 'POST') throw new IngestionError(405, 'Method Not Allowed');
    if (path === V2_TRACK_PATH) throw req.headers.authorization ? v2WithToken() : unauthorized('missing');
    const caller = await authenticate(req.headers.authorization, auth);
    if (LIVE_PATHS.includes(path)) {
      if ((query.get('ikey') ?? '').toLowerCase() !== instrumentationKey)
        throw new IngestionError(400, 'Invalid instrumentation key');
      telemetry.recordLivePing();
      const answer = notSubscribed();
      return { method, path, status: answer.status, oid: caller.oid, body: answer.body, headers: answer.headers };
    }
    const items = parseItems(await decodeBody(raw, req.headers['content-encoding']));
    const result = track(items, instrumentationKey);
    telemetry.recordBatch(result.accepted, items.length);
    return {
      method,
      path,
      status: result.status,
      reason: result.reason,
      itemsReceived: result.body.itemsReceived,
      itemsAccepted: result.body.itemsAccepted,
      oid: caller.oid,
      body: result.body,
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(`https://localhost${(req.url ?? '/').replace(/^\/+/, '/')}`);
    // Clients that join `IngestionEndpoint=…/` and `/v2.1/track` send `//v2.1/track`; the service takes it.
    const path = url.pathname.replace(/\/{2,}/g, '/');
    if (path === CONTROL_PREFIX || path.startsWith(`${CONTROL_PREFIX}/`)) {
      const answer = handleControl(telemetry, method, path, url.searchParams);
      send(res, answer.status, answer.body);
      return;
    }
    if (path !== TRACK_PATH && path !== V2_TRACK_PATH && !LIVE_PATHS.includes(path)) {
      req.resume();
      send(res, 404, undefined, 'Not Found');
      return;
    }
    try {
      const { body, headers, ...entry } = await ingest(req, path, url.searchParams);
      send(res, entry.status, body, entry.reason, headers);
      remember(entry);
    } catch (err) {
      if (!(err instanceof IngestionError)) throw err;
      telemetry.recordRefused();
      send(res, err.status, err.body(), err.reason, err.headers);
      remember({ method, path, status: err.status, reason: err.reason, refusal: err.detail });
    }
  }

  const server = await startHttpsServer(
    options.tls,
    (req, res) => {
      handle(req, res).catch(() => res.destroy());
    },
    options.port ?? 0,
  );

  return {
    url: server.url,
    instrumentationKey,
    connectionString: connectionStringFor(instrumentationKey, server.url),
    controlUrl: `${server.url}${CONTROL_PREFIX}`,
    tenantId: options.tenantId,
    telemetry,
    grant: (principalObjectId, role) => roles.grant(principalObjectId, role),
    revoke: (principalObjectId) => roles.revoke(principalObjectId),
    requests: () => requestLog.map((entry) => ({ ...entry })),
    close: () => server.close(),
  };
}
