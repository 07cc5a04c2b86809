// @smqtt/keyserver: the public API. The CLI (`smqtt-keyserver`) is built on the same exports.

export type { KeyServerConfig } from './config.js'
export { defaultKeyServerConfig, loadKeyServerConfig, parseKeyServerConfig } from './config.js'
export type { BuildAppOptions } from './http/app.js'
export { buildApp } from './http/app.js'
export { BROKER_ROLE } from './http/device-routes.js'
export { MasterKey } from './master-key.js'
export {
  CertificateAuthority,
  createCertificateAuthority,
  principalIdFromCertificate,
} from './pki/certificate-authority.js'
export { ensureDevPki } from './pki/dev-pki.js'
export type { RenewServerCertificateOptions, ServerCertificateRenewal } from './pki/server-certificate-renewal.js'
export { renewServerCertificate, SERVER_CERTIFICATE_VALIDITY_DAYS } from './pki/server-certificate-renewal.js'
export type { InitOptions, InitResult, RunningKeyServer } from './server.js'
export { initKeyServer, renewDeploymentCertificate, startKeyServer } from './server.js'
export type { EnrollmentResult, KeyServerChange, KeyServerOptions, KeyServerSettings } from './service/key-server.js'
export { KeyServer } from './service/key-server.js'
export type { KeyStore } from './store/key-store.js'
export { openStore } from './store/open-store.js'
