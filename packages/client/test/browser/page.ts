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

let client: SecureClient | undefined
const connected = () => {
  if (!client) throw new Error('not connected: call smqtt.connect() first')
  return client
}

const smqtt = {
  received: [] as ReceivedInPage[],
  securityErrors: [] as { code: string; topic: string }[],

  /** Redeems the one-time token at the key server (fetch + CORS) and stores the identity. */
  async enroll(options: { keyserverUrl: string; token: string; id: string }) {
    const enrollment = await enroll({ ...options, storage: indexedDbStorage({ database: DATABASE }) })
    return { id: enrollment.identity.id, kid: enrollment.kid }
  },

  /** What IndexedDB holds under `key` (a fresh handle: what a reloaded page would read). */
  stored(key: string) {
    return indexedDbStorage({ database: DATABASE }).get(key)
  },

  /** Loads the enrollment from IndexedDB, connects over wss:// with a CONNECT password, subscribes. */
  async connect(options: { brokerUrl: string; subscribe: string }) {
    const storage = indexedDbStorage({ database: DATABASE })
    const enrollment = await loadEnrollment(storage)
    if (!enrollment) throw new Error('nothing enrolled in IndexedDB')
    client = await secureConnectAsync(options.brokerUrl, {
      ...enrollment,
      storage,
      keyserver: { url: enrollment.keyserverUrl, keyServerPublicKey: enrollment.keyServerPublicKey },
      mqtt: { reconnectPeriod: 0, connectTimeout: 10_000 },
    })
    client.on('message', (topic, payload, info) =>
      smqtt.received.push({
        topic,
        text: new TextDecoder().decode(payload),
        sender: info.sender,
        encrypted: info.encrypted,
      }),
    )
    client.on('securityError', ({ code, topic }) => smqtt.securityErrors.push({ code, topic }))
    await client.subscribeAsync(options.subscribe, { qos: 1 })
    return { id: enrollment.identity.id }
  },

  async publish(topic: string, text: string) {
    await connected().publishAsync(topic, text, { qos: 1 })
  },

  async close() {
    await client?.endAsync()
    client = undefined
  },
}

export type PageApi = typeof smqtt
;(globalThis as { smqtt?: PageApi }).smqtt = smqtt
