// Microsoft Sentinel as a destination of the relay (a "sentinel" destination in the routing file), through
// the Logs Ingestion API: the custom table DefenderRelayIncidents_CL on an existing Log Analytics workspace,
// a data collection endpoint (DCE) and a data collection rule (DCR) whose stream declares the relay's row
// and sends it unchanged to the table. The app's identity gets Monitoring Metrics Publisher on the DCR in
// app/rbac.bicep, where every role assignment of the deployment is. infra/README.md, "Microsoft Sentinel".
//
// The columns are the relay's row, shared/route/destinations/sentinel-columns.ts (SENTINEL_COLUMNS): the
// stream declaration and the table are built from the one list below, which test/infra/sentinel.test.ts
// holds equal to it. Structure of a DCR: MicrosoftDocs/azure-monitor-docs
// articles/azure-monitor/data-collection/data-collection-rule-structure.md; the DCE, DCR and workspace
// must be in one region (articles/azure-monitor/logs/logs-ingestion-api-overview.md, "Components").

@description('Required. Resource id of the existing Log Analytics workspace (the one Microsoft Sentinel uses); it may be in another resource group or subscription.')
param workspaceResourceId string

@description('Required. Name of the data collection endpoint.')
param dataCollectionEndpointName string

@description('Required. Name of the data collection rule.')
param dataCollectionRuleName string

@description('Required. Azure region of the endpoint and the rule: the workspace\'s region.')
param location string

@description('Optional. Tags applied to the endpoint and the rule.')
param tags { *: string } = {}

var tableName = 'DefenderRelayIncidents_CL'
// "Each stream is an object whose key represents the stream name, which must begin with Custom-".
var streamName = 'Custom-${tableName}'

// The relay's row: name, type as a stream declaration types it, and what it holds.
var columns = [
  { name: 'TimeGenerated', type: 'datetime', description: 'When the relay sent this row (UTC).' }
  {
    name: 'EventId'
    type: 'string'
    description: 'The incident version routed (tenant, incident id and lastUpdateTime): a retried delivery may repeat it, so deduplicate on it.'
  }
  { name: 'CustomerTenantId', type: 'string', description: 'The customer\'s Entra tenant id the incident belongs to.' }
  { name: 'CustomerTenantName', type: 'string', description: 'The customer tenant\'s display name, when known.' }
  { name: 'IncidentId', type: 'long', description: 'The Defender XDR incident id.' }
  { name: 'IncidentName', type: 'string', description: 'The incident\'s name in Defender XDR.' }
  { name: 'LastUpdateTime', type: 'datetime', description: 'The incident version\'s lastUpdateTime.' }
  {
    name: 'Severity'
    type: 'string'
    description: 'The incident\'s severity (Informational, Low, Medium, High, UnSpecified).'
  }
  { name: 'Status', type: 'string', description: 'The incident\'s status (Active, InProgress, Resolved, Redirected).' }
  { name: 'Classification', type: 'string', description: 'The incident\'s classification.' }
  { name: 'Determination', type: 'string', description: 'The incident\'s determination.' }
  { name: 'Priority', type: 'int', description: 'The relay\'s priority score, 0 to 100.' }
  { name: 'PriorityReasons', type: 'dynamic', description: 'Each contribution to the priority score (strings).' }
  { name: 'MitreTechniques', type: 'dynamic', description: 'Distinct MITRE ATT&CK technique ids of the alerts.' }
  {
    name: 'MitreTactics'
    type: 'dynamic'
    description: 'The ATT&CK tactics among the alert categories, as {id, name}, in the matrix order.'
  }
  { name: 'AlertCount', type: 'int', description: 'Alerts in the incident.' }
  { name: 'ActiveAlertCount', type: 'int', description: 'Alerts with status New or InProgress.' }
  { name: 'UserCount', type: 'int', description: 'Distinct users among the alert entities.' }
  { name: 'DeviceCount', type: 'int', description: 'Distinct devices among the alerts.' }
  { name: 'IpCount', type: 'int', description: 'Distinct IP addresses among the alert entities.' }
  { name: 'UrlCount', type: 'int', description: 'Distinct URLs among the alert entities.' }
  { name: 'FileHashCount', type: 'int', description: 'Distinct files (by hash) among the alert entities.' }
  { name: 'MailboxCount', type: 'int', description: 'Distinct mailboxes among the alert entities.' }
  { name: 'PortalUrl', type: 'string', description: 'The incident in the Microsoft Defender portal.' }
  { name: 'ServiceSources', type: 'dynamic', description: 'Distinct service sources of the alerts.' }
  { name: 'Route', type: 'string', description: 'The routing rule that sent the incident here (or default).' }
  {
    name: 'IncidentApi'
    type: 'string'
    description: 'The API the incident was read from, and so the shape of Incident: defender (Defender XDR) or graph (Microsoft Graph).'
  }
  {
    name: 'Incident'
    type: 'dynamic'
    description: 'The incident as its API returned it (reduced when IncidentTruncated is true).'
  }
  {
    name: 'IncidentTruncated'
    type: 'boolean'
    description: 'True when the incident was too large for one column (64 KB) and Incident holds a reduced copy: its fields without comments, and a summary of its alerts.'
  }
]

var workspaceParts = split(workspaceResourceId, '/')

resource workspace 'Microsoft.OperationalInsights/workspaces@2026-03-01' existing = {
  name: last(workspaceParts)
  scope: resourceGroup(workspaceParts[2], workspaceParts[4])
}

// The table lives with the workspace, in its resource group.
module table 'sentinel-table.bicep' = {
  name: 'sentinel-table'
  scope: resourceGroup(workspaceParts[2], workspaceParts[4])
  params: {
    workspaceName: last(workspaceParts)
    tableName: tableName
    // Log Analytics spells the type dateTime where a stream declaration says datetime.
    columns: map(columns, c => {
      name: c.name
      type: c.type == 'datetime' ? 'dateTime' : c.type
      description: c.description
    })
  }
}

resource endpoint 'Microsoft.Insights/dataCollectionEndpoints@2024-03-11' = {
  name: dataCollectionEndpointName
  location: location
  tags: tags
  properties: {
    description: 'defender-relay: the Logs Ingestion endpoint of the Sentinel destination'
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2024-03-11' = {
  name: dataCollectionRuleName
  location: location
  tags: tags
  properties: {
    description: 'defender-relay: one row per routed incident version into ${tableName}'
    dataCollectionEndpointId: endpoint.id
    streamDeclarations: {
      '${streamName}': {
        columns: map(columns, c => { name: c.name, type: c.type })
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'sentinelWorkspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          'sentinelWorkspace'
        ]
        // The row is the table's shape already: nothing to transform.
        transformKql: 'source'
        outputStream: streamName
      }
    ]
  }
  // The data flow's output stream names the table: it must exist first.
  dependsOn: [
    table
  ]
}

@description('The data collection endpoint\'s logs ingestion URL: a sentinel destination\'s endpoint.')
output logsIngestionEndpoint string = endpoint.properties.logsIngestion.endpoint

@description('The endpoint\'s host name, for DESTINATION_ALLOWED_HOSTS.')
output logsIngestionHost string = split(endpoint.properties.logsIngestion.endpoint, '/')[2]

@description('The data collection rule\'s immutable id (dcr-…): a sentinel destination\'s ruleId.')
output ruleImmutableId string = rule.properties.immutableId

@description('The data collection rule\'s name.')
output ruleName string = rule.name

@description('The stream the rule declares: a sentinel destination\'s streamName.')
output streamName string = streamName

@description('The custom table the rows land in.')
output tableName string = table.outputs.name
