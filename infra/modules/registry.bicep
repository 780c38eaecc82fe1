// The container registry azd pushes the gateway's image to, and the gateway's identity pulls
// from. No admin user and no registry password anywhere: `azd deploy` pushes with the deploying
// user's Entra token, the Container App pulls with its managed identity (AcrPull, below).

@description('Name of the registry (5-50 letters and digits, globally unique).')
param name string

@description('Region of the registry.')
param location string

@description('Tags for the registry.')
param tags object = {}

@description('Registry SKU. Basic: 10 GiB of storage, enough for a few hundred tags of a ~370 MB image sharing its base layers.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param sku string = 'Basic'

@description('Principal id of the identity that pulls images (the gateway).')
param pullPrincipalId string

// Built-in role "AcrPull" (Microsoft.ContainerRegistry/registries/pull/read).
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139:Public network access stays on: azd pushes from the developer's machine or CI and Container Apps pulls without a private network; no admin user, Entra tokens only.
  // checkov:skip=CKV_AZURE_163:Vulnerability scanning is Microsoft Defender for Containers, a subscription-level plan, not a registry property.
  // checkov:skip=CKV_AZURE_166:Quarantine of pushed images needs the Premium SKU.
  // checkov:skip=CKV_AZURE_233:Zone redundancy needs the Premium SKU; losing the registry delays a deploy, never a running replica.
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    adminUserEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, pullPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: pullPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = registry.id
output name string = registry.name
output loginServer string = registry.properties.loginServer
