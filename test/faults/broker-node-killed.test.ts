// Fault: one of two `smqtt-broker` nodes sharing a Redis is killed (SIGKILL) while a subscriber
// with a persistent session is on it. The subscriber reconnects to the other node, and every
// QoS 1 message the publisher had a PUBACK for arrives. Duplicates are allowed (Aedes queues a
// copy in Redis for a persistent session that is not on the publishing node) and counted: the
// subscriber's replay window drops them before the application sees them.
import { expect, test } from 'vitest'
import {
  report,
  serversOf,
  settled,
  sleep,
  subscriberAndPublisher,
  THERMOSTAT_TOPIC,
  until,
  useCluster,
} from './_cluster.js'

const MESSAGES = 300
const KILL_AFTER = 100

const run = useCluster('smqtt-fault-node-')

test('the subscriber’s node is killed mid-traffic: it resumes on the other node, every acknowledged QoS 1 message arrives', async () => {
  const [nodeA, nodeB] = run.cluster.nodes
  const { subscriber, publisher, seen, deliveries } = await subscriberAndPublisher(run, nodeA.mqtts, nodeB.mqtts, {
    servers: serversOf(nodeA.mqtts, nodeB.mqtts),
    reconnectPeriod: 1_000, // mqtt.js' default; well under the broker's CONNECT rate limit
  })
  let connects = 0
  subscriber.on('connect', () => connects++)
  const errors = new Set<string>()
  subscriber.on('error', (err) => errors.add(err.message))

  const acked = new Set<number>()
  const publishes: Promise<unknown>[] = []
  for (let n = 0; n < MESSAGES; n++) {
    publishes.push(publisher.publishAsync(THERMOSTAT_TOPIC, String(n), { qos: 1 }).then(() => acked.add(n)))
    if (n === KILL_AFTER) await nodeA.kill('SIGKILL')
    if (n % 10 === 9) await sleep(10) // spread the traffic around the kill
  }
  await Promise.allSettled(publishes)
  await until(() => connects >= 1, 'the subscriber to reconnect to node B')
  await settled(() => [...acked].every((n) => seen.has(n)), 30_000)
  // A moment for late duplicates to be counted.
  await sleep(500)
  const lost = [...acked].filter((n) => !seen.has(n)).length
  report({
    fault: 'broker-node-killed',
    sent: MESSAGES,
    acked: acked.size,
    received: seen.size,
    lost,
    duplicates: subscriber.stats.rejected.ERR_REPLAY ?? 0,
    deliveries: deliveries(),
    reconnects: connects,
    subscriberErrors: [...errors],
  })
  expect(acked.size).toBe(MESSAGES) // the publisher's node stayed up
  expect(lost).toBe(0)
  expect(deliveries()).toBe(seen.size) // the application saw each message once
  expect(nodeB.alive).toBe(true)
}, 90_000)
