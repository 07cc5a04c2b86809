// @smqtt/core: the public API. Everything not exported here is internal.

export { equalBytes as constantTimeEqual } from './_bytes.js'
export type {
  AclAction,
  AclRule,
  KeyGroupPolicy,
  Policy,
  PrincipalContext,
  PublishRights,
  WideGroupWarning,
} from './acl.js'
export { PolicyEvaluator, parsePolicy, policyProblems, publishRightsAllow, substitutePattern } from './acl.js'
export type { AeadAlgorithm, CryptoBackend } from './crypto/backend.js'
export type { HpkeKem, X25519Agreement } from './crypto/hpke.js'
export { hkdf, sha256 } from './crypto/kdf.js'
export { isValidEd25519PublicKey, isValidX25519PublicKey, isValidXWingPublicKey } from './crypto/keys.js'
export { nobleBackend } from './crypto/noble.js'
export type { AsyncSigningKey, SigningKeyPair } from './crypto/signature.js'
export { signWithContext, signWithContextAsync, verifyWithContext } from './crypto/signature.js'
export type {
  NonExtractableIdentity,
  NonExtractableKeys,
  NonExtractableX25519,
  WebCryptoKey,
} from './crypto/webcrypto-keys.js'
export {
  generateNonExtractableIdentity,
  generateNonExtractableX25519,
  nonExtractableIdentity,
  x25519Agreement,
} from './crypto/webcrypto-keys.js'
export type { EnvelopeProperties, PropertyBinding, PropertyVerdict } from './envelope/bound-properties.js'
export {
  MAX_BOUND_PROPERTIES_BYTES,
  MAX_BOUND_PROPERTY_BYTES,
  MAX_BOUND_USER_PROPERTIES,
} from './envelope/bound-properties.js'
export type { SenderKey } from './envelope/epoch-key.js'
export { EpochKey } from './envelope/epoch-key.js'
export type { EnvelopeHeader, ParsedEnvelope } from './envelope/header.js'
export { parseEnvelope } from './envelope/header.js'
export type { EnvelopeKeys, OpenEnvelopeOptions, OpenedEnvelope, UnverifiedEnvelope } from './envelope/open.js'
export { beginOpenEnvelope, checkEnvelopeSignature, finishOpenEnvelopeUnsafe, openEnvelope } from './envelope/open.js'
export type { SealEnvelopeAsyncInput, SealEnvelopeInput, SealEnvelopeOptions } from './envelope/seal.js'
export { sealEnvelope, sealEnvelopeAsync } from './envelope/seal.js'
export type { AsyncEnvelopeSigner, EnvelopeSigner } from './envelope/signer.js'
export { createAsyncEnvelopeSigner, createEnvelopeSigner } from './envelope/signer.js'
export type { SuiteId } from './envelope/suites.js'
export { DEFAULT_SUITE, SUITES } from './envelope/suites.js'
export type { VerifyEnvelopeOptions, WriterLookup } from './envelope/verify.js'
export { verifyEnvelope } from './envelope/verify.js'
export type { SmqttErrorCode, SmqttErrorDetails } from './errors.js'
export { ERROR_CODES, isSmqttError, SmqttError } from './errors.js'
export type { Identity, IdentityJson, PublicIdentity, PublicIdentityJson } from './identity.js'
export {
  exportIdentity,
  exportPublicIdentity,
  generateIdentity,
  importIdentity,
  importPublicIdentity,
  publicIdentity,
} from './identity.js'
export type {
  CreateKeyBundleOptions,
  KeyBundleEpochInput,
  KeyBundleGroupInput,
  KeyGroupWriter,
  OpenedEpochKey,
  OpenedKeyBundle,
  OpenedKeyGroup,
  OpenedKeyGroupWriter,
  OpenKeyBundleOptions,
  OpenKeyBundleWithAgreementOptions,
  SealedEpochKey,
} from './key-bundle.js'
export {
  createKeyBundle,
  MAX_WRITER_FILTERS,
  openKeyBundle,
  openKeyBundleWithAgreement,
  publishRightsProblem,
  sealEpochKey,
} from './key-bundle.js'
export type {
  ReplayCheckInput,
  ReplayEntryChange,
  ReplayFloorEntry,
  ReplayWindowChanges,
  ReplayWindowEntry,
  ReplayWindowOptions,
  ReplayWindowState,
} from './replay-window.js'
export { ReplayWindow } from './replay-window.js'
export type { CreateRevocationListOptions, RevocationEntry } from './revocation-list.js'
export { createRevocationList, RevocationList } from './revocation-list.js'
export type { SequenceRange, SequenceSource } from './sequence-counter.js'
export { memorySequenceSource, SequenceCounter } from './sequence-counter.js'
export type { SignedDocument } from './signed-document.js'
export { isValidPrincipalId } from './signed-document.js'
export type { TopicLimits } from './topic-filter.js'
export {
  filterCovers,
  filtersIntersect,
  isValidFilter,
  isValidTopic,
  topicMatches,
  validateFilter,
  validateTopic,
} from './topic-filter.js'
export type {
  CreateWriterRecordOptions,
  OpenedWriterRecord,
  OpenWriterRecordOptions,
} from './writer-record.js'
export { createWriterRecord, MAX_RECORD_WRITERS, openWriterRecord } from './writer-record.js'

import { defaultBackend } from '#crypto-backend'
/** The backend this platform uses by default: `native` on Node with sodium-native, `noble` elsewhere. */
export const cryptoBackend = defaultBackend
export type {
  BrokerSnapshot,
  BrokerSnapshotDelta,
  BrokerSnapshotNotice,
  SnapshotEpoch,
  SnapshotPrincipal,
} from './broker-snapshot.js'
export {
  applyBrokerSnapshotDelta,
  createBrokerSnapshot,
  createBrokerSnapshotDelta,
  createBrokerSnapshotNotice,
  openBrokerSnapshot,
  openBrokerSnapshotDelta,
  openBrokerSnapshotNotice,
  SNAPSHOT_ACCEPT_DELTA_HEADER,
  SNAPSHOT_NOTICE_HEADER,
} from './broker-snapshot.js'
export { configField, parseConfigText } from './config-text.js'
export {
  createConnectPassword,
  createConnectPasswordAsync,
  isConnectPassword,
  verifyConnectPassword,
} from './connect-password.js'
export {
  BROKER_CONTROL_TOPIC,
  CONTROL_TOPIC_PREFIX,
  CONTROL_TOPICS_FILTER,
  filterReachesControlTopic,
  isControlTopic,
  principalControlTopic,
} from './control-topics.js'
export type { EnrollmentRequest, EnrollmentRequestOptions } from './enrollment-request.js'
export { createEnrollmentRequest, createEnrollmentRequestAsync, verifyEnrollmentProof } from './enrollment-request.js'
export type { PrincipalRecord } from './principal-record.js'
export { createPrincipalRecord, openPrincipalRecord } from './principal-record.js'
export { PRINCIPAL_URI_PREFIX, principalIdFromUris, principalUri } from './principal-uri.js'
export type { RequestSignature, RequestToSign } from './request-signature.js'
export {
  parseRequestSignature,
  REQUEST_SIGNATURE_HEADERS,
  signRequest,
  signRequestAsync,
  verifyRequestSignature,
} from './request-signature.js'
