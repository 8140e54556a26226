// The custom table the relay's rows land in, on an existing Log Analytics workspace (the one Microsoft
// Sentinel uses), deployed into that workspace's resource group by core/sentinel.bicep. A custom table
// "must exist before you can send data to it" and its name must end in _CL (MicrosoftDocs/azure-docs
// articles/azure-monitor/logs/logs-ingestion-api-overview.md, "Supported tables").

@description('Required. Name of the existing Log Analytics workspace.')
param workspaceName string

@description('Required. Name of the custom table (ends in _CL).')
param tableName string

@description('Required. The table\'s columns, as Log Analytics types them (dateTime, not the stream\'s datetime).')
param columns columnType[]

@description('A column of a Log Analytics table.')
type columnType = {
  @description('The column\'s name.')
  name: string
  @description('The column\'s type: string, int, long, real, boolean, dateTime, dynamic or guid.')
  type: string
  @description('What the column holds (shown in Log Analytics).')
  description: string
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2026-03-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2026-03-01' = {
  parent: workspace
  name: tableName
  properties: {
    // Analytics: what Sentinel's analytics rules query; retention follows the workspace's.
    plan: 'Analytics'
    schema: {
      name: tableName
      columns: columns
    }
  }
}

@description('The table\'s name.')
output name string = table.name
