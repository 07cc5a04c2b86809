// The Python library (python/src/smqtt, issue 18) against the real stack: the key server over
// HTTPS and the real `smqtt-broker` process (mqtts://, full mode: signatures and replay checked
// at the broker). A Python device process (python/interop/device.py, paho-mqtt + PyNaCl from
// Debian) enrolls with a one-time token, logs in with its CONNECT password and publishes sealed
// envelopes that a TypeScript SecureClient opens and verifies; the other way round, the Python
// device opens what a TypeScript SecureClient sealed, and refuses an envelope whose ciphertext
// does not open (signed by a listed writer, so the broker forwards it). Also: mutual TLS, an
// X-Wing (post-quantum) Python device, Python ↔ the C library's reference device, and, through
// the Mosquitto on 127.0.0.1:1883, bound MQTT 5 properties and a writer learned while held.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type Enrollment,
  enroll,
  memoryStorage,
  type PublishProperties,
  type SecureClient,
  secure,
} from '@smqtt/client'
import { createConnectPassword, EpochKey, type SuiteId, sealEnvelope } from '@smqtt/core'
import { openBundleOf, sealingKeys, within } from '@smqtt/test-kit/broker'
import mqtt from 'mqtt'
import { afterAll, describe, expect, test } from 'vitest'
import { type InteropStack, useInteropStack } from './_broker.js'
import { cDeviceArgs, cThermostatArgs, events as deviceEvents, succeeded, token, waitFor } from './_devices.js'
import { mosquittoAvailable, pythonAvailable, pythonDevice } from './_python.js'
import { type Running, start } from './_run.js'

interface DeviceEvent {
  readonly event: string
  readonly topic?: string
  readonly payload?: string
  readonly sender?: string
  readonly code?: string
  readonly kid?: number
  readonly verified?: Record<string, unknown>
  readonly unsigned?: Record<string, unknown>
}

const scratch = mkdtempSync(join(tmpdir(), 'smqtt-python-'))
/** Every tsClient(), ended after the tests. */
const clients: SecureClient[] = []

/** The C library's Linux reference device, where it was built (libsmqtt/ci.sh, or c-device.test.ts under CI). */
const cDevice = ['build/examples/linux-device/smqtt-device', 'build/interop-device/examples/linux-device/smqtt-device']
  .map((path) => fileURLToPath(new URL(`../../libsmqtt/${path}`, import.meta.url)))
  .find((path) => existsSync(path))
// `npm run check` builds it first (test:c); under CI a missing build fails rather than skips.
if (cDevice === undefined && process.env.CI) throw new Error('the C reference device is not built: run libsmqtt/ci.sh')
if (cDevice === undefined) console.warn('skipping Python ↔ C: the C reference device is not built (run libsmqtt/ci.sh)')
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/**
 * Starts python/interop/device.py: it enrolls `id` with a fresh token (storage under the scratch
 * folder), connects to the stack's broker unless `plan` names another, then does what `plan` says.
 */
async function startPython(
  stack: InteropStack,
  id: string,
  roles: string[],
  timeoutMs: number,
  plan: Record<string, unknown>,
): Promise<Running> {
  const enrolling = {
    keyServerUrl: stack.h.url,
    ca: stack.caFile,
    token: await token(stack, id, roles),
    id,
    storage: join(scratch, id),
    host: stack.host,
    port: stack.port,
  }
  return start(...pythonDevice({ ...enrolling, ...plan }), timeoutMs)
}

