import type { ClientStorage } from './storage.js'

/**
 * A map from principal id to what the clients of this process share for it, one per storage
 * object (kept in a WeakMap, so it goes with the storage).
 */
export function perStorage<T>(): (storage: ClientStorage) => Map<string, T> {
  const maps = new WeakMap<ClientStorage, Map<string, T>>()
  return (storage) => {
    let byId = maps.get(storage)
    if (!byId) {
      byId = new Map()
      maps.set(storage, byId)
    }
    return byId
  }
}
