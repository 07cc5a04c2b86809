// Keys change under live traffic: immediate and scheduled rotations, pushed and pulled bundles.
import { type Stack, startStack, tap, waitUntil } from '@smqtt/test-kit/client'
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest'

let stack: Stack
beforeAll(async () => {
  // Scheduled epochs are handed out 2 s before they activate, so the test sees one activate.
  stack = await startStack({ settings: { rotationLeadSeconds: 2 } })
})
afterEach(async () => {
  await stack.closeClients()
})
afterAll(async () => {
  await stack?.close()
})

test('rotation under continuous QoS 1 traffic: immediate and scheduled, zero lost, zero rejected', async () => {
  const thermostat = await stack.enroll('thermostat-rot', ['thermostat'])
  const app = await stack.enroll('app-rot', ['app'])
  const publisher = await stack.client(thermostat)
  const subscriber = await stack.client(app)
  const topic = 'home/rot/thermostat/thermostat-rot/temp'
  await subscriber.client.subscribeAsync('home/rot/thermostat/#', { qos: 1 })
  const wire = await tap(await stack.raw(), topic)
  const updates: string[] = []
  subscriber.client.on('keysUpdated', (update) => updates.push(update.source))

  const total = 300
  const sends: Promise<unknown>[] = []
  for (let i = 0; i < total; i++) {
    if (i === 60) {
      // Immediate rotation pushed to the publisher only: the subscriber meets an unknown epoch
      // and must fetch it (one rate-limited refresh) without refusing anything.
      stack.syncClock()
      await stack.h.keyServer.rotateGroup(1, { immediate: true, actor: 'test', reason: 'test' })
      await stack.push(thermostat.identity)
      await waitUntil(() => publisher.client.keys.groups[0]?.epochs.includes(2) === true, 'publisher epoch 2')
    }
    if (i === 150) {
      // Scheduled rotation: handed to both ahead of activation (pre-fetch), active 2 s later.
      stack.syncClock()
      await stack.h.keyServer.rotateGroup(1, { immediate: false, actor: 'test', reason: 'test' })
      await Promise.all([stack.push(thermostat.identity), stack.push(app.identity)])
    }
    sends.push(publisher.client.publishAsync(topic, String(i), { qos: 1 }))
    await new Promise((resolve) => setTimeout(resolve, 15))
  }
  await Promise.all(sends)
  await subscriber.waitForMessages(total, 10_000)

  expect(subscriber.errors).toEqual([])
  expect(subscriber.messages.map((m) => Number(m.text)).sort((a, b) => a - b)).toEqual([...Array(total).keys()])
  // All three epochs were really used on the wire, in order.
  const epochs = wire.map((w) => w.epoch)
  expect([...new Set(epochs)]).toEqual([1, 2, 3])
  expect(epochs).toEqual([...epochs].sort((a, b) => a - b))
  expect(subscriber.client.stats).toMatchObject({ received: total, delivered: total, rejected: {} })
  // Epoch 2 came by an unknown-epoch fetch, epoch 3 by push.
  expect(updates).toEqual(['fetch', 'push'])
}, 30_000)