/** A TypeScript SecureClient enrolled through @smqtt/client's enroll(), on the smqtt-broker. */
async function tsClient(
  stack: InteropStack,
  id: string,
  roles: string[],
  through: { url: string; protocolVersion: 4 | 5; connectPassword: boolean } = {
    url: `mqtts://${stack.host}:${stack.port}`,
    protocolVersion: 4,
    connectPassword: true,
  },
) {
  const storage = memoryStorage()
  const enrollment: Enrollment = await enroll({
    keyServerUrl: stack.h.url,
    ca: stack.h.caPem,
    token: await token(stack, id, roles),
    id,
    storage,
  })
  // The broker learns of a new principal with its next snapshot pull (every second here).
  await new Promise((resolve) => setTimeout(resolve, 2_000))
  const client = secure(
    mqtt.connect(through.url, {
      ca: stack.h.caPem,
      clientId: id,
      reconnectPeriod: 500,
      protocolVersion: through.protocolVersion,
    }),
    {
      identity: enrollment.identity,
      kid: enrollment.kid,
      keyServer: { url: stack.h.url, ca: stack.h.caPem, keyServerPublicKey: enrollment.keyServerPublicKey },
      storage,
      connectPassword: through.connectPassword,
    },
  )
  clients.push(client)
  client.on('error', () => {})
  client.on('keyServerError', () => {})
  const messages: { topic: string; text: string; sender: string | undefined; encrypted: boolean }[] = []
  const verified: PublishProperties[] = []
  client.on('message', (topic, payload, info) => {
    messages.push({
      topic,
      text: new TextDecoder().decode(payload),
      sender: info.encrypted ? info.sender : undefined,
      encrypted: info.encrypted,
    })
    verified.push(info.verifiedProperties)
  })
  const connected = new Promise<void>((resolve) => client.once('connect', () => resolve()))
  await within(Promise.all([connected, client.ready]), `${id} connect + keys`, 15_000)
  return { client, messages, verified, enrollment }
}

const events = (stdout: string) => deviceEvents<DeviceEvent>(stdout)

