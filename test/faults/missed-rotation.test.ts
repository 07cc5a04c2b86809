// A broker that has not heard of a rotation yet (its push lost, or overtaken by the bundles that
// name the new epoch) must not cut off the device that already seals under it: an envelope of an
// epoch newer than every one the broker knows for the group makes it pull the key server (the
// shared, rate-limited on-demand pull), then decide. An epoch the key server never issued is
// still refused `unknown-epoch`, after that one pull. Seen in the soak as one `unknown-epoch`
// refusal of a legitimate device right after a rotation (issue 14: "a missed update is detected
// and healed"). Against the full stack, without the key server's push and with no scheduled pull.
import { randomBytes } from 'node:crypto'
import { createEnvelopeSigner, EpochKey, sealEnvelope } from '@smqtt/core'
import { openBundleOf } from '@smqtt/test-kit/broker'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type AttackStack, type Member, startAttackStack } from '../attacks/_stack.js'

const TOPIC = 'home/h1/thermostat/thermostat-1/temp'

let s: AttackStack
let thermostat: Member

beforeAll(async () => {
  s = await startAttackStack({}, { pullIntervalSeconds: 3_600 })
  s.followRealTime()
  thermostat = await s.enroll('thermostat-1', ['thermostat'])
  await s.syncBroker()
}, 60_000)
afterAll(async () => {
  await s?.close()
})

const pulls = async () => {
  const metric = await s.broker.plugin.metrics.onDemandPulls.get()
  return Object.fromEntries(metric.values.map((v) => [v.labels.result, v.value]))
}

test('missed rotation: the first envelope of the new epoch reaches the broker before its snapshot does; delivered after one pull', async () => {
  const sender = await s.secureClient(thermostat)
  const group = sender.client.keys.groups[0]?.group as number
  await s.h.keyServer.rotateGroup(group, { immediate: true, actor: 'test', reason: 'drill' })
  await sender.client.refreshKeys() // the device has the new epoch; its broker has not
  s.takeAudit()
  const before = await pulls()

  await sender.client.publishAsync(TOPIC, '21.5', { qos: 1 })
  expect(s.takeAudit().filter((e) => e.event === 'refused')).toEqual([])
  expect((await pulls()).applied ?? 0).toBe((before.applied ?? 0) + 1)
  expect(sender.client.connected).toBe(true)
}, 30_000)

test('forged future epoch: an epoch the key server never issued is still refused unknown-epoch, after one pull', async () => {
  const group = (await openBundleOf(s.h, thermostat)).groups[0]?.group as number
  const client = await s.rawAs(thermostat)
  const gone = new Promise<void>((resolve) => client.once('close', () => resolve()))
  s.takeAudit()
  // Signed by the device itself (the broker checks only the signature), under a key nobody issued.
  const envelope = sealEnvelope({
    topic: TOPIC,
    payload: new TextEncoder().encode('21.5'),
    epochKey: new EpochKey({ group, epoch: 999, suite: 1, key: randomBytes(32) }),
    signer: createEnvelopeSigner({ kid: thermostat.kid, seed: thermostat.identity.signingSeed }),
    seq: 50_000,
  })
  client.publish(TOPIC, Buffer.from(envelope), { qos: 1 })
  await gone
  const refusals = s.takeAudit().filter((e) => e.event === 'refused')
  expect(refusals.map((e) => [e.hook, e.reason])).toEqual([['publish', 'unknown-epoch']])
  expect((await pulls()).current).toBeGreaterThanOrEqual(1) // asked, and told nothing changed
}, 30_000)
