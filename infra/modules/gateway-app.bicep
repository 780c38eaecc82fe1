// The gateway: `realtalk serve` as a Container App.
//
// - Ingress: external HTTPS (HTTP on port 80 is redirected), transport 'http' (HTTP/1.1 to the
//   container: the gateway's server speaks HTTP/1.1, and the WebSocket upgrade of RFC 6455 is an
//   HTTP/1.1 mechanism; Container Apps' HTTP ingress carries WebSocket).
// - Keyless: Azure OpenAI through the user-assigned identity (AZURE_CLIENT_ID picks it for
//   DefaultAzureCredential); AZURE_OPENAI_API_KEY is never set. The image is pulled with the
//   same identity, no registry password.
// - Secrets (the gateway secret, optional static tokens, the sign-in client secret) are Container
//   Apps secrets, referenced by name from the environment (secretRef); none is a plain value.
// - Probes: startup and liveness on /healthz (the process answers), readiness on /readyz (a real
//   upstream handshake, cached; 503 while draining, so a draining replica gets no new sessions).
// - Stopping: SIGTERM drains for REALTALK_GATEWAY_DRAIN_S; the termination grace period is the
//   drain plus a margin, so in-flight replies finish and clients are told before SIGKILL.
// - Scale: an HTTP concurrency rule between min and max replicas; per-user limits and daily
//   budgets are shared through the ledger database when PostgreSQL is on (per replica otherwise).

@description('Name of the Container App.')
param name string

@description('Region of the app.')
param location string

@description('Tags for the app (main.bicep adds azd-service-name).')
param tags object = {}

@description('Resource id of the Container Apps environment.')
param environmentId string

@description('Resource id of the gateway\'s user-assigned managed identity.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID).')
param identityClientId string

@description('Login server of the registry the image is pulled from with the identity.')
param registryLoginServer string

@description('Image to run (azd deploy replaces it with the one it built).')
param image string

@description('Azure OpenAI endpoint (AZURE_OPENAI_ENDPOINT).')
param openAiEndpoint string

@description('Azure OpenAI deployment (AZURE_OPENAI_DEPLOYMENT_NAME).')
param openAiDeploymentName string

@secure()
@minLength(32)
@description('REALTALK_GATEWAY_SECRET: signs short-lived client tokens and session cookies, the same on every replica.')
param gatewaySecret string

@secure()
@description('REALTALK_GATEWAY_PREVIOUS_SECRET during a rotation (empty: none).')
param gatewayPreviousSecret string = ''

@secure()
@description('REALTALK_GATEWAY_TOKENS: comma-separated static client tokens, 16+ characters each (empty: none).')
param gatewayTokens string = ''

@secure()
@description('REALTALK_GATEWAY_METRICS_TOKEN: the bearer token a scraper sends to read /metrics (empty: /metrics is open).')
param metricsToken string = ''

@secure()
@description('REALTALK_GATEWAY_SIP_WEBHOOK_SECRET: the whsec_ signing secret of the Azure OpenAI webhook endpoint for realtime.call.incoming (empty: phone calls are not taken).')
param sipWebhookSecret string = ''

@description('Port the gateway listens on in the container.')
param targetPort int = 8000

@description('REALTALK_GATEWAY_DRAIN_S: seconds in-flight replies get after SIGTERM.')
@minValue(0)
@maxValue(300)
param drainSeconds int = 20

@description('Seconds of termination grace beyond the drain (closing every client, exiting).')
@minValue(5)
@maxValue(300)
param drainMarginSeconds int = 25

@description('Minimum replicas (1: no cold start for the first caller).')
@minValue(0)
@maxValue(1000)
param minReplicas int = 1

@description('Maximum replicas.')
@minValue(1)
@maxValue(1000)
param maxReplicas int = 10

@description('Concurrent requests per replica (open WebSocket sessions included) above which a replica is added.')
@minValue(1)
param concurrentRequests int = 30

@description('vCPU per replica.')
param cpu string = '0.5'

@description('Memory per replica (Consumption pairs 0.5 vCPU with 1Gi).')
param memory string = '1Gi'

