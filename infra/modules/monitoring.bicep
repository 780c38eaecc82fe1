// Log Analytics: where the Container Apps environment sends the gateway's stdout/stderr (one JSON
// object per line) and the platform's system logs. The customer id and shared key go to the
// environment's appLogsConfiguration.

@description('Name of the Log Analytics workspace.')
param name string

@description('Region of the workspace.')
param location string

@description('Tags for the workspace.')
param tags object = {}

@description('Days the logs are kept (30 is included in the per-GB price).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Daily ingestion cap in GB (-1: none). A cap stops ingestion for the rest of the day when reached.')
param dailyQuotaGb int = -1

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

output id string = workspace.id
output name string = workspace.name
