// The Function App on the Flex Consumption plan: Node runtime and scale in functionAppConfig, the
// package in a blob container read with the managed identity, identity-based host storage.

@description('Required. Name of the Function App.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Azure region of the plan and the app.')
param location string

@description('Optional. Tags applied to the plan and the app.')
param tags { *: string } = {}

// azd deploy finds the app by this tag, and only the app may carry it: azd before 1.23.4 fails with
// "expecting only '1' resource tagged" when the plan has it too (Azure/azure-dev#5152, #6674).
@description('Required. The azd service (azure.yaml) deployed to the app: its azd-service-name tag.')
param serviceName string

@description('Required. Resource id of the user-assigned managed identity the app runs as.')
param identityResourceId string

@description('Required. Client id of that identity.')
param identityClientId string

@description('Required. Name of the storage account for host storage and the deployment package.')
param storageAccountName string

@description('Required. Blob container holding the deployment package.')
param deploymentStorageContainerName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Required. The app\'s own settings (what shared/config/config.ts reads); host storage, identity and telemetry settings are added here.')
param appSettings { *: string }

// Node 20 left support on Azure Functions in April 2026; 22 is supported until April 2027
// (learn.microsoft.com/azure/azure-functions/supported-languages).
@description('Optional. Node.js major version.')
@allowed([
  '22'
  '24'
])
param nodeVersion string = '22'

@description('Optional. Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Optional. Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource storageAccount 'Microsoft.Storage/storageAccounts@2026-09-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Host storage through the managed identity (no connection string), and telemetry with an Entra token.
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageAccount.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storageAccount.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storageAccount.properties.primaryEndpoints.table
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // No ftpsState: Flex Consumption rejects SiteConfig.FtpsState (ARM error 51021) where it
      // validates it; FTP is off through the ftp basicPublishingCredentialsPolicies below.
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageAccount.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'node'
        version: nodeVersion
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, platformSettings)
  }

  // Deployments authenticate with Entra ID (azd, az); publishing user names and passwords stay off.
  resource ftpBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

@description('The Function App\'s name.')
output name string = functionApp.name

@description('The Function App\'s base URL.')
output uri string = 'https://${functionApp.properties.defaultHostName}'
