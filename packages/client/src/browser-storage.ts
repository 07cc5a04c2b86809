// Browser storages: Web Storage (localStorage) and IndexedDB. No Node built-ins; they take the
// platform object as an option so they can be tested (and used) with any implementation.
import { type NonExtractableKeys, SmqttError } from '@smqtt/core'
import type { ClientStorage, StringStorage } from './storage.js'

/** The part of the Web Storage API (`localStorage`) that {@link localStorageStorage} uses. */
export interface WebStorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
}

/** Options of {@link localStorageStorage}. */
export interface LocalStorageOptions {
  /** Prepended to every key, so several identities (or apps) can share one origin. Default `smqtt:`. */
  readonly prefix?: string
  /** Defaults to `globalThis.localStorage`. */
  readonly storage?: WebStorageLike
}

/** The part of the Web Locks API (`navigator.locks`) the storages use. */
interface LockManagerLike {
  request(
    name: string,
    options: { ifAvailable: true },
    callback: (lock: unknown) => Promise<void> | undefined,
  ): Promise<unknown>
}

/**
 * An exclusive Web Lock, shared by every tab and worker of the origin and let go by the browser
 * when the tab closes, so a crashed tab never leaves it behind. Where the browser has no Web
 * Locks, nothing is locked (a second tab still never reuses a nonce: see SequenceSource).
 */
async function webLock(name: string): Promise<() => Promise<void>> {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks
  if (!locks) return async () => {}
  return new Promise((resolve, reject) => {
    locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (!lock) {
          reject(new SmqttError('ERR_IDENTITY_IN_USE', `${name} is in use by another tab or worker of this origin`))
          return undefined
        }
        return new Promise<void>((release) => resolve(async () => release()))
      })
      .catch(reject)
  })
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('storage key must be a non-empty string')
}

/**
 * Storage in the browser's `localStorage` (synchronous, per origin, ~5 MB). `setItem` has
 * returned once the value is in the browser's store; the browser writes it to disk on its own
 * schedule, so a browser crash right after may lose the last write (a sequence reservation is
 * then reused: prefer {@link indexedDbStorage}, whose writes are committed with strict durability
 * where supported). A quota error rejects `set`.
 *
 * @example
 * ```ts
 * const storage = localStorageStorage({ prefix: 'smqtt:thermostat-1:' })
 * const enrollment = await loadEnrollment(storage)
 * ```
 */
export function localStorageStorage(options: LocalStorageOptions = {}): StringStorage {
  const prefix = options.prefix ?? 'smqtt:'
  const resolve = (): WebStorageLike => {
    const storage = options.storage ?? (globalThis as { localStorage?: WebStorageLike }).localStorage
    if (!storage) throw new TypeError('localStorage is not available here; pass options.storage')
    return storage
  }
  return {
    async get(key) {
      checkKey(key)
      return resolve().getItem(prefix + key) ?? undefined
    },
    async set(key, value) {
      checkKey(key)
      if (typeof value !== 'string') throw new TypeError('storage value must be a string')
      resolve().setItem(prefix + key, value)
    },
    lock: (name) => webLock(`smqtt:localStorage:${prefix}${name}`),
  }
}

/** The part of the IndexedDB API (`indexedDB`) that {@link indexedDbStorage} uses. */
export interface IdbFactoryLike {
  open(name: string, version?: number): IdbOpenRequestLike
}
/** The part of `IDBRequest` that {@link indexedDbStorage} uses. */
export interface IdbRequestLike<T> {
  result: T
  error: unknown
  onsuccess: ((this: unknown, ev: unknown) => unknown) | null
  onerror: ((this: unknown, ev: unknown) => unknown) | null
}
/** The part of `IDBOpenDBRequest` that {@link indexedDbStorage} uses. */
export interface IdbOpenRequestLike extends IdbRequestLike<IdbDatabaseLike> {
  onupgradeneeded: ((this: unknown, ev: unknown) => unknown) | null
}
/** The part of `IDBDatabase` that {@link indexedDbStorage} uses. */
export interface IdbDatabaseLike {
  readonly objectStoreNames: { contains(name: string): boolean }
  createObjectStore(name: string): unknown
  transaction(store: string, mode: 'readonly' | 'readwrite', options?: { durability?: string }): IdbTransactionLike
  close(): void
}
/** The part of `IDBTransaction` that {@link indexedDbStorage} uses. */
export interface IdbTransactionLike {
  objectStore(name: string): IdbObjectStoreLike
  oncomplete: ((this: unknown, ev: unknown) => unknown) | null
  onerror: ((this: unknown, ev: unknown) => unknown) | null
  onabort: ((this: unknown, ev: unknown) => unknown) | null
  error: unknown
}
/** The part of `IDBObjectStore` that {@link indexedDbStorage} uses. */
export interface IdbObjectStoreLike {
  get(key: string): IdbRequestLike<unknown>
  put(value: unknown, key: string): IdbRequestLike<unknown>
}

