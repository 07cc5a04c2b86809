// The attack catalogue of issue 7, part 1: attacks on messages. One test per attack, named after
// it, against the full real stack (test/attacks/_stack.ts); each asserts the refusal and its
// reason: the broker's audit entry, or the subscriber's securityError code. The attacker mostly
// holds thermostat-1's stolen legacy MQTT login (not its keys), the strongest position short of
// stealing keys: it can publish as thermostat-1 wherever thermostat-1 may.
// Attacks on access, TLS and slow-loris are in access.test.ts, CONNECT floods in connect.test.ts.
import { EpochKey, isSmqttError, type OpenedKeyBundle, openEnvelope, parseEnvelope, type SuiteId } from '@smqtt/core'
import { openBundleOf, within } from '@smqtt/test-kit/broker'
import { tap, waitUntil } from '@smqtt/test-kit/client'
import type { AedesPublishPacket } from 'aedes'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  type AttackStack,
  deliveredTo,
  type Member,
  openWithHeld,
  publishOutcome,
  type Recorder,
  refusedBy,
  STOLEN_LOGIN,
  sealWithBundle,
  startAttackStack,
} from './_stack.js'

const TOPIC = 'home/h1/thermostat/thermostat-1/temp'

let s: AttackStack
let thermostat: Member
let thermostat2: Member
let reader: Member
let eavesdropper: Member
let forger: Member
let subscriber: Recorder
let wire: Awaited<ReturnType<typeof tap>>

beforeAll(async () => {
  s = await startAttackStack()
  thermostat = await s.enroll('thermostat-1', ['thermostat'])
  thermostat2 = await s.enroll('thermostat-2', ['thermostat'])
  reader = await s.enroll('app-1', ['app'], { persistent: true })
  eavesdropper = await s.enroll('app-3', ['app'])
  forger = await s.enroll('app-4', ['app'])
  subscriber = await s.secureClient(reader, { reconnect: true })
  await subscriber.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  // A member with read access but no keys loaded: mqtt.js only, it records what it is sent.
  wire = await tap(await s.rawAs(eavesdropper, { reconnectPeriod: 200 }), 'home/+/thermostat/#')
}, 60_000)
afterAll(async () => {
  await s?.close()
})
beforeEach(() => {
  s.takeAudit()
})

/** thermostat-1 sends `text` the legitimate way; returns the envelope as it crossed the broker. */
async function send(text: string): Promise<Uint8Array> {
  const before = subscriber.messages.length
  const seen = wire.length
  const sender = await s.secureClient(thermostat)
  try {
    await within(sender.client.publishAsync(TOPIC, text, { qos: 1 }), 'PUBACK', 10_000)
  } finally {
    await sender.client.endAsync(true)
  }
  await deliveredTo(subscriber, before + 1)
  await waitUntil(() => wire.length > seen, 'the envelope on the wire')
  return (wire.at(-1) as (typeof wire)[number]).bytes
}

/** The thief logs in with thermostat-1's stolen legacy password and publishes raw bytes. */
async function thief(topic: string, bytes: Uint8Array) {
  const client = await s.raw({ clientId: 'thermostat-1', ...STOLEN_LOGIN })
  return publishOutcome(client, topic, bytes)
}

const refusals = () => s.takeAudit().filter((entry) => entry.event === 'refused')
const codes = (recorder: Recorder) => recorder.errors.map((e) => e.code)

/**
 * An envelope for `topic` (default TOPIC) naming `sender` (default thermostat-1) as its sender,
 * signed with `signerOf`'s key and sealed with the group key `signerOf` holds.
 */
async function sealAs(
  signerOf: Member,
  options: { seq: number; topic?: string; suite?: SuiteId; bundle?: OpenedKeyBundle; sender?: Member },
) {
  const topic = options.topic ?? TOPIC
  const bundle = options.bundle ?? (await openBundleOf(s.h, signerOf))
  const { seq, suite } = options
  const kid = (options.sender ?? thermostat).kid
  return sealWithBundle(bundle, topic, { signer: signerOf.identity, kid, text: 'forged 99.9', seq, suite })
}

