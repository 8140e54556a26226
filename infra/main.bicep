// defender-relay in one deployment: a resource group holding the Function App (Flex Consumption),
// its managed identity, storage, Key Vault and monitoring, with least-privilege role assignments.
// `azd up` deploys it with main.parameters.json; see infra/README.md for `az deployment sub create`.
targetScope = 'subscription'

@description('Required. Name of the environment (azd: AZURE_ENV_NAME). With the subscription and location it seeds the token that makes resource names unique.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Required. Azure region of every resource: one that offers the Flex Consumption plan.')
@minLength(1)
// The regions of the Flex Consumption quickstart (Azure-Samples/functions-quickstart-typescript-azd,
// infra/main.bicep at cba3922, February 2026) less eastus2euap, a canary region open only to enrolled
// subscriptions. Microsoft's current list: az functionapp list-flexconsumption-locations.
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional. Object id of the person deploying (azd: AZURE_PRINCIPAL_ID), granted Key Vault Secrets Officer and Storage Table Data Contributor to onboard tenants. Empty: no assignment.')
param principalId string = ''

@description('Optional. Kind of principal principalId is (azd: AZURE_PRINCIPAL_TYPE, User or ServicePrincipal as azd is signed in). A mismatch fails the role assignments with UnmatchedPrincipalType.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Optional. Name of the resource group. Default: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Optional. Most instances the Function App scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Optional. Memory of each Function App instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Whether the Key Vault is reachable from public networks. Only Enabled: this template creates no private endpoint and no VNet integration, so with Disabled the app could not reach its vault (infra/README.md).')
@allowed([
  'Enabled'
])
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('Optional. Days a deleted vault or secret can be recovered (purge protection keeps it that long).')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

@description('Optional. Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Optional. Node.js major version the Function App runs: 22 (supported on Azure Functions until April 2027), or 24 where the region offers it (az functionapp list-flexconsumption-runtimes).')
@allowed([
  '22'
  '24'
])
param nodeVersion string = '22'

@description('Optional. Queues in the app\'s storage account that routing rules deliver to (destinations of type "queue" without accountUrl).')
param routedQueueNames string[] = [
  'routed-high'
  'routed-archive'
]

@description('Optional. DEFENDER_API_URL: base URL of the Defender XDR API (a regional endpoint, or a government cloud\'s).')
param defenderApiUrl string = 'https://api.security.microsoft.com'

@description('Optional. GRAPH_API_URL: base URL of Microsoft Graph, for tenants read through the Graph security API (a national cloud\'s Graph endpoint).')
param graphApiUrl string = 'https://graph.microsoft.com'

@description('Optional. POLL_SCHEDULE: when the poll timer fires (NCRONTAB with six fields, seconds first).')
param pollSchedule string = '0 */5 * * * *'

@description('Optional. POLL_MAX_PAGES_PER_RUN: pages of 100 incidents one poll run reads before handing over to a follow-up request.')
@minValue(1)
param pollMaxPagesPerRun int = 20

@description('Optional. RELAY_API_CLIENT_ID: client id of the relay API\'s app registration (audience of webhook and analyst tokens, and the on-behalf-of client). Set it before pushing incidents or using the analyst endpoints.')
param relayApiClientId string = ''

@description('Optional. RELAY_API_URI: application id URI of the relay API.')
param relayApiUri string = 'api://defender-relay'

@description('Optional. RELAY_API_SECRET_NAME: Key Vault secret holding the relay API\'s client secret (for on-behalf-of calls).')
param relayApiSecretName string = ''

@description('Optional. WEBHOOK_ALLOWED_TENANT_IDS: tenants whose tokens may push incidents to POST /api/incidents for themselves.')
param webhookAllowedTenantIds string[] = []

@description('Optional. WEBHOOK_REQUIRED_ROLE: app role a pushing caller\'s token must carry.')
param webhookRequiredRole string = 'Incidents.Submit'

@description('Optional. WEBHOOK_HMAC_TOLERANCE_SECONDS: how old a signed request\'s timestamp may be.')
@minValue(1)
param webhookHmacToleranceSeconds int = 300

@description('Optional. WEBHOOK_MAX_BODY_BYTES: largest accepted push body.')
@minValue(1)
param webhookMaxBodyBytes int = 1048576

@description('Optional. WEBHOOK_ACCESS_FILE: who may push for whom (callers granted other tenants, HMAC keys and their tenants), relative to the deployed app\'s folder; empty: tokens push for their own tenant only, no HMAC key.')
param webhookAccessFile string = ''

@description('Optional. ROUTES_FILE: the routing rules file, relative to the deployed app\'s folder.')
param routesFile string = 'routes.json'

@description('Optional. DESTINATION_ALLOWED_HOSTS: hosts webhook destinations may point at (SSRF guard).')
param destinationAllowedHosts string[] = []

