// Issue 13, item 8: beside a third-party broker (the Mosquitto on 127.0.0.1:1883, no SMQTT
// plugin, so no bundle is ever pushed), a subscriber that was running before a device enrolled
// refused every message of that device with ERR_UNKNOWN_SENDER until it was restarted. Now an
// envelope from a sender its bundle does not list waits while the subscriber fetches its bundle
// again (verified as always), and is then opened; since issue 14 (cliff 4) it fetches the sender's
// signed writer record by key id instead of the whole bundle. Real key server, real Mosquitto, real clients.
import { useStack } from '@smqtt/test-kit/use-stack'
import { expect, test } from 'vitest'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'

const stack = useStack()

test('over Mosquitto, a running subscriber receives the first message of a device enrolled after it started, with no securityError', async () => {
  const run = `newsender${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
  const app = await stack.enroll(`app-${run}`, ['app'])
  const subscriber = await stack.client(app, { url: MOSQUITTO })
  await subscriber.client.subscribeAsync(`home/${run}/thermostat/#`, { qos: 1 })

  // Enrolled (and so granted: role thermostat writes home/+/thermostat/%c/#) after the subscriber loaded its keys.
  const device = await stack.enroll(`thermostat-${run}`, ['thermostat'])
  const publisher = await stack.client(device, { url: MOSQUITTO })
  const topic = `home/${run}/thermostat/${device.identity.id}/temp`
  await publisher.client.publishAsync(topic, '21.5', { qos: 1 })
  await publisher.client.publishAsync(topic, '21.6', { qos: 1 })

  const messages = await subscriber.waitForMessages(2, 10_000)
  expect(messages.map((m) => [m.topic, m.text, m.info.sender])).toEqual([
    [topic, '21.5', device.identity.id],
    [topic, '21.6', device.identity.id],
  ])
  expect(subscriber.errors).toEqual([])
})
