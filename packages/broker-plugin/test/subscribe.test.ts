import { BROKER_CONTROL_TOPIC, principalControlTopic } from '@smqtt/core'
import {
  type Deployment,
  type Enrolled,
  inbox,
  sleep,
  startDeployment,
  TEST_POLICY,
  within,
} from '@smqtt/test-kit/broker'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'

// One deployment for the whole file: subscriptions do not change broker state for other tests.
let d: Deployment
let thermostat: Enrolled
let app: Enrolled
let lock: Enrolled
let admin: Enrolled
let brokerNode: Enrolled
const opened: MqttClient[] = []
beforeAll(async () => {
  d = await startDeployment()
  thermostat = await d.enroll('thermostat-1', ['thermostat'])
  app = await d.enroll('app-1', ['app'])
  lock = await d.enroll('lock-1', ['lock'])
  admin = await d.enroll('admin-1', ['admin'])
  brokerNode = await d.enroll('broker-2', ['broker'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
})
afterEach(() => {
  for (const c of opened.splice(0)) c.end(true)
})
afterAll(async () => {
  await d.close()
})

async function granted(who: Enrolled, filter: string): Promise<number | undefined> {
  const client = await d.connectAs(who)
  opened.push(client)
  // mqtt.js 5 rejects subscribeAsync when the SUBACK carries 0x80 (ErrorWithSubackPacket, "Unspecified error").
  const qos = await within(
    client.subscribeAsync(filter, { qos: 1 }).then(
      (result) => result[0]?.qos,
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0],
    ),
    `SUBACK for ${filter}`,
  )
  await sleep(20)
  expect(client.connected).toBe(true) // a refused subscription never closes the session
  return qos
}

describe('subscribe', () => {
  test.each([
    ['app', 'home/+/thermostat/#', 1],
    ['app', 'home/hall/lock/+/state', 1],
    ['app', '$share/dashboards/home/+/thermostat/#', 1],
    ['app', 'home/#', 128],
    ['app', '#', 128],
    ['app', '+/+/thermostat/#', 128],
    ['app', 'home/+/lock/+/cmd', 128],
    ['thermostat', 'home/+/thermostat/#', 128],
    ['lock', 'home/hall/lock/lock-1/cmd', 1],
    ['lock', 'home/hall/lock/+/cmd', 128],
    ['lock', 'home/+/lock/#', 128],
    ['app', '$SYS/#', 128],
    ['admin', '$SYS/#', 1],
    ['app', principalControlTopic('app-1'), 1],
    ['app', principalControlTopic('lock-1'), 128],
    ['app', 'smqtt/control/principals/+', 128],
    ['app', 'smqtt/#', 128],
    ['app', BROKER_CONTROL_TOPIC, 128],
    ['broker', BROKER_CONTROL_TOPIC, 1],
    ['app', '$share//home/+/thermostat/#', 128],
  ])('%s subscribing to %s → granted QoS %i', async (who, filter, qos) => {
    const principal = { app, thermostat, lock, admin, broker: brokerNode }[who] as Enrolled
    expect(await granted(principal, filter)).toBe(qos)
  })

  test('refusals are audited with principal, topic and reason', async () => {
    await granted(app, 'home/#')
    expect(d.logs).toContainEqual(
      expect.objectContaining({
        audit: true,
        hook: 'subscribe',
        reason: 'acl-denied',
        principal: 'app-1',
        topic: 'home/#',
      }),
    )
  })
})

describe('forward re-checks every delivery', () => {
  test('a policy change stops deliveries to a live subscription at once', async () => {
    const subscriber = await d.connectAs(app)
    opened.push(subscriber)
    const received = inbox(subscriber)
    await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    const publisher = await d.connectAs(thermostat)
    opened.push(publisher)
    const topic = 'home/hall/thermostat/thermostat-1/temp'
    await publisher.publishAsync(topic, Buffer.from(await d.seal(thermostat, topic, 1)), { qos: 1 })
    await within(
      (async () => {
        while (received.length < 1) await sleep(10)
      })(),
      'first delivery',
    )

    const narrowed = {
      ...TEST_POLICY,
      rules: TEST_POLICY.rules.map((r) =>
        r.roles?.includes('app') && r.actions.includes('subscribe') && r.topics.includes('home/+/thermostat/#')
          ? { ...r, topics: ['home/+/lock/+/state'] }
          : r,
      ),
    }
    expect((await d.h.admin('PUT', '/v1/admin/policy', { policy: narrowed })).status).toBe(200)
    d.h.clock.now += 1
    expect(d.smqtt.applySnapshot(await d.freshSnapshot())).toBe(true)
    await publisher.publishAsync(topic, Buffer.from(await d.seal(thermostat, topic, 2)), { qos: 1 })
    await sleep(300)
    expect(received).toHaveLength(1)
    expect(subscriber.connected).toBe(true)
    expect(await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_refusals_total')).toContain(
      'hook="forward",reason="acl-denied"} 1',
    )
    expect((await d.h.admin('PUT', '/v1/admin/policy', { policy: TEST_POLICY })).status).toBe(200)
    d.h.clock.now += 1
    d.smqtt.applySnapshot(await d.freshSnapshot())
  })
})
