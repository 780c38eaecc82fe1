// Azure Database for PostgreSQL flexible server for the usage ledger, so every replica of the
// gateway shares per-user session limits and daily budgets (docs/ledger.md). Microsoft Entra ID
// only: password authentication is disabled and no administrator password exists. The gateway's
// managed identity is an Entra administrator, so it logs in with a token as the role named after
// it (REALTALK_LEDGER_URL=postgresql+asyncpg://<identity-name>@<server>.postgres.database.azure.com:5432/realtalk)
// and owns the tables it creates with `realtalk ledger upgrade`.

@description('Name of the server (<name>.postgres.database.azure.com).')
param name string

@description('Region of the server.')
param location string

@description('Tags for the server.')
param tags object = {}

@description('Compute size. Burstable B1ms: 1 vCore, 2 GiB; the ledger writes one row per response.')
param skuName string = 'Standard_B1ms'

@description('Compute tier of skuName.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string = 'Burstable'

@description('Storage in GiB (grows by itself when nearly full).')
param storageSizeGB int = 32

@description('PostgreSQL major version.')
@allowed([
  '14'
  '15'
  '16'
])
param version string = '16'

@description('Name of the ledger database.')
param databaseName string = 'realtalk'

@description('Name of the gateway\'s managed identity: its PostgreSQL role name.')
param adminIdentityName string

@description('Principal (object) id of the gateway\'s managed identity.')
param adminPrincipalId string

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// The Entra administrator's resource name is the principal's object id; its principalName
// becomes the database role the gateway logs in as.
resource admin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: adminPrincipalId
  properties: {
    principalName: adminIdentityName
    principalType: 'ServicePrincipal'
    tenantId: tenant().tenantId
  }
}

// One operation at a time on a flexible server: the database and the firewall rule wait for
// the administrator.
resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    admin
  ]
}

// 0.0.0.0-0.0.0.0 admits connections from Azure services only (Container Apps' outbound
// addresses are Azure addresses and may change); logins still need an Entra token of a role that
// exists on the server.
resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [
    database
  ]
}

output name string = server.name
output fqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
