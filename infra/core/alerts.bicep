// The relay's alerts: an action group with the receivers the deployer names, and five log search
// alert rules on the Application Insights component, over the metrics shared/telemetry/telemetry-names.ts
// names (test/infra/monitoring-queries.test.ts checks every name and dimension below against it).
//
// Where the metrics land (read from @azure/monitor-opentelemetry-exporter 1.0.0-beta.47,
// src/utils/metricUtils.ts and src/export/metric.ts): each data point of an export interval (60 s,
// the distro's default) becomes one row of `customMetrics` with `name` the instrument's name and
// `customDimensions` its attributes. Counters and histograms use delta temporality, so a counter's
// `valueSum` is its increase over that interval; a gauge has `valueCount` 1 and `valueSum` its value;
// a histogram has `valueCount` measurements with `valueSum`, `valueMin` and `valueMax` (no buckets).
// All rows of one export share one `timestamp`. Queries on the component see the classic table
// names (`customMetrics`, `customDimensions`) although the data sits in the workspace's AppMetrics
// (MicrosoftDocs/azure-monitor-docs, articles/azure-monitor/app/convert-classic-resource.md).
//
// No role assignment: a log search alert rule without an identity runs its query with Azure
// Monitor's own access to the resource it is scoped to, and an action group needs none.

@description('Required. Name of the action group.')
param actionGroupName string

@description('Required. Prefix of the alert rules\' names (<prefix>-<alert>).')
param alertNamePrefix string

@description('Required. Name of the (existing) Application Insights component the rules query.')
param applicationInsightsName string

@description('Required. Azure region of the alert rules (the action group is global).')
param location string

@description('Optional. Tags applied to every resource.')
param tags { *: string } = {}

@description('Optional. Email addresses the action group notifies.')
param emailAddresses string[] = []

@description('Optional. HTTPS URLs the action group posts each alert to in the common alert schema: a Logic App\'s HTTP trigger (its callback URL), a Teams or ITSM webhook. A URL that carries a signature is a secret, and anyone who can read the action group or the deployment can read it.')
param webhookUrls string[] = []

@description('Optional. The interval, in minutes, at which POLL_SCHEDULE polls every tenant: the checkpoint-lag alert fires above three of them, and the per-tenant rules look back at least four.')
@minValue(1)
@maxValue(720)
param pollIntervalMinutes int = 5

@description('Optional. The poll\'s overlap window in seconds (shared/ingest/ingest.ts: 5 minutes): a checkpoint is never newer than now minus this.')
param pollOverlapSeconds int = 300

@description('Optional. 429 answers of a tenant\'s API (Defender or Graph) in 15 minutes from which the throttling alert fires.')
@minValue(1)
param defenderThrottledCallsThreshold int = 10

@description('Optional. Dead letters in 30 minutes above which the dead-letter alert fires for a queue (0: any).')
@minValue(0)
param deadLetterThreshold int = 0

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// An action group may have no receivers (Azure Verified Modules' action-group "defaults" test deploys
// one with only groupShortName): with none given the rules still fire and show in Azure Monitor >
// Alerts, and receivers can be added with a later deployment.
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'relay-ops'
    enabled: true
    emailReceivers: [
      for (address, i) in emailAddresses: {
        name: 'email-${i}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: [
      for (url, i) in webhookUrls: {
        name: 'webhook-${i}'
        serviceUri: url
        useCommonAlertSchema: true
      }
    ]
  }
}

// Log search alert windows take these lengths only (the service's answer to any other: "Supported
// granularities are: 5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880", in minutes:
// Azure/azure-rest-api-specs#21258). The per-tenant rules look back over at least four poll
// intervals and an hour, so that three polls in a row fit whatever the schedule.
var perTenantWindow = first(filter(
  [
    { minutes: 60, duration: 'PT1H' }
    { minutes: 120, duration: 'PT2H' }
    { minutes: 180, duration: 'PT3H' }
    { minutes: 240, duration: 'PT4H' }
    { minutes: 300, duration: 'PT5H' }
    { minutes: 360, duration: 'PT6H' }
    { minutes: 1440, duration: 'P1D' }
    { minutes: 2880, duration: 'P2D' }
  ],
  window => window.minutes >= 4 * pollIntervalMinutes
))!.duration

