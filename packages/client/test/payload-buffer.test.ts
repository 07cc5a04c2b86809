// Issue 13, item 5: `message` hands over the payload as mqtt.js does, a Buffer on Node, so
// `payload.toString()` is the text (it printed `50,49,46,53`: a Uint8Array's toString).
import { useStack } from '@smqtt/test-kit/use-stack'
import { expect, test } from 'vitest'

const stack = useStack()

test('a message payload is a Buffer, as mqtt.js delivers it: payload.toString() gives the text, live and retained', async () => {
  const run = `payload${Date.now().toString(36)}`
  const thermostat = await stack.enroll(`thermostat-${run}`, ['thermostat'])
  const app = await stack.enroll(`app-${run}`, ['app'])
  const topic = `home/${run}/thermostat/thermostat-${run}/temp`
  const publisher = await stack.client(thermostat)
  await publisher.client.publishAsync(topic, '{"celsius":21.5}', { qos: 1, retain: true })

  const subscriber = await stack.client(app)
  const payloads: unknown[] = []
  subscriber.client.on('message', (_topic, payload) => payloads.push(payload))
  await subscriber.client.subscribeAsync(`home/${run}/thermostat/#`, { qos: 1 })
  await subscriber.waitForMessages(1, 10_000) // the retained one
  await publisher.client.publishAsync(topic, '{"celsius":22}', { qos: 1 })
  const messages = await subscriber.waitForMessages(2, 10_000)

  expect(messages.map((m) => m.info.retained)).toEqual([true, false])
  expect(payloads.map((p) => Buffer.isBuffer(p))).toEqual([true, true])
  expect(payloads.map((p) => String(p))).toEqual(['{"celsius":21.5}', '{"celsius":22}'])
  expect(JSON.parse(messages[1]?.payload.toString() ?? '')).toEqual({ celsius: 22 })
})
