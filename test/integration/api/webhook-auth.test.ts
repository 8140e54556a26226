import { randomBytes, randomUUID } from 'node:crypto';
import { ClientSecretCredential } from '@azure/identity';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaultSpec } from '../../../local/common/faults.js';
import { RELAY_SUBMIT_ROLE, RELAY_USER_SCOPE, WEBHOOK_HMAC_SECRET_NAME } from '../../../local/demo.js';
import { loadConfig } from '../../../shared/config/config.js';
import {
  EntraTokenValidator,
  SIGNING_KEYS_UNAVAILABLE_MESSAGE,
  SigningKeysUnavailableError,
} from '../../../shared/api/entra-token.js';
import { createServices, type Services } from '../../../shared/services.js';
import { UNVERIFIED_SIGNATURE_MESSAGE } from '../../../shared/api/webhook-auth.js';
import { pushIncidents, webhookPushDeps, type PushResponse } from '../../../shared/api/webhook-push.js';
import { pushSignatureHeader } from '../../../shared/api/webhook-signature.js';
import { deliveredRequest } from '../../support/host-request.js';
import { startTestStandIns, type TestStandIns } from '../../support/stand-ins.js';

/**
 * How POST /api/incidents answers a credential it refuses, and what its log line says, against the
 * Entra ID and Key Vault stand-ins: the challenge a refused token gets, what a caller without the app
 * role is told, why a signature was refused (in the log only), and a Key Vault that cannot give the
 * HMAC key. Every request here is refused before storage is touched.
 */
