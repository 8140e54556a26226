import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createTokenVerifier, type TokenVerifier } from '../common/bearer.js';
import type { FaultBoard } from '../common/faults.js';
import { startHttpsServer } from '../common/https-server.js';
import type { KeyAndCert } from '../common/tls.js';
import { consentPage } from './consent-page.js';
import { controlRouter } from './control.js';
import { EntraError, entraErrors, errorBody } from './errors.js';
import { ManagedIdentityEndpoint, MSI_PATH } from './managed-identity.js';
import { openIdConfiguration, openIdConfigurationV1 } from './metadata.js';
import { EntraRegistry } from './registry.js';
import { handleTokenRequest, TENANT_ALIASES, type TokenParams } from './token-endpoint.js';
import { createTokenIssuer, type TokenIssuer } from './token-issuer.js';

export interface EntraStandIn {
  /** The authority host, e.g. https://localhost:PORT (give it to credentials as `authorityHost`). */
  url: string;
  issuer: TokenIssuer;
  /** Verifies bearer tokens this stand-in issued (for the other stand-ins and the relay's API). */
  verifier: TokenVerifier;
  registry: EntraRegistry;
  /**
   * App Service's managed-identity endpoint for the local Function App (`IDENTITY_ENDPOINT` = `msi.endpoint`,
   * `IDENTITY_HEADER` = `msi.header`): the identities assigned to it get tokens there, as in Azure.
   */
  msi: ManagedIdentityEndpoint;
  close(): Promise<void>;
}

export interface StartEntraOptions {
  tls: KeyAndCert;
  faults?: FaultBoard;
  port?: number;
  log?: (line: string) => void;
}

/**
 * The Entra ID (Microsoft identity platform v2) stand-in: OIDC metadata, JWKS and the token endpoint
 * at the paths MSAL uses, so the real `@azure/identity` credentials work against it given only
 * `authorityHost` and `disableInstanceDiscovery: true`.
 */
