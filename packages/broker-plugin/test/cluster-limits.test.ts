// The abuse budgets of a cluster: two broker nodes (two startBroker instances in this process,
// sharing nothing but Redis and the key server) must give an attacker no more than one node
// does. Each attack below worked on per-node state: a CONNECT password replayed on the other
// node, a flood hopping between nodes, failures and bans spread over nodes. Every test uses a
// loopback source address of its own (127.0.x.y), so the address budgets of one cannot touch
// another; the run's Redis keys carry a prefix of their own and are deleted afterwards.
import { createConnectPassword, generateIdentity, sealEnvelope } from '@smqtt/core'
import {
  brokerFolder,
  closeClusterTest,
  closed,
  connected,
  type Enrolled,
  openBundleOf,
  passwordClient,
  sealingKeys,
  sleep,
  startClusterNode,
  startDeployment,
  startTestKeyServer,
  testRedis,
} from '@smqtt/test-kit/broker'
import type { Harness } from '@smqtt/test-kit/keyserver'
import { Redis } from 'ioredis'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { RunningBroker } from '../src/index.js'

const REDIS = testRedis('limits')

/** Small budgets, so that an attack exhausts them in well under a second. */
const RATE = { perSecond: 10, burst: 30 }
const LIMITS = { perAddress: 6, perClientId: 10, failuresBeforeBan: 3, windowSeconds: 60, banSeconds: 60 }

type Line = Record<string, unknown>

let h: Harness
let dir: string
let nodeA: RunningBroker
let nodeB: RunningBroker
const logs = new Map<RunningBroker, Line[]>()
let app1: Enrolled
let app2: Enrolled
let flooder: Enrolled
let forger: Enrolled
/** Devices of one site (behind one address), each reconnecting once. */
const site: Enrolled[] = []
const clients = new Set<MqttClient>()

async function startNode(name: string): Promise<RunningBroker> {
  const lines: Line[] = []
  const node = await startClusterNode(
    h,
    dir,
    name,
    REDIS,
    // Sampled mode checking every envelope: a bad signature bans its principal.
    { mode: 'sampled', sampleRate: 1, banSeconds: 60, verifyWorkers: 0, publishRate: RATE, connectLimits: LIMITS },
    { logLevel: 'info', logDestination: { write: (line: string) => lines.push(JSON.parse(line)) } },
  )
  logs.set(node, lines)
  return node
}

/** The audit entries of refused CONNECTs on `node` from `address`. */
const connectRefusals = (node: RunningBroker, address: string) =>
  (logs.get(node) ?? []).filter(
    (l) => l.audit && l.event === 'refused' && l.hook === 'connect' && l.address === address,
  ) as { reason: string; detail?: string; principal?: string }[]

function connect(node: RunningBroker, who: Enrolled, from: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = passwordClient(node.urls.mqtts, h.caPem, who, { localAddress: from, ...options } as IClientOptions)
  clients.add(client)
  return connected(client, `CONNACK for ${who.identity.id} from ${from}`)
}

/** Tries to connect; true when accepted (the connection is then closed). */
async function connects(node: RunningBroker, who: Enrolled, from: string, options: IClientOptions = {}) {
  try {
    const client = await connect(node, who, from, options)
    client.end(true)
    return true
  } catch {
    return false
  }
}

async function enroll(id: string, roles: string[]): Promise<Enrolled> {
  const enrolled = await h.enroll(id, roles)
  return { identity: enrolled.identity, kid: enrolled.kid }
}

beforeAll(async () => {
  h = await startTestKeyServer()
  dir = await brokerFolder(h, 'smqtt-broker-cluster-limits-')
  app1 = await enroll('app-1', ['app'])
  app2 = await enroll('app-2', ['app'])
  flooder = await enroll('thermostat-1', ['thermostat'])
  forger = await enroll('thermostat-2', ['thermostat'])
  for (let i = 0; i < 2 * LIMITS.perAddress; i++) site.push(await enroll(`site-device-${i}`, ['app']))
  nodeA = await startNode('node-a')
  nodeB = await startNode('node-b')
})

afterAll(() => closeClusterTest({ clients, nodes: [nodeA, nodeB], h, dir, redis: REDIS }))

