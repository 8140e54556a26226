import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { entraErrors } from './errors.js';
import type { EntraRegistry, ManagedIdentity, ResourceApi } from './registry.js';
import type { TokenIssuer } from './token-issuer.js';

/**
 * The managed-identity endpoint App Service (and so Azure Functions) gives an app: a local token service
 * at `IDENTITY_ENDPOINT`, guarded by the `IDENTITY_HEADER` secret, speaking API version 2019-08-01 — what
 * `ManagedIdentityCredential` uses there (MSAL's `ManagedIdentitySources/AppService`). Served by the Entra
 * stand-in so its tokens carry the same keys and issuer Key Vault and the other stand-ins check.
 *
 * The protocol, as "How to use managed identities for App Service and Azure Functions", "REST endpoint
 * reference" has it (MicrosoftDocs/azure-docs articles/app-service/overview-managed-identity.md,
 * https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference):
 * - `GET {IDENTITY_ENDPOINT}?resource=<uri>&api-version=2019-08-01`, header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`
 *   ("used to help mitigate server-side request forgery (SSRF) attacks. The value is rotated by the platform.");
 * - at most one of `client_id`, `principal_id` (alias `object_id`) and `mi_res_id` names a user-assigned
 *   identity; none means the system-assigned identity;
 * - 200 `{access_token, expires_on, resource, token_type, client_id}`; `expires_on` in epoch seconds,
 *   written as a string in the page's sample (and in answers quoted in Azure/azure-sdk-for-python#11346),
 *   `not_before` likewise in the page's 2020 version; `resource` as the request named it.
 * The page documents no error answers. Those reproduced here:
 * - an identity not assigned to the app (or no system-assigned one): 400
 *   `{"statusCode":400,"message":"Unable to load the proper Managed Identity.","correlationId":"…"}` with an
 *   `X-CORRELATION-ID` header, as the service answered in Azure/azure-sdk-for-net#43691; MSAL reads
 *   `message` and `correlationId` from that shape (BaseManagedIdentitySource.getServerTokenResponse) and
 *   retries neither 400 nor 403 (DefaultManagedIdentityRetryPolicy: 404, 408, 429, 500, 503, 504);
 * - a missing or wrong `X-IDENTITY-HEADER`: 403, checked before anything else. The token service was seen
 *   answering 403 with an empty body (AzureAD/microsoft-authentication-library-for-dotnet#5245, on Container
 *   Apps, which serves the same protocol); an empty body makes MSAL fail reading it ("Cannot read properties
 *   of undefined"), so the stand-in sends the error shape above, saying what is wrong;
 * - a missing `resource`, an unsupported `api-version`, several identity parameters, a repeated parameter:
 *   400 in that shape (the stand-in's wording); a resource Entra does not know: 400 with Entra's AADSTS500011.
 * Tokens: v1.0 app-only tokens (the resources' default version) for the identity: `appid` its client id,
 * `oid`/`sub` its principal id, `xms_mirid` its resource id, `appidacr` 2, no roles. They live a day: "The
 * back-end services for managed identities maintain a cache per resource URI for around 24 hours" (same page),
 * and MSAL refreshes a managed-identity token halfway through when it lives over two hours.
 */

export const MSI_PATH = '/msi/token';
export const MSI_API_VERSION = '2019-08-01';
export const MSI_TOKEN_LIFETIME_SECONDS = 24 * 3600;
const IDENTITY_PARAMETERS = ['client_id', 'principal_id', 'object_id', 'mi_res_id'] as const;

export interface MsiAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string>;
  /** For the log: never the token or the header. */
  summary: string;
}

/** The token service's error answer: `{statusCode, message, correlationId}`, the id also as `X-CORRELATION-ID`. */
function serviceError(status: number, message: string): MsiAnswer {
  const correlationId = randomUUID();
  return {
    status,
    body: { statusCode: status, message, correlationId },
    headers: { 'X-CORRELATION-ID': correlationId },
    summary: message,
  };
}

export const msiErrors = {
  header: () =>
    serviceError(
      403,
      'The request has no valid X-IDENTITY-HEADER: send the value of the IDENTITY_HEADER environment variable in the X-IDENTITY-HEADER header.',
    ),
  method: (method: string) => serviceError(405, `The managed identity endpoint only accepts GET, not ${method}.`),
  apiVersion: (given: string | null) =>
    serviceError(
      400,
      `${given === null ? 'The api-version query parameter is required' : `The api-version '${given}' is not supported`}: use api-version=${MSI_API_VERSION}.`,
    ),
  resource: () =>
    serviceError(
      400,
      "The 'resource' query parameter is required: the Microsoft Entra resource URI to get a token for.",
    ),
  repeated: (name: string) => serviceError(400, `The query parameter '${name}' was given more than once.`),
  severalIdentities: (names: string[]) =>
    serviceError(
      400,
      `Give only one of client_id, principal_id (or object_id) and mi_res_id; the request has ${names.join(', ')}.`,
    ),
  /** Word for word what App Service answers (Azure/azure-sdk-for-net#43691). */
  identityNotFound: () => serviceError(400, 'Unable to load the proper Managed Identity.'),
} as const;