describe('attacks on messages', () => {
  test('eavesdrop: a member without keys and the broker itself see only ciphertext', async () => {
    const seenByBroker: Buffer[] = []
    const onPublish = (packet: AedesPublishPacket) => {
      if (packet.topic === TOPIC) seenByBroker.push(Buffer.from(packet.payload))
    }
    s.broker.broker.on('publish', onPublish)
    const envelope = Buffer.from(await send('secret reading 21.5'))
    s.broker.broker.off('publish', onPublish)
    expect(subscriber.messages.at(-1)?.text).toBe('secret reading 21.5')
    expect(seenByBroker).toHaveLength(1)
    for (const captured of [envelope, ...seenByBroker]) {
      expect(captured.includes('secret reading')).toBe(false)
      expect(parseEnvelope(captured).header.sender).toBe(thermostat.kid) // metadata only
    }
    // Keys of another group (the eavesdropper's own lock-state key) do not open it.
    const own = await openBundleOf(s.h, eavesdropper)
    const lockStates = own.groups.find((g) => g.group === 3)?.epochs.at(-1)
    expect(lockStates).toBeDefined()
    let error: unknown
    try {
      openEnvelope(envelope, TOPIC, {
        keys: {
          epochKey: (group, epoch) =>
            new EpochKey({ group, epoch, suite: 1, key: (lockStates as { key: Uint8Array }).key }),
          writerKey: () => thermostat.identity.signingKey,
        },
      })
    } catch (err) {
      error = err
    }
    expect(isSmqttError(error, 'ERR_ENVELOPE_DECRYPTION_FAILED')).toBe(true)
  })

  test('forge as another sender: thermostat-2 names thermostat-1 as sender -> wrong-sender; on its topic -> acl-denied', async () => {
    const forged = await sealAs(thermostat2, { seq: 1, topic: 'home/h1/thermostat/thermostat-2/temp' })
    const attacker = await s.rawAs(thermostat2)
    expect(await publishOutcome(attacker, 'home/h1/thermostat/thermostat-2/temp', forged)).toBe('closed')
    const onVictimsTopic = await sealAs(thermostat2, { seq: 2 })
    expect(await publishOutcome(await s.rawAs(thermostat2), TOPIC, onVictimsTopic)).toBe('closed')
    expect(refusals().map((r) => [r.principal, r.reason])).toEqual([
      ['thermostat-2', 'wrong-sender'],
      ['thermostat-2', 'acl-denied'],
    ])
  })

  test('reader-only member forging: app-4 holds the group key but cannot sign as thermostat-1 -> acl-denied, signature-invalid', async () => {
    const before = subscriber.messages.length
    const forged = await sealAs(forger, { seq: 1_000 })
    const app = await s.rawAs(forger)
    expect(await publishOutcome(app, TOPIC, forged)).toBe('closed')
    expect(await thief(TOPIC, forged)).toBe('closed') // even with thermostat-1's login
    expect(refusals().map((r) => [r.principal, r.reason])).toEqual([
      ['app-4', 'acl-denied'],
      ['thermostat-1', 'signature-invalid'],
    ])
    expect(subscriber.messages).toHaveLength(before)
  })

  test('replay (same session): a captured envelope published again -> replay', async () => {
    const envelope = await send('21.6')
    const before = subscriber.messages.length
    expect(await thief(TOPIC, envelope)).toBe('closed')
    expect(refusals().map((r) => r.reason)).toEqual(['replay'])
    expect(subscriber.messages).toHaveLength(before)
  })

  test('topic swap: an envelope moved to another topic of its group -> signature-invalid (replay if already seen)', async () => {
    const OTHER = 'home/h1/thermostat/thermostat-1/humidity'
    const unseen = await sealAs(thermostat, { seq: 1_500 }) // sealed for TOPIC, never published there
    expect(await thief(OTHER, unseen)).toBe('closed')
    const captured = await send('21.7')
    expect(await thief(OTHER, captured)).toBe('closed')
    expect(refusals().map((r) => [r.topic, r.reason])).toEqual([
      [OTHER, 'signature-invalid'],
      [OTHER, 'replay'], // the cheaper check comes first
    ])
  })

  test('truncated envelope: the last 8 bytes cut -> signature-invalid', async () => {
    const envelope = await sealAs(thermostat, { seq: 2_000 })
    expect(await thief(TOPIC, envelope.subarray(0, envelope.length - 8))).toBe('closed')
    expect(await thief(TOPIC, envelope.subarray(0, 5))).toBe('closed') // into the header
    expect(refusals().map((r) => r.reason)).toEqual(['signature-invalid', 'not-an-envelope'])
  })

  test('extended envelope: 16 bytes appended -> signature-invalid', async () => {
    const envelope = await sealAs(thermostat, { seq: 2_001 })
    expect(await thief(TOPIC, Buffer.concat([envelope, Buffer.alloc(16, 0xaa)]))).toBe('closed')
    expect(refusals().map((r) => r.reason)).toEqual(['signature-invalid'])
  })

  test('suite downgrade: the suite rewritten in transit -> signature-invalid; sealed by the sender under another suite -> ERR_ENVELOPE_UNSUPPORTED', async () => {
    const envelope = await sealAs(thermostat, { seq: 2_002 })
    const rewritten = Buffer.from(envelope)
    rewritten[1] = ((rewritten[1] as number) & 0xf0) | 2 // suite 1 (ChaCha20-Poly1305) -> 2 (AES-256-GCM)
    expect(await thief(TOPIC, rewritten)).toBe('closed')
    expect(refusals().map((r) => r.reason)).toEqual(['signature-invalid'])
    // A sender's own signature over another suite passes the broker (the snapshot does not carry
    // the group's suite); the subscriber refuses it.
    const before = subscriber.errors.length
    const own = 'home/h1/thermostat/thermostat-2/temp'
    const otherSuite = await sealAs(thermostat2, { seq: 1, topic: own, suite: 2, sender: thermostat2 })
    expect(await publishOutcome(await s.rawAs(thermostat2), own, otherSuite)).toBe('acked')
    await refusedBy(subscriber, before + 1)
    expect(codes(subscriber).at(-1)).toBe('ERR_ENVELOPE_UNSUPPORTED')
  })
})

