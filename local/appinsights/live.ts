/**
 * Live Metrics (QuickPulse) at the connection string's `LiveEndpoint`, so that the distro's pings stay on
 * this machine (without `LiveEndpoint` it pings `https://rt.services.visualstudio.com`). The distro pings
 * `POST {LiveEndpoint}/QuickPulseService.svc/ping?api-version=…&ikey=…` every 5 s, and posts to `…/post`
 * only while a viewer is subscribed (`x-ms-qps-subscribed: true`); here nobody ever watches, so every answer
 * is "not subscribed" with an empty collection configuration. @azure/monitor-opentelemetry 1.21.0
 * `src/generated/api/operations.ts` (`_isSubscribedSend`, `_publishSend`), `src/metrics/quickpulse/liveMetrics.ts`
 * (`PING_INTERVAL`, `quickPulseDone`), `src/generated/models/models.ts` (`collectionConfigurationInfoDeserializer`).
 */

export const LIVE_PATHS = ['/QuickPulseService.svc/ping', '/QuickPulseService.svc/post'];

export interface LiveAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** The answer to a ping or post whose caller is authenticated and names this component's key. */
export function notSubscribed(): LiveAnswer {
  return {
    status: 200,
    headers: { 'x-ms-qps-subscribed': 'false' },
    body: { ETag: '', Metrics: [], DocumentStreams: [], QuotaInfo: null },
  };
}
