// MQTT 5 properties bound into the envelope (docs/envelope.md, "Bound properties"): each attack
// a broker can make on them, named after the attack, then a property test over arbitrary sets.
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import type { EnvelopeProperties } from '../src/envelope/bound-properties.js'
import { parseEnvelope } from '../src/envelope/header.js'
import {
  beginOpenEnvelope,
  checkEnvelopeSignature,
  finishOpenEnvelopeUnsafe,
  openEnvelope,
} from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { signatureHolds } from '../src/node/verify-pool.js'
import { backends, codeOf, makeGroup, nativeBackend, payloadOf, TOPIC } from './_fixtures.js'

const NOW = 1_790_000_000
const group = makeGroup()

/** The door lock's command: a request that wants its answer on a given topic. */
const COMMAND: EnvelopeProperties = {
  contentType: 'application/json',
  responseTopic: 'home/hall/lock/reply/app-1',
  correlationData: new Uint8Array([0xc0, 0xff, 0xee, 0x01]),
  userProperties: [
    ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['tenant', 'home-1'],
  ],
}

function seal(properties: EnvelopeProperties | undefined, seq = 1) {
  return sealEnvelope({
    topic: TOPIC,
    payload: payloadOf(32),
    epochKey: group.epochKey,
    signer: group.thermostat,
    seq,
    sentAt: NOW,
    ...(properties ? { properties } : {}),
  })
}

/** What openEnvelope says of `envelope` received with `properties`: 'ok' or the refusal's code. */
const outcome = (envelope: Uint8Array, properties: EnvelopeProperties | undefined) =>
  codeOf(() => openEnvelope(envelope, TOPIC, { keys: group.keys, now: NOW, ...(properties ? { properties } : {}) }))

/** The same for verifyEnvelope (the broker, without the group key). */
const brokerOutcome = (envelope: Uint8Array, properties: EnvelopeProperties | undefined) =>
  codeOf(() =>
    verifyEnvelope(envelope, TOPIC, { writerKey: group.keys.writerKey, ...(properties ? { properties } : {}) }),
  )

const users = COMMAND.userProperties ?? []
const text = new TextEncoder()

/** u16 BE length then the bytes: every string and byte field of the bound encoding. */
function field(value: string | Uint8Array): number[] {
  const bytes = typeof value === 'string' ? text.encode(value) : value
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes]
}

/**
 * An envelope built from docs/envelope.md alone, byte by byte, not by sealEnvelope: group 7
 * (1 byte), epoch 300 (ac 02), sender 1000 (e8 07), seq < 128, suite 1, any descriptor.
 */
function sealFromDoc(mask: number, count: number, bound: number[], seq = 1): Uint8Array {
  const header = [0x01, 0x20 | 0x01, 7, 0xac, 0x02, 0xe8, 0x07, seq]
  header.push(NOW >>> 24, (NOW >>> 16) & 0xff, (NOW >>> 8) & 0xff, NOW & 0xff, mask, count)
  const aad = new Uint8Array([...header, ...field(TOPIC), ...bound])
  const { key, iv } = group.epochKey.senderKey(1000)
  const nonce = iv.slice()
  nonce[11] = (nonce[11] as number) ^ seq
  const payload = payloadOf(32)
  const ciphertext = nativeBackend.aeadSeal('chacha20-poly1305', key, nonce, payload, aad)
  const signed = new Uint8Array([...text.encode('smqtt/v1 envelope'), 0, ...aad, ...ciphertext])
  return new Uint8Array([...header, ...ciphertext, ...group.thermostat.sign(signed)])
}

