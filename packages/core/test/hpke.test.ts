// HPKE (RFC 9180 base mode) against the RFC's own vectors on every backend, X-Wing against
// draft-connolly-cfrg-xwing-kem-08, and the failure behaviour: one error for every way a
// sealed message can fail to open.

import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { fromHex, toHex, utf8 } from '../src/_bytes.js'
import {
  _deriveX25519KeyPair,
  _setupBaseSender,
  generateHpkeKeyPair,
  HPKE_KEM_LENGTHS,
  type HpkeKem,
  hpkeOpen,
  hpkePublicKey,
  hpkeSeal,
} from '../src/crypto/hpke.js'
import { isValidX25519PublicKey, isValidXWingPublicKey } from '../src/crypto/keys.js'
import { nobleBackend } from '../src/crypto/noble.js'
import { backends, thrown } from './_fixtures.js'

const RFC_VECTOR_FILE = new URL('../vectors/hpke-rfc9180-x25519-sha256-chacha20poly1305.json', import.meta.url)
// The shared vectors sit beside the repository in this project's workspace and in CI.
const SHARED_HPKE_DRAFT = fileURLToPath(
  new URL('../../../../shared/vectors/hpke/draft-irtf-cfrg-hpke.md', import.meta.url),
)
const XWING_VECTOR_FILE = new URL('../vectors/xwing-draft-connolly-08.json', import.meta.url)

interface RfcVector {
  source: string
  mode: number
  kem_id: number
  kdf_id: number
  aead_id: number
  info: string
  ikmE: string
  pkEm: string
  skEm: string
  ikmR: string
  pkRm: string
  skRm: string
  enc: string
  shared_secret: string
  key_schedule_context: string
  secret: string
  key: string
  base_nonce: string
  exporter_secret: string
  encryptions: { sequence_number: number; pt: string; aad: string; nonce: string; ct: string }[]
}

const rfc = JSON.parse(readFileSync(RFC_VECTOR_FILE, 'utf8')) as RfcVector
const xwing = JSON.parse(readFileSync(XWING_VECTOR_FILE, 'utf8')) as {
  source: string
  vectors: { seed: string; pk: string; eseed: string; ct: string; ss: string }[]
}

// Parses `key: value` lines of one `~~~` block; hex values may continue on following lines.
function parseVectorBlock(block: string): Record<string, string> {
  const fields: Record<string, string> = {}
  let last = ''
  for (const line of block.split('\n')) {
    if (line.trim() === '') continue
    const match = /^([A-Za-z_ ]+):\s*(.*)$/.exec(line)
    if (match) {
      last = match[1] as string
      fields[last] = match[2] as string
    } else fields[last] += line.trim()
  }
  return fields
}

function expectOpenFailure(open: () => unknown): void {
  // Fail closed, and uninformatively: always the same message.
  expect(thrown('ERR_HPKE_OPEN_FAILED', open).message).toBe(
    'An HPKE-sealed key could not be opened (wrong recipient or altered ciphertext).',
  )
}

function flipBit(bytes: Uint8Array, index: number): Uint8Array {
  const out = bytes.slice()
  out[index] = (out[index] as number) ^ 0x01
  return out
}