export async function startEntra(options: StartEntraOptions): Promise<EntraStandIn> {
  const registry = new EntraRegistry();
  const app = express();
  app.disable('x-powered-by');
  // The URL (and so the issuer) is known only once listening: the routes are added right after, before anyone has it.
  const running = await startHttpsServer(options.tls, app, options.port ?? 0);
  const url = running.url;
  const issuer = await createTokenIssuer(url);
  const log = options.log ?? (() => {});
  const msi = new ManagedIdentityEndpoint(`${url}${MSI_PATH}`, registry, issuer);

  const sendError = (req: Request, res: Response, err: EntraError) => {
    log(`entra: ${req.method} ${req.path} → ${err.status} ${err.error} AADSTS${err.code}`);
    res.status(err.status).json(errorBody(err, url, req.get('client-request-id') ?? undefined));
  };

  app.use('/_control', controlRouter(registry, msi));

  app.use((req, res, next) => {
    res.set('x-ms-request-id', randomUUID());
    const clientRequestId = req.get('client-request-id');
    if (clientRequestId) res.set('client-request-id', clientRequestId);
    res.set('Cache-Control', 'no-store, no-cache');
    const fault = options.faults?.take('entra', req.path);
    if (!fault) return next();
    log(`entra: fault ${fault.kind} on ${req.method} ${req.path}`);
    switch (fault.kind) {
      case 'outage':
        req.socket.destroy();
        return;
      case 'delay':
        sleep(fault.ms).then(() => next(), next);
        return;
      case 'malformed':
        res.status(200).type('application/json').send('<html><body>Service Unavailable</body></html>');
        return;
      case 'status':
        if (fault.retryAfterSeconds !== undefined) res.set('Retry-After', String(fault.retryAfterSeconds));
        sendError(req, res, entraErrors.injected(fault.status));
        return;
    }
  });

  /** A tenant id the stand-in knows, or an alias (common/organizations) where the route accepts one. */
  const knownTenant = (segment: string): { tenantId?: string } | undefined => {
    if (TENANT_ALIASES.has(segment.toLowerCase())) return {};
    const tenant = registry.tenant(segment);
    return tenant ? { tenantId: tenant.tenantId } : undefined;
  };
  const tenantNotFoundForDiscovery = (segment: string) => {
    const err = entraErrors.tenantNotFound(segment);
    return new EntraError(400, 'invalid_tenant', err.code, err.message.replace(/^AADSTS\d+: /, ''));
  };

  app.get('/:tenant/v2.0/.well-known/openid-configuration', (req, res) => {
    const tenant = knownTenant(req.params.tenant);
    if (!tenant) return sendError(req, res, tenantNotFoundForDiscovery(req.params.tenant));
    res.json(openIdConfiguration(url, req.params.tenant, tenant.tenantId));
  });

  // v1.0 metadata: what a resource validating v1.0 access tokens reads (its issuer is sts.windows.net).
  app.get('/:tenant/.well-known/openid-configuration', (req, res) => {
    const tenant = knownTenant(req.params.tenant);
    if (!tenant) return sendError(req, res, tenantNotFoundForDiscovery(req.params.tenant));
    res.json(openIdConfigurationV1(url, req.params.tenant, tenant.tenantId));
  });

  // The v2.0 and v1.0 key sets (Entra publishes both); the stand-in signs tokens of both versions with one key.
  app.get(['/:tenant/discovery/v2.0/keys', '/:tenant/discovery/keys'], (req, res) => {
    const segment = String(req.params.tenant);
    if (!knownTenant(segment)) return sendError(req, res, tenantNotFoundForDiscovery(segment));
    res.json(issuer.jwks());
  });

  app.post('/:tenant/oauth2/v2.0/token', express.urlencoded({ extended: false, limit: '200kb' }), async (req, res) => {
    const params = readForm(req.body);
    const correlationId =
      req.get('client-request-id') ?? (typeof params === 'object' ? params['client-request-id'] : undefined);
    try {
      if (typeof params === 'string') throw entraErrors.malformedRequest(params);
      const { body, summary } = await handleTokenRequest({ registry, issuer, url: url }, req.params.tenant, params);
      const permissions = summary.roles
        ? `roles=[${summary.roles.join(',')}]`
        : `scp=[${(summary.scopes ?? []).join(',')}]`;
      log(
        `entra: issued ${summary.grant} token tid=${summary.tenantId} client=${summary.clientId} aud=${summary.audience} ${permissions}` +
          (summary.user ? ` user=${summary.user}` : ''),
      );
      res.set('Pragma', 'no-cache').json(body);
    } catch (err) {
      if (!(err instanceof EntraError)) throw err;
      log(`entra: refused token request → ${err.status} ${err.error} AADSTS${err.code}`);
      res.status(err.status).json(errorBody(err, url, correlationId));
    }
  });
  app.all('/:tenant/oauth2/v2.0/token', (req, res) => sendError(req, res, entraErrors.postOnly(req.method)));

  // App Service's managed-identity token service (see managed-identity.ts); any method, so a wrong one gets its answer.
  app.all(MSI_PATH, async (req, res) => {
    const query = new URL(req.originalUrl, url).searchParams;
    const answer = await msi.handle(req.method, query, req.get('x-identity-header'));
    log(`entra: msi ${req.method} ${req.path} ${answer.status} ${answer.summary}`);
    res.status(answer.status).set(answer.headers).json(answer.body);
  });

  // The partner admin-consent link (v1 `/oauth2/authorize` as the docs write it, and the v2 form).
  app.get(['/:tenant/oauth2/authorize', '/:tenant/oauth2/v2.0/authorize'], (req, res) => {
    const page = consentPage(registry, String(req.params.tenant), req.query);
    res.status(page.status).type('html').send(page.html);
  });

  app.use((req, res) => {
    res.status(404).type('text/plain').send(`The Entra stand-in has no endpoint ${req.method} ${req.path}.`);
  });

  // Body-parser failures (bad encoding, oversized body) are the client's fault: answer in Entra's shape, never 500.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = typeof err === 'object' && err && 'status' in err ? Number(err.status) : 500;
    if (status >= 400 && status < 500)
      return sendError(req, res, entraErrors.malformedRequest('The request body could not be read.'));
    log(`entra: internal error on ${req.method} ${req.path}: ${err instanceof Error ? err.message : String(err)}`);
    res.status(500).json(errorBody(new EntraError(500, 'server_error', 90033, 'An internal error occurred.'), url));
  });

  return {
    url: running.url,
    issuer,
    verifier: createTokenVerifier({ jwks: issuer.jwks, issuerFor: issuer.issuerFor }),
    registry,
    msi,
    close: running.close,
  };
}

/** The form as single-valued parameters, or why it cannot be read (a repeated parameter is ambiguous). */
function readForm(body: unknown): TokenParams | string {
  // Express leaves the body undefined when the content type is not form-encoded: no parameters at all.
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object') return 'The request body is not form-encoded.';
  const params: TokenParams = {};
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (typeof value !== 'string') return `The parameter '${name}' was given more than once.`;
    params[name] = value;
  }
  return params;
}