describe('cluster-wide abuse budgets (two nodes, one Redis)', () => {
  test('CONNECT password replayed to another node within its window: refused', async () => {
    const from = '127.0.1.1'
    const once = createConnectPassword(app1.identity, app1.identity.id)
    const first = await connect(nodeA, app1, from, { password: once })
    first.end(true)
    // The eavesdropper replays it to the other node, seconds later: well within its 60 s window.
    await expect(connect(nodeB, app1, from, { password: once })).rejects.toMatchObject({ code: 4 })
    expect(connectRefusals(nodeB, from).map((r) => r.reason)).toEqual(['replayed-password'])
    // And back to the first node: refused there too.
    await expect(connect(nodeA, app1, from, { password: once })).rejects.toMatchObject({ code: 4 })
    expect(connectRefusals(nodeA, from).map((r) => r.reason)).toEqual(['replayed-password'])
  })

  test('a site behind one address reconnecting over several nodes: CONNECTs that authenticate are given back cluster-wide', async () => {
    const from = '127.0.2.1'
    let accepted = 0
    // Twice one address's budget, alternating nodes: each authenticated CONNECT gives its charge back.
    for (const [i, device] of site.entries()) if (await connects(i % 2 === 0 ? nodeA : nodeB, device, from)) accepted++
    expect(accepted).toBe(2 * LIMITS.perAddress)
    expect([...connectRefusals(nodeA, from), ...connectRefusals(nodeB, from)]).toEqual([])
  })

  test("N nodes give one principal's reconnect loop no more than one node's budget", async () => {
    let accepted = 0
    // A new source address each time: only the per-principal budget can stop it.
    for (let i = 0; i < 2 * LIMITS.perClientId; i++)
      if (await connects(i % 2 === 0 ? nodeA : nodeB, app2, `127.0.3.${i + 1}`)) accepted++
    expect(accepted).toBe(LIMITS.perClientId)
    const refused = [nodeA, nodeB].flatMap((node) =>
      (logs.get(node) ?? []).filter(
        (l) => l.audit && l.event === 'refused' && String(l.address).startsWith('127.0.3.'),
      ),
    )
    expect(refused.map((r) => [r.reason, r.principal])).toEqual(
      Array(LIMITS.perClientId).fill(['rate-limited', 'app-2']),
    )
  })

  test('an address failing authentication on several nodes is banned on all', async () => {
    const from = '127.0.4.1'
    const mallory = generateIdentity('app-1')
    // failuresBeforeBan (3) wrong passwords, spread over both nodes: no node alone saw 3.
    for (let i = 0; i < LIMITS.failuresBeforeBan; i++)
      await expect(
        connect(i % 2 === 0 ? nodeA : nodeB, app1, from, { password: createConnectPassword(mallory, 'app-1') }),
      ).rejects.toMatchObject({ code: 4 })
    await sleep(50) // the last failure is recorded after its CONNACK went out
    // Now even a valid CONNECT from that address is refused by either node.
    for (const node of [nodeA, nodeB]) {
      expect(await connects(node, app1, from)).toBe(false)
      expect(connectRefusals(node, from).at(-1)).toMatchObject({ reason: 'rate-limited' })
    }
    // Another address is not affected.
    expect(await connects(nodeB, app1, '127.0.4.2')).toBe(true)
  })

  test('a principal banned on one node for a forged signature (sampled mode) is banned on all', async () => {
    const topic = 'home/hall/thermostat/thermostat-2/temp'
    const onA = await connect(nodeA, forger, '127.0.5.1')
    // The forger's own group key, and a signature under its kid by a key that is not its own.
    const impostor = { identity: generateIdentity('x'), kid: forger.kid }
    const { epochKey, signer } = sealingKeys(await openBundleOf(h, forger), impostor, topic)
    const forged = sealEnvelope({ topic, payload: new TextEncoder().encode('99'), epochKey, signer, seq: 1 })
    const gone = closed(onA)
    onA.publish(topic, Buffer.from(forged), { qos: 0 })
    await gone
    // Reconnecting to the other node, with a fresh valid password and from another address.
    await expect(connect(nodeB, forger, '127.0.5.2')).rejects.toMatchObject({ code: 5 })
    expect(connectRefusals(nodeB, '127.0.5.2')).toEqual([
      expect.objectContaining({ reason: 'principal-inactive', principal: 'thermostat-2' }),
    ])
  })

  test("N nodes give a flooding publisher no more than one node's budget", async () => {
    // The flooder publishes QoS 1 as fast as PUBACKs come; refused, its connection is closed and
    // it hops to the other node (a new address each time, so no CONNECT budget stops it).
    const started = performance.now()
    const deadline = started + 600
    let accepted = 0
    let hop = 0
    while (performance.now() < deadline) {
      hop++
      let client: MqttClient
      try {
        client = await connect(hop % 2 === 1 ? nodeA : nodeB, flooder, `127.0.6.${hop % 250}`)
      } catch {
        await sleep(20) // refused CONNECT (its budget): try again
        continue
      }
      const gone = new Promise<false>((resolve) => client.once('close', () => resolve(false)))
      while (performance.now() < deadline) {
        const ok = await Promise.race([client.publishAsync('public/flood', 'x', { qos: 1 }).then(() => true), gone])
        if (!ok) break
        accepted++
      }
      client.end(true)
    }
    const seconds = (performance.now() - started) / 1000
    // One node's budget over the run, plus what each node may accept before its counts reach
    // Redis (one flush interval at the sustained rate).
    const budget = RATE.burst + RATE.perSecond * seconds
    const bound = budget + 2 * RATE.perSecond * 0.25
    console.log(
      `flood: ${accepted} publishes accepted in ${seconds.toFixed(2)} s over ${hop} connections; one node's budget ${budget.toFixed(1)}, bound ${bound.toFixed(1)}`,
    )
    expect(hop).toBeGreaterThan(2)
    expect(accepted).toBeLessThanOrEqual(Math.ceil(bound))
  }, 10_000)
})

describe('Redis not answering', () => {
  test('a CONNECT password is dropped (fail closed, bus-unavailable), never accepted unchecked', async () => {
    // A node whose shared-limits connection cannot reach Redis (nothing listens on port 1).
    const dead = new Redis({ host: '127.0.0.1', port: 1, lazyConnect: true, enableOfflineQueue: false })
    dead.on('error', () => {})
    const d = await startDeployment({ sharedLimits: dead })
    try {
      const app = await d.enroll('app-1', ['app'])
      d.smqtt.applySnapshot(await d.freshSnapshot())
      // Dropped without CONNACK (mqtt.js would end for good on a CONNACK refusal; this is transient).
      await expect(d.connectAs(app)).rejects.toThrow('closed before CONNACK')
      const refused = d.logs.filter((l) => l.audit && l.event === 'refused')
      expect(refused).toEqual([expect.objectContaining({ reason: 'bus-unavailable', principal: 'app-1' })])
    } finally {
      await d.close()
      dead.disconnect()
    }
  })
})
