import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ClientSecretCredential,
  OnBehalfOfCredential,
  UsernamePasswordCredential,
  type TokenCredential,
} from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { QueueServiceClient } from '@azure/storage-queue';
import { decodeJwt } from 'jose';
import { isTenantCredential, TENANT_CREDENTIAL_TAG_ARGUMENT } from '../shared/auth/credential-fence.js';
import type { StackInfo } from './stack.js';

/**
 * `npm run stack:check`: proves a running local stack works from the outside, using only
 * `.local/stack.json` and the real SDK clients — each demo tenant and context gets a token, reads its
 * secret and calls the Defender API; the documented failures answer as they should.
 */
interface CheckResult {
  check: string;
  ok: boolean;
  detail: string;
}

const DEFENDER_SCOPE = 'https://api.security.microsoft.com/.default';

const { values } = parseArgs({
  options: { stack: { type: 'string' }, 'state-dir': { type: 'string' }, json: { type: 'boolean', default: false } },
});
if (values.stack !== undefined && values['state-dir'] !== undefined)
  fail('--stack and --state-dir do not go together: give one');
const stackPath = resolve(values.stack ?? join(values['state-dir'] ?? '.local', 'stack.json'));
if (!existsSync(stackPath)) {
  fail(
    `No local stack found: ${stackPath} does not exist. Start one with npm start (or npm run start:stack); ` +
      'if it runs with --state-dir <dir>, check it with npm run stack:check -- --state-dir <dir>.',
  );
}
let info: StackInfo;
try {
  info = JSON.parse(readFileSync(stackPath, 'utf8')) as StackInfo;
} catch (err) {
  fail(
    `${stackPath} is not a stack file npm start wrote (${(err as Error).message.split('\n')[0]}): start the stack again with npm start.`,
  );
}

function fail(message: string): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

// The stand-ins' CA must be trusted from process start: re-run this script with it if needed.
if (process.env.NODE_EXTRA_CA_CERTS !== info.caCertPath) {
  const rerun = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: info.caCertPath },
  });
  process.exit(rerun.status ?? 1);
}

const credentialOptions = { authorityHost: info.entra.authorityHost, disableInstanceDiscovery: true };
const results: CheckResult[] = [];

async function check(name: string, run: () => Promise<string>): Promise<void> {
  try {
    results.push({ check: name, ok: true, detail: await run() });
  } catch (err) {
    results.push({ check: name, ok: false, detail: err instanceof Error ? err.message.split('\n')[0]! : String(err) });
  }
}

async function expectFailure(run: () => Promise<unknown>, pattern: RegExp): Promise<string> {
  try {
    await run();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (pattern.test(message)) return `refused as expected (${pattern.source})`;
    throw new Error(`refused, but not with ${pattern.source}: ${message.split('\n')[0]}`);
  }
  throw new Error(`expected a failure matching ${pattern.source}, but it succeeded`);
}

async function defenderGet(credential: TokenCredential, path: string): Promise<Response> {
  const token = await credential.getToken(DEFENDER_SCOPE);
  return fetch(`${info.defender.url}${path}`, { headers: { authorization: `Bearer ${token!.token}` } });
}

/** What a tenant is read through: its API's scope, the permission its token must carry, and a first page. */
const SOURCES = {
  defender: {
    scope: DEFENDER_SCOPE,
    role: 'Incident.Read.All',
    url: () => `${info.defender.url}/api/incidents?$top=100`,
  },
  graph: {
    scope: 'https://graph.microsoft.com/.default',
    role: 'SecurityIncident.ReadWrite.All',
    url: () => `${info.graph.url}/v1.0/security/incidents?$top=50`,
  },
};

