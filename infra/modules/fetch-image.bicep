// The image the gateway's Container App runs now, so that `azd provision` on an existing app
// keeps the image `azd deploy` put there (azd's image-based strategy: provision owns the
// configuration, deploy replaces containers[0].image).

@description('Name of the existing Container App.')
param name string

resource app 'Microsoft.App/containerApps@2025-01-01' existing = {
  name: name
}

output image string = app.properties.template.containers[0].image
