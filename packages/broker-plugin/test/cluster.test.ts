// Scale-out through Redis: two broker nodes (two startBroker instances in this process, each with
// its own Aedes and its own plugin, sharing nothing but Redis and the key server) with the real
// key server. A message published on node B reaches a subscriber on node A; a snapshot pushed
// through node B closes a revoked principal's sessions on both nodes within 1 s, and the revoked
// principals cannot reconnect on either. Each run uses a key / channel prefix of its own and
// deletes its keys afterwards.
import { BROKER_CONTROL_TOPIC, isSmqttError, sealEnvelope } from '@smqtt/core'
import {
  brokerFolder,
  closeClusterTest,
  closed,
  connected,
  countRedisKeys,
  type Enrolled,
  firstMessage,
  inbox,
  openBundleOf,
  passwordClient,
  sealingKeys,
  startClusterNode,
  startTestKeyServer,
  testRedis,
  within,
} from '@smqtt/test-kit/broker'
import type { Harness } from '@smqtt/test-kit/keyserver'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parseBrokerConfig, type RunningBroker } from '../src/index.js'

const REDIS = testRedis('cluster')
const TOPIC = 'home/hall/thermostat/thermostat-1/temp'

let h: Harness
let dir: string
let nodeA: RunningBroker
let nodeB: RunningBroker
let thermostat: Enrolled
let app1: Enrolled
let app2: Enrolled
let pusher: Enrolled
const clients = new Set<MqttClient>()

const startNode = (name: string) => startClusterNode(h, dir, name, REDIS)

function connect(node: RunningBroker, who: Enrolled, options: { clean?: boolean } = {}): Promise<MqttClient> {
  const client = passwordClient(node.urls.mqtts, h.caPem, who, options)
  clients.add(client)
  return connected(client, `CONNACK for ${who.identity.id}`)
}

async function seal(sender: Enrolled, seq: number): Promise<Uint8Array> {
  const { epochKey, signer } = sealingKeys(await openBundleOf(h, sender), sender, TOPIC)
  return sealEnvelope({ topic: TOPIC, payload: new TextEncoder().encode('21.5'), epochKey, signer, seq })
}

beforeAll(async () => {
  h = await startTestKeyServer()
  // Both nodes run as the same broker principal (one identity file, as a deployment may do).
  dir = await brokerFolder(h, 'smqtt-broker-cluster-')
  thermostat = await h.enroll('thermostat-1', ['thermostat'])
  app1 = await h.enroll('app-1', ['app'])
  app2 = await h.enroll('app-2', ['app'])
  pusher = await h.enroll('smqtt-keyserver', ['keyserver'])
  nodeA = await startNode('node-a')
  nodeB = await startNode('node-b')
})

afterAll(() => closeClusterTest({ clients, nodes: [nodeA, nodeB], h, dir, redis: REDIS }))

describe('redis config', () => {
  const minimal = { keyServer: { url: 'https://127.0.0.1:8443', publicKey: Buffer.alloc(32, 7).toString('base64url') } }
  const error = (redis: unknown) => {
    try {
      parseBrokerConfig({ ...minimal, redis }, '/etc/smqtt')
    } catch (err) {
      expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
      return (err as Error).message
    }
    throw new Error('accepted')
  }

  test('absent: one node alone; present: URL and a default prefix', () => {
    expect(parseBrokerConfig(minimal, '/x').redis).toBeUndefined()
    expect(parseBrokerConfig({ ...minimal, redis: { url: 'redis://10.0.0.5:6380/2' } }, '/x').redis).toEqual({
      url: 'redis://10.0.0.5:6380/2',
      prefix: 'smqtt:',
    })
    expect(parseBrokerConfig({ ...minimal, redis: { url: 'rediss://r:6379', prefix: 'site-1:' } }, '/x').redis).toEqual(
      {
        url: 'rediss://r:6379',
        prefix: 'site-1:',
      },
    )
  })

  test('strict: unknown fields, other schemes, bad databases and prefixes are refused without echoing values', () => {
    expect(error({ url: 'redis://r', host: 'r' })).toMatch(/\$\.redis\.host: unknown field/)
    expect(error({})).toMatch(/\$\.redis\.url: a redis:\/\/ or rediss:\/\/ URL/)
    expect(error({ url: 'http://r:6379' })).toMatch(/\$\.redis\.url/)
    expect(error({ url: 'redis://r/db0' })).toMatch(/\$\.redis\.url: .*database number/)
    expect(error({ url: 'redis://r', prefix: 'a b' })).toMatch(/\$\.redis\.prefix/)
    expect(error('redis://r')).toMatch(/\$\.redis: expected an object/)
    expect(error({ url: 'redis://:hunter2@r/x' })).not.toMatch(/hunter2/)
  })
})

describe('two broker nodes sharing Redis', () => {
  test('a message published on node B reaches a subscriber on node A', async () => {
    // A persistent session, so its subscription is also stored (in Redis, under this run's prefix).
    const subscriber = await connect(nodeA, app1, { clean: false })
    const received = inbox(subscriber)
    expect((await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 }))[0]?.qos).toBe(1)
    const publisher = await connect(nodeB, thermostat)
    const envelope = await seal(thermostat, 1)
    await within(publisher.publishAsync(TOPIC, Buffer.from(envelope), { qos: 1 }), 'PUBACK from node B')
    const delivered = await firstMessage(received, 'delivery on node A')
    expect(delivered.topic).toBe(TOPIC)
    expect(new Uint8Array(delivered.payload)).toEqual(envelope)
    // The nodes share nothing else: the message went through Redis; the session is stored there.
    expect(await countRedisKeys(REDIS)).toBeGreaterThan(0)
    subscriber.end(true)
    publisher.end(true)
  })

  test('one client id on two nodes: the newer session takes over, the older one on the other node is closed', async () => {
    const first = await connect(nodeA, thermostat)
    const gone = closed(first, 5_000)
    const second = await connect(nodeB, thermostat)
    await gone
    expect(second.connected).toBe(true)
    second.end(true)
  })

  test('a snapshot pushed through node B closes revoked sessions on both nodes within 1 s; no reconnect on either', async () => {
    const onA = await connect(nodeA, app1)
    await onA.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    const onB = await connect(nodeB, app2)
    await onB.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    const push = await connect(nodeB, pusher)
    await h.keyServer.revokePrincipal('app-1', 'admin')
    await h.keyServer.revokePrincipal('app-2', 'admin')
    const snapshot = await h.keyServer.brokerSnapshot()

    const started = Date.now()
    const goneA = closed(onA, 1_000)
    const goneB = closed(onB, 1_000)
    await push.publishAsync(BROKER_CONTROL_TOPIC, JSON.stringify({ type: 'snapshot', snapshot }), { qos: 1 })
    await Promise.all([goneA, goneB])
    expect(Date.now() - started).toBeLessThan(1_000)
    // Node A got the snapshot only through Redis (its pull period is an hour).
    expect(nodeA.plugin.snapshot?.principals.find((p) => p.id === 'app-1')?.status).toBe('revoked')
    expect(nodeB.plugin.snapshot?.principals.find((p) => p.id === 'app-2')?.status).toBe('revoked')

    for (const node of [nodeA, nodeB])
      for (const who of [app1, app2]) await expect(connect(node, who)).rejects.toMatchObject({ code: 5 })
    // The publisher is not affected.
    expect((await connect(nodeA, thermostat)).connected).toBe(true)
  })
})
