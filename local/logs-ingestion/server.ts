import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TokenVerifier } from '../common/bearer.js';
import { startHttpsServer } from '../common/https-server.js';
import type { KeyAndCert } from '../common/tls.js';
import { authenticate, RoleAssignments, type Caller, type RuleRole } from './auth.js';
import { CONTROL_PREFIX, handleControl } from './control.js';
import { badRequest, IngestionError, ruleNotFound, streamNotFound } from './errors.js';
import { DOCUMENTED_LIMITS, RateWindow, type RateLimits } from './rate.js';
import { decodeBody, parseRows, readRawBody, shapeRow, type RowProblem } from './rows.js';
import { declareRule, type DataCollectionRule, type StreamColumn } from './rules.js';
import { RowStore } from './store.js';

export { LOGS_INGESTION_AUDIENCE } from './auth.js';
export { RowStore, type RecordedRow, type RecordedProblem, type IngestionSummary } from './store.js';
export type { DataCollectionRule, StreamColumn } from './rules.js';
export type { RateLimits } from './rate.js';

export interface LogsIngestionStandIn {
  /** The data collection endpoint's logs ingestion URL, `https://localhost:PORT` (what `LogsIngestionClient` takes). */
  url: string;
  /** `${url}/_control`: rules, rows, problems, summary (see control.ts). */
  controlUrl: string;
  /** The rules' tenant: only tokens its directory issued are accepted. */
  tenantId: string;
  store: RowStore;
  /** Declares a data collection rule (as deploying one would; an invalid declaration throws). */
  addRule(rule: {
    name: string;
    immutableId?: string;
    streamDeclarations: Record<string, { columns: readonly StreamColumn[] }>;
  }): DataCollectionRule;
  rules(): DataCollectionRule[];
  /** Assigns a role on a rule to a principal, identified as tokens identify it (`oid`). */
  grant(principalObjectId: string, immutableId: string, role?: RuleRole): void;
  revoke(principalObjectId: string, immutableId?: string): void;
  /** The per-rule limits in force (the documented ones unless a test lowers them). */
  setLimits(limits: Partial<RateLimits>): void;
  /** The latest requests with their answers (oldest first). */
  requests(): IngestionRequest[];
  close(): Promise<void>;
}

export interface IngestionRequest {
  method: string;
  path: string;
  status: number;
  code?: string;
  /** Why a request was refused, in the stand-in's words (`wrong_audience`, `no role for oid …`). */
  refusal?: string;
  rowsReceived?: number;
  rowsStored?: number;
  oid?: string;
  contentEncoding?: string;
}

export interface LogsIngestionOptions {
  tls: KeyAndCert;
  verifier: TokenVerifier;
  tenantId: string;
  port?: number;
  limits?: Partial<RateLimits>;
  /** Most rows (and problems) kept; counts are kept apart and never dropped. */
  maxRows?: number;
  /** One line per request: method, path, status, rows, caller oid. Never row content or tokens. */
  log?: (line: string) => void;
}

/** The API versions the service takes: the stable one the SDK sends and the preview the docs first showed. */
const API_VERSIONS = ['2023-01-01', '2021-11-01-preview'];
const UPLOAD_PATH = /^\/dataCollectionRules\/([^/]+)\/streams\/([^/]+)\/?$/;
const MAX_REQUEST_LOG = 1000;

/**
 * Starts an HTTPS Logs Ingestion API (a data collection endpoint) for the real `LogsIngestionClient`
 * (@azure/monitor-ingestion), which needs nothing changed but the endpoint: `POST
 * /dataCollectionRules/{ruleId}/streams/{stream}?api-version=2023-01-01` with a gzip JSON array, answered 204.
 */
