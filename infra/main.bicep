// realtalk on Azure: `azd up` provisions the gateway (`realtalk serve`) on Azure Container Apps in
// front of Azure OpenAI gpt-realtime-1.5, keyless, and deploys the repository's Dockerfile.
//
// Resources, in the resource group rg-<environment> (tagged azd-env-name):
//   Log Analytics workspace             logs of the environment and the gateway
//   Container Apps environment          Consumption workload profile
//   Container registry (Basic)          the gateway's image; no admin user
//   User-assigned managed identity      AcrPull on the registry, Cognitive Services OpenAI User on Azure OpenAI
//   Azure OpenAI + gpt-realtime-1.5     new (keys disabled) unless an existing resource is named
//   Container App "gateway"             the gateway, tagged azd-service-name=gateway
//   PostgreSQL flexible server          optional: the shared usage ledger, Entra ID only
//
// Settings come from the azd environment through main.parameters.json (`azd env set NAME value`).

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group (rg-<name>) and seeds resource names.')
param environmentName string

@minLength(1)
@description('Region of the resource group and of everything but Azure OpenAI.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Whether the gateway\'s Container App exists already (azd sets SERVICE_GATEWAY_RESOURCE_EXISTS): provision then keeps the image azd deploy put there.')
param gatewayExists bool = false

// ----- Azure OpenAI -----------------------------------------------------------------------------

@description('Name of an existing Azure OpenAI resource to use (empty: create one with the deployment below).')
param openAiAccountName string = ''

@description('Resource group of that existing resource (empty: this environment\'s resource group).')
param openAiResourceGroupName string = ''

@description('Region of a new Azure OpenAI resource: one with gpt-realtime-1.5 Global Standard deployments.')
@allowed([
  'eastus2'
  'swedencentral'
])
param openAiLocation string = 'eastus2'

@description('Deployment name (AZURE_OPENAI_DEPLOYMENT_NAME); for an existing resource, the name of its gpt-realtime deployment.')
param openAiDeploymentName string = 'gpt-realtime-1.5'

@description('Capacity of a new deployment (Global Standard units; the subscription\'s quota caps it).')
@minValue(1)
param openAiDeploymentCapacity int = 1

// ----- The gateway ------------------------------------------------------------------------------

@secure()
@minLength(32)
@description('REALTALK_GATEWAY_SECRET (32+ characters). azure.yaml\'s preprovision hook generates one into the azd environment when it is unset.')
param gatewaySecret string

@secure()
@description('REALTALK_GATEWAY_PREVIOUS_SECRET, only while rotating the secret (empty: none).')
param gatewayPreviousSecret string = ''

@secure()
@description('REALTALK_GATEWAY_TOKENS: static client tokens, comma-separated (empty: none).')
param gatewayTokens string = ''

@secure()
@description('REALTALK_GATEWAY_METRICS_TOKEN: the bearer token a scraper sends to read /metrics (empty: /metrics is open).')
param gatewayMetricsToken string = ''

@secure()
@description('REALTALK_GATEWAY_SIP_WEBHOOK_SECRET: the whsec_ signing secret of the webhook endpoint registered for realtime.call.incoming (empty: phone calls are not taken; docs/sip.md).')
param gatewaySipWebhookSecret string = ''

@description('Minimum replicas.')
@minValue(0)
param gatewayMinReplicas int = 1

@description('Maximum replicas.')
@minValue(1)
param gatewayMaxReplicas int = 10

@description('Concurrent requests (open sessions included) per replica above which the app scales out.')
@minValue(1)
param gatewayConcurrentRequests int = 30

@description('REALTALK_GATEWAY_DRAIN_S; the termination grace period is this plus 25 s.')
@minValue(0)
@maxValue(300)
param gatewayDrainSeconds int = 20

@description('vCPU per replica.')
param gatewayCpu string = '0.5'

@description('Memory per replica.')
param gatewayMemory string = '1Gi'

@description('REALTALK_GATEWAY_MAX_SESSIONS per replica.')
@minValue(1)
param gatewayMaxSessions int = 50

@description('REALTALK_GATEWAY_MAX_SESSIONS_PER_USER.')
@minValue(1)
param gatewayMaxSessionsPerUser int = 3

@description('REALTALK_GATEWAY_BUDGET_USD per session.')
param gatewaySessionBudgetUsd string = '1.00'

@description('REALTALK_GATEWAY_USER_DAILY_BUDGET_USD (empty: none).')
param gatewayUserDailyBudgetUsd string = ''

@description('REALTALK_GATEWAY_DAILY_BUDGET_USD (empty: none).')
param gatewayDailyBudgetUsd string = ''

@description('REALTALK_GATEWAY_ORIGINS: other allowed browser origins (empty: the gateway\'s own).')
param gatewayAllowedOrigins string = ''

// ----- Optional: Entra ID sign-in (Container Apps authentication) -------------------------------

@description('Application (client) id of an Entra app registration for sign-in (empty: sign-in off).')
param authClientId string = ''

@secure()
@description('Its client secret (empty: ID tokens only).')
param authClientSecret string = ''

@description('Its tenant (empty: this subscription\'s tenant).')
param authTenantId string = ''

@description('What sign-in does with a request that has not signed in.')
@allowed([
  'RedirectToLoginPage'
  'Return401'
  'AllowAnonymous'
])
param authUnauthenticatedAction string = 'RedirectToLoginPage'

// ----- Optional: PostgreSQL for the shared usage ledger ------------------------------------------

