// @smqtt/client: the public API. Everything not exported here is internal.
// Browser bundles get src/index.browser.ts instead (package.json "exports" → "browser"): the
// same API without the two Node-only helpers below.

export { fileStorage } from './file-storage.js'
export * from './index.browser.js'
export { nodeHttpsTransport } from './node-https-transport.js'
