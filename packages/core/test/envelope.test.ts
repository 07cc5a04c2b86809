import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { EpochKey, MAX_CACHED_SENDER_KEYS } from '../src/envelope/epoch-key.js'
import { ENVELOPE_VERSION, parseEnvelope } from '../src/envelope/header.js'
import {
  beginOpenEnvelope,
  checkEnvelopeSignature,
  finishOpenEnvelopeUnsafe,
  openEnvelope,
} from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { createEnvelopeSigner } from '../src/envelope/signer.js'
import { SUITES, type SuiteId } from '../src/envelope/suites.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { SmqttError } from '../src/errors.js'
import { ReplayWindow } from '../src/replay-window.js'
import { backends, codeOf, filled, makeGroup, nativeBackend, payloadOf, TOPIC } from './_fixtures.js'

const NOW = 1_790_000_000
const suites = Object.keys(SUITES).map(Number) as SuiteId[]

function seal(group = makeGroup(), overrides: Partial<Parameters<typeof sealEnvelope>[0]> = {}) {
  return sealEnvelope({
    topic: TOPIC,
    payload: payloadOf(256),
    epochKey: group.epochKey,
    signer: group.thermostat,
    seq: 100_000,
    sentAt: NOW,
    ...overrides,
  })
}

describe('round trip', () => {
  for (const suite of suites)
    for (const size of [0, 1, 256, 65_536])
      test(`suite ${suite}, ${size} B, on both backends, same bytes`, () => {
        const sealed = backends.map((backend) => {
          const group = makeGroup(suite, backend)
          return sealEnvelope(
            {
              topic: TOPIC,
              payload: payloadOf(size),
              epochKey: group.epochKey,
              signer: group.thermostat,
              seq: 5,
              sentAt: NOW,
            },
            { backend },
          )
        })
        expect(sealed[0]).toEqual(sealed[1])
        for (const backend of backends) {
          const opened = openEnvelope(sealed[0] as Uint8Array, TOPIC, {
            keys: makeGroup(suite).keys,
            now: NOW,
            backend,
          })
          expect(opened.payload).toEqual(payloadOf(size))
          expect(opened.header).toMatchObject({ suite, group: 7, epoch: 300, sender: 1000, seq: 5, sentAt: NOW })
        }
      })

  test('overhead for ordinary ids stays within the 96-byte budget', () => {
    // group < 128, epoch < 16384, kid < 16384, seq < 2^21: the sizes of a real deployment.
    const envelope = seal(makeGroup(), { seq: 2 ** 21 - 1 })
    expect(envelope.length - 256).toBe(94)
    expect(seal(makeGroup(), { seq: 0 }).length - 256).toBe(92)
  })

  test('the broker verifies without the group key', () => {
    const group = makeGroup()
    const { header } = verifyEnvelope(seal(group), TOPIC, { writerKey: group.keys.writerKey })
    expect(header.sender).toBe(1000)
  })

  test('two senders with the same sequence number never share a keystream', () => {
    const group = makeGroup()
    const zeros = new Uint8Array(64)
    const a = parseEnvelope(seal(group, { payload: zeros, signer: group.thermostat })).ciphertext
    const b = parseEnvelope(seal(group, { payload: zeros, signer: group.app })).ciphertext
    expect(a.subarray(0, 64)).not.toEqual(b.subarray(0, 64))
  })
})

