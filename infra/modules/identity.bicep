// The gateway's user-assigned managed identity: it pulls the image (AcrPull), calls Azure OpenAI
// ("Cognitive Services OpenAI User") and logs in to PostgreSQL (an Entra administrator of the
// server, when the ledger database is on). User-assigned rather than system-assigned, so the roles
// exist before the first revision starts and survive the app being recreated.

@description('Name of the identity; also its PostgreSQL role name when the ledger database is on.')
param name string

@description('Region of the identity.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
