// Issue 13, item 8, the attack side: a subscriber fetches its key bundle again when an envelope
// names a sender its bundle does not list (so that it learns devices enrolled after it started,
// over any broker). Anyone who can publish on a plain broker can put any sender id in a header
// without holding a key: a flood of forged ids must not turn into a flood of key server
// requests. Over the Mosquitto on 127.0.0.1:1883 (no SMQTT plugin, which would refuse them at
// the broker), with the real key server; the subscriber counts its own bundle requests.
import {
  type ClientStorage,
  type KeyServerTransport,
  nodeHttpsTransport,
  type SecureClient,
  type SecurityErrorEvent,
  secure,
} from '@smqtt/client'
import { createEnvelopeSigner, EpochKey, generateIdentity, sealEnvelope } from '@smqtt/core'
import { currentGroupKey, type Stack, startStack, waitUntil, within } from '@smqtt/test-kit/client'
import mqtt from 'mqtt'
import { afterAll, beforeAll, expect, test } from 'vitest'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'
const INTERVAL_SECONDS = 1

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => {
  await stack?.close()
})

test('forged unknown senders cannot make a subscriber hammer the key server, nor hide a device enrolled meanwhile', async () => {
  const run = `forged${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
  const prefix = `home/${run}/thermostat`
  const app = await stack.enroll(`app-${run}`, ['app'])
  const thermostat = await stack.enroll(`thermostat-${run}`, ['thermostat'])

  // The subscriber, counting the bundle requests it makes.
  const bundleRequests: number[] = []
  const https = nodeHttpsTransport({ ca: stack.ca })
  const transport: KeyServerTransport = {
    request(request) {
      // A refresh for unknown senders fetches their writer records (POST /v1/writers), or the bundle.
      if (['/v1/bundle', '/v1/writers'].includes(new URL(request.url).pathname)) bundleRequests.push(Date.now())
      return https.request(request)
    },
  }
  const subscriber: SecureClient = secure(mqtt.connect(MOSQUITTO, { clientId: `${run}-app`, reconnectPeriod: 0 }), {
    identity: app.identity,
    kid: app.kid,
    storage: app.storage as ClientStorage,
    keyServer: { url: stack.h.url, keyServerPublicKey: app.keyServerPublicKey, transport },
    freshnessIntervalSeconds: 3_600, // no poll during the test: every request counted is a refresh
    unknownSenders: { refreshIntervalSeconds: INTERVAL_SECONDS, quietSeconds: 60 },
  })
  const delivered: { text: string; sender: string | undefined }[] = []
  const errors: SecurityErrorEvent[] = []
  subscriber.on('message', (_topic, payload, info) =>
    delivered.push({ text: new TextDecoder().decode(payload), sender: info.sender }),
  )
  subscriber.on('securityError', (event) => errors.push(event))
  subscriber.on('keyServerError', () => {})
  const attacker = mqtt.connect(MOSQUITTO, { clientId: `${run}-attacker`, reconnectPeriod: 0 })
  try {
    await within(subscriber.ready, 10_000, 'subscriber keys')
    await within(subscriber.subscribeAsync(`${prefix}/#`, { qos: 1 }), 10_000, 'subscribe')
    if (!attacker.connected)
      await within(new Promise((resolve) => attacker.once('connect', resolve)), 5_000, 'attacker connect')
    expect(bundleRequests).toHaveLength(1) // the first key load

    // What an outsider needs: the group and epoch numbers, which every envelope on the wire shows.
    const { group, epoch, suite } = await currentGroupKey(stack, thermostat.identity, 1)
    const forgedKey = new EpochKey({ group, epoch, suite, key: crypto.getRandomValues(new Uint8Array(32)) })
    const signingSeed = generateIdentity('nobody').signingSeed
    const knownKids = new Set([app.kid, thermostat.kid])
    const forgedIds = new Set<number>()
    while (forgedIds.size < 300) {
      const kid = 1_000_000 + Math.floor(Math.random() * 1_000_000_000)
      if (!knownKids.has(kid)) forgedIds.add(kid)
    }
    const ids = [...forgedIds]
    let seq = 1
    const forge = (sender: number) => {
      const topic = `${prefix}/thermostat-${run}/temp`
      const envelope = sealEnvelope({
        topic,
        payload: new TextEncoder().encode('forged'),
        epochKey: forgedKey,
        signer: createEnvelopeSigner({ kid: sender, seed: signingSeed }),
        seq: seq++,
      })
      return attacker.publishAsync(topic, Buffer.from(envelope), { qos: 1 })
    }
    const refused = () => errors.filter((e) => e.code === 'ERR_UNKNOWN_SENDER').length

    // 1. A burst of 100 forged ids, each never seen: held while one refresh runs, then refused.
    const started = Date.now()
    await Promise.all(ids.slice(0, 100).map(forge))
    await waitUntil(() => refused() === 100, '100 refusals', 10_000)

    // 2. A real device enrolled during the flood (granted by its role), and 100 more forged ids:
    //    the device's first message is delivered, every forged one refused.
    const device = await stack.enroll(`thermostat-${run}-new`, ['thermostat'])
    const publisher = secure(mqtt.connect(MOSQUITTO, { clientId: `${run}-new`, reconnectPeriod: 0 }), {
      identity: device.identity,
      kid: device.kid,
      storage: device.storage as ClientStorage,
      keyServer: { url: stack.h.url, ca: stack.ca, keyServerPublicKey: device.keyServerPublicKey },
    })
    try {
      await within(publisher.ready, 10_000, 'publisher keys')
      const flood = Promise.all(ids.slice(100, 200).map(forge))
      await publisher.publishAsync(`${prefix}/${device.identity.id}/temp`, 'real 21.5', { qos: 1 })
      await flood
      await waitUntil(() => delivered.length === 1 && refused() === 200, 'the real message and 200 refusals', 15_000)
    } finally {
      await publisher.endAsync(true)
    }
    expect(delivered).toEqual([{ text: 'real 21.5', sender: device.identity.id }])

    // 3. The first 100 ids again: each stayed unknown after a refresh, so for `quietSeconds`
    //    they are refused at once and cause no request at all.
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_SECONDS * 1_000 + 100))
    const before = bundleRequests.length
    await Promise.all(ids.slice(0, 100).map(forge))
    await waitUntil(() => refused() === 300, '300 refusals', 10_000)
    expect(bundleRequests.length).toBe(before)

    // At most one refresh per interval since the flood began, however many ids it forged.
    const elapsed = Date.now() - started
    const refreshes = bundleRequests.length - 1
    expect(refreshes).toBeGreaterThanOrEqual(1)
    expect(refreshes).toBeLessThanOrEqual(Math.ceil(elapsed / (INTERVAL_SECONDS * 1_000)) + 1)
    expect(refreshes).toBeLessThan(10)
    for (let i = 1; i < bundleRequests.length - 1; i++)
      expect((bundleRequests[i + 1] as number) - (bundleRequests[i] as number)).toBeGreaterThanOrEqual(
        INTERVAL_SECONDS * 1_000 - 50,
      )
    expect(errors.map((e) => e.code).filter((code) => code !== 'ERR_UNKNOWN_SENDER')).toEqual([])
    expect(subscriber.stats.rejected).toEqual({ ERR_UNKNOWN_SENDER: 300 })
  } finally {
    await within(subscriber.endAsync(true), 5_000, 'end subscriber')
    await attacker.endAsync(true)
  }
})