describe('webhook push: refused credentials, answered and logged', () => {
  let stack: TestStandIns;
  let services: Services;
  const logs: { level: string; line: string }[] = [];
  const logger = {
    info: (line: string) => logs.push({ level: 'info', line }),
    warn: (line: string) => logs.push({ level: 'warn', line }),
    error: (line: string) => logs.push({ level: 'error', line }),
  };

  const world = () => stack.world;
  const fabrikam = () => world().tenants.find((t) => t.context === 'application')!;
  const body = JSON.stringify({ incidentId: 924565, lastUpdateTime: '2020-09-06T14:46:57.29Z' });

  beforeAll(async () => {
    stack = await startTestStandIns();
    services = createServices(loadConfig(stack.appSettings));
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  async function tokenFor(
    clientId: string,
    clientSecret: string,
    scope = world().webhookClient.scope,
  ): Promise<string> {
    const credential = new ClientSecretCredential(world().webhookClient.tenantId, clientId, clientSecret, {
      authorityHost: stack.entra.url,
      disableInstanceDiscovery: true,
    });
    return (await credential.getToken(scope)).token;
  }

  function push(
    headers: Record<string, string>,
    tenantId = fabrikam().tenantId,
    svc = services,
  ): Promise<PushResponse> {
    const request = deliveredRequest({
      method: 'POST',
      url: `http://localhost/api/incidents?tenantId=${tenantId}`,
      headers: { 'content-type': 'application/json', ...headers },
      body: { bytes: Buffer.from(body) },
    });
    return pushIncidents(request, webhookPushDeps(svc, logger));
  }

  const signed = (key: string, tenantId = fabrikam().tenantId) => ({
    'x-relay-signature': pushSignatureHeader(key, { tenantId, method: 'POST', path: '/api/incidents' }, body),
  });
  const errorOf = (response: PushResponse) => String((response.jsonBody as { error?: unknown }).error);

  describe('with an Entra token', () => {
    it('a refused token: 401 with the bearer challenge error="invalid_token" (RFC 6750), so the client gets a new token', async () => {
      const expired = (
        await stack.entra.issuer.issueAccessToken({
          tenantId: world().provider.tenantId,
          audience: world().relayApi.clientId,
          clientId: world().webhookClient.clientId,
          objectId: randomUUID(),
          roles: [RELAY_SUBMIT_ROLE],
          version: 2,
          lifetimeSeconds: -120,
        })
      ).token;
      const otherAudience = await tokenFor(
        world().webhookClient.clientId,
        world().webhookClient.clientSecret,
        'https://api.security.microsoft.com/.default',
      );
      const valid = await tokenFor(world().webhookClient.clientId, world().webhookClient.clientSecret);
      const [header, payload] = valid.split('.');
      const forged = `${header}.${payload}.${randomBytes(256).toString('base64url')}`;
      for (const [token, error] of [
        [expired, /expired/],
        [otherAudience, /another audience/],
        [forged, /not valid for this API/],
      ] as const) {
        const response = await push({ authorization: `Bearer ${token}` });
        expect(response.status).toBe(401);
        expect(errorOf(response)).toMatch(error);
        expect(response.headers?.['WWW-Authenticate']).toBe('Bearer error="invalid_token"');
      }
    });

    it('a valid token without the app role: 403 saying which role to assign and to get a new token', async () => {
      const clientId = randomUUID();
      const clientSecret = randomBytes(24).toString('base64url');
      stack.entra.registry.addApp({
        clientId,
        displayName: 'app without the role',
        homeTenantId: world().provider.tenantId,
        multiTenant: false,
        secrets: [clientSecret],
      });
      const response = await push({ authorization: `Bearer ${await tokenFor(clientId, clientSecret)}` });
      expect(response.status).toBe(403);
      expect(errorOf(response)).toBe(
        `The token of application ${clientId} does not carry the app role '${RELAY_SUBMIT_ROLE}': assign that role of the relay API to the application (admin consent), then get a new token`,
      );
      expect(response.headers?.['WWW-Authenticate']).toBeUndefined();
    });

    it.each([1, 2] as const)(
      "a signed-in user's (delegated) v%i.0 token, even one carrying the app role: 403 saying pushing takes an application's token; the log says it was a user's",
      async (version) => {
        const user = { upn: world().analyst.userPrincipalName, name: world().analyst.displayName };
        // Everything else about them would let them push: the pushing app's client id (its caller entry grants Fabrikam), the role, the allowed tenant.
        const delegated = {
          tenantId: world().webhookClient.tenantId,
          audience: version === 1 ? world().relayApi.identifierUri : world().relayApi.clientId,
          clientId: world().webhookClient.clientId,
          objectId: randomUUID(),
          roles: [RELAY_SUBMIT_ROLE],
          version,
        };
        const tokens = {
          'scp, user claims': await stack.entra.issuer.issueAccessToken({
            ...delegated,
            scopes: [RELAY_USER_SCOPE],
            user,
          }),
          'scp only': await stack.entra.issuer.issueAccessToken({ ...delegated, scopes: [RELAY_USER_SCOPE] }),
          'idtyp user, no scp': await stack.entra.issuer.issueAccessToken({ ...delegated, user }),
        };
        for (const [why, { token }] of Object.entries(tokens)) {
          const response = await push({ authorization: `Bearer ${token}` });
          expect(response.status, why).toBe(403);
          expect(errorOf(response), why).toBe(
            `The token is a signed-in user's (delegated): incidents are pushed by applications. Get a token for the application itself ` +
              `(client credentials or a managed identity) with the app role '${RELAY_SUBMIT_ROLE}'`,
          );
          expect(response.headers?.['WWW-Authenticate'], why).toBeUndefined();
          expect(logs.at(-1), why).toEqual({
            level: 'warn',
            line: expect.stringMatching(
              new RegExp(
                `caller=${world().webhookClient.clientId} .*outcome=403 refused a signed-in user's \\(delegated\\) token`,
              ),
            ),
          });
        }
      },
    );
  });

  describe('when Entra ID cannot give its signing keys', () => {
    /** A push with `token` by an instance that has not fetched Entra's keys yet, while Entra answers requests for its keys with `fault`. */
    async function pushWhileEntraKeysAnswer(fault: FaultSpec, token: string): Promise<PushResponse> {
      stack.faults.add('entra', fault, Infinity, '/discovery/');
      try {
        return await push(
          { authorization: `Bearer ${token}` },
          fabrikam().tenantId,
          createServices(loadConfig(stack.appSettings)),
        );
      } finally {
        stack.faults.clear('entra');
      }
    }

    it.each([
      ['unreachable (connections reset)', { kind: 'outage' }, /no answer/],
      ['answering 503', { kind: 'status', status: 503, retryAfterSeconds: 0 }, /HTTP 503/],
      ['answering 500', { kind: 'status', status: 500 }, /HTTP 500/],
      ['answering 200 with no key set', { kind: 'malformed' }, /not a JSON key set/],
    ] as [string, FaultSpec, RegExp][])(
      "Entra %s: a valid token gets 503 with Retry-After, not 401; the log says Entra's keys could not be fetched",
      async (_why, fault, reason) => {
        const token = await tokenFor(world().webhookClient.clientId, world().webhookClient.clientSecret);
        const response = await pushWhileEntraKeysAnswer(fault, token);
        expect(response.status).toBe(503);
        expect(errorOf(response)).toBe(SIGNING_KEYS_UNAVAILABLE_MESSAGE);
        expect(response.headers?.['Retry-After']).toBe('10');
        expect(response.headers?.['WWW-Authenticate']).toBeUndefined();
        const line = logs.at(-1)!;
        expect(line.level).toBe('error');
        expect(line.line).toContain(
          `Entra ID's signing keys could not be fetched from ${stack.entra.url}/${world().webhookClient.tenantId}/discovery/keys`,
        );
        expect(line.line).toMatch(reason);
      },
    );

    it('a key set not fetched in time is an outage too, not an invalid token', async () => {
      const token = await tokenFor(world().webhookClient.clientId, world().webhookClient.clientSecret);
      const validator = new EntraTokenValidator({
        authorityHost: stack.entra.url,
        audiences: [world().relayApi.identifierUri],
        keysTimeoutMs: 200,
      });
      stack.faults.add('entra', { kind: 'delay', ms: 1_000 }, 1, '/discovery/');
      try {
        const err = await validator.validate(`Bearer ${token}`).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(SigningKeysUnavailableError);
        expect((err as Error).message).toBe(
          `Entra ID's signing keys could not be fetched from ${stack.entra.url}/${world().webhookClient.tenantId}/discovery/keys: no answer within 200 ms`,
        );
      } finally {
        stack.faults.clear('entra');
      }
    });

    it('a token whose key is not in the key set Entra did give: still 401', async () => {
      const valid = await tokenFor(world().webhookClient.clientId, world().webhookClient.clientSecret);
      const foreignKey = (await generateKeyPair('RS256')).privateKey;
      const token = await new SignJWT(decodeJwt(valid))
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'not-entras' })
        .sign(foreignKey);
      const response = await push(
        { authorization: `Bearer ${token}` },
        fabrikam().tenantId,
        createServices(loadConfig(stack.appSettings)),
      );
      expect(response.status).toBe(401);
      expect(response.headers?.['WWW-Authenticate']).toBe('Bearer error="invalid_token"');
      expect(logs.at(-1)).toEqual({
        level: 'warn',
        line: expect.stringContaining('outcome=401 The token signature is not valid'),
      });
    });
  });

  describe('with an HMAC signature', () => {
    it('answers every unverified signature alike; the log says whether no key may sign for the tenant or none matched', async () => {
      const mismatched = await push(signed('not the key'));
      expect(mismatched.status).toBe(401);
      expect(errorOf(mismatched)).toBe(UNVERIFIED_SIGNATURE_MESSAGE);
      expect(logs.at(-1)).toEqual({
        level: 'warn',
        line: expect.stringMatching(
          new RegExp(`outcome=401 the signature does not match any key granted tenant ${fabrikam().tenantId}$`),
        ),
      });

      const keyless = randomUUID();
      const unkeyed = await push(signed(world().webhookHmacKey, keyless), keyless);
      expect(unkeyed.status).toBe(401);
      expect(errorOf(unkeyed)).toBe(UNVERIFIED_SIGNATURE_MESSAGE);
      expect(logs.at(-1)).toEqual({
        level: 'warn',
        line: expect.stringMatching(new RegExp(`outcome=401 no HMAC key may sign for tenant ${keyless}$`)),
      });
    });

    /** A push signed with the demo key, by an instance that has not read the key yet, while Key Vault answers its read of the key with `status`. */
    async function pushWhileKeyVaultAnswers(status: number): Promise<PushResponse> {
      stack.faults.add(
        'keyvault',
        { kind: 'status', status, retryAfterSeconds: 0 },
        Infinity,
        `/secrets/${WEBHOOK_HMAC_SECRET_NAME}`,
      );
      try {
        return await push(
          signed(world().webhookHmacKey),
          fabrikam().tenantId,
          createServices(loadConfig(stack.appSettings)),
        );
      } finally {
        stack.faults.clear('keyvault');
      }
    }

    it('Key Vault throttling the key: 503 with Retry-After asking to retry; the log says what Key Vault answered', async () => {
      const response = await pushWhileKeyVaultAnswers(429);
      expect(response.status).toBe(503);
      expect(errorOf(response)).toBe('The relay could not read its HMAC key just now: retry the request');
      expect(response.headers?.['Retry-After']).toBe('10');
      expect(logs.at(-1)).toEqual({ level: 'error', line: expect.stringContaining(`Key Vault did not answer (429)`) });
    });

    it('Key Vault refusing the relay the key: 500 saying the operator must fix it, without Retry-After; the log says why', async () => {
      const response = await pushWhileKeyVaultAnswers(403);
      expect(response.status).toBe(500);
      expect(errorOf(response)).toBe(
        'The relay could not read its HMAC key: its operator must fix the Key Vault secret',
      );
      expect(response.headers?.['Retry-After']).toBeUndefined();
      expect(logs.at(-1)).toEqual({
        level: 'error',
        line: expect.stringContaining(`may not read Key Vault secret '${WEBHOOK_HMAC_SECRET_NAME}'`),
      });
    });
  });
});
