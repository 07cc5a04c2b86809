// Revocation against a compromised broker (issue 12, item 2). The broker may drop any message,
// so it can drop every push of the key server on smqtt/control/* (new bundles after the re-key,
// new revocation lists), and with a stolen device it relays the thief's envelopes to everyone.
// What bounds the damage is the clients' freshness poll of the key server over HTTPS, which
// does not go through the broker: within the poll interval (plus the request time) every
// honest, online client refuses the revoked sender and seals under the new epoch, or says that
// it cannot confirm it (`freshness` event, `stats.freshness`). Against the full real stack of
// _stack.ts, with the key server's push running and the broker dropping all of it.
import { nodeHttpsTransport, type SecureClient } from '@smqtt/client'
import { isControlTopic, isSmqttError, type OpenedKeyBundle, parseEnvelope } from '@smqtt/core'
import { KEYSERVER_ROLE, type MqttPush, PUSH_PRINCIPAL_ID, startMqttPush } from '@smqtt/keyserver'
import { openBundleOf, within } from '@smqtt/test-kit/broker'
import { waitUntil } from '@smqtt/test-kit/client'
import type { AedesPublishPacket, Client } from 'aedes'
import { afterAll, beforeAll, expect, test } from 'vitest'
import {
  type AttackStack,
  deliveredTo,
  type Member,
  openWithHeld,
  refusedBy,
  sealWithBundle,
  startAttackStack,
} from './_stack.js'

/** The poll interval the clients here use, so the test runs in seconds rather than the default 30 s. */
const INTERVAL_SECONDS = 1
/**
 * The bound under test: one interval (the poll that sees the change may have just gone), plus
 * the poll and the fetches it triggers (milliseconds on loopback; the default 10 s request
 * timeout in the worst case, which is what SECURITY.md states).
 */
const BOUND_MS = INTERVAL_SECONDS * 1000 + 2_000

let s: AttackStack
let push: MqttPush
/** Control messages the broker dropped instead of delivering. */
let dropped = 0

beforeAll(async () => {
  s = await startAttackStack()
  s.followRealTime() // request signatures, epochs and revocations carry the wall clock
  // The key server pushes as deployed; the compromised broker drops every control message it
  // would deliver (authorizeForward is asked before each delivery, retained ones included).
  await s.h.keyServer.servicePrincipal(PUSH_PRINCIPAL_ID, [KEYSERVER_ROLE])
  await s.syncBroker()
  push = await startMqttPush(s.h.keyServer, { brokerUrl: s.url, mqttOptions: { ca: s.ca }, coalesceMs: 20 })
  const aedes = s.broker.broker
  const forward = aedes.authorizeForward.bind(aedes)
  aedes.authorizeForward = (client: Client, packet: AedesPublishPacket) => {
    if (!isControlTopic(packet.topic)) return forward(client, packet)
    dropped++
    return null
  }
}, 60_000)
afterAll(async () => {
  await push?.close()
  await s?.close()
})

const GROUP_TOPIC = (id: string) => `home/h1/thermostat/${id}/temp`

/** An envelope sealed with keys a thief took from `member` (its bundle as fetched before the revocation). */
const sealWithStolen = (member: Member, bundle: OpenedKeyBundle, seq: number): Uint8Array =>
  sealWithBundle(bundle, GROUP_TOPIC(member.identity.id), {
    signer: member.identity,
    kid: member.kid,
    text: `stolen ${seq}`,
    seq,
  })

/** The compromised broker delivers `bytes` on `topic` to every subscriber (no publisher's ACL in the way). */
function relay(topic: string, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) =>
    s.broker.broker.publish(
      { cmd: 'publish', topic, payload: Buffer.from(bytes), qos: 0, retain: false, dup: false },
      (err) => (err ? reject(err) : resolve()),
    ),
  )
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test('revocation suppressed by a broker that drops control messages: subscribers refuse the revoked sender within the bound -> ERR_SENDER_REVOKED', async () => {
  const stolen = await s.enroll('thermostat-1', ['thermostat'])
  const subscriber = await s.secureClient(await s.enroll('app-1', ['app']), {
    reconnect: true,
    secure: { freshnessIntervalSeconds: INTERVAL_SECONDS },
  })
  await subscriber.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  const keys = await openBundleOf(s.h, stolen) // what the thief holds: the device's keys and bundle
  const topic = GROUP_TOPIC(stolen.identity.id)

  // Before the revocation the thief's envelopes are the device's: delivered.
  await relay(topic, sealWithStolen(stolen, keys, 1))
  await deliveredTo(subscriber, 1)

  const droppedBefore = dropped
  const revokedAt = Date.now()
  expect((await s.h.admin('POST', '/v1/admin/principals/thermostat-1/revoke')).status).toBe(200)
  await push.flush()
  expect(dropped).toBeGreaterThan(droppedBefore) // the push was sent, and dropped
  await sleep(BOUND_MS - (Date.now() - revokedAt))

  // Within the bound, with no control message delivered, the thief's next envelope is refused.
  await relay(topic, sealWithStolen(stolen, keys, 2))
  await refusedBy(subscriber, 1)
  expect(subscriber.errors.map((e) => [e.code, e.topic])).toEqual([['ERR_SENDER_REVOKED', topic]])
  expect(subscriber.messages.map((m) => m.text)).toEqual(['stolen 1'])
  expect(subscriber.client.stats.control.applied).toBe(0) // learnt from the key server, not the broker
  expect(subscriber.client.stats.freshness).toMatchObject({ stale: false, failures: 0 })
}, 30_000)

