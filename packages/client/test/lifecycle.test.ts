// Enrollment, restarts, a key server outage, and a third-party broker.
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { generateIdentity, isSmqttError } from '@smqtt/core'
import { startStack, tap, waitUntil } from '@smqtt/test-kit/client'
import { useStack } from '@smqtt/test-kit/use-stack'
import { describe, expect, test } from 'vitest'
import {
  type EnrollOptions,
  enroll,
  fileStorage,
  loadEnrollment,
  memoryStorage,
  secureConnectAsync,
} from '../src/index.js'
import { tempDirs } from './_temp-dirs.js'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'

const stack = useStack()
const tempDir = tempDirs('smqtt-client-')

/** enroll() of `id` as a thermostat through this stack's key server, with a fresh token. */
async function enrollThermostat(id: string, options: Omit<EnrollOptions, 'keyServerUrl' | 'ca' | 'token' | 'id'>) {
  const response = await stack.h.admin('POST', '/v1/admin/enrollment-tokens', {
    principalId: id,
    roles: ['thermostat'],
  })
  const token = (response.body as { token: string }).token
  return enroll({ keyServerUrl: stack.h.url, ca: stack.ca, token, id, ...options })
}

describe('enroll', () => {
  test('stores identity, kid and the pinned key; loadEnrollment returns them; a second enroll is refused', async () => {
    const dir = tempDir()
    const storage = fileStorage(join(dir, 'state'))
    const enrolled = await enrollThermostat('device-enroll', { storage, clientCertificate: true })
    expect(enrolled.keyServerPublicKey).toEqual(stack.h.keyServer.publicKey)
    expect(enrolled.principal).toMatchObject({ id: 'device-enroll', kid: enrolled.kid, roles: ['thermostat'] })
    expect(enrolled.certificatePem).toContain('BEGIN CERTIFICATE')
    expect(enrolled.tlsPrivateKeyPem).toContain('BEGIN PRIVATE KEY')

    const loaded = await loadEnrollment(fileStorage(join(dir, 'state')))
    expect(loaded?.kid).toBe(enrolled.kid)
    expect(loaded?.identity.signingKey).toEqual(enrolled.identity.signingKey)
    expect(await loadEnrollment(memoryStorage())).toBeUndefined()

    const again = await enrollThermostat('device-enroll-2', { storage }).catch((err: unknown) => err)
    expect(isSmqttError(again, 'ERR_CONFLICT')).toBe(true)
  })

  test('a key server key given out of band is pinned in storage too (regression: loadEnrollment found none)', async () => {
    const storage = memoryStorage()
    await enrollThermostat('device-oob', { storage, keyServerPublicKey: stack.h.keyServer.publicKey })
    const loaded = await loadEnrollment(storage)
    expect(loaded?.keyServerPublicKey).toEqual(stack.h.keyServer.publicKey)
  })

  test('a key server key other than the pinned one is refused', async () => {
    const refused = await enrollThermostat('device-pin', {
      storage: memoryStorage(),
      keyServerPublicKey: generateIdentity('impostor').signingKey,
    }).catch((err: unknown) => err)
    expect(isSmqttError(refused, 'ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID')).toBe(true)
  })
})

test('publisher restart with the same fileStorage: sequence numbers on the wire strictly increase', async () => {
  const dir = join(tempDir(), 'publisher')
  const thermostat = await stack.enroll('thermostat-restart', ['thermostat'], fileStorage(dir))
  const topic = 'home/restart/thermostat/thermostat-restart/temp'
  const wire = await tap(await stack.raw(), topic)

  const first = await stack.client(thermostat)
  for (let i = 0; i < 5; i++) await first.client.publishAsync(topic, `a${i}`, { qos: 1 })
  await first.client.endAsync()

  // A new process: fresh storage object on the same directory, identity loaded from it.
  const storage = fileStorage(dir)
  const reloaded = await loadEnrollment(storage)
  if (!reloaded) throw new Error('enrollment not found after restart')
  const second = await stack.client({ ...reloaded, storage })
  for (let i = 0; i < 5; i++) await second.client.publishAsync(topic, `b${i}`, { qos: 1 })

  await waitUntil(() => wire.length === 10, '10 envelopes on the wire')
  const seqs = wire.map((w) => w.seq)
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] as number)
  // The restart resumed above the reservation saved before any number was used.
  expect(seqs[5]).toBeGreaterThanOrEqual(1024)
  expect(readdirSync(dir).some((name) => name.endsWith('.tmp'))).toBe(false)
})

