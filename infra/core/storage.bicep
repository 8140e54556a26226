// The app's storage account: Functions host storage, the deployment package, the app's queues and
// tables, and claim-check blobs. Shared-key access is off: every caller uses an Entra identity.

@description('Required. Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the storage account.')
param location string

@description('Optional. Tags applied to the storage account.')
param tags { *: string } = {}

@description('Optional. Redundancy of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Required. Queues to create.')
param queueNames string[]

@description('Required. Tables to create.')
param tableNames string[]

@description('Required. Blob containers to create (all private).')
param containerNames string[]

@description('Optional. Days a deleted blob or container can be restored.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

resource storageAccount 'Microsoft.Storage/storageAccounts@2026-09-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    publicNetworkAccess: 'Enabled'
    supportsHttpsTrafficOnly: true
  }

  resource blobService 'blobServices' = {
    name: 'default'
    properties: {
      deleteRetentionPolicy: {
        enabled: true
        days: deleteRetentionDays
      }
      containerDeleteRetentionPolicy: {
        enabled: true
        days: deleteRetentionDays
      }
    }

    resource containers 'containers' = [
      for containerName in containerNames: {
        name: containerName
        properties: {
          publicAccess: 'None'
        }
      }
    ]
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource queues 'queues' = [
      for queueName in queueNames: {
        name: queueName
      }
    ]
  }

  resource tableService 'tableServices' = {
    name: 'default'

    resource tables 'tables' = [
      for tableName in tableNames: {
        name: tableName
      }
    ]
  }
}

@description('The storage account\'s name.')
output name string = storageAccount.name

@description('The storage account\'s resource id.')
output resourceId string = storageAccount.id

@description('The blob service endpoint.')
output blobEndpoint string = storageAccount.properties.primaryEndpoints.blob

@description('The queue service endpoint.')
output queueEndpoint string = storageAccount.properties.primaryEndpoints.queue

@description('The table service endpoint.')
output tableEndpoint string = storageAccount.properties.primaryEndpoints.table
