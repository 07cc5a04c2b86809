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
}

/**
 * Storage in memory, for tests: it forgets everything with the process.
 *
 * @example
 * ```ts
 * const client = secure(mqtt.connect(url), { identity, kid, keyserver, storage: memoryStorage() })
 * ```
 */
export function memoryStorage(): ClientStorage {
  const values = new Map<string, string>()
  return {
    get: async (key) => values.get(key),
    set: async (key, value) => {
      values.set(key, value)
    },
  }
}