describe.runIf(pythonAvailable())('the Python library (paho-mqtt) against the TypeScript client', () => {
  const stack = useInteropStack()
  afterAll(async () => {
    await Promise.all(clients.map((c) => within(c.endAsync(true), 'end secure client', 5_000)))
  })

  test('Python → TypeScript: a Python device enrolls, logs in, seals; SecureClient verifies plaintext and sender', async () => {
    const app = await tsClient(stack, 'app-ts', ['app'])
    await app.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })

    const topic = 'home/h1/thermostat/thermostat-py/temp'
    const device = await startPython(stack, 'thermostat-py', ['thermostat'], 40_000, {
      publish: ['21.5', '21.6', '{"celsius":21.7}'].map((payload) => ({ topic, payload, qos: 1 })),
      seconds: 5,
    })
    const finished = await succeeded(device)
    const out = events(finished.stdout)
    expect(out.map((e) => e.event)).toEqual(['enrolled', 'connected', 'published', 'published', 'published', 'done'])

    await waitFor(() => app.messages.length >= 3, 'three messages from Python')
    expect(app.messages).toEqual([
      { topic, text: '21.5', sender: 'thermostat-py', encrypted: true },
      { topic, text: '21.6', sender: 'thermostat-py', encrypted: true },
      { topic, text: '{"celsius":21.7}', sender: 'thermostat-py', encrypted: true },
    ])
    // The broker saw the Python device log in with its CONNECT password (key proof).
    expect(await stack.newAudit()).toContain('login:connect-password')
  }, 60_000)

  test('mutual TLS: a Python device enrolls with a P-256 key made in Python and logs in with the issued certificate', async () => {
    const app = await tsClient(stack, 'app-ts-mtls', ['app'])
    await app.client.subscribeAsync('home/+/thermostat/thermostat-py-mtls/#', { qos: 1 })
    const topic = 'home/h1/thermostat/thermostat-py-mtls/temp'
    const device = await startPython(stack, 'thermostat-py-mtls', ['thermostat'], 40_000, {
      clientCertificate: true,
      connectPassword: false,
      publish: [{ topic, payload: '20.5', qos: 1 }],
      seconds: 5,
    })
    const finished = await succeeded(device)
    expect(events(finished.stdout)[0]).toMatchObject({ event: 'enrolled', certificate: true })
    await waitFor(() => app.messages.length >= 1, 'the message from the certificate-authenticated Python device')
    expect(app.messages).toEqual([{ topic, text: '20.5', sender: 'thermostat-py-mtls', encrypted: true }])
    // No CONNECT password was sent: the broker authenticated the device by its certificate.
    expect(await stack.newAudit()).toContain('login:certificate')
  }, 60_000)

  test('post-quantum: a Python device with an X-Wing key opens what a SecureClient sealed (epoch keys sealed by the key server with ML-KEM-768 + X25519)', async () => {
    const thermostat = await tsClient(stack, 'thermostat-ts-pq', ['thermostat'])
    const device = await startPython(stack, 'app-py-pq', ['app'], 45_000, {
      postQuantum: true,
      subscribe: ['home/+/thermostat/thermostat-ts-pq/#'],
      receive: 1,
      seconds: 20,
    })
    await device.line(/"subscribed"/, 'the X-Wing Python device to subscribe', 30_000)
    const topic = 'home/h1/thermostat/thermostat-ts-pq/temp'
    await thermostat.client.publishAsync(topic, '18.5', { qos: 1 })
    const finished = await succeeded(device)
    const out = events(finished.stdout)
    expect(out[0]).toMatchObject({ event: 'enrolled', kem: 'xwing' })
    expect(
      out.filter((e) => e.event === 'message').map(({ topic, payload, sender }) => ({ topic, payload, sender })),
    ).toEqual([{ topic, payload: '18.5', sender: 'thermostat-ts-pq' }])
  }, 60_000)

  test('TypeScript → Python: the device opens what a SecureClient sealed and refuses an envelope that does not open', async () => {
    const thermostat = await tsClient(stack, 'thermostat-ts', ['thermostat'])
    // A listed writer that signs ciphertext made under a key that is not the group's: the broker
    // (signature, replay) forwards it; only a reader with the group key can tell.
    const forger = await stack.h.enroll('thermostat-forger', ['thermostat'])

    const device = await startPython(stack, 'app-py', ['app'], 45_000, {
      subscribe: ['home/+/thermostat/#'],
      receive: 2,
      errors: 1,
      seconds: 20,
    })
    await device.line(/"subscribed"/, 'the Python device to subscribe', 30_000)

    const topic = 'home/h1/thermostat/thermostat-ts/temp'
    await thermostat.client.publishAsync(topic, '19.5', { qos: 1 })
    await thermostat.client.publishAsync(topic, 'ventilation on', { qos: 1 })

    const forgedTopic = 'home/h1/thermostat/thermostat-forger/temp'
    const { epochKey, signer } = sealingKeys(await openBundleOf(stack.h, forger), forger, forgedTopic)
    const wrongKey = new EpochKey({
      group: epochKey.group,
      epoch: epochKey.epoch,
      suite: epochKey.suite as SuiteId,
      key: new Uint8Array(32).fill(7),
    })
    const forged = sealEnvelope({
      topic: forgedTopic,
      payload: new TextEncoder().encode('unlock everything'),
      epochKey: wrongKey,
      signer,
      seq: 1,
    })
    const raw = mqtt.connect(`mqtts://${stack.host}:${stack.port}`, {
      ca: stack.h.caPem,
      clientId: forger.identity.id,
      username: forger.identity.id,
      password: createConnectPassword(forger.identity, forger.identity.id),
      reconnectPeriod: 0,
    })
    try {
      await within(
        new Promise((resolve, reject) => raw.once('connect', resolve).once('error', reject)),
        'forger connect',
      )
      await raw.publishAsync(forgedTopic, Buffer.from(forged), { qos: 1 })
    } finally {
      await raw.endAsync(true)
    }

    const finished = await device.exited
    expect(finished.stderr).toBe('')
    const out = events(finished.stdout)
    expect(
      out.filter((e) => e.event === 'message').map(({ topic, payload, sender }) => ({ topic, payload, sender })),
    ).toEqual([
      { topic, payload: '19.5', sender: 'thermostat-ts' },
      { topic, payload: 'ventilation on', sender: 'thermostat-ts' },
    ])
    expect(out.filter((e) => e.event === 'securityError')).toEqual([
      { event: 'securityError', code: 'ERR_ENVELOPE_DECRYPTION_FAILED', topic: forgedTopic },
    ])
    expect(finished.code).toBe(0)
  }, 60_000)

  // The C library's reference device (libsmqtt/examples/linux-device, as c-device.test.ts runs
  // it) and the Python library, each enrolled with its own token, through the smqtt-broker.
  test.runIf(cDevice !== undefined)(
    'Python ↔ C: the Python app verifies the C device’s temperatures, the C device verifies the Python app’s command',
    async () => {
      const id = 'c-device-py'
      const temperatureTopic = `home/h1/thermostat/${id}/temp`
      const commandTopic = `home/h1/lock/${id}/cmd`
      const cStorage = join(scratch, 'c-device')
      mkdirSync(cStorage, { recursive: true })
      const cArgs = (command: 'enroll' | 'run', args: string[]) => cDeviceArgs(stack, command, cStorage, args)
      const enrolled = await start(
        cDevice as string,
        cArgs('enroll', ['--id', id, '--token', await token(stack, id, ['thermostat', 'lock'])]),
        30_000,
      ).exited
      expect(enrolled.code, enrolled.stdout + enrolled.stderr).toBe(0)

      const python = await startPython(stack, 'app-py-c', ['app'], 45_000, {
        subscribe: [temperatureTopic],
        receive: 3,
        publishAfter: 3,
        publish: [{ topic: commandTopic, payload: '{"command":"lock"}', qos: 1 }],
        seconds: 25,
      })
      const pythonEnrolled = await python.line(/"enrolled"/, 'the Python app to enroll', 30_000)
      await python.line(/"subscribed"/, 'the Python app to subscribe', 30_000)
      const device = start(
        cDevice as string,
        cArgs('run', [
          ...cThermostatArgs(stack, temperatureTopic, commandTopic),
          '--interval-ms',
          '50',
          '--seconds',
          '25',
          '--readings',
          '3',
          '--expect-commands',
          '1',
        ]),
        40_000,
      )
      const [fromPython, fromC] = await Promise.all([succeeded(python), succeeded(device)])
      expect(
        events(fromPython.stdout)
          .filter((e) => e.event === 'message')
          .map(({ topic, payload, sender }) => ({ topic, payload, sender })),
      ).toEqual(
        ['21.0', '21.1', '21.2'].map((c) => ({ topic: temperatureTopic, payload: `{"celsius":${c}}`, sender: id })),
      )
      const command = events(fromC.stdout).find((e) => e.event === 'command') as unknown as Record<string, unknown>
      expect(command).toMatchObject({
        topic: commandTopic,
        payload: '{"command":"lock"}',
        sender: (JSON.parse(pythonEnrolled) as { kid: number }).kid, // verified: the Python app's signature
      })
    },
    90_000,
  )

  describe.runIf(mosquittoAvailable())('MQTT 5 through the Mosquitto on 127.0.0.1:1883 (no SMQTT plugin)', () => {
    const run = `py${Date.now().toString(36)}`
    const mosquitto = { url: 'mqtt://127.0.0.1:1883', protocolVersion: 5 as const, connectPassword: false }
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

    test('bound MQTT 5 properties both ways; a replayed and a topic-swapped envelope refused by Python', async () => {
      const app = await tsClient(stack, `app-ts5-${run}`, ['app'], mosquitto)
      const thermostat = await tsClient(stack, `thermostat-ts5-${run}`, ['thermostat'], mosquitto)
      await app.client.subscribeAsync(`home/${run}/thermostat/#`, { qos: 1 })

      const pyTopic = `home/${run}/thermostat/thermostat-py5-${run}/temp`
      const tsTopic = `home/${run}/thermostat/thermostat-ts5-${run}/temp`
      const pressureTopic = `home/${run}/thermostat/thermostat-ts5-${run}/pressure`
      const humidityTopic = `home/${run}/thermostat/thermostat-ts5-${run}/humidity`
      // The attacker on the path (Mosquitto checks nothing): captures envelopes and sends them again.
      const tap = mqtt.connect(mosquitto.url, { protocolVersion: 5, clientId: `tap-${run}`, reconnectPeriod: 0 })
      const captured = new Map<string, { payload: Buffer; properties: unknown }>()
      tap.on('message', (topic, payload, packet) => captured.set(topic, { payload, properties: packet.properties }))
      await within(new Promise((resolve, reject) => tap.once('connect', resolve).once('error', reject)), 'tap connect')
      await tap.subscribeAsync([tsTopic, pressureTopic], { qos: 1 })
      const device = await startPython(stack, `thermostat-py5-${run}`, ['thermostat'], 40_000, {
        host: '127.0.0.1',
        port: 1883,
        tls: false,
        connectPassword: false,
        mqtt: 5,
        subscribe: [tsTopic, humidityTopic],
        receive: 1,
        errors: 2,
        publish: [
          {
            topic: pyTopic,
            payload: '22.0',
            properties: {
              contentType: 'text/plain',
              correlationData: '0102030405',
              userProperties: [['traceparent', traceparent]],
            },
          },
        ],
        seconds: 15,
      })
      await device.line(/"published"/, 'the Python device to publish', 30_000)
      await thermostat.client.publishAsync(tsTopic, '{"celsius":19}', {
        qos: 1,
        bindProperties: true,
        properties: {
          contentType: 'application/json',
          correlationData: Buffer.from('0a0b', 'hex'),
          userProperties: { traceparent },
        },
      })
      await thermostat.client.publishAsync(pressureTopic, '1013 hPa', { qos: 1 })
      await waitFor(() => captured.size >= 2, 'the tap to capture both envelopes', 5_000)
      const temp = captured.get(tsTopic) as { payload: Buffer; properties: Record<string, unknown> }
      try {
        await tap.publishAsync(tsTopic, temp.payload, { qos: 1, properties: temp.properties }) // replayed
        await tap.publishAsync(humidityTopic, captured.get(pressureTopic)?.payload ?? Buffer.alloc(0), { qos: 1 }) // moved
      } finally {
        await tap.endAsync(true)
      }

      const finished = await succeeded(device)
      const fromTs = events(finished.stdout).filter((e) => e.event === 'message')
      expect(fromTs).toMatchObject([
        {
          topic: tsTopic,
          payload: '{"celsius":19}',
          sender: `thermostat-ts5-${run}`,
          verified: {
            contentType: 'application/json',
            correlationData: '0a0b',
            userProperties: [['traceparent', traceparent]],
          },
          unsigned: {},
        },
      ])
      expect(events(finished.stdout).filter((e) => e.event === 'securityError')).toEqual([
        { event: 'securityError', code: 'ERR_REPLAY', topic: tsTopic },
        { event: 'securityError', code: 'ERR_ENVELOPE_SIGNATURE_INVALID', topic: humidityTopic },
      ])

      await waitFor(() => app.messages.some((m) => m.topic === pyTopic), 'the message from Python')
      const index = app.messages.findIndex((m) => m.topic === pyTopic)
      expect(app.messages[index]).toEqual({
        topic: pyTopic,
        text: '22.0',
        sender: `thermostat-py5-${run}`,
        encrypted: true,
      })
      expect(app.verified[index]).toMatchObject({
        contentType: 'text/plain',
        correlationData: Buffer.from('0102030405', 'hex'),
        userProperties: { traceparent },
      })
      expect(app.verified[index]?.responseTopic).toBeUndefined()
    }, 60_000)

    test('a writer enrolled after the Python device loaded its keys: held, fetched off the network thread, delivered in order', async () => {
      // Mosquitto pushes no bundle: the device learns the new writer only by asking the key server.
      const late = `thermostat-late-${run}`
      const topic = `home/${run}/thermostat/${late}/temp`
      const device = await startPython(stack, `app-py-late-${run}`, ['app'], 45_000, {
        host: '127.0.0.1',
        port: 1883,
        tls: false,
        connectPassword: false,
        subscribe: [`home/${run}/thermostat/${late}/#`],
        receive: 3,
        seconds: 20,
      })
      await device.line(/"subscribed"/, 'the Python device to subscribe', 30_000)
      const thermostat = await tsClient(stack, late, ['thermostat'], { ...mosquitto, protocolVersion: 4 })
      for (const text of ['1', '2', '3']) await thermostat.client.publishAsync(topic, text, { qos: 1 })

      const finished = await succeeded(device)
      const out = events(finished.stdout)
      expect(
        out.filter((e) => e.event === 'message').map(({ topic, payload, sender }) => ({ topic, payload, sender })),
      ).toEqual(['1', '2', '3'].map((payload) => ({ topic, payload, sender: late })))
      expect(out.filter((e) => e.event === 'securityError')).toEqual([])
      expect(out.at(-1)).toMatchObject({ event: 'done', heldRefreshes: 1 })
    }, 60_000)
  })
})
