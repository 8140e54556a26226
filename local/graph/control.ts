import express, { type NextFunction, type Request, type Response } from 'express';
import * as z from 'zod';
import type { FaultBoard } from '../common/faults.js';
import { huntingSettingsSchema, type HuntingQuota } from '../defender/hunting-quota.js';
import type { Incident as DefenderIncident } from '../defender/types.js';
import { formatTimestamp, parseTimestamp, ticksFromMs } from '../defender/timestamps.js';
import { GRAPH_FAULT_TARGET } from './api.js';
import { generateGraphTenant } from './generator.js';
import { toGraphIncident } from './mapping.js';
import type { CallStats } from './stats.js';
import type { GraphIncidentStore } from './store.js';
import type { GraphThrottle } from './throttle.js';
import { INCIDENT_STATUSES, type GraphIncident } from './types.js';

/**
 * The control surface (`/_control`, local only, no auth): provision tenants, seed them (generated, in Graph's
 * shape, or Defender-shaped incidents mapped as the Defender → Graph mapping does), change incidents as the
 * portal would, set the throttle and the advanced hunting CPU quota, inject faults into this stand-in, read
 * call stats. Generated and Defender-shaped seeds are advanced hunting's data as well; Graph-shaped ones are not
 * (they carry no telemetry to hunt in).
 */
export interface ControlDependencies {
  store: GraphIncidentStore;
  faults: FaultBoard;
  stats: CallStats;
  throttle: GraphThrottle;
  hunting: HuntingQuota;
  now: () => number;
}

class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const timestamp = z
  .string()
  .refine((text) => parseTimestamp(text) !== undefined, 'must be an ISO 8601 timestamp with a zone');

const provisionBody = z.strictObject({ displayName: z.string().min(1).optional() });

const generatedSeed = z.strictObject({
  count: z.number().int().min(1).max(100_000),
  seed: z.union([z.number(), z.string()]),
  startId: z.number().int().positive().optional(),
  since: timestamp.optional(),
  until: timestamp.optional(),
  redirectedShare: z.number().min(0).max(1).optional(),
});

/** Explicit incidents in Graph's shape: fields left out are filled, unknown fields kept. */
const explicitIncident = z.looseObject({
  id: z
    .string()
    .regex(/^\d{1,15}$/)
    .optional(),
  createdDateTime: timestamp.optional(),
  lastUpdateDateTime: timestamp.optional(),
  status: z.enum(INCIDENT_STATUSES).optional(),
  alerts: z.array(z.looseObject({})).optional(),
});
const explicitSeed = z.strictObject({ incidents: z.array(explicitIncident).min(1) });
/** Incidents as the Defender API writes them (e.g. read from the Defender stand-in's control surface). */
const defenderSeed = z.strictObject({
  defenderIncidents: z
    .array(
      z.looseObject({
        incidentId: z.number().int().positive(),
        createdTime: timestamp,
        lastUpdateTime: timestamp,
        incidentName: z.string(),
        status: z.string(),
        severity: z.string(),
      }),
    )
    .min(1),
});

/** Portal-side changes: any incident fields but the id and tenant. */
const incidentChanges = z
  .looseObject({ lastUpdateDateTime: timestamp.optional() })
  .refine((changes) => !('id' in changes) && !('tenantId' in changes), 'id and tenantId cannot be changed');

const faultSpec = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('status'),
    status: z.number().int().min(400).max(599),
    retryAfterSeconds: z.number().int().min(0).optional(),
    retryAfterHeader: z.boolean().optional(),
  }),
  z.strictObject({ kind: z.literal('delay'), ms: z.number().int().min(0).max(600_000) }),
  z.strictObject({ kind: z.literal('malformed') }),
  z.strictObject({ kind: z.literal('outage') }),
]);
const faultBody = z.strictObject({
  spec: faultSpec,
  times: z.number().int().positive().optional(),
  pathContains: z.string().min(1).optional(),
});
const throttleBody = z.strictObject({
  perAppPerTenantPerMinute: z.number().int().min(1).max(1_000_000).optional(),
  perAppPerSecond: z.number().int().min(1).max(1_000_000).optional(),
});

function parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const result = schema.safeParse(body ?? {});
  if (!result.success) {
    const details = result.error.issues
      .map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`)
      .join('; ');
    throw new ControlError(400, 'InvalidInput', `Invalid ${what}: ${details}`);
  }
  return result.data;
}

export function createControlRouter(deps: ControlDependencies): express.Router {
  const router = express.Router();
  router.use(express.json({ limit: '100mb' }));
  const { store } = deps;

  const tenantOf = (req: Request): string => {
    const tenantId = String(req.params.tenantId).toLowerCase();
    if (!store.hasTenant(tenantId))
      throw new ControlError(
        404,
        'TenantNotFound',
        `Tenant ${tenantId} is not provisioned: POST /_control/tenants/${tenantId} first.`,
      );
    return tenantId;
  };
  const missing = (tenantId: string, id: string) =>
    new ControlError(404, 'NotFound', `Incident ${id} was not found in tenant ${tenantId}.`);

  router.get('/tenants', (_req, res) => {
    res.json({ tenants: store.tenants() });
  });

  router.post('/tenants/:tenantId', (req, res) => {
    const { displayName } = parse(provisionBody, req.body, 'tenant');
    res.status(201).json(store.provisionTenant(String(req.params.tenantId).toLowerCase(), displayName));
  });

  router.post('/tenants/:tenantId/incidents', (req, res) => {
    const tenantId = tenantOf(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    let incidents: GraphIncident[];
    let huntingSource: DefenderIncident[] = [];
    if ('incidents' in body) {
      const { incidents: given } = parse(explicitSeed, body, 'incidents');
      let nextId = Math.max(store.nextIncidentId(tenantId), ...given.map((i) => (i.id ? Number(i.id) + 1 : 0)));
      incidents = given.map((incident) =>
        completeIncident(tenantId, incident, incident.id ?? String(nextId++), deps.now()),
      );
    } else if ('defenderIncidents' in body) {
      const { defenderIncidents } = parse(defenderSeed, body, 'Defender incidents');
      huntingSource = defenderIncidents as unknown as DefenderIncident[];
      incidents = huntingSource.map((incident) => toGraphIncident(incident, tenantId));
    } else {
      const options = parse(generatedSeed, body, 'seed request ({count, seed}, {incidents} or {defenderIncidents})');
      ({ incidents, huntingSource } = generateGraphTenant({
        tenantId,
        count: options.count,
        seed: options.seed,
        startId: options.startId ?? store.nextIncidentId(tenantId),
        since: options.since === undefined ? undefined : new Date(options.since),
        until: options.until === undefined ? undefined : new Date(options.until),
        redirectedShare: options.redirectedShare,
      }));
    }
    res.status(201).json({ tenantId, incidentIds: store.seed(tenantId, { incidents, huntingSource }) });
  });

  router.get('/tenants/:tenantId/incidents', (req, res) => {
    res.json({ value: store.list(tenantOf(req)) });
  });

  router.get('/tenants/:tenantId/incidents/:id', (req, res) => {
    const tenantId = tenantOf(req);
    const incident = store.get(tenantId, String(req.params.id));
    if (!incident) throw missing(tenantId, String(req.params.id));
    res.json(incident);
  });

  // As a change in the portal: merges any fields and bumps lastUpdateDateTime unless the change sets it.
  router.patch('/tenants/:tenantId/incidents/:id', (req, res) => {
    const tenantId = tenantOf(req);
    const changes = parse(incidentChanges, req.body, 'incident changes');
    const updated = store.update(tenantId, String(req.params.id), (incident) => Object.assign(incident, changes));
    if (!updated) throw missing(tenantId, String(req.params.id));
    res.json(updated);
  });

  router.delete('/tenants/:tenantId/incidents/:id', (req, res) => {
    const tenantId = tenantOf(req);
    if (!store.delete(tenantId, String(req.params.id))) throw missing(tenantId, String(req.params.id));
    res.status(204).end();
  });

  router.get('/throttle', (_req, res) => {
    res.json(deps.throttle.settings());
  });

  router.patch('/throttle', (req, res) => {
    res.json(deps.throttle.configure(parse(throttleBody, req.body, 'throttle settings')));
  });

  // Also every tenant's hunting quota and settings, as the Defender stand-in's /limits/reset.
  router.post('/throttle/reset', (_req, res) => {
    deps.throttle.reset();
    deps.hunting.reset();
    res.status(204).end();
  });

  // Advanced hunting's CPU quota and timeout per tenant (local/defender/hunting-quota.ts): read the cycle's use;
  // size the quota, mark it spent for this cycle, or make the next queries run long (PATCH); defaults (DELETE).
  router.get('/tenants/:tenantId/hunting', (req, res) => {
    res.json(deps.hunting.state(tenantOf(req)));
  });

  router.patch('/tenants/:tenantId/hunting', (req, res) => {
    const tenantId = tenantOf(req);
    res.json(deps.hunting.configure(tenantId, parse(huntingSettingsSchema, req.body, 'hunting settings')));
  });

  router.delete('/tenants/:tenantId/hunting', (req, res) => {
    deps.hunting.reset(tenantOf(req));
    res.status(204).end();
  });

  router.post('/faults', (req, res) => {
    const { spec, times, pathContains } = parse(faultBody, req.body, 'fault');
    res.status(201).json(deps.faults.add(GRAPH_FAULT_TARGET, spec, times, pathContains));
  });

  router.get('/faults', (_req, res) => {
    res.json({ faults: deps.faults.list().filter((fault) => fault.target === GRAPH_FAULT_TARGET) });
  });

  router.delete('/faults', (_req, res) => {
    deps.faults.clear(GRAPH_FAULT_TARGET);
    res.status(204).end();
  });

  router.get('/stats', (_req, res) => {
    res.json({ clients: deps.stats.snapshot() });
  });

  router.delete('/stats', (_req, res) => {
    deps.stats.reset();
    res.status(204).end();
  });

  router.use((req) => {
    throw new ControlError(404, 'NotFound', `No control endpoint ${req.method} ${req.baseUrl}${req.path}.`);
  });

  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (err instanceof ControlError)
      return void res.status(err.status).json({ error: { code: err.code, message: err.message } });
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return void res.status(status).json({
        error: { code: 'InvalidInput', message: `The request body could not be read: ${(err as Error).message}` },
      });
    }
    res.status(500).json({ error: { code: 'InternalServerError', message: (err as Error)?.message ?? String(err) } });
  });
  return router;
}

/** Fills what an explicit incident leaves out, so the API always answers the full shape. */
function completeIncident(tenantId: string, given: Record<string, unknown>, id: string, now: number): GraphIncident {
  const nowIso = formatTimestamp(ticksFromMs(now));
  const createdDateTime = (given.createdDateTime as string | undefined) ?? nowIso;
  return {
    incidentWebUrl: `https://security.microsoft.com/incidents/${id}?tid=${tenantId}`,
    redirectIncidentId: null,
    displayName: `Incident ${id}`,
    lastUpdateDateTime: createdDateTime,
    assignedTo: null,
    classification: 'unknown',
    determination: 'unknown',
    status: 'active',
    severity: 'medium',
    customTags: [],
    systemTags: [],
    description: null,
    summary: null,
    resolvingComment: null,
    lastModifiedBy: null,
    priorityScore: null,
    comments: [],
    alerts: [],
    ...given,
    createdDateTime,
    id,
    tenantId,
  } as GraphIncident;
}