export async function startLogsIngestion(options: LogsIngestionOptions): Promise<LogsIngestionStandIn> {
  const rules = new Map<string, DataCollectionRule>();
  const roles = new RoleAssignments();
  const rate = new RateWindow({ ...DOCUMENTED_LIMITS, ...options.limits });
  const store = new RowStore(options.maxRows);
  const requestLog: IngestionRequest[] = [];

  function remember(entry: IngestionRequest): void {
    requestLog.push(entry);
    if (requestLog.length > MAX_REQUEST_LOG) requestLog.shift();
    const rows = entry.rowsReceived === undefined ? '' : ` rows ${entry.rowsStored}/${entry.rowsReceived}`;
    options.log?.(
      `logs-ingestion ${entry.method} ${entry.path} ${entry.status}${entry.code ? ` ${entry.code}` : ''}${rows}${entry.oid ? ` oid=${entry.oid}` : ''}`,
    );
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, {
      'x-ms-request-id': randomUUID(),
      ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}),
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
  }

  async function upload(
    req: IncomingMessage,
    url: URL,
    match: RegExpExecArray,
  ): Promise<{ caller: Caller; received: number; stored: number }> {
    // The body is read (bounded) before anything else, so that a refusal leaves the connection usable.
    const raw = await readRawBody(req);
    if (req.method !== 'POST')
      throw new IngestionError(405, 'MethodNotAllowed', `The method ${req.method} is not allowed.`);
    const caller = await authenticate(req.headers.authorization, options);
    const apiVersion = url.searchParams.get('api-version');
    if (!apiVersion || !API_VERSIONS.includes(apiVersion))
      throw badRequest(
        'UnsupportedApiVersion',
        `The api-version '${apiVersion ?? ''}' is not supported; use 2023-01-01.`,
      );
    const [immutableId, stream] = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)];
    const rule = rules.get(immutableId);
    if (!rule) throw ruleNotFound(immutableId);
    roles.authorize(caller, immutableId);
    const columns = rule.streams.get(stream);
    if (!columns) throw streamNotFound(immutableId, stream);
    rate.admit(immutableId, raw.length);
    const parsed = parseRows(await decodeBody(raw, req.headers['content-encoding']));
    const problems: RowProblem[] = [...parsed.problems];
    const stored = parsed.rows.map((row, index) => {
      const shaped = shapeRow(row, columns, index);
      problems.push(...shaped.problems);
      return shaped.stored;
    });
    // Items of the array, objects or not (an array item that is no object is dropped, see rows.ts).
    const received = parsed.rows.length + parsed.problems.filter((p) => p.kind === 'not-an-object').length;
    store.recordCall(immutableId, stream, caller.oid, received, stored, problems);
    return { caller, received, stored: stored.length };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(`https://localhost${(req.url ?? '/').replace(/^\/+/, '/')}`);
    const path = url.pathname;
    if (path === CONTROL_PREFIX || path.startsWith(`${CONTROL_PREFIX}/`)) {
      req.resume();
      const answer = handleControl(store, () => [...rules.values()], method, path, url.searchParams);
      send(res, answer.status, answer.body);
      return;
    }
    const match = UPLOAD_PATH.exec(path);
    const contentEncoding = req.headers['content-encoding'];
    if (!match) {
      req.resume();
      send(res, 404, new IngestionError(404, 'NotFound', `No route ${method} ${path}.`).body());
      remember({ method, path, status: 404, code: 'NotFound', refusal: 'unknown path' });
      return;
    }
    try {
      const { caller, received, stored } = await upload(req, url, match);
      send(res, 204, undefined);
      remember({
        method,
        path,
        status: 204,
        rowsReceived: received,
        rowsStored: stored,
        oid: caller.oid,
        contentEncoding,
      });
    } catch (err) {
      if (!(err instanceof IngestionError)) {
        send(res, 500, new IngestionError(500, 'InternalServerError', 'An unexpected error occurred.').body());
        remember({ method, path, status: 500, refusal: err instanceof Error ? err.message : String(err) });
        return;
      }
      store.recordRefused();
      send(res, err.status, err.body(), { 'x-ms-error-code': err.code, ...err.headers });
      remember({
        method,
        path,
        status: err.status,
        code: err.code,
        refusal: err.detail ?? err.message,
        contentEncoding,
      });
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
    controlUrl: `${server.url}${CONTROL_PREFIX}`,
    tenantId: options.tenantId,
    store,
    addRule(input) {
      const rule = declareRule(input);
      if (rules.has(rule.immutableId)) throw new Error(`A rule with immutable id ${rule.immutableId} exists already`);
      rules.set(rule.immutableId, rule);
      return rule;
    },
    rules: () => [...rules.values()],
    grant: (principalObjectId, immutableId, role) => roles.grant(principalObjectId, immutableId, role),
    revoke: (principalObjectId, immutableId) => roles.revoke(principalObjectId, immutableId),
    setLimits(limits) {
      rate.limits = { ...rate.limits, ...limits };
      rate.reset();
    },
    requests: () => requestLog.map((entry) => ({ ...entry })),
    close: () => server.close(),
  };
}