@description('Optional. DESTINATION_TIMEOUT_MS: timeout of one delivery to a webhook destination.')
@minValue(1)
param destinationTimeoutMs int = 10000

@description('Optional. Resource id of an existing Log Analytics workspace (the one Microsoft Sentinel uses, in any resource group or subscription of the tenant): creates the custom table DefenderRelayIncidents_CL there, and here a data collection endpoint and rule feeding it, with Monitoring Metrics Publisher on the rule for the app\'s identity, for a routing destination of type sentinel (infra/README.md, Microsoft Sentinel). Empty: none of it is deployed.')
param sentinelWorkspaceResourceId string = ''

@description('Optional. Azure region of the Sentinel data collection endpoint and rule: the workspace\'s region, which they must share. Empty: location.')
param sentinelLocation string = ''

@description('Optional. Email addresses the alerts\' action group notifies (azd: ALERT_EMAIL_ADDRESSES, a JSON array). None and no webhook: the action group is created empty and the alerts show in Azure Monitor only.')
param alertEmailAddresses string[] = []

@description('Optional. HTTPS URLs the alerts\' action group posts to in the common alert schema, e.g. a Logic App\'s HTTP trigger URL (azd: ALERT_WEBHOOK_URLS, a JSON array). A signed URL is a secret that readers of the action group can see.')
param alertWebhookUrls string[] = []

@description('Optional. Minutes between two scheduled polls of a tenant: the interval pollSchedule fires at (its default, \'0 */5 * * * *\' as in shared/config/config.ts, fires every 5). The checkpoint-lag alert fires above three of them; change both together.')
@minValue(1)
@maxValue(720)
param pollIntervalMinutes int = 5

@description('Optional. 429 answers of a tenant\'s API (Defender or Graph) in 15 minutes from which the throttling alert fires.')
@minValue(1)
param defenderThrottledCallsThreshold int = 10

@description('Optional. Dead letters in 30 minutes above which the dead-letter alert fires for a queue (0: any).')
@minValue(0)
param deadLetterThreshold int = 0

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
// Names known when the deployment starts, so that what-if sees the resources other modules refer to.
var identityName = 'id-func-${resourceToken}'
var storageAccountName = 'st${resourceToken}'
var keyVaultName = 'kv-${resourceToken}'
var logAnalyticsName = 'log-${resourceToken}'
var applicationInsightsName = 'appi-${resourceToken}'
var dataCollectionEndpointName = 'dce-${resourceToken}'
var dataCollectionRuleName = 'dcr-${resourceToken}'
var deploySentinel = !empty(sentinelWorkspaceResourceId)
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

// Work queues with their dead-letter queues (written by the app with the reason) and poison queues
// (written by the host after maxDequeueCount): shared/storage/queues.ts and shared/messages/dead-letter.ts.
var appQueueNames = [
  'poll-requests'
  'poll-requests-deadletter'
  'poll-requests-poison'
  'incidents'
  'incidents-deadletter'
  'incidents-poison'
]

// shared/tenants/tenants.ts, checkpoints.ts, tenant-status.ts, delivery-log.ts, replay-guard.ts, shared-budget.ts.
var tableNames = [
  'tenants'
  'checkpoints'
  'tenantstatus'
  'deliveries'
  'webhookreplay'
  'callbudget'
]

// The deployment package, and claim-checked incidents too large for a queue message
// (shared/storage/queues.ts, shared/route/destinations/queue.ts).
var containerNames = [
  deploymentStorageContainerName
  'incident-payloads'
  'routed-payloads'
]

resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: storageAccountName
    location: location
    tags: tags
    queueNames: union(appQueueNames, routedQueueNames)
    tableNames: tableNames
    containerNames: containerNames
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: logAnalyticsName
    applicationInsightsName: applicationInsightsName
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module keyVault 'core/key-vault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    publicNetworkAccess: keyVaultPublicNetworkAccess
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

// Alerts and the operations workbook on the Application Insights component; neither needs a role
// assignment (infra/README.md, Alerts and the workbook).
module alerts 'core/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    actionGroupName: 'ag-${resourceToken}'
    alertNamePrefix: 'alert-${resourceToken}'
    applicationInsightsName: applicationInsightsName
    location: location
    tags: tags
    emailAddresses: alertEmailAddresses
    webhookUrls: alertWebhookUrls
    pollIntervalMinutes: pollIntervalMinutes
    defenderThrottledCallsThreshold: defenderThrottledCallsThreshold
    deadLetterThreshold: deadLetterThreshold
  }
  dependsOn: [
    monitoring
  ]
}

module workbook 'core/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    applicationInsightsName: applicationInsightsName
    location: location
    tags: tags
  }
  dependsOn: [
    monitoring
  ]
}