@description('Create an Azure Database for PostgreSQL flexible server for the usage ledger (replicas then share limits and budgets).')
param postgresEnabled bool = false

@description('Region of the PostgreSQL server (empty: location).')
param postgresLocation string = ''

@description('PostgreSQL compute size.')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL compute tier of that size.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

// ------------------------------------------------------------------------------------------------

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var resourceGroupName = 'rg-${environmentName}'
var useExistingOpenAi = !empty(openAiAccountName)
var openAiGroupName = empty(openAiResourceGroupName) ? resourceGroupName : openAiResourceGroupName
var authEnabled = !empty(authClientId)
// Until `azd deploy` has pushed the gateway's image, the app runs a public placeholder.
var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
var databaseName = 'realtalk'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: 'log-${resourceToken}'
    location: location
    tags: tags
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-gateway-${resourceToken}'
    location: location
    tags: tags
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: 'cr${resourceToken}'
    location: location
    tags: tags
    pullPrincipalId: identity.outputs.principalId
  }
}

module containerAppsEnvironment 'modules/container-apps-env.bicep' = {
  name: 'container-apps-environment'
  scope: rg
  params: {
    name: 'cae-${resourceToken}'
    location: location
    tags: tags
    logAnalyticsWorkspaceName: monitoring.outputs.name
  }
}

module openAi 'modules/openai.bicep' = if (!useExistingOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-${resourceToken}'
    location: openAiLocation
    tags: tags
    deploymentName: openAiDeploymentName
    deploymentCapacity: openAiDeploymentCapacity
  }
}

// The role on the Azure OpenAI resource, new or existing, in that resource's group.
module openAiAccess 'modules/openai-access.bicep' = {
  name: 'openai-access'
  scope: resourceGroup(openAiGroupName)
  params: {
    accountName: useExistingOpenAi ? openAiAccountName : openAi.outputs.name
    principalId: identity.outputs.principalId
  }
}

module postgres 'modules/postgres.bicep' = if (postgresEnabled) {
  name: 'postgres'
  scope: rg
  params: {
    name: 'psql-${resourceToken}'
    location: empty(postgresLocation) ? location : postgresLocation
    tags: tags
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    databaseName: databaseName
    adminIdentityName: identity.outputs.name
    adminPrincipalId: identity.outputs.principalId
  }
}

// No password in the URL: the gateway logs in with its identity's Entra token (docs/ledger.md).
var ledgerUrl = postgresEnabled ? 'postgresql+asyncpg://${identity.outputs.name}@${postgres.outputs.fqdn}:5432/${databaseName}' : ''

module existingImage 'modules/fetch-image.bicep' = if (gatewayExists) {
  name: 'gateway-existing-image'
  scope: rg
  params: {
    name: 'ca-gateway-${resourceToken}'
  }
}

module gateway 'modules/gateway-app.bicep' = {
  name: 'gateway'
  scope: rg
  params: {
    name: 'ca-gateway-${resourceToken}'
    location: location
    tags: union(tags, {
      'azd-service-name': 'gateway'
    })
    environmentId: containerAppsEnvironment.outputs.id
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    registryLoginServer: registry.outputs.loginServer
    image: gatewayExists ? existingImage.outputs.image : placeholderImage
    openAiEndpoint: openAiAccess.outputs.endpoint
    openAiDeploymentName: useExistingOpenAi ? openAiDeploymentName : openAi.outputs.deploymentName
    gatewaySecret: gatewaySecret
    gatewayPreviousSecret: gatewayPreviousSecret
    gatewayTokens: gatewayTokens
    metricsToken: gatewayMetricsToken
    sipWebhookSecret: gatewaySipWebhookSecret
    drainSeconds: gatewayDrainSeconds
    minReplicas: gatewayMinReplicas
    maxReplicas: gatewayMaxReplicas
    concurrentRequests: gatewayConcurrentRequests
    cpu: gatewayCpu
    memory: gatewayMemory
    maxSessions: gatewayMaxSessions
    maxSessionsPerUser: gatewayMaxSessionsPerUser
    sessionBudgetUsd: gatewaySessionBudgetUsd
    userDailyBudgetUsd: gatewayUserDailyBudgetUsd
    dailyBudgetUsd: gatewayDailyBudgetUsd
    allowedOrigins: gatewayAllowedOrigins
    ledgerUrl: ledgerUrl
    // The gateway migrates the ledger before it serves (the placeholder image ignores the setting).
    upgradeLedgerOnStart: postgresEnabled
    authEnabled: authEnabled
    authClientId: authClientId
    authClientSecret: authClientSecret
    authTenantId: empty(authTenantId) ? tenant().tenantId : authTenantId
    authUnauthenticatedAction: authUnauthenticatedAction
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_ENVIRONMENT_NAME string = containerAppsEnvironment.outputs.name
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.name
output AZURE_OPENAI_ENDPOINT string = openAiAccess.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT_NAME string = useExistingOpenAi ? openAiDeploymentName : openAi.outputs.deploymentName
output GATEWAY_IDENTITY_NAME string = identity.outputs.name
output GATEWAY_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output SERVICE_GATEWAY_NAME string = gateway.outputs.name
output SERVICE_GATEWAY_URI string = gateway.outputs.uri
output POSTGRES_SERVER_FQDN string = postgresEnabled ? postgres.outputs.fqdn : ''
output POSTGRES_LEDGER_URL string = ledgerUrl
