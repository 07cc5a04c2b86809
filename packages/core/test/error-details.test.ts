// SmqttError.details (issue 16): the envelope and key errors a caller acts on say which group,
// epoch, sender and topic they are about; the decryption failure says nothing.
import { describe, expect, test } from 'vitest'
import { EpochKey } from '../src/envelope/epoch-key.js'
import { beginOpenEnvelope, finishOpenEnvelopeUnsafe, openEnvelope } from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { isSmqttError, SmqttError } from '../src/errors.js'
import { ReplayWindow } from '../src/replay-window.js'
import { filled, makeGroup, payloadOf, TOPIC, thrown } from './_fixtures.js'

const NOW = 1_790_000_000
const SEQ = 100_000

function sealed(group = makeGroup(), signer = group.thermostat): Uint8Array {
  return sealEnvelope({ topic: TOPIC, payload: payloadOf(64), epochKey: group.epochKey, signer, seq: SEQ, sentAt: NOW })
}

describe('SmqttError.details', () => {
  test('frozen, copied from what was passed, and absent (not even an own property) without', () => {
    const given = { group: 7, epoch: 3 }
    const err = new SmqttError('ERR_UNKNOWN_EPOCH', undefined, { details: given })
    given.group = 8
    expect(err.details).toEqual({ group: 7, epoch: 3 })
    expect(Object.isFrozen(err.details)).toBe(true)
    const plain = new SmqttError('ERR_UNKNOWN_EPOCH')
    expect(plain.details).toBeUndefined()
    expect(Object.hasOwn(plain, 'details')).toBe(false)
    expect(Object.hasOwn(plain, 'cause')).toBe(false)
    const cause = new Error('x')
    expect(new SmqttError('ERR_KEY_INVALID', undefined, { cause }).cause).toBe(cause)
  })

  test('read the same on an error of another copy of @smqtt/core', async () => {
    const secondCopy = '../src/errors.js?details-copy'
    const other = (await import(/* @vite-ignore */ secondCopy)) as typeof import('../src/errors.js')
    const foreign: unknown = new other.SmqttError('ERR_REPLAY', undefined, { details: { group: 7, epoch: 3, kid: 9 } })
    expect(foreign instanceof SmqttError).toBe(false)
    if (!isSmqttError(foreign, 'ERR_REPLAY')) throw new Error('not recognised')
    expect(foreign.details).toEqual({ group: 7, epoch: 3, kid: 9 })
  })
})

describe('openEnvelope fills details', () => {
  test('ERR_UNKNOWN_EPOCH: group and epoch', () => {
    const group = makeGroup()
    const keys = { ...group.keys, epochKey: () => undefined }
    const err = thrown('ERR_UNKNOWN_EPOCH', () => openEnvelope(sealed(group), TOPIC, { keys, now: NOW }))
    expect(err.details).toEqual({ group: 7, epoch: 300 })
  })

  test('ERR_UNKNOWN_SENDER: group and kid, when opening and when verifying', () => {
    const group = makeGroup()
    const bytes = sealed(group, group.readerOnly)
    const opened = thrown('ERR_UNKNOWN_SENDER', () => openEnvelope(bytes, TOPIC, { keys: group.keys, now: NOW }))
    expect(opened.details).toEqual({ group: 7, kid: 1002 })
    const verified = thrown('ERR_UNKNOWN_SENDER', () =>
      verifyEnvelope(bytes, TOPIC, { writerKey: group.keys.writerKey }),
    )
    expect(verified.details).toEqual({ group: 7, kid: 1002 })
  })

  test('ERR_SENDER_REVOKED: group and kid, before the checks and when revoked meanwhile', () => {
    const group = makeGroup()
    const bytes = sealed(group)
    const early = thrown('ERR_SENDER_REVOKED', () =>
      openEnvelope(bytes, TOPIC, { keys: group.keys, now: NOW, isRevoked: (kid) => kid === 1000 }),
    )
    expect(early.details).toEqual({ group: 7, kid: 1000 })
    const unverified = beginOpenEnvelope(bytes, TOPIC, { keys: group.keys, now: NOW })
    const late = thrown('ERR_SENDER_REVOKED', () =>
      finishOpenEnvelopeUnsafe(unverified, true, { keys: group.keys, now: NOW, isRevoked: () => true }),
    )
    expect(late.details).toEqual({ group: 7, kid: 1000 })
  })

  test('ERR_SENDER_NOT_PERMITTED: group, kid and topic', () => {
    const group = makeGroup()
    const keys = { ...group.keys, writerMayPublish: () => false }
    const err = thrown('ERR_SENDER_NOT_PERMITTED', () => openEnvelope(sealed(group), TOPIC, { keys, now: NOW }))
    expect(err.details).toEqual({ group: 7, kid: 1000, topic: TOPIC })
  })

  test('ERR_REPLAY and ERR_STALE: group, epoch and kid', () => {
    const group = makeGroup()
    const bytes = sealed(group)
    const replay = new ReplayWindow()
    openEnvelope(bytes, TOPIC, { keys: group.keys, replay, now: NOW })
    const again = thrown('ERR_REPLAY', () => openEnvelope(bytes, TOPIC, { keys: group.keys, replay, now: NOW }))
    expect(again.details).toEqual({ group: 7, epoch: 300, kid: 1000 })
    const late = thrown('ERR_STALE', () =>
      openEnvelope(bytes, TOPIC, { keys: group.keys, replay: new ReplayWindow(), now: NOW + 3_600 }),
    )
    expect(late.details).toEqual({ group: 7, epoch: 300, kid: 1000 })
    const early = thrown('ERR_STALE', () =>
      openEnvelope(bytes, TOPIC, { keys: group.keys, replay: new ReplayWindow(), now: NOW - 3_600 }),
    )
    expect(early.details).toEqual({ group: 7, epoch: 300, kid: 1000 })
  })

  test('ERR_REPLAY from the window alone, for every reason it refuses', () => {
    const replay = new ReplayWindow({ windowSize: 32, maxSenders: 1 })
    const input = { group: 2, epoch: 5, sender: 9, sentAt: NOW, now: NOW }
    replay.accept({ ...input, seq: 100 })
    for (const seq of [100, 10]) // already seen; older than the window
      expect(thrown('ERR_REPLAY', () => replay.check({ ...input, seq })).details).toEqual({
        group: 2,
        epoch: 5,
        kid: 9,
      })
    replay.accept({ ...input, sender: 10, seq: 1 }) // evicts sender 9's window to a floor
    expect(thrown('ERR_REPLAY', () => replay.check({ ...input, seq: 50 })).details).toEqual({
      group: 2,
      epoch: 5,
      kid: 9,
    })
  })

  test('ERR_ENVELOPE_DECRYPTION_FAILED carries no details (deliberately uninformative)', () => {
    const group = makeGroup()
    const wrongKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: filled(32, 0x43) })
    const keys = { ...group.keys, epochKey: () => wrongKey }
    const err = thrown('ERR_ENVELOPE_DECRYPTION_FAILED', () => openEnvelope(sealed(group), TOPIC, { keys, now: NOW }))
    expect(err.details).toBeUndefined()
    expect(Object.hasOwn(err, 'details')).toBe(false)
  })
})