for (const tenant of info.tenants) {
  const app = info.demoApps.find((a) => a.clientId === tenant.clientId)!;
  const credential = new ClientSecretCredential(tenant.tenantId, app.clientId, app.clientSecret, credentialOptions);
  const source = SOURCES[tenant.source];
  await check(`${tenant.displayName} (${tenant.context}, ${tenant.source}): token`, async () => {
    const claims = decodeJwt((await credential.getToken(source.scope))!.token);
    if (claims.tid !== tenant.tenantId) throw new Error(`tid is ${String(claims.tid)}, expected ${tenant.tenantId}`);
    const roles = (claims.roles as string[] | undefined) ?? [];
    if (!roles.includes(source.role)) throw new Error(`roles ${JSON.stringify(roles)} lack ${source.role}`);
    return `tid matches, roles ${roles.join(', ')}`;
  });
  await check(`${tenant.displayName} (${tenant.context}, ${tenant.source}): list incidents`, async () => {
    const token = await credential.getToken(source.scope);
    const res = await fetch(source.url(), { headers: { authorization: `Bearer ${token!.token}` } });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    const body = (await res.json()) as { value: unknown[] };
    return `HTTP 200, ${body.value.length} incident(s) on the first page`;
  });
  await check(`${tenant.displayName}: secret from Key Vault`, async () => {
    const appIdentity = new ClientSecretCredential(
      info.appIdentity.tenantId,
      info.appIdentity.clientId,
      info.appIdentity.clientSecret,
      credentialOptions,
    );
    const secrets = new SecretClient(info.keyVault.url, appIdentity, { disableChallengeResourceVerification: true });
    const secret = await secrets.getSecret(tenant.clientSecretName);
    if (secret.value !== app.clientSecret) throw new Error('the secret read does not match the app registration');
    if (!isTenantCredential(secret.properties.tags))
      throw new Error(`the secret is not tagged ${TENANT_CREDENTIAL_TAG_ARGUMENT}: the relay will refuse it`);
    return `${tenant.clientSecretName} read (value not shown), tagged ${TENANT_CREDENTIAL_TAG_ARGUMENT}`;
  });
}

const partner = info.demoApps.find((a) => a.multiTenant)!;
const unconsented = info.tenants.find((t) => !partner.consentedTenants.includes(t.tenantId));
if (unconsented) {
  await check('partner app in a tenant that did not consent', () =>
    expectFailure(
      () =>
        new ClientSecretCredential(
          unconsented.tenantId,
          partner.clientId,
          partner.clientSecret,
          credentialOptions,
        ).getToken(DEFENDER_SCOPE),
      /AADSTS700016/,
    ),
  );
}
await check('wrong client secret', () =>
  expectFailure(
    () =>
      new ClientSecretCredential(partner.homeTenantId, partner.clientId, 'not-the-secret', credentialOptions).getToken(
        DEFENDER_SCOPE,
      ),
    /AADSTS7000215/,
  ),
);

const user = info.users[0];
if (user) {
  await check(`user context (on-behalf-of ${user.userPrincipalName})`, async () => {
    const signIn = new UsernamePasswordCredential(
      user.tenantId,
      user.clientId,
      user.userPrincipalName,
      user.password,
      credentialOptions,
    );
    const userToken = (await signIn.getToken(user.scope))!.token;
    const obo = new OnBehalfOfCredential({
      tenantId: user.tenantId,
      clientId: info.relayApi.clientId,
      clientSecret: info.relayApi.clientSecret,
      userAssertionToken: userToken,
      ...credentialOptions,
    });
    const claims = decodeJwt((await obo.getToken(DEFENDER_SCOPE))!.token);
    const res = await defenderGet(obo, '/api/incidents?$top=10');
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    return `scp "${String(claims.scp)}", HTTP 200`;
  });
}

await check('Defender $top above 100', async () => {
  const tenant = info.tenants[0]!;
  const app = info.demoApps.find((a) => a.clientId === tenant.clientId)!;
  const res = await defenderGet(
    new ClientSecretCredential(tenant.tenantId, app.clientId, app.clientSecret, credentialOptions),
    '/api/incidents?$top=101',
  );
  const body = (await res.json()) as { error?: { code?: string } };
  if (res.status !== 400 || body.error?.code !== 'MaximumBatchSizeExceeded')
    throw new Error(`HTTP ${res.status} ${JSON.stringify(body)}`);
  return 'HTTP 400 MaximumBatchSizeExceeded';
});

await check('storage queues', async () => {
  const queues = QueueServiceClient.fromConnectionString(info.storage.connectionString);
  const names: string[] = [];
  for await (const q of queues.listQueues()) names.push(q.name);
  const missing = [info.queues.pollRequests, info.queues.incidents, info.queues.poison].filter(
    (n) => !names.includes(n),
  );
  if (missing.length) throw new Error(`missing queues: ${missing.join(', ')}`);
  return `${names.length} queue(s): ${names.join(', ')}`;
});

await check('Functions host /api/health', async () => {
  const res = await fetch(`${info.host}/api/health`);
  const body = (await res.json()) as { status: string; checks: { name: string; ok: boolean }[] };
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
  return `${body.status}: ${body.checks.map((c) => `${c.name} ${c.ok ? 'ok' : 'FAILED'}`).join(', ')}`;
});

if (values.json) {
  console.log(JSON.stringify(results));
} else {
  const width = Math.max(...results.map((r) => r.check.length));
  for (const r of results) console.log(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.check.padEnd(width)}  ${r.detail}`);
  console.log(`\n${results.filter((r) => r.ok).length} passed, ${results.filter((r) => !r.ok).length} failed`);
}
process.exit(results.every((r) => r.ok) ? 0 : 1);
