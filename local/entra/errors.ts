import { randomUUID } from 'node:crypto';

/**
 * Token endpoint failures in Entra's own shape: `error` (the OAuth code), `error_description`
 * starting with `AADSTSnnnn:` and ending with the trace/correlation/timestamp lines, `error_codes`.
 * MSAL reads `error`, `error_codes`, `suberror` and the description; callers match on the AADSTS code.
 */
export class EntraError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly code: number,
    message: string,
    readonly suberror?: string,
  ) {
    super(`AADSTS${code}: ${message}`);
    this.name = 'EntraError';
  }
}

export interface EntraErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
  suberror?: string;
}

/** Entra writes timestamps as `2024-05-01 12:34:56Z`. */
function entraTimestamp(date = new Date()): string {
  return date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

export function errorBody(err: EntraError, authorityHost: string, correlationId?: string): EntraErrorBody {
  const traceId = randomUUID();
  const correlation = correlationId ?? randomUUID();
  const timestamp = entraTimestamp();
  return {
    error: err.error,
    error_description: `${err.message}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlation}\r\nTimestamp: ${timestamp}`,
    error_codes: [err.code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlation,
    error_uri: `${authorityHost}/error?code=${err.code}`,
    ...(err.suberror ? { suberror: err.suberror } : {}),
  };
}

/** The failures the stand-in answers, named after what went wrong; messages follow Entra's wording. */
export const entraErrors = {
  tenantNotFound: (tenant: string) =>
    new EntraError(
      400,
      'invalid_request',
      90002,
      `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. ` +
        'Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.',
    ),
  noTenantInRequest: () =>
    new EntraError(
      400,
      'invalid_request',
      50059,
      'No tenant-identifying information found in either the request or implied by any provided credentials.',
    ),
  missingParameter: (name: string) =>
    new EntraError(400, 'invalid_request', 900144, `The request body must contain the following parameter: '${name}'.`),
  malformedRequest: (detail: string) =>
    new EntraError(400, 'invalid_request', 9002313, `Invalid request. Request is malformed or invalid. ${detail}`),
  postOnly: (method: string) =>
    new EntraError(
      400,
      'invalid_request',
      900561,
      `The endpoint only accepts POST, OPTIONS requests. Received a ${method} request.`,
    ),
  unsupportedGrantType: (grant: string) =>
    new EntraError(400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grant}'.`),
  applicationNotFound: (clientId: string, tenantName: string) =>
    new EntraError(
      400,
      'unauthorized_client',
      700016,
      `Application with identifier '${clientId}' was not found in the directory '${tenantName}'. ` +
        'This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. ' +
        'You may have sent your authentication request to the wrong tenant.',
    ),
  clientCredentialRequired: () =>
    new EntraError(
      401,
      'invalid_client',
      7000218,
      "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
  invalidClientSecret: (clientId: string) =>
    new EntraError(
      401,
      'invalid_client',
      7000215,
      `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
    ),
  unsupportedAssertionType: (type: string) =>
    new EntraError(
      400,
      'invalid_request',
      700026,
      `Client assertion type '${type}' is not supported; use 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.`,
    ),
  assertionInvalid: (reason: string) =>
    new EntraError(401, 'invalid_client', 700027, `Client assertion failed signature validation. [Reason - ${reason}]`),
  assertionCertificateUnknown: (thumbprint: string) =>
    new EntraError(
      401,
      'invalid_client',
      700027,
      `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${thumbprint}']`,
    ),
  assertionExpired: () =>
    new EntraError(401, 'invalid_client', 700024, 'Client assertion is not within its valid time range.'),
  assertionWrongAudience: () =>
    new EntraError(401, 'invalid_client', 700023, 'Client assertion audience claim does not match Realm issuer.'),
  assertionWrongClient: () =>
    new EntraError(
      401,
      'invalid_client',
      700021,
      "Client assertion application identifier doesn't match 'client_id' parameter.",
    ),
  invalidScope: (scope: string, detail: string) =>
    new EntraError(
      400,
      'invalid_scope',
      70011,
      `The provided value for the input parameter 'scope' is not valid. The scope '${scope}' is not valid. ${detail}`,
    ),
  clientCredentialsNeedDefault: (scope: string) =>
    new EntraError(
      400,
      'invalid_scope',
      1002012,
      `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
    ),
  resourceNotFound: (resource: string, tenantName: string) =>
    new EntraError(
      400,
      'invalid_resource',
      500011,
      `The resource principal named ${resource} was not found in the tenant named ${tenantName}. ` +
        'This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. ' +
        'You might have sent your authentication request to the wrong tenant.',
    ),
  consentRequired: (clientId: string, appName: string) =>
    new EntraError(
      400,
      'invalid_grant',
      65001,
      `The user or administrator has not consented to use the application with ID '${clientId}' named '${appName}'. ` +
        'Send an interactive authorization request for this user and resource.',
      'consent_required',
    ),
  userNotFound: (tenantName: string) =>
    new EntraError(
      400,
      'invalid_grant',
      50034,
      `The user account {EUII Hidden} does not exist in the ${tenantName} directory. To sign into this application, the account must be added to the directory.`,
    ),
  wrongPassword: () =>
    new EntraError(400, 'invalid_grant', 50126, 'Error validating credentials due to invalid username or password.'),
  oboAssertionInvalid: (reason: string) =>
    new EntraError(400, 'invalid_grant', 50013, `Assertion failed signature validation. [Reason - ${reason}]`),
  oboAssertionExpired: () =>
    new EntraError(
      400,
      'invalid_grant',
      500133,
      'Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token.',
    ),
  oboAudienceMismatch: (audience: string, expected: string) =>
    new EntraError(
      400,
      'invalid_grant',
      50013,
      `Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '${audience}' and the expected audience is '${expected}'.`,
    ),
  oboWrongTenant: () =>
    new EntraError(400, 'invalid_grant', 50013, 'Assertion failed: the assertion was issued by another tenant.'),
  oboNotAUserToken: () =>
    new EntraError(
      400,
      'invalid_grant',
      50013,
      'Assertion is not a user token: the on-behalf-of flow needs a token issued to a user.',
    ),
  /** What an injected `status` fault answers. */
  injected: (status: number) =>
    status >= 500 || status === 429
      ? new EntraError(status, 'temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.')
      : new EntraError(status, 'invalid_request', 90023, 'Invalid request.'),
} as const;
