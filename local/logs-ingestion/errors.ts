/**
 * The Logs Ingestion API's answers. Every refusal carries the body the service's swagger declares for its
 * errors, `{ "error": { "code", "message" } }` with the code repeated in `x-ms-error-code`
 * (azure-rest-api-specs `specification/monitor/data-plane/ingestion/stable/2023-01-01/DataCollectionRules.json`,
 * `Azure.Core.Foundations.ErrorResponse`); the SDK reads `error.code` and `error.message` into its RestError
 * (@azure-rest/core-client `createRestError`).
 */
export class IngestionError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Why, in the stand-in's words, for its request log (never sent). */
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'IngestionError';
  }

  body(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/**
 * 403 as the service words it when the caller holds no role on the rule: "The authentication token provided
 * does not have access to ingest data for the data collection rule with immutable Id '…'" with the code
 * `OperationFailed` (Azure SDK troubleshooting guides for the ingestion client, e.g. azure-sdk-for-js
 * `sdk/monitor/monitor-ingestion/TROUBLESHOOTING.md`, azure-sdk-for-java's, which quotes the whole body).
 */
export const noAccess = (immutableId: string, caller: { tid: string; oid: string }): IngestionError =>
  new IngestionError(
    403,
    'OperationFailed',
    `The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '${immutableId}' ` +
      `PipelineAccessResult: AccessGranted: False, IsRbacPresent: False, IsDcrDceBindingValid: , DcrArmId: ${immutableId}, ` +
      `Message: Required authorization action was not found for tenantId ${caller.tid} objectId ${caller.oid} on resourceId ${immutableId}.`,
    {},
    `no role for oid ${caller.oid}`,
  );

/**
 * 404 for an unknown rule: "Data collection rule with immutable Id 'fake-id' not found." (azure-sdk-for-js
 * `sdk/monitor/monitor-ingestion/test/public/logsIngestionClient.spec.ts` asserts this message from the live
 * service), code `NotFound` (users' logs of the service quote `{"error":{"code":"NotFound","message":"Data
 * collection rule with immutable Id '…' not found."}}`).
 */
export const ruleNotFound = (immutableId: string): IngestionError =>
  new IngestionError(404, 'NotFound', `Data collection rule with immutable Id '${immutableId}' not found.`);

/** 404 for a stream the rule does not declare: status and code as for a rule; the wording is the stand-in's. */
export const streamNotFound = (immutableId: string, stream: string): IngestionError =>
  new IngestionError(
    404,
    'NotFound',
    `Stream '${stream}' is not declared in data collection rule with immutable Id '${immutableId}'.`,
  );

/** 401: the status an invalid token gets; the code and wording are the stand-in's (no source quotes them). */
export const unauthorized = (detail: string): IngestionError =>
  new IngestionError(
    401,
    'InvalidToken',
    'The authentication token is missing, invalid or expired, or was not issued for https://monitor.azure.com.',
    {},
    detail,
  );

/**
 * 413: "The message is too large. The maximum message size is currently 1 MB per call." (MicrosoftDocs
 * azure-monitor-docs `articles/azure-monitor/logs/tutorial-logs-ingestion-code.md`, "Troubleshooting"); the
 * code as third parties quote it.
 */
export const tooLarge = (what: string): IngestionError =>
  new IngestionError(
    413,
    'RequestEntityTooLarge',
    `The request body is too large (${what}). The maximum size is 1 MB per call, compressed and uncompressed.`,
    { connection: 'close' },
  );

/** 429 with Retry-After, as the limits table says to honour it; code and wording are the stand-in's. */
export const throttled = (what: string, retryAfterSeconds: number): IngestionError =>
  new IngestionError(
    429,
    'TooManyRequests',
    `The data collection rule's limit of ${what} per minute is exceeded. Retry after ${retryAfterSeconds} seconds.`,
    { 'retry-after': String(retryAfterSeconds) },
  );

export const badRequest = (code: string, message: string): IngestionError => new IngestionError(400, code, message);
