// A writer of a key group may publish only its own topics of the group, and subscribers enforce
// it themselves: through a third-party Mosquitto (no SMQTT plugin, so nothing in the broker
// stops it), thermostat-1 signs an honest envelope for thermostat-2's topic. The subscriber
// authenticates the sender, finds the topic outside its rights in the bundle and refuses it.
import { SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { useStack } from '@smqtt/test-kit/use-stack'
import { expect, test } from 'vitest'
import { sealAs } from './_seal-as.js'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'

const stack = useStack()

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

  await raw.publishAsync(others, await sealAs(stack, thermostat1, { topic: others, text: '99.9', seq: 1_000 }), {
    qos: 1,
  })
  const [error] = await subscriber.waitForErrors(1, 10_000)
  expect(error).toMatchObject({ code: 'ERR_SENDER_NOT_PERMITTED', topic: others })
  expect(subscriber.client.stats.rejected).toEqual({ ERR_SENDER_NOT_PERMITTED: 1 })

  // Its own topic, through its secure client and then by the same raw path: both delivered, so
  // the refusal was about the topic. (A sequence number above the client's, or it is a replay.)
  const publisher = await stack.client(thermostat1, { url: MOSQUITTO, mqtt: { clientId: `${run}-t1` } })
  await publisher.client.publishAsync(own, '21.5', { qos: 1 })
  await subscriber.waitForMessages(1, 10_000)
  await raw.publishAsync(own, await sealAs(stack, thermostat1, { topic: own, text: '21.6', seq: 2 ** 40 }), { qos: 1 })
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
  await raw.publishAsync(topic, await sealAs(stack, thermostat, { topic: topic, text: 'allowed', seq: 1 }), { qos: 1 })
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

  const sealed = await sealAs(stack, thermostat, { topic: topic, text: 'no longer allowed', seq: 2 })
  await raw.publishAsync(topic, sealed, { qos: 1 })
  const [error] = await subscriber.waitForErrors(1, 10_000)
  expect(error).toMatchObject({ code: 'ERR_SENDER_NOT_PERMITTED', topic })
  expect(subscriber.messages.map((m) => m.text)).toEqual(['allowed'])
})