test('key server down: a running client keeps working, a restarted one starts from its stored bundle', async () => {
  const own = await startStack()
  try {
    const thermostat = await own.enroll('thermostat-down', ['thermostat'])
    const app = await own.enroll('app-down', ['app'])
    const topic = 'home/down/thermostat/thermostat-down/temp'
    const publisher = await own.client(thermostat)
    const subscriber = await own.client(app)
    await subscriber.client.subscribeAsync('home/down/thermostat/#', { qos: 1 })
    await publisher.client.publishAsync(topic, 'before', { qos: 1 }) // this run's sequence range is reserved
    await subscriber.waitForMessages(1)

    await own.h.app.close() // the key server goes away; the broker stays
    const failures: Error[] = []
    subscriber.client.on('keyServerError', (err) => failures.push(err))
    await expect(subscriber.client.refreshKeys()).rejects.toThrow()

    await publisher.client.publishAsync(topic, 'still here', { qos: 1 })
    await subscriber.waitForMessages(2)

    // A restart while the key server is down: keys come from storage, messages are received.
    await subscriber.client.endAsync()
    const resubscribed = await own.client(app)
    expect(resubscribed.client.keys.groups.map((g) => g.group)).toContain(1)
    await resubscribed.client.subscribeAsync('home/down/thermostat/#', { qos: 1 })
    await publisher.client.publishAsync(topic, 'after restart', { qos: 1 })
    await resubscribed.waitForMessages(1)
    expect([...subscriber.messages, ...resubscribed.messages].map((m) => m.text)).toEqual([
      'before',
      'still here',
      'after restart',
    ])
    expect([...subscriber.errors, ...resubscribed.errors]).toEqual([])

    // A restarted sender seals nothing until the key server has given this run its own sequence
    // range: only the key server can tell this run from a copy restored from an older backup.
    await publisher.client.endAsync()
    const { storage } = thermostat
    // The same stored data seen by a new process (a new storage object: nothing shared in memory).
    const restarted = await own.client(thermostat, {
      storage: { get: (key) => storage.get(key), set: (key, value) => storage.set(key, value) },
    })
    expect(restarted.client.keys.groups.map((g) => g.group)).toEqual([1])
    await expect(restarted.client.publishAsync(topic, 'unsealed', { qos: 1 })).rejects.toMatchObject({
      code: 'ERR_SEQUENCE_UNAVAILABLE',
    })
  } finally {
    await own.close()
  }
})

test('interop: the same secure pair over a third-party Mosquitto', async () => {
  const run = `interop${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
  const thermostat = await stack.enroll('thermostat-mosq', ['thermostat'])
  const app = await stack.enroll('app-mosq', ['app'])
  const publisher = await stack.client(thermostat, { url: MOSQUITTO, mqtt: { clientId: `${run}-pub` } })
  const subscriber = await stack.client(app, { url: MOSQUITTO, mqtt: { clientId: `${run}-sub` } })
  const topic = `home/${run}/thermostat/thermostat-mosq/temp`
  await subscriber.client.subscribeAsync(`home/${run}/thermostat/#`, { qos: 2 })
  const wire = await tap(await stack.raw(MOSQUITTO), `home/${run}/#`)

  for (const qos of [0, 1, 2] as const) await publisher.client.publishAsync(topic, `mosquitto ${qos}`, { qos })
  const messages = await subscriber.waitForMessages(3)
  expect(messages.map((m) => m.text).sort()).toEqual(['mosquitto 0', 'mosquitto 1', 'mosquitto 2'])
  expect(messages.every((m) => m.info.sender === 'thermostat-mosq')).toBe(true)
  expect(subscriber.errors).toEqual([])
  await waitUntil(() => wire.length === 3, 'three envelopes on the Mosquitto wire')
})

test('secureConnectAsync: connects with a CONNECT password, keys loaded, round trip', async () => {
  const thermostat = await stack.enroll('thermostat-ca', ['thermostat'])
  const app = await stack.client(await stack.enroll('app-ca', ['app']))
  await app.client.subscribeAsync('home/ca/thermostat/#', { qos: 1 })
  const client = await secureConnectAsync(stack.brokerUrl, {
    ...thermostat,
    keyServer: { url: stack.h.url, ca: stack.ca, keyServerPublicKey: thermostat.keyServerPublicKey },
    mqtt: { ca: stack.ca, reconnectPeriod: 0 },
  })
  try {
    expect(client.connected).toBe(true)
    expect(client.mqttClient.options.password).toMatch(/^smqtt1\./)
    await client.publishAsync('home/ca/thermostat/thermostat-ca/temp', 'hi', { qos: 1 })
    const [message] = await app.waitForMessages(1)
    expect(message).toMatchObject({ text: 'hi', info: { sender: 'thermostat-ca' } })
  } finally {
    await client.endAsync(true)
  }
})
