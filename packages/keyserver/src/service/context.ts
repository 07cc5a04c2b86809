// What every part of the key server shares: the store, the master key, its identity, the clock,
// the policy in force, the directory (and its invalidation after a change) and the change
// listeners. One object, built once by KeyServer and handed to each module; the modules keep
// their own caches private and register here how to forget them.
import type { Identity } from '@smqtt/core'
import type { Logger } from 'pino'
import type { MasterKey } from '../master-key.js'
import type { CertificateAuthority } from '../pki/certificate-authority.js'
import type { KeyStore } from '../store/key-store.js'
import type { AuditLog } from './audit-log.js'
import { Directory, type DirectorySource } from './directory.js'
import type { FailedAuthentications } from './failed-auth.js'
import { PolicyState } from './policy-state.js'
import type { KeyServerSettings } from './settings.js'

/** What a change means to those who hold keys; the push channel listens to these. */
export type KeyServerChange =
  | { readonly kind: 'epochs'; readonly groups: readonly number[] }
  | { readonly kind: 'revoked'; readonly principal: string; readonly kid: number }
  | { readonly kind: 'policy'; readonly version: number }

/** See KeyServerContext.currentDirectory. */
const DIRECTORY_TTL_SECONDS = 2

/** What KeyServer hands the context: the fields below, and the policy first in force. */
export type KeyServerContextOptions = Pick<
  KeyServerContext,
  'settings' | 'store' | 'masterKey' | 'ca' | 'logger' | 'now' | 'identity' | 'audit' | 'failedAuth' | 'policy'
>

export class KeyServerContext {
  readonly settings: KeyServerSettings
  readonly store: KeyStore
  readonly masterKey: MasterKey
  readonly ca: CertificateAuthority | undefined
  readonly logger: Logger
  readonly now: () => number
  readonly identity: Identity
  readonly audit: AuditLog
  readonly failedAuth: FailedAuthentications
  #policy: PolicyState
  readonly #listeners = new Set<(change: KeyServerChange) => void>()
  // What modules derived from the state (bundles, tags, the CRL): dropped on every change.
  readonly #forgetters: (() => void)[] = []
  // Told of every directory a check produced (the sealed-key cache keeps only its epochs).
  readonly #directoryObservers: ((directory: Directory) => void)[] = []
  #directory: Directory | undefined
  readonly #directorySource: DirectorySource
  #directoryChecks: Promise<unknown> = Promise.resolve()
  #queuedDirectoryCheck: Promise<Directory> | undefined
  #directoryInvalidations = 0
  #generation = 1

  constructor(options: KeyServerContextOptions) {
    this.settings = options.settings
    this.store = options.store
    this.masterKey = options.masterKey
    this.ca = options.ca
    this.logger = options.logger
    this.now = options.now
    this.identity = options.identity
    this.audit = options.audit
    this.failedAuth = options.failedAuth
    this.#policy = options.policy
    this.#directorySource = {
      store: this.store,
      masterKey: this.masterKey,
      logger: this.logger,
      policy: () => this.policy,
      reloadPolicy: async () => {
        await this.reloadPolicy()
        return this.policy
      },
      nextGeneration: () => this.#generation++,
    }
  }

  /** The policy in force; replaced whole (see setPolicy and reloadPolicy). */
  get policy(): PolicyState {
    return this.#policy
  }

  set policy(next: PolicyState) {
    this.#policy = next
  }

  /** Reloads the policy from the store (another key server process may have changed it). */
  async reloadPolicy(): Promise<void> {
    const stored = await this.store.getPolicy()
    if (stored && stored.version !== this.policy.version)
      this.policy = PolicyState.fromDocument(stored.version, stored.document)
  }

  /** Subscribes to changes (for push delivery); returns the unsubscribe function. */
  onChange(listener: (change: KeyServerChange) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  emit(change: KeyServerChange): void {
    this.forgetDerivedState()
    for (const listener of this.#listeners) {
      try {
        listener(change)
      } catch (err) {
        this.logger.error({ err, change: change.kind }, 'change listener failed')
      }
    }
  }

  /** Registers what a module must drop after any change (see forgetDerivedState). */
  onForget(forget: () => void): void {
    this.#forgetters.push(forget)
  }

  /** Registers a module to be told of each directory a check produced. */
  onDirectoryChecked(observer: (directory: Directory) => void): void {
    this.#directoryObservers.push(observer)
  }

  /** After any change: what was derived from the old state must be built again. */
  forgetDerivedState(): void {
    this.#directoryInvalidations++
    if (this.#directory) this.#directory.checkedAt = Number.NEGATIVE_INFINITY // follow the log at the next use
    for (const forget of this.#forgetters) forget()
  }

  /**
   * The directory bundles, tags and writer records are built from (see Directory), checked
   * against the store's change log at most every DIRECTORY_TTL_SECONDS, so changes made by
   * other key server processes sharing the store are picked up, and at the next use after any
   * change this process makes. Checks run one after another, and a caller joins only a check
   * queued after it asked, never one already reading the store (which may predate its change).
   */
  currentDirectory(now: number): Promise<Directory> {
    const current = this.#directory
    if (current && now - current.checkedAt < DIRECTORY_TTL_SECONDS) return Promise.resolve(current)
    if (!this.#queuedDirectoryCheck) {
      const queued: Promise<Directory> = this.#directoryChecks.then(() => {
        this.#queuedDirectoryCheck = undefined
        return this.#checkDirectory(now)
      })
      this.#queuedDirectoryCheck = queued
      this.#directoryChecks = queued.catch(() => undefined)
    }
    return this.#queuedDirectoryCheck
  }

  /** The directory once it has followed the store's log now (one small query), whatever its age. */
  freshDirectory(): Promise<Directory> {
    if (this.#directory) this.#directory.checkedAt = Number.NEGATIVE_INFINITY
    return this.currentDirectory(this.now())
  }

  async #checkDirectory(now: number): Promise<Directory> {
    const invalidations = this.#directoryInvalidations
    const source = this.#directorySource
    const current = this.#directory
    let directory = current
    if (!directory || !(await directory.follow(source, now))) directory = await Directory.build(source, now)
    // A change this process made meanwhile may have been written after the log was read.
    if (invalidations !== this.#directoryInvalidations) directory.checkedAt = Number.NEGATIVE_INFINITY
    for (const observe of this.#directoryObservers) observe(directory)
    this.#directory = directory
    return directory
  }
}
