/**
 * The ingestion endpoint's answers. Every one carries a `TrackResponse` body, the schema the service's
 * swagger declares for its 200/206 and its error statuses (400, 402, 429, 500, 503), so the exporter's
 * deserializer sees the shape it expects; a reason phrase the service is documented to send goes in the
 * status line. azure-rest-api-specs
 * `specification/applicationinsights/data-plane/Monitor.Exporters/preview/v2.1/swagger.json` (`/track`).
 */

/** One rejected item: its index in the batch, the item's own status and the service's message. */
export interface TelemetryErrorDetails {
  index: number;
  statusCode: number;
  message: string;
}

/** `TrackResponse` as the swagger defines it. */
export interface TrackResponse {
  itemsReceived: number;
  itemsAccepted: number;
  errors: TelemetryErrorDetails[];
}

export class IngestionError extends Error {
  constructor(
    readonly status: number,
    /** The HTTP reason phrase (status line); the service writes its diagnosis there. */
    readonly reason: string,
    readonly itemsReceived = 0,
    readonly headers: Record<string, string> = {},
    /** Why, in the stand-in's words, for its request log (never sent: the service says no more than the reason phrase). */
    readonly detail?: string,
  ) {
    super(reason);
    this.name = 'IngestionError';
  }

  body(): TrackResponse {
    return { itemsReceived: this.itemsReceived, itemsAccepted: 0, errors: [] };
  }
}

/**
 * The three answers of Entra-authenticated ingestion, in the service's words (reason phrases quoted by
 * microsoft/ApplicationInsights-dotnet `BASE/src/ServerTelemetryChannel/Implementation/TransmissionPolicy/
 * AuthenticationTransmissionPolicy.cs` and by Microsoft's troubleshooting page for Entra ingestion).
 */
export const unauthorized = (detail: string): IngestionError =>
  new IngestionError(401, 'Unauthorized - please provide the valid authorization token', 0, {}, detail);

export const forbidden = (detail: string): IngestionError =>
  new IngestionError(
    403,
    'Forbidden - provided credentials do not grant the access to ingest the telemetry into the component',
    0,
    {},
    detail,
  );

export const v2WithToken = (): IngestionError =>
  new IngestionError(400, 'Incorrect API was used - v2 API does not support authentication');
