// Attack: whatever reads the device's storage (a script injected into a page) carries its private
// keys away. With a storage that keeps CryptoKey objects (IndexedDB in browsers; here a memory
// storage with setKeys/getKeys, on Node's WebCrypto) enroll() makes non-extractable keys, and
// the client does everything with them: signed key-server requests, bundles fetched and pushed,
// sealing, receiving, and CONNECT passwords made ahead for reconnects. Chromium: browser.test.ts.
import { webcrypto } from 'node:crypto'
import { createServer } from 'node:net'
import { type NonExtractableKeys, principalControlTopic, verifyConnectPassword, type WebCryptoKey } from '@smqtt/core'
import { waitUntil, within } from '@smqtt/test-kit/client'
import { useStack } from '@smqtt/test-kit/use-stack'
import { Aedes } from 'aedes'
import { describe, expect, test } from 'vitest'
import {
  type ClientStorage,
  enroll,
  KeyServerClient,
  loadEnrollment,
  memoryStorage,
  secureConnectAsync,
} from '../src/index.js'

const stack = useStack()

/** Memory storage that also keeps CryptoKeys as they are, as indexedDbStorage does. */
function keyKeepingStorage(): ClientStorage & { values: Map<string, string> } {
  const base = memoryStorage()
  const values = new Map<string, string>()
  const keys = new Map<string, NonExtractableKeys>()
  return {
    ...base,
    values,
    get: async (key) => values.get(key),
    set: async (key, value) => void values.set(key, value),
    setKeys: async (key, value) => void keys.set(key, value),
    getKeys: async (key) => keys.get(key),
  }
}

async function enrollWithKeys(id: string, roles: string[]) {
  const token = await stack.h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  const storage = keyKeepingStorage()
  await enroll({
    keyServerUrl: stack.h.url,
    ca: stack.h.caPem,
    token: (token.body as { token: string }).token,
    id,
    storage,
  })
  const enrollment = await loadEnrollment(storage)
  if (!enrollment) throw new Error('not enrolled')
  return { ...enrollment, storage }
}

describe('an identity with non-extractable keys', () => {
  test('storage holds no private key, yet the client fetches, receives, seals and applies pushed bundles', async () => {
    const app = await enrollWithKeys('app-nx', ['app'])
    // What a reader of the storage finds: the public identity only, and keys it cannot export.
    const identity = app.identity
    if ('signingSeed' in identity) throw new Error('expected non-extractable keys')
    expect(JSON.parse(app.storage.values.get('identity') as string)).toEqual({
      type: 'smqtt.public-identity',
      v: 1,
      id: 'app-nx',
      kem: 'x25519',
      signingKey: expect.any(String),
      agreementKey: expect.any(String),
    })
    for (const key of Object.values(identity.privateKeys) as WebCryptoKey[]) {
      expect(key.extractable).toBe(false)
      await expect(webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey)).rejects.toThrow()
    }
    expect([...app.storage.values.values()].join()).not.toMatch(/signingSeed|agreementSecret/)

    const thermostat = await stack.client(await stack.enroll('thermostat-nx', ['thermostat']))
    const lock = await stack.client(await stack.enroll('lock-nx', ['lock']))
    const client = await stack.client(app)
    await client.client.subscribeAsync('home/nx/thermostat/#', { qos: 1 })
    await lock.client.subscribeAsync('home/nx/lock/lock-nx/cmd', { qos: 1 })
    await thermostat.client.publishAsync('home/nx/thermostat/thermostat-nx/temp', '20.5', { qos: 1 })
    expect((await client.waitForMessages(1)).map((m) => [m.text, m.info.sender])).toEqual([['20.5', 'thermostat-nx']])
    await client.client.publishAsync('home/nx/lock/lock-nx/cmd', 'open', { qos: 1 })
    expect((await lock.waitForMessages(1)).map((m) => [m.text, m.info.sender])).toEqual([['open', 'app-nx']])

    // A pushed bundle (a rotation) is opened with the WebCrypto key and applied in order.
    stack.syncClock()
    await stack.h.keyServer.rotateGroup(1, { immediate: true, actor: 'test', reason: 'test' })
    const bundle = await new KeyServerClient({ url: stack.h.url, ca: stack.h.caPem }, identity).bundle()
    const pushed = new Promise((resolve) => client.client.once('keysUpdated', resolve))
    const raw = await stack.raw()
    await raw.publishAsync(principalControlTopic('app-nx'), JSON.stringify({ type: 'bundle', bundle }), { qos: 1 })
    expect(await within(pushed, 5_000, 'the pushed bundle')).toMatchObject({ source: 'push' })
    expect(client.client.keys.groups.find((g) => g.group === 1)?.epochs).toContain(2)
    expect(client.errors).toEqual([])
  })

  test('CONNECT passwords are signed ahead, so each reconnection presents a fresh one', async () => {
    const app = await enrollWithKeys('app-nx-connect', ['app'])
    const broker = await Aedes.createBroker()
    const nonces: string[] = []
    broker.authenticate = (_client, username, password, done) => {
      try {
        nonces.push(
          verifyConnectPassword(String(password), { clientId: String(username), signingKey: app.identity.signingKey }),
        )
        done(null, true)
      } catch {
        done(null, false)
      }
    }
    const connections: { close(): void }[] = []
    broker.on('client', (client) => connections.push(client))
    const server = createServer(broker.handle)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    try {
      const client = await secureConnectAsync(`mqtt://127.0.0.1:${port}`, {
        ...app,
        keyServer: { url: stack.h.url, ca: stack.h.caPem, keyServerPublicKey: app.keyServerPublicKey },
        mqtt: { reconnectPeriod: 100, connectTimeout: 5_000 },
      })
      // Drop the connection twice: mqtt.js reconnects, taking the password made ahead.
      for (const expected of [2, 3]) {
        for (const connection of connections.splice(0)) connection.close()
        await waitUntil(() => nonces.length >= expected && client.connected, `connection ${expected}`)
      }
      expect(new Set(nonces).size).toBe(3)
      await client.endAsync()
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})
