// Snapshot deltas (issue 14, cliff 2): a broker pulling after a change is sent what changed, a
// few hundred bytes, instead of the whole snapshot (17 MiB at 100,000 principals). A delta is
// signed like a snapshot, but a path that answers for the key server could still try to use one
// against the broker: forge one, send one made for other content, or replay an old one onto
// content that has come back to its base (a rollback). None of them may change what the broker
// enforces, nor keep it from the current content: each is refused, and the whole snapshot is
// pulled at once. Real key server over HTTPS, a real HTTPS path in front of it, the plugin on a
// real Aedes pulling through the path.
import {
  type BrokerSnapshotDelta,
  createBrokerSnapshotDelta,
  generateIdentity,
  openBrokerSnapshot,
  openBrokerSnapshotDelta,
  SNAPSHOT_ACCEPT_DELTA_HEADER,
} from '@smqtt/core'
import { addPrincipals, type Harness, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest'
import type { SmqttPlugin } from '../src/index.js'
import { type KeyServerPath, type PathAnswer, type PathStack, startPathStack } from './_keyserver-path.js'

let stack: PathStack
let h: Harness
let path: KeyServerPath
let plugin: SmqttPlugin

beforeAll(async () => {
  stack = await startPathStack(
    async (h) => {
      for (const id of ['thermostat-1', 'thermostat-2', 'thermostat-3']) await h.enroll(id, ['thermostat'])
      await addPrincipals(h, 100, { prefix: 'fleet', roles: ['thermostat'] })
    },
    () => h.clock.now,
  )
  ;({ h, path, plugin } = stack)
}, 60_000)

afterAll(async () => {
  await stack?.close()
})

beforeEach(() => {
  path.intercept = undefined
  path.rewrite = undefined
})

const deltasBy = async (outcome: string) =>
  (await plugin.metrics.snapshotDeltas.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0
const statusOf = (id: string) => plugin.snapshot?.principals.find((p) => p.id === id)?.status
const currentTag = async () => openBrokerSnapshot(await h.keyServer.brokerSnapshot(), h.keyServer.publicKey).tag
/** What an answer's body carries: `snapshot` or `delta`, with the signed document. */
const bodyOf = (answer: { body: Buffer }) => JSON.parse(answer.body.toString() || 'null') as Record<string, unknown>
const asDelta = (signed: unknown): PathAnswer => {
  const body = Buffer.from(JSON.stringify({ delta: signed }))
  return { status: 200, headers: { 'content-type': 'application/json' }, body }
}
/** A change the broker has not pulled yet, a second after the last (the key server stamps per second). */
const change = async (run: () => Promise<unknown>) => {
  h.clock.now += 1
  await run()
}

/** Genuine deltas the path saw, oldest first. */
const seen: unknown[] = []

test('a revocation reaches the broker as a delta: a few hundred bytes instead of the snapshot, enforced the same', async () => {
  const whole = JSON.stringify({ snapshot: await h.keyServer.brokerSnapshot() }).length
  await change(() => h.keyServer.revokePrincipal('thermostat-1', 'admin'))
  expect(await plugin.pull()).toBe(true)
  const answer = path.answered.at(-1) as { status: number; body: Buffer; bodyBytes: number }
  expect(answer.status).toBe(200)
  seen.push(bodyOf(answer).delta)
  expect(seen[0]).toBeDefined()
  expect(answer.bodyBytes).toBeLessThan(whole / 5)
  expect(statusOf('thermostat-1')).toBe('revoked')
  expect(plugin.snapshot?.tag).toBe(await currentTag())
  expect(plugin.state.snapshotAge).toBe(0)
  expect(await deltasBy('applied')).toBe(1)
})

test('forged delta: one not signed by the pinned key is refused, and the whole snapshot is pulled at once', async () => {
  const forger = generateIdentity('smqtt-keyserver')
  // The forgery names the content held and takes the revocation back.
  path.rewrite = (answer, request) => {
    const delta = bodyOf(answer).delta
    if (request.headers[SNAPSHOT_ACCEPT_DELTA_HEADER] === undefined || delta === undefined) return answer
    const genuine = openBrokerSnapshotDelta(delta, h.keyServer.publicKey)
    const forged: BrokerSnapshotDelta = {
      ...genuine,
      principals: genuine.principals.map((p) => (p.id === 'thermostat-2' ? { ...p, status: 'active' } : p)),
    }
    return asDelta(createBrokerSnapshotDelta(forged, forger))
  }
  const answers = path.answered.length
  await change(() => h.keyServer.revokePrincipal('thermostat-2', 'admin'))
  expect(await plugin.pull()).toBe(true)
  expect(await deltasBy('refused')).toBe(1)
  // The second request took no delta: the whole, genuine snapshot.
  expect(path.answered.length).toBe(answers + 2)
  expect(bodyOf(path.answered.at(-1) as { body: Buffer }).snapshot).toBeDefined()
  expect(statusOf('thermostat-2')).toBe('revoked')
  expect(plugin.snapshot?.tag).toBe(await currentTag())
})

test('delta for other content: a genuine delta made from another base is not applied; the whole snapshot is pulled', async () => {
  const stale = seen[0] // from the content before thermostat-1's revocation
  path.rewrite = (answer, request) =>
    request.headers[SNAPSHOT_ACCEPT_DELTA_HEADER] === undefined ? answer : asDelta(stale)
  await change(() => h.keyServer.disablePrincipal('thermostat-3', 'admin'))
  expect(await plugin.pull()).toBe(true)
  expect(await deltasBy('not-applicable')).toBe(1)
  expect(statusOf('thermostat-1')).toBe('revoked')
  expect(statusOf('thermostat-3')).toBe('disabled')
  expect(plugin.snapshot?.tag).toBe(await currentTag())
})

test('rollback by a replayed delta: content back at a delta base does not take the old delta again', async () => {
  const extra = { id: 40, name: 'garden', filter: 'garden/#' }
  const policyWith = (groups: unknown[]) => ({ policy: { ...SMART_HOME_POLICY, groups } })
  const before = plugin.snapshot?.tag
  // A group added (delta D1, captured on the path), then taken away again: the content is
  // the one before, tag and all, held at a later issuedAt.
  await change(() => h.admin('PUT', '/v1/admin/policy', policyWith([...SMART_HOME_POLICY.groups, extra])))
  expect(await plugin.pull()).toBe(true)
  const added = bodyOf(path.answered.at(-1) as { body: Buffer }).delta
  expect(plugin.snapshot?.policy.groups.map((g) => g.name)).toContain('garden')
  await change(() => h.admin('PUT', '/v1/admin/policy', policyWith(SMART_HOME_POLICY.groups)))
  expect(await plugin.pull()).toBe(true)
  expect(plugin.snapshot?.tag).toBe(before)
  const applied = await deltasBy('applied')

  // The path replays D1 (genuine, and its base is the content held) to the next pull.
  path.rewrite = (answer, request) =>
    request.headers[SNAPSHOT_ACCEPT_DELTA_HEADER] === undefined ? answer : asDelta(added)
  h.clock.now += 30
  expect(await plugin.pull()).toBe(true) // then vouched current by the genuine 304 and notice
  expect(await deltasBy('refused')).toBe(2)
  expect(await deltasBy('applied')).toBe(applied)
  expect(plugin.snapshot?.policy.groups.map((g) => g.name)).not.toContain('garden')
  expect(plugin.snapshot?.tag).toBe(before)
  expect(plugin.state.stale).toBe(false)
})
