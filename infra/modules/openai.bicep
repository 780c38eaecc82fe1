// A new Azure OpenAI resource with the gpt-realtime-1.5 deployment, keyless: local (key)
// authentication is disabled, so the only way in is Microsoft Entra ID (the gateway's managed
// identity holds "Cognitive Services OpenAI User", granted in openai-access.bicep).

@description('Name of the Azure OpenAI resource; also its custom subdomain (<name>.openai.azure.com).')
param name string

@description('Region of the resource: one where gpt-realtime-1.5 (2026-02-23) has Global Standard deployments.')
@allowed([
  'eastus2'
  'swedencentral'
])
param location string

@description('Tags for the resource.')
param tags object = {}

@description('Name of the deployment the gateway connects to (AZURE_OPENAI_DEPLOYMENT_NAME).')
param deploymentName string = 'gpt-realtime-1.5'

@description('Model of the deployment.')
param modelName string = 'gpt-realtime-1.5'

@description('Model version of the deployment.')
param modelVersion string = '2026-02-23'

@description('Deployment SKU: GlobalStandard (pay per token, routed to any region with capacity).')
@allowed([
  'GlobalStandard'
  'DataZoneStandard'
])
param deploymentSku string = 'GlobalStandard'

@description('Capacity of the deployment in the SKU\'s units (the subscription\'s quota for the model caps it).')
@minValue(1)
param deploymentCapacity int = 1

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  // checkov:skip=CKV_AZURE_134:Public network access stays on: the Container Apps environment has no private network in this template; keys are disabled, so only Entra principals with a data-plane role get in.
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  // Not used by the gateway; a system identity lets the resource reach others (customer-managed
  // keys, a storage account) without keys if it is ever given a role.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSku
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    // A pinned version: the gateway's prices and protocol handling are for this model version.
    versionUpgradeOption: 'NoAutoUpgrade'
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
