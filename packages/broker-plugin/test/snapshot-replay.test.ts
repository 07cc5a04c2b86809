// Attack: stale snapshot replay on the Redis bus. A broker node that cannot reach the key server
// keeps enforcing its last snapshot and reports it stale, so operators see that revocations no
// longer arrive. Any node of the cluster (or anyone on its Redis) can publish on the broker
// control topic; if re-pushing an old snapshot it recorded counted as a sync, it would hide that
// staleness forever. Node A here is a real Aedes with the plugin on a real Redis; node B a bare
// Aedes on the same bus: the compromised node. The run uses a prefix of its own, deleted after.
import { BROKER_CONTROL_TOPIC, createBrokerSnapshot, generateIdentity, parsePolicy } from '@smqtt/core'
import { deleteRedisKeys, sleep, testRedis, within } from '@smqtt/test-kit/broker'
import { SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { Aedes } from 'aedes'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { attachSmqtt, type SmqttPlugin } from '../src/index.js'
import { createRedisBackends, type RedisBackends } from '../src/redis.js'

const REDIS = testRedis('replay')
const T = 1_800_000_000
const keyServer = generateIdentity('smqtt-keyserver')
const policy = parsePolicy(SMART_HOME_POLICY)

let clock = T
const logs: { msg?: string }[] = []
const registry = new Registry()
let plugin: SmqttPlugin
const nodes: { broker: Aedes; redis: RedisBackends }[] = []

async function node(): Promise<Aedes> {
  const redis = createRedisBackends(REDIS)
  redis.onError(() => {})
  const broker = await Aedes.createBroker({ mq: redis.mq, persistence: redis.persistence } as never)
  nodes.push({ broker, redis })
  return broker
}

const snapshot = (issuedAt: number) =>
  createBrokerSnapshot({ issuedAt, policy, principals: [], epochs: [], revocationListVersion: 0 }, keyServer)

/** What node A logged about snapshots so far. */
const handled = () => logs.filter((l) => l.msg === 'snapshot applied' || l.msg === 'older snapshot ignored').length

/** Node B publishes `signed` on the bus, as the key server's push would arrive; waits until node A handled it. */
async function pushThroughB(signed: unknown): Promise<void> {
  const before = handled()
  const payload = Buffer.from(JSON.stringify({ type: 'snapshot', snapshot: signed }))
  ;(nodes[1] as { broker: Aedes }).broker.publish(
    { cmd: 'publish', topic: BROKER_CONTROL_TOPIC, payload, qos: 0, retain: false, dup: false },
    () => {},
  )
  await within(
    (async () => {
      while (handled() === before) await sleep(5)
    })(),
    'node A handling the push',
  )
}

const staleGauge = async () => (await registry.getSingleMetric('smqtt_broker_snapshot_stale')?.get())?.values[0]?.value

beforeAll(async () => {
  const nodeA = await node()
  await node() // node B
  plugin = await attachSmqtt(nodeA, {
    keyServerPublicKey: keyServer.signingKey,
    staleAfterSeconds: 60,
    now: () => clock,
    registry,
    logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) }),
  })
})

afterAll(async () => {
  await plugin?.close()
  for (const { broker, redis } of nodes) {
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    await redis.destroyPersistence()
  }
  await deleteRedisKeys(REDIS)
})

test('stale snapshot replay: re-pushing an older (or the same) snapshot through the bus does not reset staleness', async () => {
  const old = snapshot(T)
  const current = snapshot(T + 10)
  await pushThroughB(old)
  clock = T + 10
  await pushThroughB(current)
  expect(plugin.state).toMatchObject({ snapshotIssuedAt: T + 10, snapshotAge: 0, stale: false })

  // The key server is out of reach for 61 s: node A says so.
  clock = T + 71
  expect(plugin.state).toMatchObject({ snapshotAge: 61, stale: true })

  // Node B replays what it recorded: the older snapshot, then the current one again.
  await pushThroughB(old)
  await pushThroughB(current)
  expect(plugin.state).toMatchObject({ snapshotIssuedAt: T + 10, snapshotAge: 61, stale: true })
  expect(await staleGauge()).toBe(1)

  // A really newer snapshot is a sync.
  await pushThroughB(snapshot(T + 70))
  expect(plugin.state).toMatchObject({ snapshotIssuedAt: T + 70, snapshotAge: 0, stale: false })
  expect(await staleGauge()).toBe(0)
})

test('same-second snapshot swap: another snapshot of the second enforced is ignored, so a policy change within that second is not undone', async () => {
  clock = T + 200
  // The key server changed the policy twice within one second: B recorded the first snapshot.
  const before = createBrokerSnapshot(
    { issuedAt: T + 200, policy, principals: [], epochs: [], revocationListVersion: 0 },
    keyServer,
  )
  const changed = createBrokerSnapshot(
    {
      issuedAt: T + 200,
      policy: parsePolicy({ ...SMART_HOME_POLICY, rules: SMART_HOME_POLICY.rules.slice(1) }),
      principals: [],
      epochs: [],
      revocationListVersion: 0,
    },
    keyServer,
  )
  await pushThroughB(changed)
  expect(plugin.state).toMatchObject({ snapshotIssuedAt: T + 200 })
  const applied = logs.filter((l) => l.msg === 'snapshot applied').length
  await pushThroughB(before)
  expect(logs.filter((l) => l.msg === 'snapshot applied').length).toBe(applied)
  expect(logs.at(-1)?.msg).toBe('older snapshot ignored')
  // The same snapshot again is harmless and passes.
  await pushThroughB(changed)
  expect(logs.at(-1)?.msg).toBe('snapshot applied')
})
