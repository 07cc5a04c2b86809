// Identities: generation, strict import/export, public-key validity, and domain-separated
// signatures.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { concatBytes, fromHex, toBase64Url, utf8 } from '../src/_bytes.js'
import { isValidEd25519PublicKey, isValidX25519PublicKey } from '../src/crypto/keys.js'
import { signedBytes, signWithContext, verifyWithContext } from '../src/crypto/signature.js'
import {
  exportIdentity,
  exportPublicIdentity,
  generateIdentity,
  importIdentity,
  importPublicIdentity,
  publicIdentity,
} from '../src/identity.js'
import { backends, codeOf } from './_fixtures.js'

const P = (1n << 255n) - 19n

function littleEndian32(value: bigint): Uint8Array {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = Number((value >> BigInt(8 * i)) & 0xffn)
  return out
}

const classic = generateIdentity('thermostat-hall')
const postQuantum = generateIdentity('app-phone', { postQuantum: true })

describe('generateIdentity', () => {
  it('makes Ed25519 + X25519 keys, or Ed25519 + X-Wing keys', () => {
    expect(classic.kem).toBe('x25519')
    expect(classic.signingSeed.length).toBe(32)
    expect(classic.agreementKey.length).toBe(32)
    expect(postQuantum.kem).toBe('xwing')
    expect(postQuantum.agreementKey.length).toBe(1216)
    expect(generateIdentity('thermostat-hall').signingKey).not.toEqual(classic.signingKey)
  })

  it('public keys are those of the secrets, on every backend', () => {
    for (const backend of backends) {
      expect(backend.ed25519PublicKey(classic.signingSeed)).toEqual(classic.signingKey)
      expect(backend.x25519PublicKey(classic.agreementSecret)).toEqual(classic.agreementKey)
    }
  })

  it('the public identity carries no secret', () => {
    const record = publicIdentity(postQuantum)
    expect(Object.keys(record).sort()).toEqual(['agreementKey', 'id', 'kem', 'signingKey'])
    expect(Object.keys(exportPublicIdentity(record)).sort()).toEqual([
      'agreementKey',
      'id',
      'kem',
      'signingKey',
      'type',
      'v',
    ])
  })

  it('refuses ids that are not principal ids (programmer mistake)', () => {
    for (const id of ['', 'a\u0000b', 'tab\there', '\ud800lone', 'x'.repeat(257)]) {
      expect(() => generateIdentity(id)).toThrow(TypeError)
    }
  })
})

describe('exportIdentity / importIdentity', () => {
  it('round-trips through JSON text, for both KEMs', () => {
    for (const identity of [classic, postQuantum]) {
      const copy = importIdentity(JSON.parse(JSON.stringify(exportIdentity(identity))))
      expect(copy).toEqual(identity)
    }
  })

  it('public keys are optional in the JSON (they are re-derived)', () => {
    const { signingKey: _s, agreementKey: _a, ...secretsOnly } = exportIdentity(classic)
    expect(importIdentity(secretsOnly)).toEqual(classic)
  })

  it('refuses public keys that do not match the secrets', () => {
    const other = generateIdentity('other')
    const json = exportIdentity(classic)
    expect(codeOf(() => importIdentity({ ...json, signingKey: toBase64Url(other.signingKey) }))).toBe(
      'ERR_IDENTITY_MALFORMED',
    )
    expect(codeOf(() => importIdentity({ ...json, agreementKey: toBase64Url(other.agreementKey) }))).toBe(
      'ERR_IDENTITY_MALFORMED',
    )
    // An X25519 secret presented as an X-Wing seed derives another public key.
    expect(codeOf(() => importIdentity({ ...json, kem: 'xwing' }))).toBe('ERR_IDENTITY_MALFORMED')
  })

  it('refuses wrong types, lengths, encodings and unknown fields', () => {
    const json = exportIdentity(classic) as unknown as Record<string, unknown>
    const broken: Record<string, unknown>[] = [
      { ...json, type: 'smqtt.public-identity' },
      { ...json, v: 2 },
      { ...json, v: '1' },
      { ...json, id: '' },
      { ...json, id: 'bad\nid' },
      { ...json, id: 42 },
      { ...json, kem: 'rsa' },
      { ...json, signingSeed: toBase64Url(new Uint8Array(31)) },
      { ...json, signingSeed: `${json.signingSeed as string}=` },
      { ...json, signingSeed: (json.signingSeed as string).replace(/.$/, '!') },
      { ...json, agreementSecret: toBase64Url(new Uint8Array(33)) },
      { ...json, agreementSecret: null },
      { ...json, extra: true },
      JSON.parse(`{"__proto__": {"polluted": true}, ${JSON.stringify(json).slice(1)}`),
    ]
    const { signingSeed: _omitted, ...missingSeed } = json
    broken.push(missingSeed)
    for (const candidate of broken) expect(codeOf(() => importIdentity(candidate))).toBe('ERR_IDENTITY_MALFORMED')
    for (const notAnObject of [null, undefined, 'identity', 1, [], [json], new Map(Object.entries(json))])
      expect(codeOf(() => importIdentity(notAnObject))).toBe('ERR_IDENTITY_MALFORMED')
  })

  it('refuses non-canonical base64url (trailing bits set)', () => {
    // Without the public keys, a lenient decoder would accept this as the same seed.
    const { signingKey: _s, agreementKey: _a, ...json } = exportIdentity(classic)
    expect(importIdentity(json)).toEqual(classic)
    // 32 bytes = 43 characters; the last one carries 4 unused bits.
    const last = json.signingSeed.at(-1) as string
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const sibling = alphabet[alphabet.indexOf(last) ^ 1] as string
    expect(codeOf(() => importIdentity({ ...json, signingSeed: json.signingSeed.slice(0, -1) + sibling }))).toBe(
      'ERR_IDENTITY_MALFORMED',
    )
  })
})

