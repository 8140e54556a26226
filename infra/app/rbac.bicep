// Every role assignment of the deployment, least privilege, scoped to the one resource each role is
// for. Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles

@description('Required. Name of the app\'s storage account.')
param storageAccountName string

@description('Required. Name of the Key Vault.')
param keyVaultName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Required. Object id of the Function App\'s managed identity.')
param identityPrincipalId string

@description('Optional. Name of the data collection rule of the Sentinel destination (core/sentinel.bicep), in this resource group. Empty: Sentinel is not deployed, no assignment.')
param dataCollectionRuleName string = ''

@description('Optional. Object id of the person (or pipeline) deploying, granted what onboarding tenants needs: put secrets into the vault and edit the tenant registry. Empty: no assignment.')
param userPrincipalId string = ''

@description('Optional. Kind of principal userPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

var roleDefinitionIds = {
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2026-09-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2026-05-15' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2024-03-11' existing = if (!empty(dataCollectionRuleName)) {
  name: dataCollectionRuleName
}

// Host storage (leases, timer schedule), the deployment package and claim-check blobs.
resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityPrincipalId, roleDefinitionIds.storageBlobDataOwner)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// poll-requests, incidents, their dead-letter and poison queues, and the routed queues.
resource appQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityPrincipalId, roleDefinitionIds.storageQueueDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageQueueDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The tenant registry, checkpoints, tenant status, the delivery log and the webhook replay guard.
resource appTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityPrincipalId, roleDefinitionIds.storageTableDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Reads secret values (tenant credentials, the relay API secret, HMAC keys); it cannot create, change or delete them.
resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, roleDefinitionIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Sends telemetry with an Entra token (the component's local authentication is off).
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, roleDefinitionIds.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Sends Sentinel rows through the Logs Ingestion API: "To ingest logs, ensure the user or service principal
// is assigned the Monitoring Metrics Publisher role for the DCR" (azure-sdk-for-js
// sdk/monitor/monitor-ingestion/TROUBLESHOOTING.md). Only when the Sentinel module is deployed.
resource appIngestionPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dataCollectionRuleName)) {
  name: guid(dataCollectionRule.id, identityPrincipalId, roleDefinitionIds.monitoringMetricsPublisher)
  scope: dataCollectionRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The deployer puts tenant client secrets into the vault (az keyvault secret set).
resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, roleDefinitionIds.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.keyVaultSecretsOfficer)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// The deployer edits the tenant registry and reads tenant status (npm run tenants / doctor).
resource userTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storageAccount.id, userPrincipalId, roleDefinitionIds.storageTableDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageTableDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