describe('layout', () => {
  test('an envelope binding nothing is byte-identical to v1 (no flag, no descriptor)', () => {
    const plain = seal(undefined)
    expect(plain[1]).toBe(0x01)
    expect(parseEnvelope(plain).header.properties).toBeUndefined()
  })

  test('binding sets flag 0x20 and a two-byte descriptor after sentAt', () => {
    const bound = seal(COMMAND)
    expect(bound[1]).toBe(0x21)
    const parsed = parseEnvelope(bound)
    expect(parsed.header.properties).toEqual({
      contentType: true,
      responseTopic: true,
      correlationData: true,
      userProperties: 2,
    })
    expect(parsed.headerBytes.length).toBe(parseEnvelope(seal(undefined)).headerBytes.length + 2)
    expect([...parsed.headerBytes.subarray(-2)]).toEqual([0x07, 2])
    // Same envelope otherwise: only the 2-byte descriptor is added on the wire.
    expect(bound.length).toBe(seal(undefined).length + 2)
  })

  test('a reader refuses unknown descriptor bits, too many user properties and an empty binding', () => {
    const bound = seal(COMMAND)
    const at = parseEnvelope(bound).headerBytes.length - 2
    for (const [mask, count] of [
      [0x08, 2],
      [0x07, 17],
      [0x00, 0],
    ] as const) {
      const altered = bound.slice()
      altered[at] = mask
      altered[at + 1] = count
      expect(() => parseEnvelope(altered)).toThrow(expect.objectContaining({ code: 'ERR_ENVELOPE_MALFORMED' }))
    }
  })

  test('a v1 reader without the flag refuses a bound envelope as malformed (unknown flag bits)', () => {
    // What readers from before the flag do: they allow 0x10 only. Checked on our reader by
    // setting the next unknown flag bit, which takes the same path.
    const altered = seal(undefined).slice()
    altered[1] = (altered[1] as number) | 0x40
    expect(() => parseEnvelope(altered)).toThrow(expect.objectContaining({ code: 'ERR_ENVELOPE_MALFORMED' }))
  })
})

describe('the bytes, from the doc', () => {
  test('sealEnvelope binds exactly the documented encoding (mask 07: content type, response topic, correlation data; then user properties)', () => {
    const bound = [
      1,
      ...field('application/json'),
      1,
      ...field('home/hall/lock/reply/app-1'),
      1,
      ...field(new Uint8Array([0xc0, 0xff, 0xee, 0x01])),
      ...users.flatMap(([k, v]) => [...field(k), ...field(v)]),
    ]
    expect(seal(COMMAND)).toEqual(sealFromDoc(0x07, 2, bound))
  })

  test('an absent bound kind is one 0x00 byte; an empty one is 0x01 00 00', () => {
    expect(seal({})).toEqual(sealFromDoc(0x07, 0, [0, 0, 0]))
    expect(seal({ contentType: '', correlationData: new Uint8Array(0) })).toEqual(
      sealFromDoc(0x07, 0, [1, 0, 0, 0, 1, 0, 0]),
    )
  })

  test('a sender binding only some kinds (mask 0x04, one user property): the rest are unsigned', () => {
    const envelope = sealFromDoc(0x04, 1, [1, ...field(new Uint8Array([9])), ...field('a'), ...field('b')])
    const received: EnvelopeProperties = {
      contentType: 'text/plain',
      responseTopic: 'r/1',
      correlationData: new Uint8Array([9]),
      userProperties: [
        ['a', 'b'],
        ['c', 'd'],
      ],
    }
    const opened = openEnvelope(envelope, TOPIC, { keys: group.keys, now: NOW, properties: received })
    expect(opened.properties).toEqual({
      verified: { correlationData: new Uint8Array([9]), userProperties: [['a', 'b']] },
      unsigned: { contentType: 'text/plain', responseTopic: 'r/1', userProperties: [['c', 'd']] },
    })
    // An unbound kind the broker changes or strips does not matter; a bound one does.
    expect(
      outcome(envelope, { ...received, contentType: 'x', responseTopic: undefined } as unknown as EnvelopeProperties),
    ).toBe('ok')
    expect(outcome(envelope, { ...received, correlationData: new Uint8Array([8]) })).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
  })
})

