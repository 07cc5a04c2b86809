// Issue 14, cliff 3 (fleet scale), CI-sized: a broker applying a snapshot of a large fleet
// (one key group per home) keeps answering while it indexes it, keeps the old snapshot in force
// meanwhile, and then serves a principal that only the new snapshot knows. Behaviour, not timing:
// the curves in scripts/bench-scale/policy-*.ts measure the time.

import type { AddressInfo } from 'node:net'
import { createServer, type Server } from 'node:net'
import {
  createBrokerSnapshot,
  createConnectPassword,
  createEnvelopeSigner,
  EpochKey,
  generateIdentity,
  type Policy,
  parsePolicy,
  type SnapshotPrincipal,
  sealEnvelope,
} from '@smqtt/core'
import { startBareBroker } from '@smqtt/test-kit/broker'
import mqtt from 'mqtt'
import { afterEach, expect, test } from 'vitest'
import type { SmqttPlugin } from '../src/index.js'

const keyServer = generateIdentity('smqtt-keyserver')
const newcomer = generateIdentity('newcomer-1')

/** `homes` homes of 10 principals, one key group and one rule per home, plus fleet-wide `%c` rules. */
function fleet(homes: number): { policy: Policy; principals: SnapshotPrincipal[] } {
  const rules: Policy['rules'] = [
    { effect: 'allow', actions: ['publish'], topics: ['home/+/dev/%c/#'], roles: ['device'] },
    { effect: 'deny', actions: ['publish'], topics: ['home/+/dev/%c/firmware/#'], roles: ['device'] },
  ]
  const groups: Policy['groups'] = []
  const principals: SnapshotPrincipal[] = []
  const signingKey = new Uint8Array(32).fill(1)
  for (let h = 0; h < homes; h++) {
    rules.push({ effect: 'allow', actions: ['publish', 'subscribe'], topics: [`home/h${h}/#`], roles: [`home-h${h}`] })
    groups.push({ id: h + 1, name: `home-${h}`, filter: `home/h${h}/#` })
    for (let i = 0; i < 10; i++)
      principals.push({
        id: `d${h}-${i}`,
        kid: h * 10 + i + 1,
        roles: ['device', `home-h${h}`],
        signingKey,
        status: 'active',
      })
  }
  return { policy: { version: 1, rules, groups, plaintext: [] }, principals }
}

const running: { close(): Promise<void>; server: Server }[] = []
afterEach(async () => {
  for (const { close, server } of running.splice(0)) {
    await close()
    server.close()
  }
})

async function startPlugin(): Promise<{ plugin: SmqttPlugin; port: number }> {
  const { plugin, close } = await startBareBroker(keyServer.signingKey)
  const server = createServer((socket) => plugin.handle(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  running.push({ close, server })
  return { plugin, port: (server.address() as AddressInfo).port }
}

const signedSnapshot = (issuedAt: number, policy: Policy, principals: SnapshotPrincipal[]) =>
  createBrokerSnapshot({ issuedAt, policy, principals, epochs: [], revocationListVersion: 0 }, keyServer)

/** Connects as `clientId` with a CONNECT password; resolves with the CONNACK's return code (0 = accepted). */
function connackOf(port: number, clientId: string, identity = newcomer): Promise<number> {
  return new Promise((resolve) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId,
      username: clientId,
      password: createConnectPassword(identity, clientId),
      reconnectPeriod: 0,
      protocolVersion: 4,
    })
    client.on('connect', () => {
      client.end(true)
      resolve(0)
    })
    client.on('error', (err) => {
      client.end(true)
      resolve((err as { code?: number }).code ?? -1)
    })
  })
}

test('issue 14: a policy of 3,000 key groups (one per home) parses, and keeps refusing overlaps', () => {
  const { policy } = fleet(3_000)
  expect(parsePolicy(policy).groups).toHaveLength(3_000)
  const overlapping = { ...policy, groups: [...policy.groups, { id: 9_999, name: 'all', filter: 'home/+/x' }] }
  expect(() => parsePolicy(overlapping)).toThrow('groups[3000].filter: shares topics with groups[0].filter')
})

test('issue 14: the broker answers a CONNECT while it indexes a 3,000-group snapshot, the old one in force meanwhile', async () => {
  const { plugin, port } = await startPlugin()
  const now = Math.floor(Date.now() / 1000)
  const small = fleet(1)
  expect(plugin.applySnapshot(signedSnapshot(now - 10, small.policy, small.principals))).toBe(true)
  expect(plugin.snapshot?.issuedAt).toBe(now - 10) // small: enforced before applySnapshot returned

  const big = fleet(3_000)
  expect(plugin.applySnapshot(signedSnapshot(now, big.policy, big.principals))).toBe(true)
  expect(plugin.snapshot?.issuedAt).toBe(now - 10) // large: indexed in slices, the old one still enforced
  let settled = false
  const settling = plugin.snapshotSettled().then(() => {
    settled = true
  })
  // Answered (refused: the stranger is in neither snapshot) while the index is being built.
  expect(await connackOf(port, 'stranger-1', generateIdentity('stranger-1'))).not.toBe(0)
  expect(settled).toBe(false)
  await settling
  expect(plugin.snapshot?.issuedAt).toBe(now)
  expect(plugin.snapshot?.principals).toHaveLength(30_000)
})

