/**
 * The names of every metric the relay emits and of their dimensions: one list that the code, the
 * alert rules and the workbook in `infra/` (tested against it) share. In Application Insights a metric
 * lands in `customMetrics` (workspace: `AppMetrics`) under `name`, its dimensions in
 * `customDimensions` (workspace: `Properties`).
 */
export const METRICS = {
  /** Counter: incidents Defender (or Graph) listed to a poll. Dimensions: tenant, source. */
  incidentsListed: 'relay.incidents.listed',
  /** Counter: incident events sent to `incidents`. Dimensions: tenant, source (poll, push, replay). */
  eventsEnqueued: 'relay.events.enqueued',
  /** Counter: events delivered to a destination. Dimensions: tenant, route, destination. */
  eventsRouted: 'relay.events.routed',
  /** Counter: messages moved to a dead-letter queue. Dimensions: queue, reason. */
  eventsDeadLettered: 'relay.events.deadlettered',
  /** Counter: messages whose last allowed attempt failed, which the host moves to `<queue>-poison`. Dimensions: queue, reason. */
  eventsPoisoned: 'relay.events.poisoned',
  /** Counter: events not routed again. Dimensions: tenant, reason (duplicate, echo). */
  eventsSkipped: 'relay.events.skipped',
  /** Counter: Defender API calls answered. Dimensions: tenant, status (HTTP status, 429 included). */
  defenderCalls: 'relay.defender.calls',
  /** Counter: Microsoft Graph security API calls answered (tenants read through Graph). Dimensions: tenant, status (HTTP status, 429 included). */
  graphCalls: 'relay.graph.calls',
  /** Gauge: share of the tenant's per-minute Defender call budget used (0-1). Dimensions: tenant. */
  defenderBudgetUsed: 'relay.defender.budget_used',
  /** Gauge: share of the tenant's per-minute Microsoft Graph call budget used (0-1), for tenants read through Graph. Dimensions: tenant. */
  graphBudgetUsed: 'relay.graph.budget_used',
  /** Counter: token requests to Entra ID. Dimensions: tenant, outcome (success, failure). */
  tokenRequests: 'relay.token.requests',
  /** Counter: secret reads from Key Vault. Dimensions: outcome (success, failure). */
  keyVaultRequests: 'relay.keyvault.requests',
  /** Histogram, milliseconds: one poll run. Dimensions: tenant, outcome (polled, continued, retrying, conflict, disabled, failed). */
  pollDuration: 'relay.poll.duration',
  /** Gauge, seconds: now minus the tenant's checkpoint, after each poll. Dimensions: tenant. */
  checkpointLag: 'relay.checkpoint.lag',
  /** Histogram, milliseconds: from the incident's lastUpdateTime to delivery. Dimensions: tenant, destination. */
  deliveryLatency: 'relay.delivery.latency',
  /** Gauge: approximate messages in a queue. Dimensions: queue (incidents, incidents-poison, incidents-deadletter, ...). */
  queueDepth: 'relay.queue.depth',
} as const;

export type MetricName = (typeof METRICS)[keyof typeof METRICS];

/** Dimension (attribute) names. The tenant is its tenant id (a GUID, not a secret); no incident content is ever a dimension. */
export const DIMENSIONS = {
  tenant: 'tenant',
  source: 'source',
  route: 'route',
  destination: 'destination',
  queue: 'queue',
  reason: 'reason',
  status: 'status',
  outcome: 'outcome',
} as const;

/** The poll outcome that counts as a failed poll (the alert on three in a row looks for it). */
export const FAILED_POLL_OUTCOME = 'failed';
