// @smqtt/client in browsers (package.json "exports" → "browser" condition): the whole public API
// except the two Node-only helpers, fileStorage (node:fs) and nodeHttpsTransport (node:https).
// Everything here runs on any platform; src/index.ts adds the Node helpers on top of it.
//
// Why a "browser" condition rather than a `@smqtt/client/node` subpath: the Node entry keeps its
// one-import API (`import { fileStorage, secure } from '@smqtt/client'`, used by the README and
// examples/smart-home), and every bundler that targets browsers (esbuild, Vite, webpack, Rollup
// with `browser: true`) applies the condition. Importing fileStorage in a browser build fails at
// bundle time ("No matching export"), not at run time.

export type { EventMap, TypedEmitter } from './_emitter.js'
export type { FreshnessEvent, FreshnessStats } from './_freshness.js'
export type { KeySource } from './_key-lifecycle.js'
export type {
  IdbDatabaseLike,
  IdbFactoryLike,
  IdbObjectStoreLike,
  IdbOpenRequestLike,
  IdbRequestLike,
  IdbTransactionLike,
  IndexedDbOptions,
  LocalStorageOptions,
  WebStorageLike,
} from './browser-storage.js'
export { indexedDbStorage, localStorageStorage } from './browser-storage.js'
export type { SecureConnectOptions } from './connect.js'
export { secureConnectAsync } from './connect.js'
export type { EnrolledIdentity, Enrollment, EnrollOptions } from './enroll.js'
export { enroll, loadEnrollment } from './enroll.js'
export type { EnrollResponse, FreshnessAnswer, KeyServerConnection } from './key-server-client.js'
export { KeyServerClient } from './key-server-client.js'
export type { HeldEpoch, HeldGroup, SealingKey } from './keyring.js'
export { Keyring } from './keyring.js'
export type {
  MessageInfo,
  PublishCallback,
  PublishProperties,
  SecureClientEvents,
  SecureClientStats,
  SecureOptions,
  SecurePublishOptions,
  SecurityErrorEvent,
} from './secure.js'
export { SecureClient, secure } from './secure.js'
export type { ClientStorage, StringStorage } from './storage.js'
export { memoryStorage } from './storage.js'
export type { KeyServerTransport, TransportRequest, TransportResponse } from './transport.js'
export { fetchTransport } from './transport.js'
