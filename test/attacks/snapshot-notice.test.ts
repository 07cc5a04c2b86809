// The attack catalogue, issue 14: snapshot notices. Past ~250 principals the key server pushes
// brokers a signed notice of each new snapshot instead of the snapshot, and a broker pulls on
// one. Whoever can put a message on the brokers' control topic (a compromised node on the shared
// bus, a stolen push login) must not make brokers pull at will or roll them back: a notice counts
// only if it verifies under the pinned key-server key and is newer than both the snapshot
// applied and every notice already acted on. Against the full stack, with the key server's push
// running and sending notices only (`maxInlineSnapshotBytes: 0`).
import { BROKER_CONTROL_TOPIC, createBrokerSnapshotNotice, generateIdentity } from '@smqtt/core'
import { KEYSERVER_ROLE, type MqttPush, PUSH_PRINCIPAL_ID, startMqttPush } from '@smqtt/keyserver'
import { waitUntil } from '@smqtt/test-kit/client'
import type { AedesPublishPacket } from 'aedes'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type AttackStack, startAttackStack } from './_stack.js'

let s: AttackStack
let push: MqttPush
/** Every message on the brokers' control topic, as the plugin received it. */
const heard: string[] = []

beforeAll(async () => {
  s = await startAttackStack({}, { pullIntervalSeconds: 3_600 })
  s.followRealTime() // request signatures, epochs and revocations carry the wall clock
  await s.h.keyServer.servicePrincipal(PUSH_PRINCIPAL_ID, [KEYSERVER_ROLE])
  await s.syncBroker()
  await new Promise<void>((resolve) =>
    s.broker.broker.subscribe(
      BROKER_CONTROL_TOPIC,
      (packet: AedesPublishPacket, done: () => void) => {
        heard.push(Buffer.from(packet.payload).toString('utf8'))
        done()
      },
      resolve,
    ),
  )
  push = await startMqttPush(s.h.keyServer, {
    brokerUrl: s.url,
    mqttOptions: { ca: s.ca },
    coalesceMs: 20,
    maxInlineSnapshotBytes: 0,
  })
  await push.flush()
}, 60_000)
afterAll(async () => {
  await push?.close()
  await s?.close()
})

/** Puts a message on the control topic as a node of the broker would (no CONNECT, no ACL). */
const inject = (message: unknown) =>
  new Promise<void>((resolve, reject) =>
    s.broker.broker.publish(
      {
        cmd: 'publish',
        topic: BROKER_CONTROL_TOPIC,
        payload: Buffer.from(JSON.stringify(message)),
        qos: 0,
        retain: false,
        dup: false,
      },
      (err) => (err ? reject(err) : resolve()),
    ),
  )

/** The outcomes the plugin logged for notices since `from` (an index into the logs). */
const noticeOutcomes = (from: number) =>
  s
    .logs()
    .slice(from)
    .filter((line) => line.event === 'snapshot-notice')
    .map((line) => line.outcome)

const pullsSoFar = async () =>
  (await s.broker.plugin.metrics.onDemandPulls.get()).values.reduce((sum, v) => sum + v.value, 0)

test('forged snapshot notice: refused, no pull', async () => {
  const from = s.logs().length
  const pulls = await pullsSoFar()
  const issuedAt = Math.floor(Date.now() / 1000) + 10
  // Signed by a key other than the pinned one, far newer than anything applied.
  const forger = generateIdentity('forger')
  await inject({ type: 'snapshot-notice', notice: createBrokerSnapshotNotice({ issuedAt, tag: 'forged' }, forger) })
  // A genuine snapshot passed off as a notice (another signature context).
  await inject({ type: 'snapshot-notice', notice: await s.h.keyServer.brokerSnapshot() })
  // Not a signed document at all.
  await inject({ type: 'snapshot-notice', notice: { issuedAt, tag: 'unsigned' } })
  await waitUntil(() => noticeOutcomes(from).length === 3, 'three notices handled')
  expect(noticeOutcomes(from)).toEqual(['refused', 'refused', 'refused'])
  await new Promise((resolve) => setTimeout(resolve, 1_200)) // one on-demand interval
  expect(await pullsSoFar()).toBe(pulls)
})

test('replayed snapshot notice: no pull, nothing rolled back', async () => {
  // A genuine notice, captured off the bus after an enrollment, and the pull it started.
  const heardBefore = heard.length
  const pulls = await pullsSoFar()
  await s.enroll('thermostat-8', ['thermostat'])
  await waitUntil(
    () => heard.slice(heardBefore).some((text) => JSON.parse(text).type === 'snapshot-notice'),
    'a genuine notice',
  )
  await push.flush()
  const genuine = heard
    .slice(heardBefore)
    .map((text) => JSON.parse(text) as { type: string; notice?: unknown })
    .filter((message) => message.type === 'snapshot-notice')
    .at(-1)
  const applied = s.broker.plugin.state.snapshotIssuedAt
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  const pullsAfterGenuine = await pullsSoFar()
  expect(pullsAfterGenuine).toBeGreaterThanOrEqual(pulls)

  // Replayed, ten times: each announces nothing newer than what was applied.
  const from = s.logs().length
  for (let i = 0; i < 10; i++) await inject(genuine)
  await waitUntil(() => noticeOutcomes(from).length === 10, 'ten notices handled')
  expect(new Set(noticeOutcomes(from))).toEqual(new Set(['not-newer']))
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  expect(await pullsSoFar()).toBe(pullsAfterGenuine)
  expect(s.broker.plugin.state.snapshotIssuedAt).toBe(applied)
})

test('a genuine newer notice naming the snapshot held: a sync, no pull', async () => {
  await s.syncBroker()
  await new Promise((resolve) => setTimeout(resolve, 1_100)) // the key server stamps it a second later
  const pushed = await s.h.keyServer.brokerSnapshotPush(0)
  if (!('notice' in pushed)) throw new Error('expected a notice')
  const vouchedByPush = async () =>
    (await s.broker.plugin.metrics.snapshotsVouched.get()).values.find((v) => v.labels.source === 'push')?.value ?? 0
  const vouched = await vouchedByPush()
  const pulls = await pullsSoFar()
  const from = s.logs().length
  await inject({ type: 'snapshot-notice', notice: pushed.notice })
  await waitUntil(() => noticeOutcomes(from).length === 1, 'the notice handled')
  expect(noticeOutcomes(from)).toEqual(['current'])
  expect(await vouchedByPush()).toBe(vouched + 1)
  expect(s.broker.plugin.state.snapshotAge).toBe(0)
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  expect(await pullsSoFar()).toBe(pulls)
})
