import express, { type NextFunction, type Request, type Response } from 'express';
import * as z from 'zod';
import type { FaultBoard } from '../common/faults.js';
import { generateIncidents } from './generator.js';
import { huntingSettingsSchema, type HuntingQuota } from './hunting-quota.js';
import type { RateLimiter } from './rate-limiter.js';
import type { CallStats } from './stats.js';
import type { IncidentStore } from './store.js';
import { formatTimestamp, parseTimestamp, ticksFromMs } from './timestamps.js';
import type { Incident } from './types.js';

/**
 * The control surface (`/_control`, local only, no auth): provision tenants, seed and change their
 * incidents as activity in the portal would, inject faults into any stand-in, read call stats.
 */
export interface ControlDependencies {
  store: IncidentStore;
  faults: FaultBoard;
  stats: CallStats;
  limiters: RateLimiter[];
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

/** Explicit incidents (e.g. payloads copied from Microsoft's docs): unknown fields are kept. */
const explicitIncident = z.looseObject({
  incidentId: z.number().int().positive().optional(),
  createdTime: timestamp.optional(),
  lastUpdateTime: timestamp.optional(),
  status: z.enum(['Active', 'InProgress', 'Resolved', 'Redirected']).optional(),
  alerts: z.array(z.looseObject({})).optional(),
});
const explicitSeed = z.strictObject({ incidents: z.array(explicitIncident).min(1) });

/** Portal-side changes: any incident fields except the id. */
const incidentChanges = z
  .looseObject({ lastUpdateTime: timestamp.optional() })
  .refine((changes) => !('incidentId' in changes), 'incidentId cannot be changed');

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
const faultTarget = z.enum(['defender', 'entra', 'keyvault']);
const pagingChurn = z.strictObject({
  perPage: z.number().int().min(1).max(100),
  pages: z.number().int().min(1).max(1000),
});
const faultBody = z.strictObject({
  target: faultTarget,
  spec: faultSpec,
  times: z.number().int().positive().optional(),
  pathContains: z.string().min(1).optional(),
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

  const requireTenant = (tenantId: string) => {
    if (!store.hasTenant(tenantId))
      throw new ControlError(
        404,
        'TenantNotFound',
        `Tenant ${tenantId} is not provisioned: POST /_control/tenants/${tenantId} first.`,
      );
  };
  const incidentIdOf = (req: Request): number => {
    const text = String(req.params.id);
    if (!/^\d{1,15}$/.test(text))
      throw new ControlError(400, 'InvalidInput', `The incident id must be an integer; got '${text}'.`);
    return Number(text);
  };

  router.get('/tenants', (_req, res) => {
    res.json({ tenants: store.tenants() });
  });

  router.post('/tenants/:tenantId', (req, res) => {
    const { displayName } = parse(provisionBody, req.body, 'tenant');
    res.status(201).json(store.provisionTenant(String(req.params.tenantId), displayName));
  });

  router.post('/tenants/:tenantId/incidents', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    const body = (req.body ?? {}) as Record<string, unknown>;
    let incidents: Incident[];
    if ('incidents' in body) {
      const { incidents: given } = parse(explicitSeed, body, 'incidents');
      // Ids left out continue after the stored ones and after any id given in this batch.
      let nextId = Math.max(store.nextIncidentId(tenantId), ...given.map((incident) => (incident.incidentId ?? 0) + 1));
      incidents = given.map((incident) =>
        completeIncident(tenantId, incident, incident.incidentId ?? nextId++, deps.now()),
      );
    } else {
      const options = parse(generatedSeed, body, 'seed request (either {count, seed} or {incidents})');
      incidents = generateIncidents({
        tenantId,
        count: options.count,
        seed: options.seed,
        startId: options.startId ?? store.nextIncidentId(tenantId),
        since: options.since === undefined ? undefined : new Date(options.since),
        until: options.until === undefined ? undefined : new Date(options.until),
        redirectedShare: options.redirectedShare,
      });
    }
    res.status(201).json({ tenantId, incidentIds: store.upsert(tenantId, incidents) });
  });

  router.get('/tenants/:tenantId/incidents', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    res.json({ value: store.list(tenantId) });
  });