// Each rule's query returns one row per dimension value with the measure; the rule compares the
// measure's maximum over that row with the threshold, and fires (and later resolves) per dimension
// value, so an alert names the queue or the tenant. `AggregatedValue` is reserved in alert queries.
var rules = [
  {
    key: 'poison-queue'
    displayName: 'defender-relay: a poison queue is not empty'
    description: 'Messages reached a poison queue (dimension queue): each failed every attempt the host allows, and nothing retries them. Open the workbook\'s dead-lettered and poisoned table for the reason, fix the cause (a tenant\'s credential, a destination that refuses, a bug), then move incident events back with POST /api/replay {"source": "poison"}; poll requests need no replay (the next schedule polls again): clear that queue. The alert resolves when the queue is empty.'
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    query: '''
customMetrics
| where name == 'relay.queue.depth'
| extend queue = tostring(customDimensions.queue)
| where queue endswith '-poison'
| summarize arg_max(timestamp, valueSum) by queue
| project queue, messages = valueSum
'''
    measure: 'messages'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: ['queue']
  }
  {
    key: 'poll-failures'
    displayName: 'defender-relay: a tenant failed three polls in a row'
    description: 'The last three polls of a tenant (dimension tenant) failed, so its incidents are not being relayed. Run GET /api/tenants/{tenantId}/check (or npm run doctor) for the cause: an expired or untagged secret, consent withdrawn, a missing permission, Defender unreachable. Fix it, then POST /api/tenants/{tenantId}/poll. The alert resolves at the tenant\'s next poll that does not fail.'
    severity: 1
    evaluationFrequency: 'PT5M'
    windowSize: perTenantWindow
    // Polls that failed after the tenant's last other outcome: rows of one export share a
    // timestamp, so failures exported with a success are not counted (the order is unknown).
    query: '''
let polls = customMetrics
| where name == 'relay.poll.duration'
| extend tenant = tostring(customDimensions.tenant), outcome = tostring(customDimensions.outcome);
polls
| summarize lastOtherOutcome = maxif(timestamp, outcome != 'failed') by tenant
| join kind=inner (polls | where outcome == 'failed') on tenant
| where isnull(lastOtherOutcome) or timestamp > lastOtherOutcome
| summarize failedInARow = sum(valueCount) by tenant
'''
    measure: 'failedInARow'
    operator: 'GreaterThanOrEqual'
    threshold: 3
    dimensions: ['tenant']
  }
  {
    key: 'checkpoint-lag'
    displayName: 'defender-relay: a tenant\'s checkpoint lags three poll intervals'
    description: 'The checkpoint of a tenant (dimension tenant) is more than three poll intervals behind (past the poll\'s 5-minute overlap): its polls run but do not catch up (a backlog read page by page, Defender throttling, a checkpoint conflict) or keep failing. Look at the tenant in the workbook (last outcome, Defender 429s, budget used) and at the poll failures alert; a one-off backlog clears by itself. The alert resolves when the lag the tenant last reported is below the threshold.'
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: perTenantWindow
    query: '''
customMetrics
| where name == 'relay.checkpoint.lag'
| extend tenant = tostring(customDimensions.tenant)
| summarize arg_max(timestamp, valueSum) by tenant
| project tenant, lagSeconds = valueSum
'''
    measure: 'lagSeconds'
    operator: 'GreaterThan'
    // A poll leaves the checkpoint its 5-minute overlap behind now (shared/ingest/ingest.ts), so lag is measured past that.
    threshold: 3 * pollIntervalMinutes * 60 + pollOverlapSeconds
    dimensions: ['tenant']
  }
  {
    key: 'defender-throttling'
    displayName: 'defender-relay: Defender or Graph is throttling a tenant'
    description: 'The tenant\'s API (Defender, or Microsoft Graph for a tenant read through Graph) answered 429 to many calls for a tenant (dimension tenant) in 15 minutes. The relay waits as told and its budget keeps it under each API\'s limit (45 calls a minute per tenant to Defender, 135 to Graph), so the quota is shared: another app with the same registration, a second relay, heavy analyst use, or advanced hunting\'s own limit. Check the tenant\'s budget used and its Defender and Graph 429s in the workbook, and who else calls the API with the app; the relay catches up once the 429s stop.'
    severity: 3
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    query: '''
customMetrics
| where name in ('relay.defender.calls', 'relay.graph.calls')
| extend tenant = tostring(customDimensions.tenant), status = tostring(customDimensions.status)
| where status == '429'
| summarize throttled = sum(valueSum) by tenant
'''
    measure: 'throttled'
    operator: 'GreaterThanOrEqual'
    threshold: defenderThrottledCallsThreshold
    dimensions: ['tenant']
  }
  {
    key: 'dead-letters'
    displayName: 'defender-relay: dead letters are growing'
    description: 'Messages were moved to a dead-letter queue (dimension queue) in the last 30 minutes: incidents refused as too large or too deep, events a destination rejected for good, poll requests that cannot be served. The workbook\'s dead-lettered and poisoned table gives the reasons; fix the cause (a route, a destination, a tenant) and move incident events back with POST /api/replay {"source": "deadletter"}. The alert resolves after 30 minutes without a new one.'
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: 'PT30M'
    query: '''
customMetrics
| where name == 'relay.events.deadlettered'
| extend queue = tostring(customDimensions.queue)
| summarize deadLettered = sum(valueSum) by queue
'''
    measure: 'deadLettered'
    operator: 'GreaterThan'
    threshold: deadLetterThreshold
    dimensions: ['queue']
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = [
  for rule in rules: {
    name: '${alertNamePrefix}-${rule.key}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsights.id
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Maximum'
            metricMeasureColumn: rule.measure
            operator: rule.operator
            threshold: rule.threshold
            dimensions: [
              for dimension in rule.dimensions: {
                name: dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

@description('The action group\'s resource id.')
output actionGroupId string = actionGroup.id

@description('The alert rules\' names.')
output alertRuleNames string[] = [for (rule, i) in rules: alertRules[i].name]