/** Options of {@link indexedDbStorage}. */
export interface IndexedDbOptions {
  /** Database name, default `smqtt`. */
  readonly database?: string
  /** Object store name, default `client`. */
  readonly store?: string
  /** Defaults to `globalThis.indexedDB`. */
  readonly indexedDB?: IdbFactoryLike
}

const failure = (error: unknown, what: string) =>
  error instanceof Error ? error : new Error(`IndexedDB ${what} failed${error ? `: ${String(error)}` : ''}`)

/**
 * Storage in IndexedDB, one record per key in one object store. `set` resolves when its
 * transaction completes, requested with `durability: 'strict'` (flushed to disk where the
 * browser supports the hint), so sequence reservations survive a crash. It also keeps CryptoKey
 * objects (`setKeys`), so `enroll` makes an identity with non-extractable private keys
 * where the browser has WebCrypto Ed25519 and X25519.
 *
 * @example
 * ```ts
 * const storage = indexedDbStorage({ database: 'smqtt-thermostat-1' })
 * const enrollment = (await loadEnrollment(storage)) ?? (await enroll({ ..., storage }))
 * ```
 */
export function indexedDbStorage(options: IndexedDbOptions = {}): ClientStorage {
  const name = options.database ?? 'smqtt'
  const storeName = options.store ?? 'client'
  let db: Promise<IdbDatabaseLike> | undefined
  const open = (): Promise<IdbDatabaseLike> => {
    db ??= new Promise<IdbDatabaseLike>((resolve, reject) => {
      const factory = options.indexedDB ?? (globalThis as { indexedDB?: IdbFactoryLike }).indexedDB
      if (!factory) throw new TypeError('indexedDB is not available here; pass options.indexedDB')
      const request = factory.open(name, 1)
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName)
      }
      request.onsuccess = () => resolve(request.result)
      request.onerror = () => reject(failure(request.error, 'open'))
    }).catch((err: unknown) => {
      db = undefined // a failed open (e.g. blocked) is retried on next use
      throw err
    })
    return db
  }
  const run = async <T>(
    mode: 'readonly' | 'readwrite',
    op: (store: IdbObjectStoreLike) => IdbRequestLike<T>,
  ): Promise<T> => {
    const database = await open()
    return new Promise<T>((resolve, reject) => {
      const tx = database.transaction(storeName, mode, mode === 'readwrite' ? { durability: 'strict' } : undefined)
      const request = op(tx.objectStore(storeName))
      // Resolve on commit, not on the request's success: only then is the write durable.
      tx.oncomplete = () => resolve(request.result)
      tx.onerror = () => reject(failure(tx.error ?? request.error, mode === 'readwrite' ? 'write' : 'read'))
      tx.onabort = () => reject(failure(tx.error, 'transaction (aborted)'))
    })
  }
  return {
    async get(key) {
      checkKey(key)
      const value = await run('readonly', (store) => store.get(key))
      return typeof value === 'string' ? value : undefined
    },
    async set(key, value) {
      checkKey(key)
      if (typeof value !== 'string') throw new TypeError('storage value must be a string')
      await run('readwrite', (store) => store.put(value, key))
    },
    async setKeys(key, keys) {
      checkKey(key)
      await run('readwrite', (store) => store.put({ signing: keys.signing, agreement: keys.agreement }, key))
    },
    async getKeys(key) {
      checkKey(key)
      const value = await run('readonly', (store) => store.get(key))
      return typeof value === 'object' && value !== null ? (value as NonExtractableKeys) : undefined
    },
    lock: (lockName) => webLock(`smqtt:indexedDB:${name}/${storeName}:${lockName}`),
  }
}
