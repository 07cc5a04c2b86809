// Attacks injected by a raw mqtt.js client on a broker without the SMQTT plugin, so they reach
// the subscriber: each must be refused with the right code and never delivered.
import { createEnvelopeSigner, generateIdentity, type Identity, sealEnvelope } from '@smqtt/core'
import { currentGroupKey, tap, waitUntil } from '@smqtt/test-kit/client'
import { useStack } from '@smqtt/test-kit/use-stack'
import { expect, test } from 'vitest'

const stack = useStack()

const group1Key = (identity: Identity) => currentGroupKey(stack, identity, 1)

async function pair(name: string, filter = `home/${name}/thermostat/#`) {
  const thermostat = await stack.enroll(`thermostat-${name}`, ['thermostat'])
  const app = await stack.enroll(`app-${name}`, ['app'])
  const publisher = await stack.client(thermostat)
  const subscriber = await stack.client(app)
  const topic = `home/${name}/thermostat/thermostat-${name}/temp`
  await subscriber.client.subscribeAsync(filter, { qos: 1 })
  return { thermostat, app, publisher, subscriber, topic }
}

test('forged: a reader signs with its own key under the writer kid -> ERR_ENVELOPE_SIGNATURE_INVALID', async () => {
  const { thermostat, app, subscriber, topic } = await pair('forged')
  // The attacker is a real member (it holds the group key) but not the writer.
  const epochKey = await group1Key(app.identity)
  const forged = sealEnvelope({
    topic,
    payload: new TextEncoder().encode('99.9'),
    epochKey,
    signer: createEnvelopeSigner({ kid: thermostat.kid, seed: generateIdentity('mallory').signingSeed }),
    seq: 1_000_000,
  })
  const raw = await stack.raw()
  await raw.publishAsync(topic, Buffer.from(forged), { qos: 1 })
  const [error] = await subscriber.waitForErrors(1)
  expect(error).toMatchObject({ code: 'ERR_ENVELOPE_SIGNATURE_INVALID', topic })
  expect(subscriber.messages).toEqual([])
  expect(subscriber.client.stats.rejected).toEqual({ ERR_ENVELOPE_SIGNATURE_INVALID: 1 })
})

test('replayed: the same envelope again -> ERR_REPLAY, delivered once', async () => {
  const { publisher, subscriber, topic } = await pair('replayed')
  const raw = await stack.raw()
  const wire = await tap(raw, topic)
  await publisher.client.publishAsync(topic, '20.5', { qos: 1 })
  await subscriber.waitForMessages(1)
  await waitUntil(() => wire.length === 1, 'the tap to see the envelope')
  await raw.publishAsync(topic, Buffer.from(wire[0]?.bytes ?? []), { qos: 1 })
  const [error] = await subscriber.waitForErrors(1)
  expect(error?.code).toBe('ERR_REPLAY')
  expect(subscriber.messages.map((m) => m.text)).toEqual(['20.5'])
})

test('topic-swapped: the envelope moved to another topic of the same group -> ERR_ENVELOPE_SIGNATURE_INVALID', async () => {
  // The subscriber reads only the target topic, so the replay window has not seen the original
  // and the topic binding itself must catch it (once seen, ERR_REPLAY would catch it first).
  const other = 'home/swapped/thermostat/thermostat-swapped/setpoint'
  const { publisher, subscriber, topic } = await pair('swapped', other)
  const raw = await stack.raw()
  const wire = await tap(raw, topic)
  await publisher.client.publishAsync(topic, '20.5', { qos: 1 })
  await waitUntil(() => wire.length === 1, 'the tap to see the envelope')
  await raw.publishAsync(other, Buffer.from(wire[0]?.bytes ?? []), { qos: 1 })
  const [error] = await subscriber.waitForErrors(1)
  expect(error).toMatchObject({ code: 'ERR_ENVELOPE_SIGNATURE_INVALID', topic: other })
  expect(subscriber.messages).toEqual([])
})

test('cross-group: a writer of one group using its key on another group’s topic -> ERR_SENDER_NOT_PERMITTED', async () => {
  const { thermostat, subscriber } = await pair('cross')
  const epochKey = await group1Key(thermostat.identity)
  const lockTopic = 'home/cross/lock/front/state' // group 3: the thermostat may not write there
  await subscriber.client.subscribeAsync(lockTopic, { qos: 1 })
  const envelope = sealEnvelope({
    topic: lockTopic,
    payload: new TextEncoder().encode('unlocked'),
    epochKey,
    signer: createEnvelopeSigner({ kid: thermostat.kid, seed: thermostat.identity.signingSeed }),
    seq: 2_000_000,
  })
  await (await stack.raw()).publishAsync(lockTopic, Buffer.from(envelope), { qos: 1 })
  const [error] = await subscriber.waitForErrors(1)
  expect(error).toMatchObject({ code: 'ERR_SENDER_NOT_PERMITTED', topic: lockTopic })
  expect(subscriber.messages).toEqual([])
})

test('revoked sender: after revocation and a refresh, its envelopes -> ERR_SENDER_REVOKED', async () => {
  const { thermostat, publisher, subscriber, topic } = await pair('revoked')
  await publisher.client.publishAsync(topic, 'before', { qos: 1 })
  await subscriber.waitForMessages(1)
  const stolenKey = await group1Key(thermostat.identity) // the thief keeps the old epoch key

  stack.syncClock()
  await stack.h.keyServer.revokePrincipal(thermostat.identity.id, 'test')
  await subscriber.client.refreshKeys()

  // Still within the old epoch's grace period, so only the revocation list stops it.
  const envelope = sealEnvelope({
    topic,
    payload: new TextEncoder().encode('after'),
    epochKey: stolenKey,
    signer: createEnvelopeSigner({ kid: thermostat.kid, seed: thermostat.identity.signingSeed }),
    seq: 3_000_000,
  })
  await (await stack.raw()).publishAsync(topic, Buffer.from(envelope), { qos: 1 })
  const [error] = await subscriber.waitForErrors(1)
  expect(error?.code).toBe('ERR_SENDER_REVOKED')
  expect(subscriber.messages.map((m) => m.text)).toEqual(['before'])
})

test('garbage, plaintext and junk control messages never reach the handler', async () => {
  const { app, subscriber, topic } = await pair('junk')
  const raw = await stack.raw()
  await raw.publishAsync(topic, 'plain text, not an envelope', { qos: 1 })
  await raw.publishAsync(`smqtt/control/principals/${app.identity.id}`, '{"type":"bundle","bundle":{}}', { qos: 1 })
  await raw.publishAsync(`smqtt/control/principals/${app.identity.id}`, 'not json', { qos: 1 })
  const [error] = await subscriber.waitForErrors(1)
  expect(error?.code).toBe('ERR_ENVELOPE_UNSUPPORTED') // 'p' is no envelope version
  await waitUntil(() => subscriber.client.stats.control.ignored === 2, 'two ignored control messages')
  expect(subscriber.messages).toEqual([])
  expect(subscriber.errors).toHaveLength(1)
})