describe('attacks across restarts', () => {
  test('replay after the broker restarts: its window is gone, the subscriber still refuses -> ERR_REPLAY', async () => {
    const envelope = await send('21.8')
    const delivered = subscriber.messages.length
    const errors = subscriber.errors.length
    await s.restartBroker()
    await waitUntil(() => subscriber.client.connected, 'the subscriber to reconnect', 10_000)
    await send('21.9') // the subscription is back
    expect(await thief(TOPIC, envelope)).toBe('acked') // the restarted broker forgot it
    await refusedBy(subscriber, errors + 1)
    expect(codes(subscriber).at(-1)).toBe('ERR_REPLAY')
    expect(subscriber.messages.map((m) => m.text).slice(delivered)).toEqual(['21.9'])
  })

  // The subscriber's receive window is saved in its storage before a message is delivered and
  // loaded before anything is handled after a restart (packages/client/src/_replay-state.ts).
  test('replay after the subscriber restarts with persisted state: refused -> ERR_REPLAY', async () => {
    const envelope = await send('22.0')
    await subscriber.client.endAsync(true)
    await s.restartBroker() // so that the replay gets past the broker
    subscriber = await s.secureClient(reader, { reconnect: true }) // same file storage
    await subscriber.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    expect(await thief(TOPIC, envelope)).toBe('acked') // the restarted broker forgot it
    await refusedBy(subscriber, 1)
    expect(codes(subscriber)).toEqual(['ERR_REPLAY'])
    expect(subscriber.messages).toEqual([])
  })
})

describe('attacks on keys', () => {
  test('epoch rollback: sealing with the retired epoch after a rotation -> unknown-epoch', async () => {
    const before = await openBundleOf(s.h, thermostat)
    const now = Math.floor(Date.now() / 1000)
    // Rotate "an hour ago" so that the old epoch is already past its grace period now.
    s.h.clock.now = now - 3_600
    await s.h.keyServer.rotateGroup(1, { immediate: true, actor: 'test', reason: 'epoch rollback test' })
    await s.syncBroker()
    const old = await sealAs(thermostat, { seq: 3_000, bundle: before })
    expect(await thief(TOPIC, old)).toBe('closed')
    expect(refusals().map((r) => r.reason)).toEqual(['unknown-epoch'])
    expect(parseEnvelope(old).header.epoch).toBe(1)
  })

  test('revoked sender: its session is closed, its CONNECT refused -> revoked, principal-inactive', async () => {
    const victim = await s.rawAs(thermostat2)
    const gone = new Promise<void>((resolve) => victim.once('close', () => resolve()))
    const revoked = await s.h.admin('POST', '/v1/admin/principals/thermostat-2/revoke')
    expect(revoked.status).toBe(200)
    await s.syncBroker()
    await gone
    await expect(s.rawAs(thermostat2)).rejects.toMatchObject({ code: 5 })
    const audit = s.takeAudit()
    expect(audit).toContainEqual(
      expect.objectContaining({ event: 'session-closed', principal: 'thermostat-2', reason: 'revoked' }),
    )
    expect(audit.filter((e) => e.event === 'refused').map((r) => [r.hook, r.reason])).toEqual([
      ['connect', 'principal-inactive'],
    ])
  })

  test('revoked reader cannot read the new epoch: no key for it (ERR_UNKNOWN_EPOCH), no bundle (ERR_PRINCIPAL_REVOKED)', async () => {
    const leaver = await s.enroll('app-2', ['app'])
    const oldBundle = await openBundleOf(s.h, leaver)
    s.h.clock.now = Math.floor(Date.now() / 1000)
    expect((await s.h.admin('POST', '/v1/admin/principals/app-2/revoke')).status).toBe(200)
    await s.syncBroker()
    const envelope = await send('after the revocation') // the sender refreshes its keys
    const { header } = parseEnvelope(envelope)
    const held = oldBundle.groups.find((g) => g.group === header.group)
    expect(held?.epochs.map((e) => e.epoch)).not.toContain(header.epoch)
    const error = openWithHeld(envelope, TOPIC, held, thermostat.identity.signingKey)
    expect(isSmqttError(error, 'ERR_UNKNOWN_EPOCH')).toBe(true)
    const refused = await s.h.device(leaver.identity, 'GET', '/v1/bundle')
    expect(refused.status).toBe(403)
    expect((refused.body as { error: { code: string } }).error.code).toBe('ERR_PRINCIPAL_REVOKED')
  })
})
