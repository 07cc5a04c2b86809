// Publish/subscribe through the full stack: key server, Aedes over TLS, two secure clients.
import { isSmqttError, parseEnvelope } from '@smqtt/core'
import { tap, within } from '@smqtt/test-kit/client'
import { useStack } from '@smqtt/test-kit/use-stack'
import { describe, expect, test } from 'vitest'

const stack = useStack()

describe('round trip', () => {
  test('QoS 0, 1 and 2: plaintext and verified sender for the app, envelopes on the wire', async () => {
    const thermostat = await stack.client(await stack.enroll('thermostat-rt', ['thermostat']))
    const app = await stack.client(await stack.enroll('app-rt', ['app']))
    await app.client.subscribeAsync('home/+/thermostat/#', { qos: 2 })
    const wire = await tap(await stack.raw(), 'home/hall/thermostat/#')

    for (const qos of [0, 1, 2] as const)
      await thermostat.client.publishAsync('home/hall/thermostat/thermostat-rt/temp', `21.${qos}`, { qos })
    const messages = await app.waitForMessages(3)

    expect(messages.map((m) => m.text).sort()).toEqual(['21.0', '21.1', '21.2'])
    for (const m of messages) {
      expect(m.info).toMatchObject({ encrypted: true, sender: 'thermostat-rt', retained: false, group: 1 })
      expect(m.payload).toBeInstanceOf(Uint8Array)
    }
    expect(messages.map((m) => m.info.packet.qos).sort()).toEqual([0, 1, 2])
    expect(app.errors).toEqual([])
    // The broker saw envelopes only: no plaintext, a header naming the sender.
    await expect.poll(() => wire.length).toBe(3)
    for (const envelope of wire) {
      expect(new TextDecoder().decode(envelope.bytes)).not.toContain('21.')
      expect(parseEnvelope(envelope.bytes).header.sender).toBe(messages[0]?.info.kid)
    }
    expect(app.client.stats).toMatchObject({ received: 3, delivered: 3, rejected: {} })
  })

  test('retained: a late subscriber gets it once, marked retained; a live subscriber does not see the mark', async () => {
    const thermostat = await stack.client(await stack.enroll('thermostat-ret', ['thermostat']))
    const live = await stack.client(await stack.enroll('app-ret-live', ['app']))
    await live.client.subscribeAsync('home/attic/thermostat/#', { qos: 1 })
    await thermostat.client.publishAsync('home/attic/thermostat/thermostat-ret/setpoint', '19', {
      qos: 1,
      retain: true,
    })
    await live.waitForMessages(1)
    expect(live.messages[0]?.info.retained).toBe(false)

    const late = await stack.client(await stack.enroll('app-ret-late', ['app']))
    await late.client.subscribeAsync('home/attic/thermostat/#', { qos: 1 })
    const [message] = await late.waitForMessages(1)
    expect(message).toMatchObject({ text: '19', info: { retained: true, sender: 'thermostat-ret' } })
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(late.messages).toHaveLength(1)
    expect(late.errors).toEqual([])
  })

  test('a wildcard subscription spanning two key groups', async () => {
    const thermostat = await stack.client(await stack.enroll('thermostat-wc', ['thermostat']))
    const lock = await stack.client(await stack.enroll('lock-wc', ['lock']))
    const app = await stack.client(await stack.enroll('app-wc', ['app']))
    // One filter over thermostats (group 1) and lock states (group 3); the room keeps other tests' retained messages out.
    await app.client.subscribeAsync('home/cellar/#', { qos: 1 })

    await thermostat.client.publishAsync('home/cellar/thermostat/thermostat-wc/temp', '12', { qos: 1 })
    await lock.client.publishAsync('home/cellar/lock/lock-wc/state', 'locked', { qos: 1 })
    const messages = await app.waitForMessages(2)

    const byGroup = Object.fromEntries(messages.map((m) => [m.info.encrypted ? m.info.group : -1, m]))
    expect(byGroup[1]).toMatchObject({ text: '12', info: { sender: 'thermostat-wc' } })
    expect(byGroup[3]).toMatchObject({ text: 'locked', info: { sender: 'lock-wc' } })
    expect(app.errors).toEqual([])
  })

  test('a 64 KiB payload', async () => {
    const thermostat = await stack.client(await stack.enroll('thermostat-big', ['thermostat']))
    const app = await stack.client(await stack.enroll('app-big', ['app']))
    await app.client.subscribeAsync('home/+/thermostat/thermostat-big/#', { qos: 1 })
    const payload = new Uint8Array(64 * 1024).map((_, i) => (i * 31) & 0xff)
    await thermostat.client.publishAsync('home/lab/thermostat/thermostat-big/dump', payload, { qos: 1 })
    const [message] = await app.waitForMessages(1)
    expect(Buffer.isBuffer(message?.payload)).toBe(true)
    expect(new Uint8Array(message?.payload ?? [])).toEqual(payload)
  })

  test('publishing outside every key group throws ERR_NO_KEY_GROUP; outside the writers ERR_FORBIDDEN', async () => {
    const thermostat = await stack.client(await stack.enroll('thermostat-ng', ['thermostat']))
    expect(() => thermostat.client.publish('elsewhere/topic', 'x')).toThrow(
      expect.objectContaining({ code: 'ERR_NO_KEY_GROUP' }),
    )
    const rejected = await thermostat.client.publishAsync('elsewhere/topic', 'x').catch((err: unknown) => err)
    expect(isSmqttError(rejected, 'ERR_NO_KEY_GROUP')).toBe(true)

    const app = await stack.client(await stack.enroll('app-ng', ['app']))
    // The app reads thermostats but may not write there.
    const forbidden = await app.client.publishAsync('home/x/thermostat/t/temp', 'x').catch((err: unknown) => err)
    expect(isSmqttError(forbidden, 'ERR_FORBIDDEN')).toBe(true)
  })

  test('plaintextTopics pass unencrypted and are marked unauthenticated', async () => {
    const enrollment = await stack.enroll('app-pt', ['app'])
    const { secure } = await import('../src/index.js')
    const mqtt = (await import('mqtt')).default
    const client = secure(mqtt.connect(stack.brokerUrl, { ca: stack.ca, reconnectPeriod: 0 }), {
      identity: enrollment.identity,
      kid: enrollment.kid,
      keyServer: { url: stack.h.url, ca: stack.ca, keyServerPublicKey: enrollment.keyServerPublicKey },
      storage: enrollment.storage,
      plaintextTopics: ['public/#'],
    })
    try {
      await within(client.ready, 5_000, 'keys')
      const received = new Promise<[string, Uint8Array, { encrypted: boolean; sender: unknown }]>((resolve) =>
        client.once('message', (...args) => resolve(args)),
      )
      await client.subscribeAsync('public/#', { qos: 1 })
      const raw = await stack.raw()
      await raw.publishAsync('public/announce', 'hello', { qos: 1 })
      const [topic, payload, info] = await within(received, 5_000, 'plaintext message')
      expect([topic, new TextDecoder().decode(payload), info.encrypted, info.sender]).toEqual([
        'public/announce',
        'hello',
        false,
        undefined,
      ])
    } finally {
      await client.endAsync(true)
    }
  })
})