describe('exportPublicIdentity / importPublicIdentity', () => {
  it('round-trips, for both KEMs', () => {
    for (const identity of [classic, postQuantum]) {
      const record = publicIdentity(identity)
      expect(importPublicIdentity(JSON.parse(JSON.stringify(exportPublicIdentity(record))))).toEqual(record)
    }
  })

  it('refuses small-order and non-canonical X25519 keys with ERR_KEY_INVALID', () => {
    const json = exportPublicIdentity(publicIdentity(classic))
    const order8 = 325606250916557431795983626356110631294008115727848805560023387167927233504n
    const order8b = 39382357235489614581723060781553021112529911719440698176882885853963445705823n
    const rejected = [0n, 1n, order8, order8b, P - 1n, P, P + 1n, P + order8, (1n << 255n) + 9n, (1n << 256n) - 1n]
    for (const u of rejected) {
      const key = littleEndian32(u)
      expect(isValidX25519PublicKey(key)).toBe(false)
      expect(codeOf(() => importPublicIdentity({ ...json, agreementKey: toBase64Url(key) }))).toBe('ERR_KEY_INVALID')
    }
  })

  it('the X25519 small-order list is exactly what makes the shared secret all zero', () => {
    const secret = new Uint8Array(32).fill(0x5a)
    for (const backend of backends) {
      for (const u of [0n, 1n, P - 1n]) expect(backend.x25519(secret, littleEndian32(u))).toBeUndefined()
      for (const u of [
        325606250916557431795983626356110631294008115727848805560023387167927233504n,
        39382357235489614581723060781553021112529911719440698176882885853963445705823n,
      ])
        expect(backend.x25519(secret, littleEndian32(u))).toBeUndefined()
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
          // Any key the check accepts gives a non-zero secret.
          if (isValidX25519PublicKey(key)) expect(backend.x25519(secret, key)).toBeDefined()
        }),
        { numRuns: 100 },
      )
    }
  })

  it('refuses small-order and non-canonical Ed25519 keys with ERR_KEY_INVALID', () => {
    const json = exportPublicIdentity(publicIdentity(classic))
    const identityPoint = littleEndian32(1n) // y = 1: the neutral element
    const negativeZero = littleEndian32(1n | (1n << 255n)) // y = 1, x = 0 with the sign bit set
    const nonCanonical = littleEndian32(P + 1n) // y = p + 1 encodes y = 1 non-canonically
    const orderTwo = littleEndian32(P - 1n) // y = -1: the point of order 2
    const notOnCurve = littleEndian32(2n) // y = 2 has no x
    for (const key of [identityPoint, negativeZero, nonCanonical, orderTwo, notOnCurve]) {
      expect(isValidEd25519PublicKey(key)).toBe(false)
      expect(codeOf(() => importPublicIdentity({ ...json, signingKey: toBase64Url(key) }))).toBe('ERR_KEY_INVALID')
      // The strict backends would refuse any signature under this key anyway.
      for (const backend of backends) expect(backend.ed25519Verify(new Uint8Array(64), utf8(''), key)).toBe(false)
    }
    expect(isValidEd25519PublicKey(classic.signingKey)).toBe(true)
  })

  it('refuses an X-Wing key with an out-of-range ML-KEM coefficient', () => {
    const json = exportPublicIdentity(publicIdentity(postQuantum))
    const key = postQuantum.agreementKey.slice()
    key[1] = 0xff
    key[2] = 0xff // second coefficient = 0xfff >= q
    expect(codeOf(() => importPublicIdentity({ ...json, agreementKey: toBase64Url(key) }))).toBe('ERR_KEY_INVALID')
  })

  it('refuses a key of the other KEM, wrong lengths and unknown fields as malformed', () => {
    const json = exportPublicIdentity(publicIdentity(postQuantum))
    expect(codeOf(() => importPublicIdentity({ ...json, kem: 'x25519' }))).toBe('ERR_IDENTITY_MALFORMED')
    expect(codeOf(() => importPublicIdentity({ ...json, signingKey: toBase64Url(new Uint8Array(33)) }))).toBe(
      'ERR_IDENTITY_MALFORMED',
    )
    expect(codeOf(() => importPublicIdentity({ ...json, signingSeed: 'AAAA' }))).toBe('ERR_IDENTITY_MALFORMED')
    expect(codeOf(() => importPublicIdentity({ ...json, type: 'smqtt.identity' }))).toBe('ERR_IDENTITY_MALFORMED')
  })

  it('arbitrary JSON, and valid JSON with one field replaced, only ever raise SmqttError', () => {
    const identityJson = exportIdentity(classic) as unknown as Record<string, unknown>
    const publicJson = exportPublicIdentity(publicIdentity(classic)) as unknown as Record<string, unknown>
    const allowed = new Set(['ERR_IDENTITY_MALFORMED', 'ERR_KEY_INVALID'])
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(allowed.has(codeOf(() => importIdentity(value)))).toBe(true)
        expect(allowed.has(codeOf(() => importPublicIdentity(value)))).toBe(true)
      }),
      { numRuns: 300 },
    )
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(identityJson)), fc.jsonValue(), (field, value) => {
        fc.pre(JSON.stringify(value) !== JSON.stringify(identityJson[field]))
        // Another valid id is the only replacement that may be accepted.
        const mayPass = field === 'id' && typeof value === 'string'
        for (const code of [
          codeOf(() => importIdentity({ ...identityJson, [field]: value })),
          codeOf(() => importPublicIdentity({ ...publicJson, [field]: value })),
        ])
          expect(allowed.has(code) || (mayPass && code === 'ok')).toBe(true)
      }),
      { numRuns: 300 },
    )
  })
})