test('revocation suppressed by a broker that drops control messages: honest writers stop sealing under the revoked reader’s epoch within the bound', async () => {
  const writer = await s.secureClient(await s.enroll('thermostat-3', ['thermostat']), {
    secure: { freshnessIntervalSeconds: INTERVAL_SECONDS },
  })
  const leaver = await s.enroll('app-2', ['app'])
  const leaverKeys = await openBundleOf(s.h, leaver) // what the revoked reader keeps
  const topic = GROUP_TOPIC('thermostat-3')
  const sent: Uint8Array[] = []
  const onPublish = (packet: AedesPublishPacket) => {
    if (packet.topic === topic) sent.push(new Uint8Array(packet.payload as Buffer))
  }
  s.broker.broker.on('publish', onPublish)
  try {
    await within(writer.client.publishAsync(topic, '21.0', { qos: 1 }), 'PUBACK', 10_000)
    await waitUntil(() => sent.length >= 1, 'the first envelope at the broker')
    const held = leaverKeys.groups.find((g) => g.group === parseEnvelope(sent[0] as Uint8Array).header.group)
    const before = parseEnvelope(sent[0] as Uint8Array).header.epoch
    expect(held?.epochs.map((e) => e.epoch)).toContain(before) // the leaver reads it today

    const revokedAt = Date.now()
    expect((await s.h.admin('POST', '/v1/admin/principals/app-2/revoke')).status).toBe(200)
    await push.flush()
    await sleep(BOUND_MS - (Date.now() - revokedAt))

    await within(writer.client.publishAsync(topic, '21.1', { qos: 1 }), 'PUBACK', 10_000)
    await waitUntil(() => sent.length >= 2, 'the second envelope at the broker')
    const after = parseEnvelope(sent[1] as Uint8Array).header.epoch
    expect(after).toBeGreaterThan(before)
    expect(held?.epochs.map((e) => e.epoch)).not.toContain(after)
    expect(writer.client.stats.control.applied).toBe(0)
    // The revoked reader's keys open nothing sealed after the bound.
    const error = openWithHeld(sent[1] as Uint8Array, topic, held, undefined)
    expect(isSmqttError(error, 'ERR_UNKNOWN_EPOCH')).toBe(true)
  } finally {
    s.broker.broker.off('publish', onPublish)
  }
}, 30_000)

test('key server cut off: the client says it cannot confirm freshness after maxStalenessSeconds (fresh: false), and fresh: true once it can', async () => {
  const member = await s.enroll('app-5', ['app'])
  let cut = false
  const network = nodeHttpsTransport({ ca: s.ca })
  const recorder = await s.secureClient(member, {
    secure: {
      freshnessIntervalSeconds: INTERVAL_SECONDS,
      maxStalenessSeconds: 2,
      // What an attacker who blocks the client's HTTPS (or an outage) does.
      transport: { request: (r) => (cut ? Promise.reject(new Error('key server unreachable')) : network.request(r)) },
    },
  })
  const client: SecureClient = recorder.client
  const events: { fresh: boolean; confirmedAt: number | null; at: number }[] = []
  client.on('freshness', (event) => events.push({ ...event, at: Date.now() }))
  await waitUntil(() => client.stats.freshness.confirmedAt !== null, 'a first confirmation', 5_000)

  cut = true
  const cutAt = Date.now()
  await waitUntil(() => events.length >= 1, 'fresh: false', 6_000)
  expect(events[0]).toMatchObject({ fresh: false })
  expect(events[0]?.confirmedAt).toBeTypeOf('number')
  // Two seconds after the last confirmation, which came at most one interval before the cut.
  expect((events[0]?.at ?? 0) - cutAt).toBeLessThanOrEqual(2_000 + 500)
  expect(client.stats.freshness.stale).toBe(true)
  expect(client.stats.freshness.failures).toBeGreaterThan(0)

  cut = false
  await waitUntil(() => events.length >= 2, 'fresh: true', 5_000)
  expect(events[1]).toMatchObject({ fresh: true })
  expect(events[1]?.confirmedAt).toBeGreaterThanOrEqual(events[0]?.confirmedAt ?? Number.POSITIVE_INFINITY)
  expect(client.stats.freshness.stale).toBe(false)

  // Ending the client ends the polling.
  await client.endAsync(true)
  const checks = client.stats.freshness.checks + client.stats.freshness.failures
  await sleep(INTERVAL_SECONDS * 1000 + 500)
  expect(client.stats.freshness.checks + client.stats.freshness.failures).toBe(checks)
}, 30_000)
