// The scale-out gate: while `busReady` is false (startBroker passes the Redis bus state), QoS 1/2
// PUBLISHes are refused without PUBACK (`bus-unavailable`) so the client keeps and re-sends them;
// QoS 0 still flows. Real Aedes, real mqtt.js; the bus state is a switch here, a real Redis outage
// in test/faults/redis-restart.test.ts.
import { createConnectPassword } from '@smqtt/core'
import {
  closed,
  type Deployment,
  type Enrolled,
  firstMessage,
  inbox,
  sleep,
  startDeployment,
  within,
} from '@smqtt/test-kit/broker'
import { afterEach, beforeEach, expect, test } from 'vitest'

const TOPIC = 'home/hall/thermostat/thermostat-1/temp'
let d: Deployment
let thermostat: Enrolled
let app: Enrolled
let busUp = true
beforeEach(async () => {
  busUp = true
  d = await startDeployment({ busReady: () => busUp })
  thermostat = await d.enroll('thermostat-1', ['thermostat'])
  app = await d.enroll('app-1', ['app'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
})
afterEach(async () => {
  await d.close()
})

const refusals = () =>
  d.logs.filter((l) => l.audit && l.event === 'refused').map((l) => `${String(l.hook)}/${String(l.reason)}`)

test('bus down: QoS 1 is refused without PUBACK and audited; QoS 0 still arrives', async () => {
  const subscriber = await d.connectAs(app)
  const received = inbox(subscriber)
  await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  const publisher = await d.connectAs(thermostat)
  busUp = false

  publisher.publish(TOPIC, Buffer.from(await d.seal(thermostat, TOPIC, 1)), { qos: 0 })
  await firstMessage(received, 'the QoS 0 message')
  let acked = false
  publisher.publishAsync(TOPIC, Buffer.from(await d.seal(thermostat, TOPIC, 2)), { qos: 1 }).then(
    () => {
      acked = true
    },
    () => {},
  )
  await closed(publisher)
  expect(acked).toBe(false)
  expect(received).toHaveLength(1)
  expect(refusals()).toEqual(['publish/bus-unavailable'])
  expect(await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_refusals_total')).toContain(
    'hook="publish",reason="bus-unavailable"} 1',
  )
})

test('the refused QoS 1 message is re-sent by mqtt.js after reconnecting and delivered once the bus is back', async () => {
  const subscriber = await d.connectAs(app)
  const received = inbox(subscriber)
  await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  // A publisher that reconnects (the fixture's default does not) and, like every QoS 1 client, keeps
  // the unacknowledged message in its outgoing store.
  const publisher = await d.connectAs(thermostat, { reconnectPeriod: 100 })
  // A CONNECT password is single-use: a fresh one per reconnect, as @smqtt/client does.
  publisher.on('reconnect', () => {
    publisher.options.password = createConnectPassword(thermostat.identity, thermostat.identity.id)
  })
  busUp = false
  const envelope = await d.seal(thermostat, TOPIC, 1)
  const acked = publisher.publishAsync(TOPIC, Buffer.from(envelope), { qos: 1 })
  await closed(publisher)
  // Every reconnect re-sends it and is refused again, until the bus is back.
  await within(
    (async () => {
      while (refusals().length < 2) await sleep(10)
    })(),
    'a re-sent, refused again',
  )
  busUp = true
  await within(acked, 'the PUBACK once the bus is back')
  const delivered = await firstMessage(received, 'delivery')
  expect(new Uint8Array(delivered.payload)).toEqual(envelope)
  expect(new Set(refusals())).toEqual(new Set(['publish/bus-unavailable']))
})
