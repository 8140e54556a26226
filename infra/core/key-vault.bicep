// The vault holding tenant client secrets and certificates, the relay API's secret and HMAC keys.
// Access is by Azure RBAC only (no access policies); deleted secrets stay recoverable.

@description('Required. Name of the vault (3-24 letters, digits and dashes).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the vault.')
param location string

@description('Optional. Tags applied to the vault.')
param tags { *: string } = {}

@description('Optional. Whether the vault is reachable from public networks. Only Enabled: Disabled would need a private endpoint for the vault and VNet integration for the Function App, which this template does not create.')
@allowed([
  'Enabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Optional. Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Required. Resource id of the Log Analytics workspace receiving the vault\'s audit log (who read which secret).')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2026-05-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// The newest version with categoryGroup, as Azure Verified Modules use (avm/res/key-vault/vault);
// the only stable one, 2016-09-01, is the older diagnostic settings shape without it.
#disable-next-line use-recent-api-versions
resource auditLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

@description('The vault\'s name.')
output name string = vault.name

@description('The vault\'s resource id.')
output resourceId string = vault.id

@description('The vault\'s URI: KEY_VAULT_URL.')
output uri string = vault.properties.vaultUri
