// Fault: the Redis two `smqtt-broker` nodes share goes away for 10 s during traffic (an orderly
// restart: SHUTDOWN SAVE, then the same port and data again), longer than ioredis' retry budget
// per command. A publisher on node A sends QoS 1 messages all along to a persistent subscriber on
// node B. While the bus is down, or its subscriptions are not live again, node A refuses QoS 1
// (`bus-unavailable`): no PUBACK, so mqtt.js keeps each message and re-sends it after reconnecting.
// Every QoS 1 message arrives (duplicates allowed); the nodes stay up. QoS 0 still flows, best
// effort: what arrives of it is reported, not asserted (see docs/reliability.md, Faults).
import { expect, test } from 'vitest'
import { report, settled, sleep, subscriberAndPublisher, THERMOSTAT_TOPIC, until, useCluster } from './_cluster.js'

const BATCH = 50
/** QoS 0 messages are numbered from here, apart from the QoS 1 ones. */
const QOS0_BASE = 10_000
const QOS0_COUNT = 20
const OUTAGE_MS = 10_000
const PUBLISH_EVERY_MS = 100

const run = useCluster('smqtt-fault-redis-')

test('Redis away for 10 s under two nodes: no crash, every QoS 1 message delivered, refused meanwhile as bus-unavailable', async () => {
  const { cluster } = run
  const [nodeA, nodeB] = cluster.nodes
  const { subscriber, publisher, seen } = await subscriberAndPublisher(run, nodeB.mqtts, nodeA.mqtts)
  const reconnects = { publisher: 0, subscriber: 0 }
  publisher.on('reconnect', () => reconnects.publisher++)
  subscriber.on('reconnect', () => reconnects.subscriber++)

  let next = 0
  const acked = new Map<number, number>() // message → when its PUBACK came (ms)
  const publishQos1 = (count: number) =>
    Array.from({ length: count }, () => {
      const n = next++
      return publisher.publishAsync(THERMOSTAT_TOPIC, String(n), { qos: 1 }).then(() => acked.set(n, Date.now()))
    })
  const qos1Numbers = () => Array.from({ length: next }, (_, n) => n)
  const arrived = (numbers: Iterable<number>) => [...numbers].every((n) => seen.has(n))

  // Before: messages cross from node A to node B.
  await Promise.all(publishQos1(BATCH))
  await until(() => arrived(qos1Numbers()), 'the first batch on node B')

  // The outage: a QoS 0 burst, then a QoS 1 message every 100 ms, published on node A; mqtt.js
  // holds what it could not send or got no PUBACK for.
  await cluster.redis.shutdown()
  const outageStart = next
  const qos0 = Array.from({ length: QOS0_COUNT }, (_, i) => QOS0_BASE + i)
  for (const n of qos0) publisher.publish(THERMOSTAT_TOPIC, String(n), { qos: 0 })
  const pending: Promise<unknown>[] = []
  for (let t = 0; t < OUTAGE_MS; t += PUBLISH_EVERY_MS) {
    pending.push(...publishQos1(1))
    await sleep(PUBLISH_EVERY_MS)
  }
  const outageEnd = next
  const ackedDuringOutage = [...acked.keys()].filter((n) => n >= outageStart).length
  const redisBack = Date.now()
  await cluster.redis.start()

  // After: more messages, then everything published must arrive, however many re-sends it took.
  pending.push(...publishQos1(BATCH))
  const allAcked = await Promise.race([Promise.all(pending).then(() => true), sleep(25_000).then(() => false)])
  await settled(() => arrived(qos1Numbers()), 10_000)

  const missing = qos1Numbers().filter((n) => !seen.has(n))
  const refused = nodeA.lines().filter((l) => l.event === 'refused' && l.reason === 'bus-unavailable')
  const firstOutageAck = Math.min(...[...acked].filter(([n]) => n >= outageStart && n < outageEnd).map(([, at]) => at))
  const qos0Received = qos0.filter((n) => seen.has(n)).length
  report({
    fault: 'redis-restart',
    sent: next + qos0.length,
    received: seen.size,
    lost: next + qos0.length - seen.size,
    duplicates: subscriber.stats.rejected.ERR_REPLAY ?? 0,
    outageMs: OUTAGE_MS,
    reconnects,
    qos1: {
      sent: next,
      duringOutage: outageEnd - outageStart,
      ackedDuringOutage,
      acked: acked.size,
      lost: missing.length,
      refusedBusUnavailable: refused.length,
      // From `redis-server` restarting to the first PUBACK of a message held since the outage.
      gateReopenedAfterMs: firstOutageAck - redisBack,
    },
    qos0: { sent: qos0.length, received: qos0Received, lost: qos0.length - qos0Received },
    // Lines ioredis prints for a connection without an error listener: none (every one has one).
    ioredisUnhandledErrors: cluster.nodes.map(
      (node) => node.output().split('[ioredis] Unhandled error event').length - 1,
    ),
  })
  expect(missing).toEqual([])
  expect(allAcked).toBe(true)
  // Nothing published during the outage was acknowledged before Redis came back...
  expect(ackedDuringOutage).toBe(0)
  // ... because node A refused it (no PUBACK), audited and counted as bus-unavailable.
  expect(refused.length).toBeGreaterThan(0)
  expect(refused[0]).toMatchObject({ audit: true, hook: 'publish', principal: 'thermostat-1' })
  expect(reconnects.publisher).toBeGreaterThan(0)
  for (const node of cluster.nodes) {
    // An unhandled rejection or 'error' event would have ended the process (Node's default).
    expect(node.alive).toBe(true)
    expect(node.lines().some((l) => l.msg === 'Redis (shared by the broker nodes) failed')).toBe(true)
    expect(node.output()).not.toContain('[ioredis] Unhandled error event')
  }
}, 60_000)