describe('attacks', () => {
  test('topic swap: the same envelope on another topic is refused', () => {
    const group = makeGroup()
    expect(codeOf(() => openEnvelope(seal(group), 'home/hall/lock/cmd', { keys: group.keys, now: NOW }))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
  })

  test('forgery: a reader-only member cannot sign as a writer', () => {
    const group = makeGroup()
    // It holds the epoch key, so it can encrypt; it puts the thermostat's kid in the header.
    const impostor = createEnvelopeSigner({ kid: 1000, seed: filled(32, 3) })
    expect(codeOf(() => openEnvelope(seal(group, { signer: impostor }), TOPIC, { keys: group.keys, now: NOW }))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
    // Under its own kid it is not a writer.
    expect(
      codeOf(() => openEnvelope(seal(group, { signer: group.readerOnly }), TOPIC, { keys: group.keys, now: NOW })),
    ).toBe('ERR_UNKNOWN_SENDER')
  })

  test('wrong key: a writer with a stale key for the epoch cannot be read', () => {
    const group = makeGroup()
    const wrongKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: filled(32, 0x43) })
    expect(codeOf(() => openEnvelope(seal(group, { epochKey: wrongKey }), TOPIC, { keys: group.keys, now: NOW }))).toBe(
      'ERR_ENVELOPE_DECRYPTION_FAILED',
    )
  })

  test('unknown epoch', () => {
    const group = makeGroup()
    const later = new EpochKey({ group: 7, epoch: 301, suite: 1, key: filled(32, 0x42) })
    expect(codeOf(() => openEnvelope(seal(group, { epochKey: later }), TOPIC, { keys: group.keys, now: NOW }))).toBe(
      'ERR_UNKNOWN_EPOCH',
    )
  })

  test('suite downgrade: an envelope in another suite than the group is refused', () => {
    const group = makeGroup(1)
    const aes = new EpochKey({ group: 7, epoch: 300, suite: 2, key: filled(32, 0x42) })
    expect(codeOf(() => openEnvelope(seal(group, { epochKey: aes }), TOPIC, { keys: group.keys, now: NOW }))).toBe(
      'ERR_ENVELOPE_UNSUPPORTED',
    )
    // Rewriting the suite byte of a genuine envelope breaks its signature.
    const envelope = seal(group)
    envelope[1] = ((envelope[1] as number) & 0xf0) | 2
    expect(codeOf(() => verifyEnvelope(envelope, TOPIC, { writerKey: group.keys.writerKey }))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
  })

  test("a writer's honest envelope on a topic outside its publish rights is refused, after the signature", () => {
    const group = makeGroup()
    const own = 'home/hall/thermostat/1000/temp'
    const keys = {
      ...group.keys,
      writerMayPublish: (_g: number, kid: number, topic: string) => topic.includes(`/${kid}/`),
    }
    const replay = new ReplayWindow()
    expect(openEnvelope(seal(group, { topic: own, seq: 1 }), own, { keys, now: NOW, replay }).header.sender).toBe(1000)
    const elsewhere = 'home/hall/thermostat/1001/temp'
    const trespass = seal(group, { topic: elsewhere, seq: 2 })
    expect(codeOf(() => openEnvelope(trespass, elsewhere, { keys, now: NOW, replay }))).toBe('ERR_SENDER_NOT_PERMITTED')
    // Signature first: a forgery names no one whose rights could be checked.
    const forged = seal(group, {
      topic: elsewhere,
      seq: 3,
      signer: createEnvelopeSigner({ kid: 1000, seed: filled(32, 9) }),
    })
    expect(codeOf(() => openEnvelope(forged, elsewhere, { keys, now: NOW, replay }))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
    // A refused envelope leaves its sequence number unused.
    expect(openEnvelope(seal(group, { topic: own, seq: 2 }), own, { keys, now: NOW, replay }).header.seq).toBe(2)
  })

  test('revoked sender', () => {
    const group = makeGroup()
    expect(
      codeOf(() => openEnvelope(seal(group), TOPIC, { keys: group.keys, now: NOW, isRevoked: (kid) => kid === 1000 })),
    ).toBe('ERR_SENDER_REVOKED')
  })

  test('replay: the second copy is refused, a fresh sequence number is not', () => {
    const group = makeGroup()
    const replay = new ReplayWindow()
    const envelope = seal(group, { seq: 10 })
    openEnvelope(envelope, TOPIC, { keys: group.keys, now: NOW, replay })
    expect(codeOf(() => openEnvelope(envelope, TOPIC, { keys: group.keys, now: NOW, replay }))).toBe('ERR_REPLAY')
    expect(openEnvelope(seal(group, { seq: 11 }), TOPIC, { keys: group.keys, now: NOW, replay }).header.seq).toBe(11)
  })

  test('a forged envelope does not consume its sequence number in the replay window', () => {
    const group = makeGroup()
    const replay = new ReplayWindow()
    const forged = seal(group, { seq: 20, signer: createEnvelopeSigner({ kid: 1000, seed: filled(32, 9) }) })
    expect(codeOf(() => openEnvelope(forged, TOPIC, { keys: group.keys, now: NOW, replay }))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
    expect(openEnvelope(seal(group, { seq: 20 }), TOPIC, { keys: group.keys, now: NOW, replay }).header.seq).toBe(20)
  })

  test('stale: an old live message is refused even if the broker marks the delivery retained', () => {
    const group = makeGroup()
    const old = seal(group, { sentAt: NOW - 3600 })
    const options = { keys: group.keys, now: NOW, replay: new ReplayWindow({ maxAgeSeconds: 300 }) }
    expect(codeOf(() => openEnvelope(old, TOPIC, options))).toBe('ERR_STALE')
    expect(codeOf(() => openEnvelope(old, TOPIC, { ...options, retained: true }))).toBe('ERR_STALE')
    // A message its sender published as retained is readable from the retained store.
    const retained = seal(group, { sentAt: NOW - 3600, retain: true })
    expect(openEnvelope(retained, TOPIC, { ...options, retained: true }).header.retain).toBe(true)
  })

  test('truncated and extended envelopes are refused', () => {
    const group = makeGroup()
    const envelope = seal(group)
    for (const cut of [1, 16, 64, 65, envelope.length - 1])
      expect(() =>
        openEnvelope(envelope.subarray(0, envelope.length - cut), TOPIC, { keys: group.keys, now: NOW }),
      ).toThrow(SmqttError)
    const extended = new Uint8Array(envelope.length + 1)
    extended.set(envelope)
    expect(codeOf(() => openEnvelope(extended, TOPIC, { keys: group.keys, now: NOW }))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
  })

  test('oversize envelopes are refused before any work', () => {
    const group = makeGroup()
    expect(codeOf(() => openEnvelope(new Uint8Array(100), TOPIC, { keys: group.keys, maxEnvelopeBytes: 99 }))).toBe(
      'ERR_ENVELOPE_TOO_LARGE',
    )
    expect(codeOf(() => seal(group, { payload: new Uint8Array(5 * 1024 * 1024) }))).toBe('ERR_ENVELOPE_TOO_LARGE')
  })
})

describe('opening in two steps (signature checked elsewhere)', () => {
  const group = makeGroup()
  const options = (replay = new ReplayWindow()) => ({ keys: group.keys, replay, now: NOW })

  test('begin + signature + finish opens exactly what openEnvelope opens', () => {
    const envelope = seal(group)
    const unverified = beginOpenEnvelope(envelope, TOPIC, options())
    expect(unverified.signingKey).toEqual(group.thermostat.publicKey)
    expect(checkEnvelopeSignature(unverified)).toBe(true)
    const twoStep = finishOpenEnvelopeUnsafe(unverified, true, options())
    expect(twoStep).toEqual(openEnvelope(envelope, TOPIC, options()))
  })

  test('a signature that failed elsewhere is refused and nothing is recorded', () => {
    const envelope = seal(group)
    envelope[envelope.length - 1] = (envelope[envelope.length - 1] as number) ^ 1
    const replay = new ReplayWindow()
    const unverified = beginOpenEnvelope(envelope, TOPIC, options(replay))
    expect(checkEnvelopeSignature(unverified)).toBe(false)
    expect(codeOf(() => finishOpenEnvelopeUnsafe(unverified, false, options(replay)))).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
    expect(replay.size).toBe(0)
  })

  test('two copies begun before either finished: the second is a replay', () => {
    const envelope = seal(group)
    const replay = new ReplayWindow()
    const first = beginOpenEnvelope(envelope, TOPIC, options(replay))
    const second = beginOpenEnvelope(envelope, TOPIC, options(replay))
    finishOpenEnvelopeUnsafe(first, true, options(replay))
    expect(codeOf(() => finishOpenEnvelopeUnsafe(second, true, options(replay)))).toBe('ERR_REPLAY')
  })

  test('a sender revoked while its signature was being checked is refused', () => {
    const revoked = new Set<number>()
    const opts = { ...options(), isRevoked: (kid: number) => revoked.has(kid) }
    const unverified = beginOpenEnvelope(seal(group), TOPIC, opts)
    revoked.add(group.thermostat.kid)
    expect(codeOf(() => finishOpenEnvelopeUnsafe(unverified, true, opts))).toBe('ERR_SENDER_REVOKED')
  })

  test('begin runs the cheap checks: an unknown sender never reaches a verifier', () => {
    const envelope = seal(group, { signer: group.readerOnly })
    expect(codeOf(() => beginOpenEnvelope(envelope, TOPIC, options()))).toBe('ERR_UNKNOWN_SENDER')
  })
})

describe('strict parser', () => {
  const base = () => seal(makeGroup())

  test('unknown version and suite', () => {
    const v = base()
    v[0] = ENVELOPE_VERSION + 1
    expect(codeOf(() => parseEnvelope(v))).toBe('ERR_ENVELOPE_UNSUPPORTED')
    const s = base()
    s[1] = 0x0f
    expect(codeOf(() => parseEnvelope(s))).toBe('ERR_ENVELOPE_UNSUPPORTED')
  })

  test('unknown flag bits', () => {
    // 0x10 is retain and 0x20 "properties bound" (bound-properties.test.ts); 0x40 and 0x80 are unknown.
    for (const flag of [0x40, 0x80]) {
      const f = base()
      f[1] = (f[1] as number) | flag
      expect(codeOf(() => parseEnvelope(f))).toBe('ERR_ENVELOPE_MALFORMED')
    }
  })

  test('non-minimal varint', () => {
    // group 7 encoded as 0x87 0x00 instead of 0x07
    const e = base()
    const padded = new Uint8Array(e.length + 1)
    padded.set(e.subarray(0, 2))
    padded.set([0x87, 0x00], 2)
    padded.set(e.subarray(3), 4)
    expect(codeOf(() => parseEnvelope(padded))).toBe('ERR_ENVELOPE_MALFORMED')
  })

  test('varint out of range', () => {
    const e = new Uint8Array(200)
    e.set([1, 1, 0x80, 0x80, 0x80, 0x80, 0x10]) // group = 2^32
    expect(codeOf(() => parseEnvelope(e))).toBe('ERR_ENVELOPE_MALFORMED')
  })

  test('too short, empty, not bytes', () => {
    expect(codeOf(() => parseEnvelope(new Uint8Array(0)))).toBe('ERR_ENVELOPE_MALFORMED')
    expect(codeOf(() => parseEnvelope(base().subarray(0, 90)))).toBe('ERR_ENVELOPE_MALFORMED')
    expect(codeOf(() => parseEnvelope('hello' as unknown as Uint8Array))).toBe('ERR_ENVELOPE_MALFORMED')
  })
})

describe('properties', () => {
  const group = makeGroup()
  const envelope = seal(group, { payload: payloadOf(48) })

  test('any flipped bit anywhere is refused', () => {
    fc.assert(
      fc.property(fc.nat(envelope.length * 8 - 1), (bit) => {
        const tampered = envelope.slice()
        tampered[bit >> 3] = (tampered[bit >> 3] as number) ^ (1 << (bit & 7))
        expect(() => openEnvelope(tampered, TOPIC, { keys: group.keys, now: NOW, backend: nativeBackend })).toThrow(
          SmqttError,
        )
      }),
      { numRuns: 1000 },
    )
  })

  test('the same envelope under any other topic is refused', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }).filter((t) => t !== TOPIC && !/[+#\0]/.test(t)),
        (topic) => {
          expect(() => openEnvelope(envelope, topic, { keys: group.keys, now: NOW })).toThrow(SmqttError)
        },
      ),
      { numRuns: 300 },
    )
  })

  test('arbitrary bytes raise only SmqttError, from the parser and from open', () => {
    const arbitrary = fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      // mostly-valid prefixes reach deeper into the parser
      fc.tuple(fc.uint8Array({ maxLength: 20 }), fc.uint8Array({ maxLength: 200 })).map(([a, b]) => {
        const out = new Uint8Array(2 + a.length + b.length)
        out.set([1, 1], 0)
        out.set(a, 2)
        out.set(b, 2 + a.length)
        return out
      }),
    )
    fc.assert(
      fc.property(arbitrary, (bytes) => {
        for (const fn of [
          () => parseEnvelope(bytes),
          () => openEnvelope(bytes, TOPIC, { keys: group.keys, now: NOW }),
        ]) {
          try {
            fn()
          } catch (err) {
            expect(err).toBeInstanceOf(SmqttError)
          }
        }
      }),
      { numRuns: 1000 },
    )
  })

  test('a reader-only member cannot produce an envelope that verifies as another sender', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.constantFrom(1000, 1001),
        fc.uint8Array({ maxLength: 64 }),
        (seed, victim, payload) => {
          const forger = createEnvelopeSigner({ kid: victim, seed })
          const forged = seal(group, { signer: forger, payload })
          expect(codeOf(() => verifyEnvelope(forged, TOPIC, { writerKey: group.keys.writerKey }))).toBe(
            'ERR_ENVELOPE_SIGNATURE_INVALID',
          )
        },
      ),
      { numRuns: 200 },
    )
  })
})

describe('memory', () => {
  test('an epoch key caches the sender keys used most recently, a bounded number, and derives the same keys again', () => {
    const epochKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: filled(32, 0x42) })
    const first = { ...epochKey.senderKey(1) }
    // A subscriber hearing a fleet in one group: far more senders than are kept.
    for (let sender = 2; sender <= 3 * MAX_CACHED_SENDER_KEYS; sender++) epochKey.senderKey(sender)
    expect(epochKey.cachedSenderKeys).toBe(MAX_CACHED_SENDER_KEYS)
    // Sender 1 was evicted long ago; derived again, it is the same key and nonce base.
    const again = epochKey.senderKey(1)
    expect(again.key).toEqual(first.key)
    expect(again.iv).toEqual(first.iv)
    expect(epochKey.cachedSenderKeys).toBe(MAX_CACHED_SENDER_KEYS)
  })
})