describe('signWithContext / verifyWithContext', () => {
  const message = utf8('{"type":"smqtt.key-bundle"}')

  it('signs utf8("smqtt/v1 " + context) || 0x00 || message', () => {
    const expected = concatBytes(utf8('smqtt/v1 smqtt.key-bundle'), new Uint8Array([0]), message)
    expect(signedBytes('smqtt.key-bundle', message)).toEqual(expected)
    for (const backend of backends) {
      const signature = signWithContext(classic, 'smqtt.key-bundle', message, backend)
      expect(backend.ed25519Verify(signature, expected, classic.signingKey)).toBe(true)
      expect(backend.ed25519Verify(signature, message, classic.signingKey)).toBe(false)
    }
  })

  it('a signature for one context never verifies for another', () => {
    for (const backend of backends) {
      const signature = signWithContext(classic, 'smqtt.key-bundle', message, backend)
      expect(verifyWithContext(classic.signingKey, 'smqtt.key-bundle', message, signature, backend)).toBe(true)
      expect(verifyWithContext(classic.signingKey, 'smqtt.revocations', message, signature, backend)).toBe(false)
      expect(verifyWithContext(classic.signingKey, 'smqtt.key-bundl', message, signature, backend)).toBe(false)
      expect(verifyWithContext(postQuantum.signingKey, 'smqtt.key-bundle', message, signature, backend)).toBe(false)
      expect(verifyWithContext(classic.signingKey, 'smqtt.key-bundle', utf8('x'), signature, backend)).toBe(false)
    }
  })

  it('signatures made on one backend verify on the other', () => {
    const [noble, native] = backends
    const fromNoble = signWithContext(classic, 'ctx', message, noble)
    const fromNative = signWithContext(classic, 'ctx', message, native)
    expect(fromNoble).toEqual(fromNative) // Ed25519 is deterministic
    expect(verifyWithContext(classic.signingKey, 'ctx', message, fromNoble, native)).toBe(true)
    expect(verifyWithContext(classic.signingKey, 'ctx', message, fromNative, noble)).toBe(true)
  })

  it('verify returns false (never throws) for bad signatures and keys', () => {
    for (const backend of backends) {
      expect(verifyWithContext(new Uint8Array(32), 'ctx', message, new Uint8Array(64), backend)).toBe(false)
      expect(verifyWithContext(classic.signingKey, 'ctx', message, new Uint8Array(63), backend)).toBe(false)
      expect(verifyWithContext(fromHex('00'.repeat(31)), 'ctx', message, new Uint8Array(64), backend)).toBe(false)
    }
  })

  it('refuses contexts that would make the separator ambiguous (programmer mistake)', () => {
    for (const context of ['', 'a\u0000b', 'caf\u00e9', 'x'.repeat(129)]) {
      expect(() => signedBytes(context, message)).toThrow(TypeError)
    }
  })
})