  router.get('/tenants/:tenantId/incidents/:id', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    const incident = store.get(tenantId, incidentIdOf(req));
    if (!incident)
      throw new ControlError(404, 'NotFound', `Incident ${req.params.id} was not found in tenant ${tenantId}.`);
    res.json(incident);
  });

  router.patch('/tenants/:tenantId/incidents/:id', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    const changes = parse(incidentChanges, req.body, 'incident changes');
    const updated = store.update(tenantId, incidentIdOf(req), (incident) => Object.assign(incident, changes));
    if (!updated)
      throw new ControlError(404, 'NotFound', `Incident ${req.params.id} was not found in tenant ${tenantId}.`);
    res.json(updated);
  });

  router.delete('/tenants/:tenantId/incidents/:id', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    if (!store.delete(tenantId, incidentIdOf(req)))
      throw new ControlError(404, 'NotFound', `Incident ${req.params.id} was not found in tenant ${tenantId}.`);
    res.status(204).end();
  });

  // Incidents that change while a client pages: after each of the next `pages` list pages, `perPage`
  // incidents the listing has not reached yet change (and move to the top). DELETE stops it.
  router.post('/tenants/:tenantId/paging-churn', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    const churn = parse(pagingChurn, req.body, 'paging churn');
    store.setPagingChurn(tenantId, churn);
    res.status(201).json({ tenantId, ...churn });
  });

  router.delete('/tenants/:tenantId/paging-churn', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    store.setPagingChurn(tenantId, undefined);
    res.status(204).end();
  });

  // Advanced hunting's CPU quota and timeout per tenant (hunting-quota.ts): read the cycle's use; size the
  // quota, mark it spent for this cycle, or make the next queries run long (PATCH); back to defaults (DELETE).
  router.get('/tenants/:tenantId/hunting', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    res.json(deps.hunting.state(tenantId));
  });

  router.patch('/tenants/:tenantId/hunting', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    res.json(deps.hunting.configure(tenantId, parse(huntingSettingsSchema, req.body, 'hunting settings')));
  });

  router.delete('/tenants/:tenantId/hunting', (req, res) => {
    const tenantId = String(req.params.tenantId);
    requireTenant(tenantId);
    deps.hunting.reset(tenantId);
    res.status(204).end();
  });

  router.post('/faults', (req, res) => {
    const { target, spec, times, pathContains } = parse(faultBody, req.body, 'fault');
    res.status(201).json(deps.faults.add(target, spec, times, pathContains));
  });

  router.get('/faults', (_req, res) => {
    res.json({ faults: deps.faults.list() });
  });

  router.delete('/faults', (req, res) => {
    const target = req.query.target === undefined ? undefined : parse(faultTarget, req.query.target, 'target');
    deps.faults.clear(target);
    res.status(204).end();
  });

  router.get('/stats', (_req, res) => {
    res.json({ clients: deps.stats.snapshot() });
  });

  router.delete('/stats', (_req, res) => {
    deps.stats.reset();
    res.status(204).end();
  });

  router.post('/limits/reset', (_req, res) => {
    for (const limiter of deps.limiters) limiter.reset();
    deps.hunting.reset();
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
function completeIncident(tenantId: string, given: Record<string, unknown>, incidentId: number, now: number): Incident {
  const nowIso = formatTimestamp(ticksFromMs(now));
  const createdTime = (given.createdTime as string | undefined) ?? nowIso;
  return {
    incidentUri: `https://security.microsoft.com/incidents/${incidentId}?tid=${tenantId}`,
    redirectIncidentId: null,
    incidentName: `Incident ${incidentId}`,
    lastUpdateTime: createdTime,
    assignedTo: null,
    classification: 'Unknown',
    determination: 'NotAvailable',
    status: 'Active',
    severity: 'Medium',
    tags: [],
    comments: [],
    alerts: [],
    ...given,
    createdTime,
    incidentId,
  } as Incident;
}
