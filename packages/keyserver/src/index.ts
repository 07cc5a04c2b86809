// @smqtt/keyserver: the public API. The CLI (`smqtt-keyserver`) is built on the same exports.

export type { KeyServerConfig } from './config.js'
export { defaultKeyServerConfig, loadKeyServerConfig, parseKeyServerConfig } from './config.js'
export type { BuildAppOptions } from './http/app.js'
export { buildApp } from './http/app.js'
export type { KeyServerDeadlines } from './http/deadlines.js'
export { BROKER_ROLE } from './http/device-routes.js'
export type { KeyServerMetrics } from './http/metrics.js'
export type { MasterKeySource } from './master-key.js'
export { MasterKey } from './master-key.js'
export type {
  CertificateAuthorityMaterial,
  CreateCertificateAuthorityOptions,
  IssueClientCertificateOptions,
  IssuedClientCertificate,
  IssuedServerCertificate,
  IssueIntermediateAuthorityOptions,
  IssueRevocationListOptions,
  IssueServerCertificateOptions,
  RevokedCertificate,
} from './pki/certificate-authority.js'
export {
  CertificateAuthority,
  createCertificateAuthority,
  principalIdFromCertificate,
} from './pki/certificate-authority.js'
export type { DevPki } from './pki/dev-pki.js'
export { ensureDevPki } from './pki/dev-pki.js'
export type { RenewServerCertificateOptions, ServerCertificateRenewal } from './pki/server-certificate-renewal.js'
export { renewServerCertificate, SERVER_CERTIFICATE_VALIDITY_DAYS } from './pki/server-certificate-renewal.js'
export type { InitOptions, InitResult, RunningKeyServer } from './server.js'
export { initKeyServer, renewDeploymentCertificate, startKeyServer } from './server.js'
export type { AuditLog } from './service/audit-log.js'
export type { FailedAuthentications, Failure as AuthenticationFailure } from './service/failed-auth.js'
export type { EnrollmentResult, KeyServerChange, KeyServerOptions, KeyServerSettings } from './service/key-server.js'
export { KeyServer } from './service/key-server.js'
export type { MqttPush, MqttPushOptions } from './service/mqtt-push.js'
export {
  DEFAULT_MAX_INLINE_SNAPSHOT_BYTES,
  KEYSERVER_ROLE,
  PUSH_PRINCIPAL_ID,
  startMqttPush,
} from './service/mqtt-push.js'
export type { PolicyState } from './service/policy-state.js'
// The store's rows and arguments. Two are exported under other names, since the family already
// uses theirs for something else: a principal record is core's signed document (here the stored
// row, `StoredPrincipal`), and an enrollment is the client's saved one (here what one
// enrollment writes, `PrincipalEnrollment`).
export type {
  AuditEntry,
  DirectoryChange,
  DirectoryChanges,
  EnrolledPrincipal,
  Enrollment as PrincipalEnrollment,
  EnrollmentTokenRecord,
  EpochRecord,
  KeyStore,
  NewAuditEntry,
  NewPrincipal,
  PrincipalRecord as StoredPrincipal,
  PrincipalStatus,
  StoredPolicy,
  StoredRevocationList,
  TokenEnrollment,
  UnixSeconds,
} from './store/key-store.js'
export { openStore } from './store/open-store.js'