test('issue 14: a snapshot of 20,000 principals (2,000 key groups) applies and serves a new client', async () => {
  const { plugin, port } = await startPlugin()
  const now = Math.floor(Date.now() / 1000)
  const { policy, principals } = fleet(2_000)
  principals.push({
    id: 'newcomer-1',
    kid: 900_000,
    roles: ['device'],
    signingKey: newcomer.signingKey,
    status: 'active',
  })
  expect(plugin.applySnapshot(signedSnapshot(now, policy, principals))).toBe(true)
  await plugin.snapshotSettled()
  expect(plugin.snapshot?.principals).toHaveLength(20_001)
  expect(await connackOf(port, 'newcomer-1')).toBe(0)
})

test('issue 14: a newer snapshot arriving while a large one is indexed supersedes it; a replay of the pending one is not applied twice', async () => {
  const { plugin } = await startPlugin()
  const now = Math.floor(Date.now() / 1000)
  const big = fleet(2_000)
  const first = signedSnapshot(now - 5, big.policy, big.principals)
  // Above 256 KiB each is taken (true) and opened on the worker thread, then judged in turn.
  expect(plugin.applySnapshot(first)).toBe(true)
  expect(plugin.applySnapshot(first)).toBe(true) // the same one again: already on its way
  expect(plugin.applySnapshot(signedSnapshot(now - 6, big.policy, big.principals))).toBe(true) // older: ignored when judged
  const small = fleet(2)
  expect(plugin.applySnapshot(signedSnapshot(now, small.policy, small.principals))).toBe(true)
  await plugin.snapshotSettled()
  expect(plugin.snapshot?.issuedAt).toBe(now)
  await new Promise((resolve) => setTimeout(resolve, 50)) // the cancelled build must not swap in later
  expect(plugin.snapshot?.issuedAt).toBe(now)
})

test('issue 14: a large snapshot opened on the worker thread with a bad signature, or older, is taken, counted as refused and never enforced', async () => {
  const { plugin } = await startPlugin()
  const now = Math.floor(Date.now() / 1000)
  const small = fleet(1)
  expect(plugin.applySnapshot(signedSnapshot(now - 10, small.policy, small.principals))).toBe(true)
  const big = fleet(300) // ~570 KiB signed: opened on the worker thread
  const genuine = signedSnapshot(now, big.policy, big.principals)
  const forged = { ...genuine, payload: `${genuine.payload.slice(0, -8)}AAAAAAAA` }
  const older = signedSnapshot(now - 20, big.policy, big.principals)
  expect(plugin.applySnapshot(forged)).toBe(true)
  expect(plugin.applySnapshot(older)).toBe(true)
  await plugin.snapshotSettled()
  expect(plugin.snapshot?.issuedAt).toBe(now - 10)
  const refused = (await plugin.metrics.snapshotErrors.get()).values.reduce((sum, v) => sum + v.value, 0)
  expect(refused).toBe(2)
  // The genuine one, opened the same way, is enforced.
  expect(plugin.applySnapshot(genuine)).toBe(true)
  await plugin.snapshotSettled()
  expect(plugin.snapshot?.issuedAt).toBe(now)
  expect(plugin.snapshot?.principals).toHaveLength(3_000)
})

test('issue 14: a publish under an epoch that the snapshot being indexed brings waits for it, and is not refused unknown-epoch', async () => {
  const { plugin, port } = await startPlugin()
  const now = Math.floor(Date.now() / 1000)
  // The newcomer publishes in home 0 (group 1); the small snapshot knows epoch 1 only.
  const member: SnapshotPrincipal = {
    id: 'newcomer-1',
    kid: 900_000,
    roles: ['device', 'home-h0'],
    signingKey: newcomer.signingKey,
    status: 'active',
  }
  const small = fleet(1)
  const epoch1 = { group: 1, epoch: 1, activatesAt: now - 100 }
  expect(
    plugin.applySnapshot(
      createBrokerSnapshot(
        {
          issuedAt: now - 10,
          policy: small.policy,
          principals: [...small.principals, member],
          epochs: [epoch1],
          revocationListVersion: 0,
        },
        keyServer,
      ),
    ),
  ).toBe(true)
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: member.id,
    username: member.id,
    password: createConnectPassword(newcomer, member.id),
    reconnectPeriod: 0,
    protocolVersion: 4,
  })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  try {
    // A rotation: the key server pushes the snapshot with epoch 2 first, then the bundles; the
    // device seals under epoch 2 while the broker is still indexing the (large) snapshot.
    const big = fleet(3_000)
    const epochs = [epoch1, { group: 1, epoch: 2, activatesAt: now }]
    const rotated = createBrokerSnapshot(
      { issuedAt: now, policy: big.policy, principals: [...big.principals, member], epochs, revocationListVersion: 0 },
      keyServer,
    )
    expect(plugin.applySnapshot(rotated)).toBe(true)
    expect(plugin.snapshot?.issuedAt).toBe(now - 10) // still indexing
    const topic = 'home/h0/dev/newcomer-1/temp'
    const envelope = sealEnvelope({
      topic,
      payload: new TextEncoder().encode('21.5'),
      epochKey: new EpochKey({ group: 1, epoch: 2, suite: 1, key: new Uint8Array(32).fill(7) }),
      signer: createEnvelopeSigner({ kid: member.kid, seed: newcomer.signingSeed }),
      seq: 1,
    })
    // Before: refused `unknown-epoch` at once, and the connection closed.
    await expect(client.publishAsync(topic, Buffer.from(envelope), { qos: 1 })).resolves.toBeDefined()
    expect(plugin.snapshot?.issuedAt).toBe(now)
  } finally {
    client.end(true)
  }
})