@description('REALTALK_GATEWAY_MAX_SESSIONS: sessions one replica accepts.')
@minValue(1)
param maxSessions int = 50

@description('REALTALK_GATEWAY_MAX_SESSIONS_PER_USER: concurrent sessions per user (on every replica with a shared ledger).')
@minValue(1)
param maxSessionsPerUser int = 3

@description('REALTALK_GATEWAY_BUDGET_USD: spend cap per session (0: none).')
param sessionBudgetUsd string = '1.00'

@description('REALTALK_GATEWAY_USER_DAILY_BUDGET_USD (empty: no cap).')
param userDailyBudgetUsd string = ''

@description('REALTALK_GATEWAY_DAILY_BUDGET_USD: the whole gateway per UTC day (empty: no cap).')
param dailyBudgetUsd string = ''

@description('REALTALK_GATEWAY_ORIGINS: other browser origins allowed, comma-separated (empty: the gateway\'s own only).')
param allowedOrigins string = ''

@description('REALTALK_LOG_LEVEL.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('REALTALK_LEDGER_URL without a password (empty: the image\'s default, a SQLite file per replica).')
param ledgerUrl string = ''

@description('The gateway migrates the PostgreSQL ledger itself before it serves (REALTALK_LEDGER_UPGRADE_ON_START; replicas take turns under an advisory lock).')
param upgradeLedgerOnStart bool = false

@description('Turn on Container Apps authentication with the Microsoft identity provider (Entra ID sign-in).')
param authEnabled bool = false

@description('Application (client) id of the Entra app registration used for sign-in.')
param authClientId string = ''

@secure()
@description('Client secret of that registration (empty: ID tokens only, no secret stored).')
param authClientSecret string = ''

@description('Tenant of the app registration.')
param authTenantId string = tenant().tenantId

@description('What Container Apps authentication does with a request that has not signed in.')
@allowed([
  'RedirectToLoginPage'
  'Return401'
  'AllowAnonymous'
])
param authUnauthenticatedAction string = 'RedirectToLoginPage'

var terminationGracePeriodSeconds = drainSeconds + drainMarginSeconds
var authSecretName = 'microsoft-provider-authentication-secret'

// Optional entries are built one list each (empty when off) and concatenated.
var gatewaySecretEntries = [
  {
    name: 'gateway-secret'
    value: gatewaySecret
  }
]
var previousSecretEntries = empty(gatewayPreviousSecret) ? [] : [
  {
    name: 'gateway-previous-secret'
    value: gatewayPreviousSecret
  }
]
var tokensEntries = empty(gatewayTokens) ? [] : [
  {
    name: 'gateway-tokens'
    value: gatewayTokens
  }
]
var metricsTokenEntries = empty(metricsToken) ? [] : [
  {
    name: 'gateway-metrics-token'
    value: metricsToken
  }
]
var sipSecretEntries = empty(sipWebhookSecret) ? [] : [
  {
    name: 'gateway-sip-webhook-secret'
    value: sipWebhookSecret
  }
]
var authSecretEntries = (authEnabled && !empty(authClientSecret)) ? [
  {
    name: authSecretName
    value: authClientSecret
  }
] : []
var secrets = concat(gatewaySecretEntries, previousSecretEntries, tokensEntries, metricsTokenEntries, sipSecretEntries, authSecretEntries)

var baseEnv = [
  {
    name: 'AZURE_OPENAI_ENDPOINT'
    value: openAiEndpoint
  }
  {
    name: 'AZURE_OPENAI_DEPLOYMENT_NAME'
    value: openAiDeploymentName
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'REALTALK_GATEWAY_HOST'
    value: '0.0.0.0'
  }
  {
    name: 'REALTALK_GATEWAY_PORT'
    value: string(targetPort)
  }
  {
    name: 'REALTALK_GATEWAY_DRAIN_S'
    value: string(drainSeconds)
  }
  {
    name: 'REALTALK_GATEWAY_MAX_SESSIONS'
    value: string(maxSessions)
  }
  {
    name: 'REALTALK_GATEWAY_MAX_SESSIONS_PER_USER'
    value: string(maxSessionsPerUser)
  }
  {
    name: 'REALTALK_GATEWAY_BUDGET_USD'
    value: sessionBudgetUsd
  }
  {
    name: 'REALTALK_LOG_LEVEL'
    value: logLevel
  }
  {
    name: 'REALTALK_GATEWAY_SECRET'
    secretRef: 'gateway-secret'
  }
]
var previousSecretEnv = empty(gatewayPreviousSecret) ? [] : [
  {
    name: 'REALTALK_GATEWAY_PREVIOUS_SECRET'
    secretRef: 'gateway-previous-secret'
  }
]
var tokensEnv = empty(gatewayTokens) ? [] : [
  {
    name: 'REALTALK_GATEWAY_TOKENS'
    secretRef: 'gateway-tokens'
  }
]
var metricsTokenEnv = empty(metricsToken) ? [] : [
  {
    name: 'REALTALK_GATEWAY_METRICS_TOKEN'
    secretRef: 'gateway-metrics-token'
  }
]
var sipSecretEnv = empty(sipWebhookSecret) ? [] : [
  {
    name: 'REALTALK_GATEWAY_SIP_WEBHOOK_SECRET'
    secretRef: 'gateway-sip-webhook-secret'
  }
]
// Only behind Container Apps authentication, which sets the principal headers and strips any a
// client sent (docs/gateway.md).
var principalHeaderEnv = authEnabled ? [
  {
    name: 'REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER'
    value: 'true'
  }
] : []
var originsEnv = empty(allowedOrigins) ? [] : [
  {
    name: 'REALTALK_GATEWAY_ORIGINS'
    value: allowedOrigins
  }
]
var userDailyBudgetEnv = empty(userDailyBudgetUsd) ? [] : [
  {
    name: 'REALTALK_GATEWAY_USER_DAILY_BUDGET_USD'
    value: userDailyBudgetUsd
  }
]
var dailyBudgetEnv = empty(dailyBudgetUsd) ? [] : [
  {
    name: 'REALTALK_GATEWAY_DAILY_BUDGET_USD'
    value: dailyBudgetUsd
  }
]
var ledgerEnv = empty(ledgerUrl) ? [] : [
  {
    name: 'REALTALK_LEDGER_URL'
    value: ledgerUrl
  }
]
var ledgerUpgradeEnv = upgradeLedgerOnStart ? [
  {
    name: 'REALTALK_LEDGER_UPGRADE_ON_START'
    value: 'true'
  }
] : []
var env = concat(baseEnv, previousSecretEnv, tokensEnv, metricsTokenEnv, sipSecretEnv, principalHeaderEnv, originsEnv, userDailyBudgetEnv, dailyBudgetEnv, ledgerEnv, ledgerUpgradeEnv)

resource app 'Microsoft.App/containerApps@2025-01-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: targetPort
        transport: 'http'
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      registries: [
        {
          server: registryLoginServer
          identity: identityId
        }
      ]
      secrets: secrets
    }
    template: {
      terminationGracePeriodSeconds: terminationGracePeriodSeconds
      containers: [
        {
          name: 'gateway'
          image: image
          env: env
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              // Up to 3 + 10 x 3 s to start (import, the compiled fast path, the GC freeze).
              initialDelaySeconds: 3
              periodSeconds: 3
              timeoutSeconds: 2
              failureThreshold: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: targetPort
              }
              periodSeconds: 5
              timeoutSeconds: 5
              failureThreshold: 2
              successThreshold: 1
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

// Entra ID sign-in in front of the app. The probes' paths are excluded so the platform reaches
// them whatever the unauthenticated action is.
resource auth 'Microsoft.App/containerApps/authConfigs@2025-01-01' = if (authEnabled) {
  parent: app
  name: 'current'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      unauthenticatedClientAction: authUnauthenticatedAction
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: [
        '/healthz'
        '/readyz'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          clientSecretSettingName: empty(authClientSecret) ? null : authSecretName
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
          ]
        }
      }
    }
  }
}

output id string = app.id
output name string = app.name
output fqdn string = app.properties.configuration.ingress.fqdn
output uri string = 'https://${app.properties.configuration.ingress.fqdn}'
