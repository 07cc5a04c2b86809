// The page of test/browser.test.ts, bundled for the browser with esbuild: @smqtt/client's
// browser entry, as a web app imports it. The test drives it through `globalThis.smqtt`
// (page.evaluate); everything it records stays readable there.
import { enroll, indexedDbStorage, loadEnrollment, type SecureClient, secureConnectAsync } from '@smqtt/client'

/** The IndexedDB database that keeps this page's identity, keys and sequence reservations. */
const DATABASE = 'smqtt-browser-test'

export interface ReceivedInPage {
  readonly topic: string
  readonly text: string
  readonly sender: string | undefined
  readonly encrypted: boolean
}

// The browser APIs an injected script would use to read storage (this package is typed for Node).
interface BrowserKey {
  readonly type: string
  readonly extractable: boolean
  readonly usages: string[]
  readonly algorithm: { readonly name: string }
}
interface BrowserRequest<T> {
  readonly result: T
  readonly error: unknown
  onsuccess: (() => void) | null
  onerror: (() => void) | null
}
interface BrowserStore {
  getAllKeys(): BrowserRequest<unknown[]>
  getAll(): BrowserRequest<unknown[]>
}
const browser = globalThis as unknown as {
  CryptoKey: abstract new () => BrowserKey
  crypto: { subtle: { exportKey(format: string, key: BrowserKey): Promise<unknown> } }
  indexedDB: {
    databases(): Promise<{ name?: string }[]>
    open(name: string): BrowserRequest<{
      readonly objectStoreNames: ArrayLike<string>
      transaction(store: string, mode: 'readonly'): { objectStore(name: string): BrowserStore }
      close(): void
    }>
  }
  localStorage: { readonly length: number; key(index: number): string | null; getItem(key: string): string | null }
}

/** What a script reading storage finds in a value: CryptoKeys described and tried with exportKey. */
type Found = string | number | boolean | null | undefined | Found[] | { [key: string]: Found }

async function whatIsIn(value: unknown): Promise<Found> {
  if (value instanceof browser.CryptoKey) {
    const exported: string[] = []
    for (const format of ['pkcs8', 'jwk', 'raw', 'spki'])
      await browser.crypto.subtle.exportKey(format, value).then(
        () => exported.push(format),
        () => {},
      )
    const { type, extractable, usages } = value
    return { cryptoKey: true, type, algorithm: value.algorithm.name, extractable, usages, exported }
  }
  if (Array.isArray(value)) return Promise.all(value.map(whatIsIn))
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return { bytes: (value as ArrayBuffer).byteLength }
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await whatIsIn(v)])))
  return value as Found
}

const requested = <T>(request: BrowserRequest<T>) =>
  new Promise<T>((resolve, reject) => {
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })

let client: SecureClient | undefined
const connected = () => {
  if (!client) throw new Error('not connected: call smqtt.connect() first')
  return client
}

const smqtt = {
  received: [] as ReceivedInPage[],
  securityErrors: [] as { code: string; topic: string }[],

  /** Redeems the one-time token at the key server (fetch + CORS) and stores the identity. */
  async enroll(options: { keyServerUrl: string; token: string; id: string }) {
    const enrollment = await enroll({ ...options, storage: indexedDbStorage({ database: DATABASE }) })
    return { id: enrollment.identity.id, kid: enrollment.kid }
  },

  /** What IndexedDB holds under `key` (a fresh handle: what a reloaded page would read). */
  stored(key: string) {
    return indexedDbStorage({ database: DATABASE }).get(key)
  },

  /**
   * Everything an injected script can read from this origin's storage: every record of every
   * IndexedDB database and every localStorage entry (CryptoKeys tried with exportKey).
   */
  async readAllStorage() {
    const found: { where: string; key: string; value: Found }[] = []
    for (const { name } of await browser.indexedDB.databases()) {
      if (!name) continue
      const db = await requested(browser.indexedDB.open(name))
      for (const storeName of Array.from(db.objectStoreNames)) {
        const store = db.transaction(storeName, 'readonly').objectStore(storeName)
        const [keys, values] = await Promise.all([requested(store.getAllKeys()), requested(store.getAll())])
        for (const [i, key] of keys.entries())
          found.push({ where: `indexedDB:${name}/${storeName}`, key: String(key), value: await whatIsIn(values[i]) })
      }
      db.close()
    }
    for (let i = 0; i < browser.localStorage.length; i++) {
      const key = browser.localStorage.key(i) as string
      found.push({ where: 'localStorage', key, value: browser.localStorage.getItem(key) })
    }
    return found
  },

  /** Loads the enrollment from IndexedDB, connects over wss:// with a CONNECT password, subscribes. */
  async connect(options: { brokerUrl: string; subscribe: string; freshnessIntervalSeconds?: number }) {
    const storage = indexedDbStorage({ database: DATABASE })
    const enrollment = await loadEnrollment(storage)
    if (!enrollment) throw new Error('nothing enrolled in IndexedDB')
    client = await secureConnectAsync(options.brokerUrl, {
      ...enrollment,
      storage,
      keyServer: { url: enrollment.keyServerUrl, keyServerPublicKey: enrollment.keyServerPublicKey },
      mqtt: { reconnectPeriod: 0, connectTimeout: 10_000 },
      ...(options.freshnessIntervalSeconds ? { freshnessIntervalSeconds: options.freshnessIntervalSeconds } : {}),
    })
    client.on('message', (topic, payload, info) =>
      smqtt.received.push({
        topic,
        text: payload.toString(), // mqtt.js's Buffer polyfill, as a plain mqtt.js client gets (issue 13)
        sender: info.sender,
        encrypted: info.encrypted,
      }),
    )
    client.on('securityError', ({ code, topic }) => smqtt.securityErrors.push({ code, topic }))
    await client.subscribeAsync(options.subscribe, { qos: 1 })
    return { id: enrollment.identity.id }
  },

  /** The client's freshness poll counters (it polls the key server with fetch, through CORS). */
  freshness() {
    return { ...connected().stats.freshness }
  },

  async publish(topic: string, text: string) {
    await connected().publishAsync(topic, text, { qos: 1 })
  },

  /** Publishes `count` messages, ten in flight, at most 100 per 100 ms (the broker's publish rate limit is 1,000/s). */
  async publishMany(topic: string, count: number) {
    for (let sent = 0; sent < count; sent += 100) {
      const started = Date.now()
      for (let i = sent; i < Math.min(sent + 100, count); i += 10)
        await Promise.all(
          Array.from({ length: Math.min(10, count - i) }, (_, j) =>
            connected().publishAsync(topic, `m${i + j}`, { qos: 1 }),
          ),
        )
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 100 - (Date.now() - started))))
    }
  },

  connected() {
    return connected().connected
  },

  /** Writes `key` in IndexedDB as a restored backup would have it. */
  async restore(key: string, value: string) {
    await indexedDbStorage({ database: DATABASE }).set(key, value)
  },

  async close() {
    await client?.endAsync()
    client = undefined
  },
}

export type PageApi = typeof smqtt
;(globalThis as { smqtt?: PageApi }).smqtt = smqtt
