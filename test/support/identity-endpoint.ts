import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { startHttpsServer } from '../../local/common/https-server.js';

/**
 * App Service's identity endpoint as one process sees it. MSAL reads IDENTITY_ENDPOINT and
 * IDENTITY_HEADER once per process (@azure/msal-node `ManagedIdentityClient.identitySource` is static),
 * as an app instance in Azure has one endpoint for its life. Tests that start a new Entra stand-in per
 * scenario in one process therefore share this forwarder, pointed at the current stand-in's endpoint.
 */
let current: { endpoint: string; header: string } | undefined;
let started: Promise<void> | undefined;

export async function useIdentityEndpoint(target: { endpoint: string; header: string }): Promise<void> {
  current = target;
  started ??= (async () => {
    const header = randomBytes(16).toString('hex');
    const server = await startHttpsServer(inject('tls'), (req, res) => {
      const to = current!;
      const answer = (status: number, body: string, contentType = 'application/json') =>
        res.writeHead(status, { 'content-type': contentType }).end(body);
      if (req.headers['x-identity-header'] !== header)
        return answer(403, JSON.stringify({ statusCode: 403, message: 'X-IDENTITY-HEADER is missing or wrong.' }));
      const search = new URL(req.url ?? '/', 'https://localhost').search;
      fetch(`${to.endpoint}${search}`, { method: req.method, headers: { 'X-IDENTITY-HEADER': to.header } })
        .then(async (r) => answer(r.status, await r.text(), r.headers.get('content-type') ?? 'application/json'))
        .catch((err: Error) => answer(502, JSON.stringify({ statusCode: 502, message: err.message })));
    });
    Object.assign(process.env, { IDENTITY_ENDPOINT: `${server.url}/msi/token`, IDENTITY_HEADER: header });
  })();
  await started;
}
