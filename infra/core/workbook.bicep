// The relay's operations workbook, shown under the Application Insights component's Workbooks: a
// per-tenant table and the flow's figures, from the metrics shared/telemetry/telemetry-names.ts names
// (test/infra/monitoring-queries.test.ts checks every query in workbook.json against it).
// How the metrics land in `customMetrics`: see alerts.bicep.

@description('Required. Name of the (existing) Application Insights component the workbook belongs to and queries.')
param applicationInsightsName string

@description('Required. Azure region of the workbook.')
param location string

@description('Optional. Tags applied to the workbook.')
param tags { *: string } = {}

@description('Optional. The workbook\'s name in the component\'s Workbooks gallery (unique per resource group and component).')
param displayName string = 'defender-relay operations'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// A workbook's resource name is a GUID; keyed by the component, so a redeployment updates it.
// serializedData is the workbook's own JSON (the portal's Advanced Editor, Gallery Template view);
// its queries run on the component (resourceType microsoft.insights/components), and
// fallbackResourceIds names it for when the workbook is opened without a resource of its own
// (MicrosoftDocs/azure-monitor-docs, articles/azure-monitor/visualize/workbooks-automate.md).
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsights.id, 'defender-relay-operations')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: replace(loadTextContent('workbook.json'), '__APPLICATION_INSIGHTS_ID__', applicationInsights.id)
  }
}

@description('The workbook\'s resource id.')
output id string = workbook.id
