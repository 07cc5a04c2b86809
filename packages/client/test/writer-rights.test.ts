// A writer of a key group may publish only its own topics of the group, and subscribers enforce
// it themselves: through a third-party Mosquitto (no SMQTT plugin, so nothing in the broker
// stops it), thermostat-1 signs an honest envelope for thermostat-2's topic. The subscriber
// authenticates the sender, finds the topic outside its rights in the bundle and refuses it.
import { createEnvelopeSigner, openKeyBundle, sealEnvelope } from '@smqtt/core'
import { SMART_HOME_POLICY } from '@smqtt/keyserver/testing'
import { expect, test } from 'vitest'
import { Keyring } from '../src/keyring.js'
import { now, type Stack, useStack } from './_stack.js'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'

const stack = useStack()

type Enrolled = Awaited<ReturnType<Stack['enroll']>>

/** What compromised firmware can do with its own keys: seal and sign honestly, for any topic. */
async function sealAs(writer: Enrolled, topic: string, text: string, seq: number): Promise<Buffer> {
  const response = await stack.h.device(writer.identity, 'GET', '/v1/bundle')
  const keyring = new Keyring(now)
  keyring.apply(
    openKeyBundle((response.body as { bundle: unknown }).bundle, {
      keyServerPublicKey: stack.h.keyServer.publicKey,
      recipient: writer.identity,
      now: now(),
    }),
  )
  const envelope = sealEnvelope({
    topic,
    payload: new TextEncoder().encode(text),
    epochKey: keyring.sealingKey(topic, writer.kid).epochKey,
    signer: createEnvelopeSigner({ kid: writer.kid, seed: writer.identity.signingSeed }),
    seq,
  })
  return Buffer.from(envelope)
}

test("a writer's signed envelope on another writer's topic is refused by the subscriber, its own is delivered", async () => {
  const run = `rights${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
  const thermostat1 = await stack.enroll('thermostat-1', ['thermostat'])
  await stack.enroll('thermostat-2', ['thermostat'])
  const app = await stack.enroll('app-1', ['app'])
  const subscriber = await stack.client(app, { url: MOSQUITTO, mqtt: { clientId: `${run}-app` } })
  await subscriber.client.subscribeAsync(`home/${run}/thermostat/#`, { qos: 1 })
  const own = `home/${run}/thermostat/thermostat-1/temp`
  const others = `home/${run}/thermostat/thermostat-2/temp`
  const raw = await stack.raw(MOSQUITTO)

  await raw.publishAsync(others, await sealAs(thermostat1, others, '99.9', 1_000), { qos: 1 })
  const [error] = await subscriber.waitForErrors(1, 10_000)
  expect(error).toMatchObject({ code: 'ERR_SENDER_NOT_PERMITTED', topic: others })
  expect(subscriber.client.stats.rejected).toEqual({ ERR_SENDER_NOT_PERMITTED: 1 })

  // Its own topic, through its secure client and then by the same raw path: both delivered, so
  // the refusal was about the topic. (A sequence number above the client's, or it is a replay.)
  const publisher = await stack.client(thermostat1, { url: MOSQUITTO, mqtt: { clientId: `${run}-t1` } })
  await publisher.client.publishAsync(own, '21.5', { qos: 1 })
  await subscriber.waitForMessages(1, 10_000)
  await raw.publishAsync(own, await sealAs(thermostat1, own, '21.6', 2 ** 40), { qos: 1 })
  const messages = await subscriber.waitForMessages(2, 10_000)
  expect(messages.map((m) => [m.topic, m.text, m.info.sender])).toEqual([
    [own, '21.5', 'thermostat-1'],
    [own, '21.6', 'thermostat-1'],
  ])
  expect(subscriber.errors).toHaveLength(1)
})

test('narrowed rights: refused once the subscriber holds the new bundle', async () => {
  const run = `narrowed${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
  const thermostat = await stack.enroll(`thermostat-${run}`, ['thermostat'])
  const app = await stack.enroll(`app-${run}`, ['app'])
  const subscriber = await stack.client(app, { url: MOSQUITTO, mqtt: { clientId: `${run}-app` } })
  await subscriber.client.subscribeAsync(`home/${run}/thermostat/#`, { qos: 1 })
  const topic = `home/${run}/thermostat/${thermostat.identity.id}/temp`
  const raw = await stack.raw(MOSQUITTO)
  await raw.publishAsync(topic, await sealAs(thermostat, topic, 'allowed', 1), { qos: 1 })
  await subscriber.waitForMessages(1, 10_000)

  // Thermostats may now write only in the hall; the old envelope's topic is outside their rights.
  const hallOnly = {
    ...SMART_HOME_POLICY,
    rules: SMART_HOME_POLICY.rules.map((r) =>
      r.roles.includes('thermostat') ? { ...r, topics: ['home/hall/thermostat/%c/#'] } : r,
    ),
  }
  const response = await stack.h.admin('PUT', '/v1/admin/policy', { policy: hallOnly })
  expect(response.status, response.text).toBe(200)
  await subscriber.client.refreshKeys()

  const sealed = await sealAs(thermostat, topic, 'no longer allowed', 2)
  await raw.publishAsync(topic, sealed, { qos: 1 })
  const [error] = await subscriber.waitForErrors(1, 10_000)
  expect(error).toMatchObject({ code: 'ERR_SENDER_NOT_PERMITTED', topic })
  expect(subscriber.messages.map((m) => m.text)).toEqual(['allowed'])
})