describe('RFC 9180 A.2.1 vectors: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base mode', () => {
  it('the copied JSON is the suite and mode it claims, and names its source', () => {
    expect([rfc.mode, rfc.kem_id, rfc.kdf_id, rfc.aead_id]).toEqual([0, 32, 1, 3])
    expect(rfc.source).toMatch(/RFC 9180/)
  })

  it.runIf(existsSync(SHARED_HPKE_DRAFT))('the copied JSON matches the appendix of the shared HPKE draft', () => {
    const markdown = readFileSync(SHARED_HPKE_DRAFT, 'utf8')
    const start = markdown.indexOf('## DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305')
    const base = markdown.slice(
      markdown.indexOf('### Base Setup Information', start),
      markdown.indexOf('### PSK Setup Information', start),
    )
    const blocks = [...base.matchAll(/~~~\n([\s\S]*?)~~~/g)].map((m) => m[1] as string)
    const setup = parseVectorBlock(blocks[0] as string)
    for (const field of ['info', 'ikmE', 'pkEm', 'skEm', 'ikmR', 'pkRm', 'skRm', 'enc', 'shared_secret', 'key'])
      expect(setup[field], field).toBe(rfc[field as keyof RfcVector])
    expect(setup.base_nonce).toBe(rfc.base_nonce)
    expect(setup.exporter_secret).toBe(rfc.exporter_secret)
    const first = parseVectorBlock((blocks[1] as string).split('\n\n')[0] as string)
    expect(first.ct).toBe(rfc.encryptions[0]?.ct)
    expect(first.pt).toBe(rfc.encryptions[0]?.pt)
    expect(first.aad).toBe(rfc.encryptions[0]?.aad)
  })

  for (const backend of backends) {
    describe(`on the ${backend.name} backend`, () => {
      it('DeriveKeyPair gives the vector key pairs', () => {
        const ephemeral = _deriveX25519KeyPair(fromHex(rfc.ikmE), backend)
        expect(toHex(ephemeral.secretKey)).toBe(rfc.skEm)
        expect(toHex(ephemeral.publicKey)).toBe(rfc.pkEm)
        const recipient = _deriveX25519KeyPair(fromHex(rfc.ikmR), backend)
        expect(toHex(recipient.secretKey)).toBe(rfc.skRm)
        expect(toHex(recipient.publicKey)).toBe(rfc.pkRm)
        expect(toHex(hpkePublicKey('x25519', fromHex(rfc.skRm), backend))).toBe(rfc.pkRm)
      })

      it('SetupBaseS gives the vector enc, shared secret, key, base nonce and exporter secret', () => {
        const context = _setupBaseSender('x25519', fromHex(rfc.pkRm), fromHex(rfc.info), backend, fromHex(rfc.skEm))
        expect(toHex(context.enc)).toBe(rfc.enc)
        expect(toHex(context.sharedSecret)).toBe(rfc.shared_secret)
        expect(toHex(context.key)).toBe(rfc.key)
        expect(toHex(context.baseNonce)).toBe(rfc.base_nonce)
        expect(toHex(context.exporterSecret)).toBe(rfc.exporter_secret)
      })

      it('single-shot seal gives the sequence-0 ciphertext, and open recovers the plaintext', () => {
        const encryption = rfc.encryptions.find((e) => e.sequence_number === 0)
        if (!encryption) throw new Error('vector has no sequence-0 encryption')
        expect(encryption.nonce).toBe(rfc.base_nonce)
        const { enc, ciphertext } = hpkeSeal({
          kem: 'x25519',
          recipientPublicKey: fromHex(rfc.pkRm),
          info: fromHex(rfc.info),
          aad: fromHex(encryption.aad),
          plaintext: fromHex(encryption.pt),
          backend,
          unsafeEphemeralSecret: fromHex(rfc.skEm),
        })
        expect(toHex(enc)).toBe(rfc.enc)
        expect(toHex(ciphertext)).toBe(encryption.ct)
        const plaintext = hpkeOpen({
          kem: 'x25519',
          recipientSecretKey: fromHex(rfc.skRm),
          enc: fromHex(rfc.enc),
          info: fromHex(rfc.info),
          aad: fromHex(encryption.aad),
          ciphertext: fromHex(encryption.ct),
          backend,
        })
        expect(toHex(plaintext)).toBe(encryption.pt)
      })
    })
  }
})

describe('X-Wing (draft-connolly-cfrg-xwing-kem-08 vectors)', () => {
  it('names its source', () => {
    expect(xwing.source).toMatch(/draft-connolly-cfrg-xwing-kem-08/)
  })

  for (const vector of xwing.vectors) {
    it('the public key of the seed and the encapsulation with the given eseed match', () => {
      expect(toHex(generateHpkeKeyPair('xwing', { seed: fromHex(vector.seed) }).publicKey)).toBe(vector.pk)
      expect(isValidXWingPublicKey(fromHex(vector.pk))).toBe(true)
      const context = _setupBaseSender('xwing', fromHex(vector.pk), utf8('info'), nobleBackend, fromHex(vector.eseed))
      expect(toHex(context.enc)).toBe(vector.ct)
      // X-Wing's shared secret is HPKE's shared_secret, unchanged.
      expect(toHex(context.sharedSecret)).toBe(vector.ss)
    })
  }
})

const KEMS: HpkeKem[] = ['x25519', 'xwing']

