import { type NonExtractableKeys, SmqttError } from '@smqtt/core'

// What the client must keep across restarts (identity, enrollment, sequence reservations, the
// last key bundle) goes through one small async key-value interface, so the same client runs on
// a file system, in a browser (IndexedDB/localStorage adapters) or in memory for tests.

/**
 * Durable key-value storage for the client. `set` must resolve only once the value is durable:
 * sequence-number reservations rely on it to never reuse a nonce.
 *
 * @example
 * ```ts
 * const storage: ClientStorage = { get: async (k) => localStorage.getItem(k) ?? undefined, set: async (k, v) => localStorage.setItem(k, v) }
 * ```
 */
export interface ClientStorage {
  get(key: string): Promise<string | undefined>
  set(key: string, value: string): Promise<void>
  /**
   * Takes the exclusive lock `name` for everyone sharing this storage (other processes on a
   * folder, other tabs of an origin) and resolves to its release; rejects with
   * `ERR_IDENTITY_IN_USE` while someone else holds it. Optional: without it a second running
   * copy of an identity is not refused, though it still never reuses a nonce.
   */
  lock?(name: string): Promise<() => Promise<void>>
  /**
   * Keeps WebCrypto private keys as the objects they are (IndexedDB stores a CryptoKey by
   * structured clone, still non-extractable), so `enroll` can make an identity whose secrets
   * nothing can read. Optional, with `getKeys`: without them the identity's keys are stored as bytes.
   */
  setKeys?(key: string, keys: NonExtractableKeys): Promise<void>
  /** The keys `setKeys` kept under `key`. */
  getKeys?(key: string): Promise<NonExtractableKeys | undefined>
}

/** A storage that keeps strings only: an identity enrolled into it has raw keys. */
export type StringStorage = ClientStorage & { readonly setKeys?: never; readonly getKeys?: never }

/**
 * Storage in memory, for tests: it forgets everything with the process.
 *
 * @example
 * ```ts
 * const client = secure(mqtt.connect(url), { identity, kid, keyServer, storage: memoryStorage() })
 * ```
 */
export function memoryStorage(): StringStorage {
  const values = new Map<string, string>()
  const locks = new Set<string>()
  return {
    get: async (key) => values.get(key),
    set: async (key, value) => {
      values.set(key, value)
    },
    lock: async (name) => {
      if (locks.has(name)) throw new SmqttError('ERR_IDENTITY_IN_USE', `${name} is in use`)
      locks.add(name)
      return async () => {
        locks.delete(name)
      }
    },
  }
}