/** The aud of a v1.0 token: the resource as the request named it (trailing slash included), or the API's app id. */
function audienceAsRequested(api: ResourceApi, resource: string): string {
  if (api.accessTokenVersion === 2) return api.appId;
  const requested = resource.trim();
  return requested.replace(/\/+$/, '').toLowerCase() === api.appId ? api.appId : requested;
}

/**
 * The endpoint of one app (the local Function App): the identities assigned to it and its header secret.
 * HTTP-free: the Entra server hands it the method, the query string and the header.
 */
export class ManagedIdentityEndpoint {
  /** `IDENTITY_ENDPOINT`: the full URL of the token service. */
  readonly endpoint: string;
  readonly #registry: EntraRegistry;
  readonly #issuer: TokenIssuer;
  readonly #assigned = new Set<string>();
  #header = newHeader();

  constructor(endpoint: string, registry: EntraRegistry, issuer: TokenIssuer) {
    this.endpoint = endpoint;
    this.#registry = registry;
    this.#issuer = issuer;
  }

  /** `IDENTITY_HEADER`: the secret the app sends back as `X-IDENTITY-HEADER`. */
  get header(): string {
    return this.#header;
  }

  /** The platform rotates the header; the old value is refused from now on. Returns the new one. */
  rotateHeader(): string {
    this.#header = newHeader();
    return this.#header;
  }

  /** Assigns a user-assigned identity to the app (the site's `identity.userAssignedIdentities`). */
  assign(clientId: string): ManagedIdentity {
    const identity = this.#registry.managedIdentity({ clientId });
    if (!identity) throw new Error(`No managed identity has client id ${clientId}.`);
    this.#assigned.add(identity.clientId);
    return identity;
  }

  unassign(clientId: string): void {
    if (!this.#assigned.delete(clientId.toLowerCase()))
      throw new Error(`No managed identity with client id ${clientId} is assigned to the app.`);
  }

  assigned(): ManagedIdentity[] {
    return [...this.#assigned]
      .map((clientId) => this.#registry.managedIdentity({ clientId }))
      .filter((m): m is ManagedIdentity => !!m);
  }

  async handle(method: string, query: URLSearchParams, identityHeader: string | undefined): Promise<MsiAnswer> {
    // The SSRF guard comes first: without the header nothing is said about identities or resources.
    if (!this.#headerMatches(identityHeader)) return msiErrors.header();
    if (method !== 'GET') return msiErrors.method(method);
    for (const name of ['resource', 'api-version', ...IDENTITY_PARAMETERS]) {
      if (query.getAll(name).length > 1) return msiErrors.repeated(name);
    }
    const apiVersion = query.get('api-version');
    if (apiVersion !== MSI_API_VERSION) return msiErrors.apiVersion(apiVersion);
    const resource = query.get('resource') ?? '';
    if (!resource.trim()) return msiErrors.resource();
    const given = IDENTITY_PARAMETERS.filter((name) => query.get(name) !== null);
    if (given.length > 1) return msiErrors.severalIdentities(given);

    const identity = this.#select(given[0], given[0] ? query.get(given[0])! : undefined);
    if (!identity) return msiErrors.identityNotFound();
    const tenant = this.#registry.tenant(identity.tenantId);
    const api = this.#registry.resolveResource(resource, identity.tenantId);
    if (!tenant || !api) {
      const err = entraErrors.resourceNotFound(resource.trim(), tenant?.displayName ?? identity.tenantId);
      return { ...serviceError(400, err.message), summary: `AADSTS${err.code} resource ${resource.trim()}` };
    }
    const audience = audienceAsRequested(api, resource);
    const { token } = await this.#issuer.issueAccessToken({
      tenantId: identity.tenantId,
      audience,
      clientId: identity.clientId,
      objectId: identity.principalId,
      version: api.accessTokenVersion,
      // Managed identity tokens carry appidacr 2: the platform authenticates the identity with a certificate.
      clientAuthentication: 'certificate',
      lifetimeSeconds: MSI_TOKEN_LIFETIME_SECONDS,
      extraClaims: { xms_mirid: identity.resourceId },
    });
    const now = Math.floor(Date.now() / 1000);
    return {
      status: 200,
      body: {
        access_token: token,
        expires_on: String(now + MSI_TOKEN_LIFETIME_SECONDS),
        not_before: String(now),
        resource,
        token_type: 'Bearer',
        client_id: identity.clientId,
      },
      headers: {},
      summary: `client=${identity.clientId} aud=${audience}`,
    };
  }

  /** The assigned identity the request names; none named: the system-assigned identity, which the app does not have. */
  #select(
    parameter: (typeof IDENTITY_PARAMETERS)[number] | undefined,
    value: string | undefined,
  ): ManagedIdentity | undefined {
    if (!parameter || value === undefined) return undefined;
    const identity =
      parameter === 'client_id'
        ? this.#registry.managedIdentity({ clientId: value })
        : parameter === 'mi_res_id'
          ? this.#registry.managedIdentity({ resourceId: value })
          : this.#registry.managedIdentity({ principalId: value });
    return identity && this.#assigned.has(identity.clientId) ? identity : undefined;
  }

  #headerMatches(given: string | undefined): boolean {
    if (!given) return false;
    const expected = Buffer.from(this.#header);
    const actual = Buffer.from(given);
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }
}

function newHeader(): string {
  return randomBytes(24).toString('hex');
}
