// @smqtt/client: the public API. Everything not exported here is internal.

export type { SecureConnectOptions } from './connect.js'
export { secureConnectAsync } from './connect.js'
export type { Enrollment, EnrollOptions } from './enroll.js'
export { enroll, loadEnrollment } from './enroll.js'
export { fileStorage } from './file-storage.js'
export type { EnrollResponse, KeyServerConnection } from './key-server-client.js'
export { KeyServerClient } from './key-server-client.js'
export type { HeldEpoch, HeldGroup, SealingKey } from './keyring.js'
export { Keyring } from './keyring.js'
export { nodeHttpsTransport } from './node-https-transport.js'
export type {
  MessageInfo,
  SecureClientEvents,
  SecureClientStats,
  SecureOptions,
  SecurityErrorEvent,
} from './secure.js'
export { SecureClient, secure } from './secure.js'
export type { ClientStorage } from './storage.js'
export { memoryStorage } from './storage.js'
export type { KeyServerTransport, TransportRequest, TransportResponse } from './transport.js'
export { fetchTransport } from './transport.js'
