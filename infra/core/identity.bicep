// The Function App's user-assigned managed identity: it reaches Storage, Key Vault and Application
// Insights with Entra tokens, so no key or connection string exists anywhere.

@description('Required. Name of the user-assigned managed identity.')
param name string

@description('Required. Azure region of the identity.')
param location string

@description('Optional. Tags applied to the identity.')
param tags { *: string } = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

@description('The identity\'s resource id (for the Function App\'s identity block).')
output resourceId string = identity.id

@description('The identity\'s name.')
output name string = identity.name

@description('The identity\'s client (application) id: AZURE_CLIENT_ID and AzureWebJobsStorage__clientId.')
output clientId string = identity.properties.clientId

@description('The identity\'s service principal object id: the principal of its role assignments.')
output principalId string = identity.properties.principalId
