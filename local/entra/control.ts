import express, { type Request, type Response, type Router } from 'express';
import * as z from 'zod';
import type { ManagedIdentityEndpoint } from './managed-identity.js';
import type { EntraRegistry } from './registry.js';

/**
 * `/_control/`: a small local-only JSON surface so programs in other processes (tests, CLIs, the demo)
 * can simulate onboarding: consent, grants, secret rotation, and read the registry (never its secrets).
 */

const id = z.string().trim().min(1);
const tenantApp = z.object({ tenantId: id, clientId: id });
const grant = tenantApp
  .extend({ resource: id, roles: z.array(id).optional(), scopes: z.array(id).optional() })
  .refine((g) => (g.roles?.length ?? 0) + (g.scopes?.length ?? 0) > 0, {
    message: 'Give roles (application permissions) or scopes (delegated permissions).',
  });
const secret = z.object({ clientId: id, secret: id });
const tenant = z.object({ tenantId: id, displayName: id });
const app = z.object({
  clientId: id,
  displayName: id,
  homeTenantId: id,
  multiTenant: z.boolean(),
  secrets: z.array(id).optional(),
  certificates: z.array(id).optional(),
  identifierUri: id.optional(),
  appRoles: z.array(id).optional(),
  delegatedScopes: z.array(id).optional(),
  publicClient: z.boolean().optional(),
  /** The manifest's accessTokenAcceptedVersion (1 when left out, as in Entra). */
  accessTokenVersion: z.union([z.literal(1), z.literal(2)]).optional(),
});
const tokenVersion = z.object({ clientId: id, accessTokenVersion: z.union([z.literal(1), z.literal(2)]) });
const managedIdentity = z.object({
  name: id,
  tenantId: id,
  clientId: id.optional(),
  principalId: id.optional(),
  resourceId: id.optional(),
  /** Assign it to the local Function App (its managed-identity endpoint serves it); true when left out. */
  assignToApp: z.boolean().optional(),
});
const user = z.object({ tenantId: id, userPrincipalName: id, password: id, displayName: id, objectId: id.optional() });

class BadRequest extends Error {}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body);
  if (!result.success) {
    const detail = result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
    throw new BadRequest(detail);
  }
  return result.data;
}

/** Wraps a handler: bad input and refused registry operations answer 400 `{error: {code, message}}`. */
function handle(action: (req: Request, res: Response) => void) {
  return (req: Request, res: Response) => {
    try {
      action(req, res);
    } catch (err) {
      const code = err instanceof BadRequest ? 'InvalidRequest' : 'OperationRefused';
      res.status(400).json({ error: { code, message: err instanceof Error ? err.message : String(err) } });
    }
  };
}

