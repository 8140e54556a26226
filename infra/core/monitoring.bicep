// Application Insights on a Log Analytics workspace. Local (instrumentation-key) authentication is
// off: telemetry is accepted only with an Entra token of an identity holding Monitoring Metrics Publisher.

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Required. Azure region of both.')
param location string

@description('Optional. Tags applied to both.')
param tags { *: string } = {}

@description('Optional. Days the workspace keeps logs.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2026-03-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

@description('The Application Insights component\'s name.')
output applicationInsightsName string = applicationInsights.name

@description('The Application Insights connection string (it holds no secret: ingestion needs an Entra token).')
output connectionString string = applicationInsights.properties.ConnectionString

@description('The Log Analytics workspace\'s resource id.')
output workspaceId string = workspace.id
