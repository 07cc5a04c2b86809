// The browser storages against minimal in-test Web Storage and IndexedDB implementations.
import { describe, expect, test } from 'vitest'
import {
  type ClientStorage,
  type IdbFactoryLike,
  indexedDbStorage,
  localStorageStorage,
  type WebStorageLike,
} from '../src/index.browser.js'

/** A Web Storage with a quota, like localStorage. */
class MemoryWebStorage implements WebStorageLike {
  readonly items = new Map<string, string>()
  constructor(readonly quota = Number.POSITIVE_INFINITY) {}
  getItem(key: string): string | null {
    return this.items.get(key) ?? null
  }
  setItem(key: string, value: string): void {
    if (key.length + value.length > this.quota) throw new Error('QuotaExceededError')
    this.items.set(String(key), String(value))
  }
}

type Handler = ((this: unknown, ev: unknown) => unknown) | null
/** Just enough IndexedDB: open (with upgrade), one object store, get/put, async transactions. */
function fakeIndexedDb(options: { failWrites?: boolean } = {}) {
  const databases = new Map<string, Map<string, Map<string, unknown>>>()
  const later = (fn: () => void) => setTimeout(fn, 0)
  const log: string[] = []
  const factory: IdbFactoryLike = {
    open(name) {
      const request = {
        result: undefined as unknown,
        error: null as unknown,
        onsuccess: null as Handler,
        onerror: null as Handler,
        onupgradeneeded: null as Handler,
      }
      later(() => {
        const fresh = !databases.has(name)
        const stores = databases.get(name) ?? new Map<string, Map<string, unknown>>()
        databases.set(name, stores)
        request.result = {
          objectStoreNames: { contains: (s: string) => stores.has(s) },
          createObjectStore: (s: string) => stores.set(s, new Map()),
          close() {},
          transaction(storeName: string, mode: string, txOptions?: { durability?: string }) {
            log.push(`${mode}${txOptions?.durability ? `:${txOptions.durability}` : ''}`)
            const store = stores.get(storeName)
            if (!store) throw new Error('NotFoundError')
            const tx = {
              oncomplete: null as Handler,
              onerror: null as Handler,
              onabort: null as Handler,
              error: null as unknown,
              objectStore: () => ({
                get(key: string) {
                  const r = { result: store.get(key), error: null, onsuccess: null, onerror: null }
                  later(() => tx.oncomplete?.call(tx, {}))
                  return r
                },
                put(value: unknown, key: string) {
                  const r = { result: key, error: null, onsuccess: null, onerror: null }
                  later(() => {
                    if (options.failWrites) {
                      tx.error = new Error('QuotaExceededError')
                      tx.onerror?.call(tx, {})
                      return
                    }
                    store.set(key, value)
                    tx.oncomplete?.call(tx, {})
                  })
                  return r
                },
              }),
            }
            return tx
          },
        }
        if (fresh) request.onupgradeneeded?.call(request, {})
        request.onsuccess?.call(request, {})
      })
      return request as unknown as ReturnType<IdbFactoryLike['open']>
    },
  }
  return { factory, databases, log }
}

/** What every ClientStorage must do. */
async function contract(storage: ClientStorage, reopen: () => ClientStorage): Promise<void> {
  expect(await storage.get('identity')).toBeUndefined()
  await storage.set('identity', '{"v":1}')
  await storage.set('seq:thermostat-1', '4096')
  await storage.set('seq:thermostat-1', '8192')
  expect(await storage.get('identity')).toBe('{"v":1}')
  expect(await storage.get('seq:thermostat-1')).toBe('8192')
  await storage.set('empty', '')
  expect(await storage.get('empty')).toBe('')
  const odd = 'bundle:ümlaut/é 🔑 ../../etc'
  await storage.set(odd, 'x')
  expect(await storage.get(odd)).toBe('x')
  // A new instance over the same backing store sees everything (a page reload).
  expect(await reopen().get('seq:thermostat-1')).toBe('8192')
  await expect(storage.set('', 'x')).rejects.toThrow(TypeError)
  await expect(storage.get('')).rejects.toThrow(TypeError)
}

describe('localStorageStorage', () => {
  test('keeps values under a prefix and survives a reload', async () => {
    const web = new MemoryWebStorage()
    await contract(localStorageStorage({ storage: web }), () => localStorageStorage({ storage: web }))
    expect([...web.items.keys()].every((k) => k.startsWith('smqtt:'))).toBe(true)
  })

  test('two prefixes on one origin do not see each other', async () => {
    const web = new MemoryWebStorage()
    const a = localStorageStorage({ storage: web, prefix: 'a:' })
    const b = localStorageStorage({ storage: web, prefix: 'b:' })
    await a.set('identity', 'A')
    expect(await b.get('identity')).toBeUndefined()
    expect(web.getItem('a:identity')).toBe('A')
  })

  test('a quota error rejects set', async () => {
    const storage = localStorageStorage({ storage: new MemoryWebStorage(20) })
    await expect(storage.set('bundle:x', 'y'.repeat(100))).rejects.toThrow('QuotaExceededError')
  })

  test('uses globalThis.localStorage by default, and says so when there is none', async () => {
    await expect(localStorageStorage().get('identity')).rejects.toThrow(/localStorage is not available/)
    const web = new MemoryWebStorage()
    ;(globalThis as { localStorage?: WebStorageLike }).localStorage = web
    try {
      await localStorageStorage().set('identity', 'v')
      expect(web.getItem('smqtt:identity')).toBe('v')
    } finally {
      delete (globalThis as { localStorage?: WebStorageLike }).localStorage
    }
  })
})

describe('indexedDbStorage', () => {
  test('keeps values and survives a reload; writes ask for strict durability', async () => {
    const idb = fakeIndexedDb()
    await contract(indexedDbStorage({ indexedDB: idb.factory }), () => indexedDbStorage({ indexedDB: idb.factory }))
    expect(idb.databases.get('smqtt')?.has('client')).toBe(true)
    expect(idb.log.filter((l) => l.startsWith('readwrite')).every((l) => l === 'readwrite:strict')).toBe(true)
  })

  test('separate databases do not see each other', async () => {
    const idb = fakeIndexedDb()
    await indexedDbStorage({ indexedDB: idb.factory, database: 'a' }).set('identity', 'A')
    expect(await indexedDbStorage({ indexedDB: idb.factory, database: 'b' }).get('identity')).toBeUndefined()
  })

  test('a failed write rejects set', async () => {
    const storage = indexedDbStorage({ indexedDB: fakeIndexedDb({ failWrites: true }).factory })
    await expect(storage.set('seq:x', '1')).rejects.toThrow('QuotaExceededError')
  })

  test('says so when there is no indexedDB', async () => {
    await expect(indexedDbStorage().get('identity')).rejects.toThrow(/indexedDB is not available/)
  })
})