export function controlRouter(registry: EntraRegistry, msi?: ManagedIdentityEndpoint): Router {
  const router = express.Router();
  router.use(express.json({ limit: '1mb' }));

  router.post(
    '/tenants',
    handle((req, res) => {
      res.status(201).json(registry.addTenant(parse(tenant, req.body)));
    }),
  );
  router.post(
    '/apps',
    handle((req, res) => {
      const added = registry.addApp(parse(app, req.body));
      res.status(201).json({
        clientId: added.clientId,
        servicePrincipalId: registry.servicePrincipalId(added.homeTenantId, added.clientId),
      });
    }),
  );
  router.post(
    '/apps/access-token-version',
    handle((req, res) => {
      const { clientId, accessTokenVersion } = parse(tokenVersion, req.body);
      registry.setAccessTokenVersion(clientId, accessTokenVersion);
      res.json({ clientId: clientId.toLowerCase(), accessTokenVersion });
    }),
  );
  router.post(
    '/users',
    handle((req, res) => {
      const { password: _password, ...added } = registry.addUser(parse(user, req.body));
      res.status(201).json(added);
    }),
  );
  router.post(
    '/managed-identities',
    handle((req, res) => {
      const { assignToApp, ...options } = parse(managedIdentity, req.body);
      const added = registry.addManagedIdentity(options);
      if (assignToApp !== false) {
        if (!msi) throw new Error('This Entra stand-in serves no managed-identity endpoint to assign the identity to.');
        msi.assign(added.clientId);
      }
      res.status(201).json({ ...added, assignedToApp: assignToApp !== false });
    }),
  );
  router.post(
    '/consent',
    handle((req, res) => {
      const { tenantId, clientId } = parse(tenantApp, req.body);
      const sp = registry.consent(tenantId, clientId);
      res.json({ tenantId: sp.tenantId, clientId: sp.clientId, servicePrincipalId: sp.objectId });
    }),
  );
  router.delete(
    '/consent',
    handle((req, res) => {
      const { tenantId, clientId } = parse(tenantApp, req.body);
      registry.revokeConsent(tenantId, clientId);
      res.status(204).end();
    }),
  );
  router.post(
    '/grants',
    handle((req, res) => {
      const g = parse(grant, req.body);
      if (g.roles?.length) registry.grantAppPermissions(g.tenantId, g.clientId, g.resource, g.roles);
      if (g.scopes?.length) registry.grantDelegatedPermissions(g.tenantId, g.clientId, g.resource, g.scopes);
      res.json({
        tenantId: g.tenantId,
        clientId: g.clientId,
        servicePrincipalId: registry.servicePrincipalId(g.tenantId, g.clientId),
      });
    }),
  );
  router.post(
    '/secrets',
    handle((req, res) => {
      const { clientId, secret: value } = parse(secret, req.body);
      registry.addSecret(clientId, value);
      res.status(201).json({ clientId });
    }),
  );
  router.delete(
    '/secrets',
    handle((req, res) => {
      const { clientId, secret: value } = parse(secret, req.body);
      registry.removeSecret(clientId, value);
      res.status(204).end();
    }),
  );
  router.get('/registry', (_req, res) => {
    res.json(registrySnapshot(registry, msi));
  });
  router.use((_req: Request, res: Response) => {
    res.status(404).json({ error: { code: 'NotFound', message: 'No such control endpoint.' } });
  });
  // Malformed JSON bodies reach here from express.json().
  router.use((err: unknown, _req: Request, res: Response, _next: express.NextFunction) => {
    res.status(400).json({
      error: {
        code: 'InvalidRequest',
        message: `The body is not valid JSON (${err instanceof Error ? err.message : 'unreadable'}).`,
      },
    });
  });
  return router;
}

/** The registry as JSON, without secrets or passwords. */
export function registrySnapshot(registry: EntraRegistry, msi?: ManagedIdentityEndpoint) {
  const assigned = new Set(msi?.assigned().map((m) => m.clientId) ?? []);
  return {
    tenants: registry.tenants(),
    apps: registry.apps().map((a) => ({
      clientId: a.clientId,
      displayName: a.displayName,
      homeTenantId: a.homeTenantId,
      multiTenant: a.multiTenant,
      publicClient: a.publicClient,
      identifierUri: a.identifierUri,
      appRoles: a.appRoles,
      delegatedScopes: a.delegatedScopes,
      accessTokenVersion: a.accessTokenVersion,
      secretCount: a.secrets.size,
      certificates: a.certificates.map((c) => ({ x5t: c.x5t, x5tS256: c.x5tS256, notAfter: c.notAfter.toISOString() })),
    })),
    consents: registry.servicePrincipals().map((sp) => ({
      tenantId: sp.tenantId,
      clientId: sp.clientId,
      servicePrincipalId: sp.objectId,
      appPermissions: Object.fromEntries([...sp.appPermissions].map(([resource, roles]) => [resource, [...roles]])),
      delegatedPermissions: Object.fromEntries(
        [...sp.delegatedPermissions].map(([resource, scopes]) => [resource, [...scopes]]),
      ),
    })),
    users: registry.users().map((u) => ({
      tenantId: u.tenantId,
      userPrincipalName: u.userPrincipalName,
      displayName: u.displayName,
      objectId: u.objectId,
    })),
    // The identities and whether the local app has them; never the IDENTITY_HEADER.
    managedIdentities: registry.managedIdentities().map((m) => ({ ...m, assignedToApp: assigned.has(m.clientId) })),
  };
}
