// "Cognitive Services OpenAI User" for the gateway's identity on an Azure OpenAI resource, new or
// existing (deployed into that resource's resource group). The role allows inference (the
// Realtime API included) and reading deployments; it cannot read keys or change deployments.

@description('Name of the Azure OpenAI resource, in this module\'s resource group.')
param accountName string

@description('Principal id of the gateway\'s managed identity.')
param principalId string

// Built-in role "Cognitive Services OpenAI User".
var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: accountName
}

resource openAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output endpoint string = account.properties.endpoint