describe('attacks on bound properties', () => {
  test('the packet as sent → opens, every bound property verified, nothing unsigned', () => {
    const opened = openEnvelope(seal(COMMAND), TOPIC, { keys: group.keys, now: NOW, properties: COMMAND })
    expect(opened.properties.verified).toEqual(COMMAND)
    expect(opened.properties.unsigned).toEqual({})
    expect(brokerOutcome(seal(COMMAND), COMMAND)).toBe('ok')
  })

  test('broker alters a bound correlation data → refused', () => {
    const altered = { ...COMMAND, correlationData: new Uint8Array([0xc0, 0xff, 0xee, 0x02]) }
    expect(outcome(seal(COMMAND), altered)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
    expect(brokerOutcome(seal(COMMAND), altered)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker redirects the reply: alters a bound response topic → refused', () => {
    expect(outcome(seal(COMMAND), { ...COMMAND, responseTopic: 'evil/reply' })).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker strips bound content type → refused', () => {
    const { contentType: _, ...stripped } = COMMAND
    expect(outcome(seal(COMMAND), stripped)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
    expect(brokerOutcome(seal(COMMAND), stripped)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker strips every property → refused', () => {
    expect(outcome(seal(COMMAND), undefined)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
    expect(brokerOutcome(seal(COMMAND), undefined)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker injects a response topic the sender bound as absent → refused', () => {
    const { responseTopic: _, ...request } = COMMAND
    const envelope = seal(request)
    expect(outcome(envelope, request)).toBe('ok')
    expect(outcome(envelope, { ...request, responseTopic: 'evil/reply' })).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker turns an empty content type into an absent one → refused (empty is not absent)', () => {
    const envelope = seal({ contentType: '' })
    expect(outcome(envelope, { contentType: '' })).toBe('ok')
    expect(outcome(envelope, {})).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker alters a bound user property value → refused', () => {
    const altered = { ...COMMAND, userProperties: [users[0], ['tenant', 'home-2']] as [string, string][] }
    expect(outcome(seal(COMMAND), altered)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker reorders bound user properties → refused', () => {
    expect(outcome(seal(COMMAND), { ...COMMAND, userProperties: [...users].reverse() })).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
  })

  test('broker strips a bound user property → refused', () => {
    expect(outcome(seal(COMMAND), { ...COMMAND, userProperties: users.slice(0, 1) })).toBe(
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    )
  })

  test('broker injects a user property into the bound set (before the last bound one) → refused', () => {
    const injected = { ...COMMAND, userProperties: [users[0], ['role', 'admin'], users[1]] as [string, string][] }
    expect(outcome(seal(COMMAND), injected)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
    expect(brokerOutcome(seal(COMMAND), injected)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker injects a user property after the bound ones → delivered, marked unsigned', () => {
    const appended = { ...COMMAND, userProperties: [...users, ['role', 'admin']] as [string, string][] }
    const opened = openEnvelope(seal(COMMAND), TOPIC, { keys: group.keys, now: NOW, properties: appended })
    expect(opened.properties.verified).toEqual(COMMAND)
    expect(opened.properties.unsigned).toEqual({ userProperties: [['role', 'admin']] })
    expect(brokerOutcome(seal(COMMAND), appended)).toBe('ok')
  })

  test('broker adds properties to an envelope binding nothing → delivered, all unsigned (v1 as before)', () => {
    expect(outcome(seal(undefined), COMMAND)).toBe('ok')
    expect(brokerOutcome(seal(undefined), COMMAND)).toBe('ok')
  })

  test('broker strips the flag (downgrade to a v1 envelope) → refused', () => {
    const bound = seal(COMMAND)
    const parsed = parseEnvelope(bound)
    const descriptorAt = parsed.headerBytes.length - 2
    const downgraded = new Uint8Array(bound.length - 2)
    downgraded.set(bound.subarray(0, descriptorAt))
    downgraded.set(bound.subarray(descriptorAt + 2), descriptorAt)
    downgraded[1] = 0x01
    expect(outcome(downgraded, COMMAND)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('broker lowers the bound user property count (unbinds one) → refused', () => {
    const bound = seal(COMMAND).slice()
    const at = parseEnvelope(bound).headerBytes.length - 1
    bound[at] = 1
    expect(outcome(bound, COMMAND)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
  })

  test('two-step open: the signature checked with the received properties, and refused when they differ', () => {
    const begin = (properties: EnvelopeProperties) =>
      beginOpenEnvelope(seal(COMMAND), TOPIC, { keys: group.keys, now: NOW, properties })
    const genuine = begin(COMMAND)
    expect(checkEnvelopeSignature(genuine)).toBe(true)
    expect(finishOpenEnvelopeUnsafe(genuine, true, { keys: group.keys, now: NOW }).properties.verified).toEqual(COMMAND)
    const stripped = begin({ ...COMMAND, userProperties: [] })
    expect(checkEnvelopeSignature(stripped)).toBe(false)
    // Even a caller that claims the signature held cannot get a mismatched set through.
    expect(() => finishOpenEnvelopeUnsafe(stripped, true, { keys: group.keys, now: NOW })).toThrow(
      expect.objectContaining({ code: 'ERR_ENVELOPE_SIGNATURE_INVALID' }),
    )
    const altered = begin({ ...COMMAND, contentType: 'text/plain' })
    // A verifier that checked without the properties (a worker of old) said valid: the AEAD,
    // which binds the same bytes, still refuses.
    expect(() => finishOpenEnvelopeUnsafe(altered, true, { keys: group.keys, now: NOW })).toThrow(
      expect.objectContaining({ code: 'ERR_ENVELOPE_DECRYPTION_FAILED' }),
    )
  })

  test('a verify worker without the properties refuses a bound envelope whose properties are present', () => {
    expect(signatureHolds(group.thermostat.publicKey, TOPIC, seal(COMMAND))).toBe(false)
    expect(signatureHolds(group.thermostat.publicKey, TOPIC, seal(undefined))).toBe(true)
  })
})

describe('sealing limits', () => {
  /** 'ok', the SmqttError's code, or the name of a programmer error (TypeError). */
  const code = (properties: EnvelopeProperties): string => {
    try {
      return codeOf(() => seal(properties))
    } catch (err) {
      return (err as Error).name
    }
  }
  test('16 user properties bind, 17 are refused with ERR_ENVELOPE_TOO_LARGE', () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => [`k${i}`, 'v'] as [string, string])
    expect(code({ userProperties: many(16) })).toBe('ok')
    expect(code({ userProperties: many(17) })).toBe('ERR_ENVELOPE_TOO_LARGE')
  })
  test('a property over 1 KiB, or 4 KiB in all, is refused with ERR_ENVELOPE_TOO_LARGE', () => {
    expect(code({ contentType: 'x'.repeat(1024) })).toBe('ok')
    expect(code({ contentType: 'x'.repeat(1025) })).toBe('ERR_ENVELOPE_TOO_LARGE')
    expect(code({ correlationData: new Uint8Array(1025) })).toBe('ERR_ENVELOPE_TOO_LARGE')
    expect(code({ contentType: 'é'.repeat(513) })).toBe('ERR_ENVELOPE_TOO_LARGE') // bytes, not characters
    const big = Array.from({ length: 4 }, (_, i) => [`k${i}`, 'v'.repeat(1000)] as [string, string])
    expect(code({ userProperties: big })).toBe('ok')
    expect(code({ userProperties: [...big, ['k4', 'v'.repeat(100)]] })).toBe('ERR_ENVELOPE_TOO_LARGE')
  })
  test('text MQTT forbids (U+0000, a lone surrogate) and wrong types are programmer errors (TypeError)', () => {
    expect(code({ contentType: 'a\u0000b' })).toBe('TypeError')
    expect(code({ userProperties: [['k', '\ud800']] })).toBe('TypeError')
    expect(code({ userProperties: [['\udc00k', 'v']] })).toBe('TypeError')
    expect(code({ responseTopic: 'r/\ud83c' })).toBe('TypeError')
    expect(code({ userProperties: [['emoji', '\ud83c\udf21']] })).toBe('ok')
    expect(code({ correlationData: 'abc' as unknown as Uint8Array })).toBe('TypeError')
    expect(code({ userProperties: [['k']] as unknown as [string, string][] })).toBe('TypeError')
  })
})

describe('property: any change within the bound set fails, any addition after it does not', () => {
  // Text MQTT allows: no U+0000 (MQTT 5 §1.5.4), no lone surrogates.
  const text = fc.string({ maxLength: 12, unit: 'grapheme' }).filter((s) => !s.includes(String.fromCharCode(0)))
  const pair = fc.tuple(text, text)
  const properties = fc.record(
    {
      contentType: text,
      responseTopic: text,
      correlationData: fc.uint8Array({ maxLength: 12 }),
      userProperties: fc.array(pair, { maxLength: 5 }),
    },
    { requiredKeys: [] },
  ) as fc.Arbitrary<EnvelopeProperties>

  /** One alteration a broker can make within the bound set, or undefined when it changes nothing. */
  const alter = (p: EnvelopeProperties, kind: number, value: string, index: number): EnvelopeProperties => {
    const list = [...(p.userProperties ?? [])]
    switch (kind) {
      case 0:
        return { ...p, contentType: p.contentType === value ? `${value}!` : value }
      case 1: {
        const { contentType: _, ...rest } = p
        return p.contentType === undefined ? { ...rest, contentType: value } : rest
      }
      case 2:
        return { ...p, responseTopic: p.responseTopic === value ? `${value}!` : value }
      case 3: {
        const data = p.correlationData ?? new Uint8Array(0)
        const changed = new Uint8Array(data.length + 1)
        changed.set(data)
        return { ...p, correlationData: changed }
      }
      case 4: // inject within (or before) the bound user properties
        if (list.length === 0)
          return { ...p, correlationData: p.correlationData ? undefined : new Uint8Array(0) } as EnvelopeProperties
        list.splice(Math.min(index, Math.max(0, list.length - 1)), 0, ['injected', value])
        return { ...p, userProperties: list }
      case 5: // strip one bound user property (or all properties when there are none)
        if (list.length === 0) return { ...p, contentType: `${p.contentType ?? ''}?` }
        list.splice(index % list.length, 1)
        return { ...p, userProperties: list }
      default: {
        // alter one bound user property's key or value
        if (list.length === 0) return { ...p, responseTopic: `${p.responseTopic ?? ''}?` }
        const i = index % list.length
        const [k, v] = list[i] as [string, string]
        list[i] = kind === 6 ? [`${k}#`, v] : [k, `${v}#`]
        return { ...p, userProperties: list }
      }
    }
  }

  test('alteration → refused by subscriber and broker, on both backends', () => {
    fc.assert(
      fc.property(properties, fc.integer({ min: 0, max: 7 }), text, fc.nat(8), (p, kind, value, index) => {
        const envelope = seal(p)
        const altered = alter(p, kind, value, index)
        const reorderedSame = JSON.stringify(altered, replacer) === JSON.stringify(p, replacer)
        fc.pre(!reorderedSame)
        for (const backend of backends)
          expect(() =>
            openEnvelope(envelope, TOPIC, { keys: group.keys, now: NOW, properties: altered, backend }),
          ).toThrow(expect.objectContaining({ code: 'ERR_ENVELOPE_SIGNATURE_INVALID' }))
        expect(brokerOutcome(envelope, altered)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
      }),
      { numRuns: 150 },
    )
  })

  test('reordering two different bound user properties → refused', () => {
    fc.assert(
      fc.property(properties, pair, pair, (p, a, b) => {
        fc.pre(a[0] !== b[0] || a[1] !== b[1])
        const bound = { ...p, userProperties: [...(p.userProperties ?? []), a, b] }
        const swapped = { ...p, userProperties: [...(p.userProperties ?? []), b, a] }
        expect(outcome(seal(bound), swapped)).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
      }),
      { numRuns: 50 },
    )
  })

  test('user properties appended after the bound ones → opened, reported unsigned', () => {
    fc.assert(
      fc.property(properties, fc.array(pair, { minLength: 1, maxLength: 4 }), (p, extra) => {
        const received = { ...p, userProperties: [...(p.userProperties ?? []), ...extra] }
        const opened = openEnvelope(seal(p), TOPIC, { keys: group.keys, now: NOW, properties: received })
        expect(opened.properties.unsigned).toEqual({ userProperties: extra })
        expect(opened.properties.verified.userProperties ?? []).toEqual(p.userProperties ?? [])
      }),
      { numRuns: 50 },
    )
  })
})

function replacer(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? [...value] : value
}
