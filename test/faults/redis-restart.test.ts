// Fault: the Redis two `smqtt-broker` nodes share goes away for 12 s during traffic (an orderly
// restart: SHUTDOWN SAVE, then the same port and data again), longer than ioredis' retry budget
// per command. The nodes stay up, their clients stay connected or reconnect, and messages cross
// between the nodes again once Redis is back, with no QoS 1 loss before or after the outage.
// The summary says what was lost while Redis was away: QoS 0 may be, and so may QoS 1, because
// Aedes sends PUBACK before it routes the message (see docs/reliability.md, Faults).
import { expect, test } from 'vitest'
import { report, secureClient, settled, sleep, THERMOSTAT_TOPIC, tally, until, useCluster } from './_cluster.js'

const BATCH = 100
/** QoS 0 messages are numbered from here, apart from the QoS 1 ones. */
const QOS0_BASE = 10_000
const OUTAGE_MS = 12_000

const run = useCluster('smqtt-fault-redis-')

test('Redis away for 12 s under two nodes: no crash, cross-node delivery resumes, no QoS 1 loss outside the outage', async () => {
  const { cluster, clients } = run
  const [nodeA, nodeB] = cluster.nodes
  const subscriber = await secureClient(cluster.ks, cluster.app, nodeA.mqtts, { clean: false })
  const publisher = await secureClient(cluster.ks, cluster.thermostat, nodeB.mqtts)
  clients.push(subscriber, publisher)
  const { seen } = tally(subscriber)
  let reconnects = 0
  for (const client of clients) client.on('reconnect', () => reconnects++)
  await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })

  let next = 0
  const acked = new Set<number>()
  const publishQos1 = (count: number) =>
    Array.from({ length: count }, () => {
      const n = next++
      return publisher.publishAsync(THERMOSTAT_TOPIC, String(n), { qos: 1 }).then(() => acked.add(n))
    })
  const arrived = (numbers: Iterable<number>) => [...numbers].every((n) => seen.has(n))

  // Before: messages cross from node B to node A.
  await Promise.all(publishQos1(BATCH))
  await until(() => arrived(acked), 'the first batch on node A')

  // The outage, longer than ioredis' 20 retries per command (about 10 s): a burst of both QoS
  // levels, then a QoS 1 message every 500 ms, published on node B while Redis is away.
  await cluster.redis.shutdown()
  const outageQos1 = publishQos1(BATCH)
  const qos0 = Array.from({ length: BATCH }, (_, i) => QOS0_BASE + i)
  for (const n of qos0) publisher.publish(THERMOSTAT_TOPIC, String(n), { qos: 0 })
  for (let t = 0; t < OUTAGE_MS; t += 500) {
    outageQos1.push(...publishQos1(1))
    await sleep(500)
  }
  const ackedDuringOutage = acked.size - BATCH
  const outageEnd = next
  await cluster.redis.start()
  await Promise.race([Promise.allSettled(outageQos1), sleep(20_000)])

  // After: probes until one crosses again; from that one on, nothing may be lost.
  let resumedAt = next
  await until(async () => {
    resumedAt = next
    await Promise.all(publishQos1(1))
    return settled(() => seen.has(resumedAt), 500)
  }, 'a message to cross from node B to node A again')
  const afterNumbers = Array.from({ length: BATCH }, (_, i) => next + i)
  await Promise.all(publishQos1(BATCH))
  await settled(() => arrived(acked), 10_000)

  // The window: published after Redis went away and before delivery was seen to resume.
  const inWindow = (n: number) => n >= BATCH && n < resumedAt
  const lost = [...acked].filter((n) => !seen.has(n))
  const lostOutsideWindow = lost.filter((n) => !inWindow(n))
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
      acked: acked.size,
      ackedDuringOutage,
      probes: resumedAt - outageEnd,
      lostInWindow: lost.length - lostOutsideWindow.length,
      lostOutsideWindow: lostOutsideWindow.length,
    },
    qos0: { sent: qos0.length, received: qos0Received, lost: qos0.length - qos0Received },
    // Lines ioredis prints for a connection without an error listener: none (every one has one).
    ioredisUnhandledErrors: cluster.nodes.map(
      (node) => node.output().split('[ioredis] Unhandled error event').length - 1,
    ),
  })
  expect(acked.size).toBe(next)
  // Redis' absence does not reach the clients: no command fails, so no session is dropped.
  expect(reconnects).toBe(0)
  expect(lostOutsideWindow).toEqual([])
  expect(arrived(afterNumbers)).toBe(true)
  for (const node of cluster.nodes) {
    // An unhandled rejection or 'error' event would have ended the process (Node's default).
    expect(node.alive).toBe(true)
    expect(node.lines().some((l) => l.msg === 'Redis (shared by the broker nodes) failed')).toBe(true)
    expect(node.output()).not.toContain('[ioredis] Unhandled error event')
  }
}, 90_000)