// Optional: Microsoft Sentinel as a routing destination, through the Logs Ingestion API (the table goes
// into the workspace's resource group; the endpoint and the rule stay here, with the app).
module sentinel 'core/sentinel.bicep' = if (deploySentinel) {
  name: 'sentinel'
  scope: rg
  params: {
    workspaceResourceId: sentinelWorkspaceResourceId
    dataCollectionEndpointName: dataCollectionEndpointName
    dataCollectionRuleName: dataCollectionRuleName
    location: !empty(sentinelLocation) ? sentinelLocation : location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storageAccountName
    keyVaultName: keyVaultName
    applicationInsightsName: applicationInsightsName
    // The assignments' names are keyed by the principal, as in the Flex Consumption quickstart's
    // rbac.bicep: new names for the same principal, role and scope would fail with
    // RoleAssignmentExists on an environment deployed before. what-if shows them as unknown.
    #disable-next-line what-if-short-circuiting
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    dataCollectionRuleName: deploySentinel ? dataCollectionRuleName : ''
  }
  dependsOn: [
    storage
    keyVault
    monitoring
    sentinel
  ]
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityResourceId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storageAccountName
    deploymentStorageContainerName: deploymentStorageContainerName
    applicationInsightsName: applicationInsightsName
    nodeVersion: nodeVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    // Exactly what shared/config/config.ts reads in Azure (a test compares the two); api.bicep adds host
    // storage, AZURE_CLIENT_ID and telemetry. Empty values count as unset.
    appSettings: {
      KEY_VAULT_URL: keyVault.outputs.uri
      ENTRA_AUTHORITY_HOST: environment().authentication.loginEndpoint
      DEFENDER_API_URL: defenderApiUrl
      GRAPH_API_URL: graphApiUrl
      AZURE_TENANT_ID: tenant().tenantId
      POLL_SCHEDULE: pollSchedule
      POLL_MAX_PAGES_PER_RUN: string(pollMaxPagesPerRun)
      RELAY_API_CLIENT_ID: relayApiClientId
      RELAY_API_URI: relayApiUri
      RELAY_API_SECRET_NAME: relayApiSecretName
      WEBHOOK_ALLOWED_TENANT_IDS: join(webhookAllowedTenantIds, ',')
      WEBHOOK_REQUIRED_ROLE: webhookRequiredRole
      WEBHOOK_HMAC_TOLERANCE_SECONDS: string(webhookHmacToleranceSeconds)
      WEBHOOK_MAX_BODY_BYTES: string(webhookMaxBodyBytes)
      WEBHOOK_ACCESS_FILE: webhookAccessFile
      ROUTES_FILE: routesFile
      // The Sentinel endpoint's host joins the allow-list: a sentinel destination's endpoint is held to it.
      DESTINATION_ALLOWED_HOSTS: join(
        union(destinationAllowedHosts, deploySentinel ? [sentinel!.outputs.logsIngestionHost] : []),
        ','
      )
      DESTINATION_TIMEOUT_MS: string(destinationTimeoutMs)
    }
  }
  dependsOn: [
    storage
  ]
}

@description('The region of every resource.')
output AZURE_LOCATION string = location

@description('The tenant of the subscription.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('The resource group holding everything.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('The Function App\'s name.')
output AZURE_FUNCTION_APP_NAME string = api.outputs.name

@description('The Function App\'s base URL (Flex Consumption host names are not always <app>.azurewebsites.net).')
output AZURE_FUNCTION_APP_URL string = api.outputs.uri

@description('The Function App\'s name, as azd names the api service\'s resource.')
output SERVICE_API_NAME string = api.outputs.name

@description('The vault\'s name (az keyvault secret set --vault-name).')
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name

@description('The vault\'s URI: the app\'s KEY_VAULT_URL.')
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri

@description('The storage account\'s name.')
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name

@description('The client id of the app\'s managed identity.')
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('The object id of the app\'s managed identity.')
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('The Application Insights connection string (it holds no secret: ingestion needs an Entra token).')
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString

@description('The Sentinel destination\'s endpoint (its data collection endpoint\'s logs ingestion URL); empty without sentinelWorkspaceResourceId.')
output SENTINEL_LOGS_INGESTION_ENDPOINT string = deploySentinel ? sentinel!.outputs.logsIngestionEndpoint : ''

@description('The Sentinel destination\'s ruleId (the data collection rule\'s immutable id); empty without sentinelWorkspaceResourceId.')
output SENTINEL_DCR_IMMUTABLE_ID string = deploySentinel ? sentinel!.outputs.ruleImmutableId : ''

@description('The Sentinel destination\'s streamName; empty without sentinelWorkspaceResourceId.')
output SENTINEL_STREAM_NAME string = deploySentinel ? sentinel!.outputs.streamName : ''
