// Pruned revocation lists (issue 14, cliff 1). The signed list keeps only the revocations made
// since its watermark (`prunedBefore`), so a revoked principal eventually drops out of it. That is
// safe only because a client refuses every key bundle issued before the watermark: a bundle that
// still lists the revoked principal as a writer predates its revocation, hence the watermark.
// The attack: a device whose clock runs late (a reset RTC) restarts from storage while the key
// server is out of reach; its stored bundle predates the revocation and, by the device's clock,
// looks valid; the stored list no longer names the thief. The thief's envelopes must not pass.
import { secure } from '@smqtt/client'
import { createEnvelopeSigner, EpochKey, type SuiteId, sealEnvelope, topicMatches } from '@smqtt/core'
import { openBundleOf } from '@smqtt/test-kit/broker'
import { type Stack, startStack } from '@smqtt/test-kit/client'
import mqtt from 'mqtt'
import { afterAll, beforeAll, expect, test } from 'vitest'

let s: Stack
beforeAll(async () => {
  s = await startStack({ settings: { bundleTtlSeconds: 3600, revocationRetentionSeconds: 3600 } })
}, 60_000)
afterAll(async () => {
  await s?.close()
})

test('a pruned revocation cannot re-admit a revoked sender: a bundle from before the watermark is refused', async () => {
  const K = s.h.clock.now
  const thief = await s.enroll('thermostat-1', ['thermostat'])
  const app = await s.enroll('app-1', ['app'])
  await s.enroll('thermostat-2', ['thermostat'])
  s.h.clock.now = K + 10
  const stolenKeys = await openBundleOf(s.h, thief) // what the thief took with the device
  const old = await s.h.device(app.identity, 'GET', '/v1/bundle') // the app's bundle: lists the thief
  expect(old.status).toBe(200)
  s.h.clock.now = K + 100
  expect((await s.h.admin('POST', '/v1/admin/principals/thermostat-1/revoke')).status).toBe(200)
  // Long after the retention, another revocation publishes a list without the thief.
  s.h.clock.now = K + 3_900
  expect((await s.h.admin('POST', '/v1/admin/principals/thermostat-2/revoke')).status).toBe(200)
  const list = (await s.h.keyServer.revocationList()) as unknown
  expect(JSON.stringify(list)).toBeTruthy()

  // The app's storage: the old bundle and the new list (as a freshness poll fetched it).
  await app.storage.set(`bundle:${app.identity.id}`, JSON.stringify((old.body as { bundle: unknown }).bundle))
  await app.storage.set(`revocations:${app.identity.id}`, JSON.stringify(list))
  // …and the replay state it saved (empty here): a lost one would refuse everything sent up to now.
  await app.storage.set(`replay:${app.identity.id}`, '{"v":1,"notBefore":0,"windows":[],"floors":[]}')

  const raw = mqtt.connect(s.brokerUrl, { ca: s.ca, clientId: app.identity.id, reconnectPeriod: 0 })
  const client = secure(raw, {
    identity: app.identity,
    kid: app.kid,
    keyServer: { url: 'https://127.0.0.1:9', ca: s.ca, keyServerPublicKey: app.keyServerPublicKey },
    storage: app.storage,
    now: () => K + 500, // the device's clock runs late: the old bundle looks valid to it
  })
  client.on('error', () => {})
  client.on('keyServerError', () => {})
  const delivered: string[] = []
  client.on('message', (_topic, payload) => delivered.push(new TextDecoder().decode(payload)))
  await new Promise<void>((resolve) => raw.once('connect', () => resolve()))
  await raw.subscribeAsync('home/+/thermostat/#', { qos: 1 })

  const topic = 'home/h1/thermostat/thermostat-1/temp'
  const group = stolenKeys.groups.find((g) => topicMatches(g.filter, topic))
  const epoch = group?.epochs.at(-1)
  if (!group || !epoch) throw new Error('no key for the topic')
  const envelope = sealEnvelope({
    topic,
    payload: new TextEncoder().encode('stolen'),
    epochKey: new EpochKey({ group: group.group, epoch: epoch.epoch, suite: group.suite as SuiteId, key: epoch.key }),
    signer: createEnvelopeSigner({ kid: thief.kid, seed: thief.identity.signingSeed }),
    seq: 1,
    sentAt: K + 500,
  })
  const attacker = await s.raw()
  await attacker.publishAsync(topic, Buffer.from(envelope), { qos: 1 })
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  expect(delivered).toEqual([])
  expect(client.keys.issuedAt).toBe(-1) // the stored bundle was not taken
  client.end(true)
})