for (const backend of backends) {
  for (const kem of KEMS) {
    describe(`${kem} on the ${backend.name} backend`, () => {
      const recipient = generateHpkeKeyPair(kem, { backend })
      const info = utf8('smqtt/v1 test info')
      const aad = utf8('aad')
      const plaintext = utf8('a 32-byte epoch key, more or less')
      const sealed = hpkeSeal({ kem, recipientPublicKey: recipient.publicKey, info, aad, plaintext, backend })
      const open = (overrides: Partial<Parameters<typeof hpkeOpen>[0]> = {}) =>
        hpkeOpen({
          kem,
          recipientSecretKey: recipient.secretKey,
          enc: sealed.enc,
          info,
          aad,
          ciphertext: sealed.ciphertext,
          backend,
          ...overrides,
        })

      it('round-trips, with the lengths the KEM defines', () => {
        expect(recipient.publicKey.length).toBe(HPKE_KEM_LENGTHS[kem].publicKey)
        expect(sealed.enc.length).toBe(HPKE_KEM_LENGTHS[kem].enc)
        expect(sealed.ciphertext.length).toBe(plaintext.length + 16)
        expect(open()).toEqual(plaintext)
      })

      it('seals to a fresh ephemeral key each time', () => {
        const again = hpkeSeal({ kem, recipientPublicKey: recipient.publicKey, info, aad, plaintext, backend })
        expect(toHex(again.enc)).not.toBe(toHex(sealed.enc))
        expect(toHex(again.ciphertext)).not.toBe(toHex(sealed.ciphertext))
      })

      it('the wrong recipient cannot open', () => {
        const other = generateHpkeKeyPair(kem, { backend })
        expectOpenFailure(() => open({ recipientSecretKey: other.secretKey }))
      })

      it('altered enc, ciphertext, info or aad do not open', () => {
        expectOpenFailure(() => open({ enc: flipBit(sealed.enc, 0) }))
        expectOpenFailure(() => open({ enc: flipBit(sealed.enc, sealed.enc.length - 1) }))
        expectOpenFailure(() => open({ ciphertext: flipBit(sealed.ciphertext, 0) }))
        expectOpenFailure(() => open({ ciphertext: flipBit(sealed.ciphertext, sealed.ciphertext.length - 1) }))
        expectOpenFailure(() => open({ info: utf8('smqtt/v1 test infO') }))
        expectOpenFailure(() => open({ aad: utf8('aaD') }))
        expectOpenFailure(() => open({ aad: new Uint8Array(0) }))
      })

      it('truncated or empty enc and ciphertext do not open', () => {
        expectOpenFailure(() => open({ enc: sealed.enc.subarray(1) }))
        expectOpenFailure(() => open({ enc: new Uint8Array(0) }))
        expectOpenFailure(() => open({ ciphertext: sealed.ciphertext.subarray(0, 15) }))
        expectOpenFailure(() => open({ ciphertext: new Uint8Array(0) }))
      })

      it('arbitrary enc and ciphertext bytes only ever raise ERR_HPKE_OPEN_FAILED', () => {
        const encLength = HPKE_KEM_LENGTHS[kem].enc
        fc.assert(
          fc.property(
            fc.oneof(fc.uint8Array({ minLength: encLength, maxLength: encLength }), fc.uint8Array({ maxLength: 64 })),
            fc.uint8Array({ maxLength: 80 }),
            (enc, ciphertext) => expectOpenFailure(() => open({ enc, ciphertext })),
          ),
          { numRuns: kem === 'xwing' ? 60 : 200 },
        )
      })
    })
  }
}

describe('recipient key checks', () => {
  it('refuses to seal to a small-order X25519 key', () => {
    for (const backend of backends) {
      const zero = new Uint8Array(32)
      expect(isValidX25519PublicKey(zero)).toBe(false)
      expect(() =>
        hpkeSeal({ kem: 'x25519', recipientPublicKey: zero, info: utf8('i'), plaintext: utf8('p'), backend }),
      ).toThrow(expect.objectContaining({ code: 'ERR_KEY_INVALID' }))
    }
  })

  it('refuses to seal to an X-Wing key whose ML-KEM coefficients are out of range', () => {
    const bad = generateHpkeKeyPair('xwing').publicKey.slice()
    bad.fill(0xff, 0, 3) // two coefficients of 4095 >= q
    expect(isValidXWingPublicKey(bad)).toBe(false)
    expect(() => hpkeSeal({ kem: 'xwing', recipientPublicKey: bad, info: utf8('i'), plaintext: utf8('p') })).toThrow(
      expect.objectContaining({ code: 'ERR_KEY_INVALID' }),
    )
  })

  it('treats wrong-length keys and unknown KEMs as programmer mistakes', () => {
    expect(() =>
      hpkeSeal({ kem: 'x25519', recipientPublicKey: new Uint8Array(31), info: utf8('i'), plaintext: utf8('p') }),
    ).toThrow(RangeError)
    expect(() => generateHpkeKeyPair('rsa' as HpkeKem)).toThrow(TypeError)
    expect(() => generateHpkeKeyPair('x25519', { seed: new Uint8Array(16) })).toThrow(RangeError)
  })

  it('a given seed always gives the same key pair', () => {
    const seed = new Uint8Array(32).fill(9)
    for (const kem of KEMS) {
      expect(generateHpkeKeyPair(kem, { seed }).publicKey).toEqual(generateHpkeKeyPair(kem, { seed }).publicKey)
    }
  })
})
