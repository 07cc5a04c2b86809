// The portable (noble) and native (libsodium + node:crypto) backends must produce identical
// bytes and accept identical inputs: a message sealed and signed on one runtime has to open and
// verify the same way on every other. Properties over random inputs, plus the edge cases where
// Ed25519 implementations are known to differ (small-order and mixed-order points, non-canonical
// encodings, cofactored vs cofactorless equation), built here with noble's point arithmetic.
import { gcm } from '@noble/ciphers/aes.js'
import { ed25519 } from '@noble/curves/ed25519.js'
import { sha512 } from '@noble/hashes/sha2.js'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { concatBytes, fromHex, toHex } from '../src/_bytes.js'
import type { AeadAlgorithm, CryptoBackend } from '../src/crypto/backend.js'
import { loadBackends } from './_vectors.js'

const { noble, native } = loadBackends()
const BOTH: CryptoBackend[] = [noble, native]

const Point = ed25519.Point
type EdPoint = InstanceType<typeof Point>
const L = Point.Fn.ORDER
const P = Point.Fp.ORDER

const bytes = (length: number) => fc.uint8Array({ minLength: length, maxLength: length })
const seedArb = bytes(32)
const messageArb = fc.uint8Array({ maxLength: 2048 })
/** A nonzero scalar below L, for hand-made signatures. */
const scalarArb = fc.bigInt({ min: 1n, max: L - 1n })

function le32(n: bigint): Uint8Array {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn)
  return out
}
function leToBigInt(b: Uint8Array): bigint {
  let n = 0n
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i] as number)
  return n
}
function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = b.slice()
  const i = Math.floor(bit / 8) % out.length
  out[i] = (out[i] as number) ^ (1 << (bit % 8))
  return out
}
/** RFC 8032 challenge k = SHA-512(R || A || M) mod L, over the encodings as given. */
const challenge = (R: Uint8Array, A: Uint8Array, M: Uint8Array) =>
  Point.Fn.create(leToBigInt(sha512(concatBytes(R, A, M))))

/** What every backend says, and that they all say the same. */
function verifyAll(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean {
  const [a, b] = BOTH.map((backend) => backend.ed25519Verify(sig, msg, pk))
  expect(b, `noble ${a} / native ${b} for sig ${toHex(sig)} pk ${toHex(pk)}`).toBe(a)
  return a as boolean
}

// A point of order 8 (from libsodium's small-order blocklist); its multiples are the whole
// torsion subgroup.
const T8 = Point.fromHex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a')
const TORSION: EdPoint[] = Array.from({ length: 8 }, (_, i) => (i === 0 ? Point.ZERO : T8.multiplyUnsafe(BigInt(i))))

/**
 * Every encoding of a small-order point a lax decoder accepts: the 8 canonical ones, the "-0"
 * forms (x = 0 with the sign bit set) and the non-canonical y = p and y = p + 1, both signs.
 */
const SMALL_ORDER_ENCODINGS: Uint8Array[] = (() => {
  const all = new Map<string, Uint8Array>()
  const add = (b: Uint8Array) => all.set(toHex(b), b)
  for (const t of TORSION) {
    const enc = t.toBytes()
    add(enc)
    add(flipBit(enc, 255))
  }
  for (const y of [P, P + 1n]) {
    add(le32(y))
    add(flipBit(le32(y), 255))
  }
  return [...all.values()]
})()

describe('Ed25519', () => {
  test('RFC 8032 section 7.1 tests 1-3: same public key and signature on both backends', () => {
    const vectors = [
      [
        '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
        'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
        '',
        'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      ],
      [
        '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
        '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
        '72',
        '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
      ],
      [
        'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
        'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
        'af82',
        '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
      ],
    ] as const
    for (const backend of BOTH) {
      for (const [seed, pk, msg, sig] of vectors) {
        expect(toHex(backend.ed25519PublicKey(fromHex(seed)))).toBe(pk)
        expect(toHex(backend.ed25519Sign(fromHex(msg), fromHex(seed), fromHex(pk)))).toBe(sig)
        expect(backend.ed25519Verify(fromHex(sig), fromHex(msg), fromHex(pk))).toBe(true)
      }
    }
  })

  test('public keys and signatures are identical, and verify on both backends', () => {
    fc.assert(
      fc.property(seedArb, messageArb, (seed, msg) => {
        const pk = noble.ed25519PublicKey(seed)
        expect(toHex(native.ed25519PublicKey(seed))).toBe(toHex(pk))
        const sig = noble.ed25519Sign(msg, seed, pk)
        expect(toHex(native.ed25519Sign(msg, seed, pk))).toBe(toHex(sig))
        expect(verifyAll(sig, msg, pk)).toBe(true)
      }),
      { numRuns: 100 },
    )
  })

  test('one flipped bit in signature, message or public key: rejected by both', () => {
    fc.assert(
      fc.property(
        seedArb,
        fc.uint8Array({ minLength: 1, maxLength: 256 }),
        fc.constantFrom('sig', 'msg', 'pk'),
        fc.nat(),
        (seed, msg, where, bit) => {
          const pk = native.ed25519PublicKey(seed)
          const sig = native.ed25519Sign(msg, seed, pk)
          if (where === 'sig') expect(verifyAll(flipBit(sig, bit % 512), msg, pk)).toBe(false)
          if (where === 'msg') expect(verifyAll(sig, flipBit(msg, bit % (msg.length * 8)), pk)).toBe(false)
          if (where === 'pk') expect(verifyAll(sig, msg, flipBit(pk, bit % 256))).toBe(false)
        },
      ),
      { numRuns: 100 },
    )
  })

  test('random signatures (S < L, so the point checks are reached) and random keys: same answer', () => {
    fc.assert(
      fc.property(bytes(64), messageArb, fc.option(seedArb), bytes(32), (raw, msg, seed, randomKey) => {
        const sig = raw.slice()
        sig[63] = (sig[63] as number) & 0x0f // S < 2^252 < L
        const pk = seed ? native.ed25519PublicKey(seed) : randomKey
        expect(verifyAll(sig, msg, pk)).toBe(false)
      }),
      { numRuns: 200 },
    )
  })

  test('non-canonical S (S + L) is rejected by both, the canonical signature accepted', () => {
    fc.assert(
      fc.property(seedArb, messageArb, (seed, msg) => {
        const pk = native.ed25519PublicKey(seed)
        const sig = native.ed25519Sign(msg, seed, pk)
        const s = leToBigInt(sig.subarray(32))
        const malleated = concatBytes(sig.subarray(0, 32), le32(s + L))
        expect(verifyAll(sig, msg, pk)).toBe(true)
        expect(verifyAll(malleated, msg, pk)).toBe(false)
      }),
      { numRuns: 50 },
    )
  })

  test('the 14 small-order public key encodings', () => {
    expect(SMALL_ORDER_ENCODINGS.length).toBe(14)
    for (const enc of SMALL_ORDER_ENCODINGS) {
      expect(Point.fromBytes(enc, true).isSmallOrder()).toBe(true)
    }
  })

  test('identity public key (01 00..00) with any signature: false on both', () => {
    const identity = concatBytes(Uint8Array.of(1), new Uint8Array(31))
    fc.assert(
      fc.property(bytes(64), messageArb, (sig, msg) => {
        expect(verifyAll(sig, msg, identity)).toBe(false)
      }),
      { numRuns: 100 },
    )
  })

  test('small-order public keys: forgeries that satisfy the equation are refused by both', () => {
    // With A of small order, a message whose challenge k kills A (kA = 0) makes (R = sB, s) a
    // solution of sB = R + kA for any s: a signature anyone can forge. ZIP-215 accepts it.
    fc.assert(
      fc.property(scalarArb, fc.uint8Array({ maxLength: 64 }), (s, prefix) => {
        for (const enc of SMALL_ORDER_ENCODINGS) {
          const A = Point.fromBytes(enc, true)
          const R = Point.BASE.multiply(s).toBytes()
          const sig = concatBytes(R, le32(s))
          let msg: Uint8Array = prefix
          for (let i = 0; !A.multiplyUnsafe(challenge(R, enc, msg)).is0(); i++) {
            msg = concatBytes(prefix, Uint8Array.of(i & 0xff, i >> 8))
          }
          expect(ed25519.verify(sig, msg, enc, { zip215: true })).toBe(true)
          expect(verifyAll(sig, msg, enc)).toBe(false)
        }
      }),
      { numRuns: 5 },
    )
  })

  test('mixed-order public key (A + T8): the cofactorless equation decides, on both', () => {
    // S = r + k*a with k over A' = A + T8: sB - kA' = R - kT8, equal to R exactly when 8 | k.
    // A cofactored verifier accepts every one; both backends must accept exactly the 8 | k ones.
    const seed = new Uint8Array(32).fill(7)
    const { scalar: a, point } = ed25519.utils.getExtendedPublicKey(seed)
    const mixed = point.add(T8).toBytes()
    const r = 0x1234567890abcdefn
    const R = Point.BASE.multiply(r).toBytes()
    const seen = { accepted: 0, rejected: 0 }
    for (let i = 0; i < 64; i++) {
      const msg = Uint8Array.of(i)
      const k = challenge(R, mixed, msg)
      const sig = concatBytes(R, le32(Point.Fn.create(r + k * a)))
      expect(ed25519.verify(sig, msg, mixed, { zip215: true })).toBe(true)
      const ok = verifyAll(sig, msg, mixed)
      expect(ok, `k mod 8 = ${k % 8n}`).toBe(k % 8n === 0n)
      seen[ok ? 'accepted' : 'rejected']++
    }
    // Both branches really ran.
    expect(seen.accepted).toBeGreaterThan(0)
    expect(seen.rejected).toBeGreaterThan(0)
  })

  test('mixed-order R (rB + T): cofactored verifiers accept, both backends refuse', () => {
    fc.assert(
      fc.property(seedArb, messageArb, scalarArb, fc.integer({ min: 1, max: 7 }), (seed, msg, r, t) => {
        const { scalar: a, pointBytes: pk } = ed25519.utils.getExtendedPublicKey(seed)
        const R = Point.BASE.multiply(r)
          .add(TORSION[t] as EdPoint)
          .toBytes()
        const sig = concatBytes(R, le32(Point.Fn.create(r + challenge(R, pk, msg) * a)))
        expect(ed25519.verify(sig, msg, pk, { zip215: true })).toBe(true)
        expect(verifyAll(sig, msg, pk)).toBe(false)
      }),
      { numRuns: 50 },
    )
  })

  test('wrong lengths: false on both, never a throw', () => {
    const seed = new Uint8Array(32).fill(1)
    const pk = native.ed25519PublicKey(seed)
    const sig = native.ed25519Sign(new Uint8Array(0), seed, pk)
    for (const n of [0, 31, 33, 64]) expect(verifyAll(sig, new Uint8Array(0), new Uint8Array(n).fill(1))).toBe(false)
    for (const n of [0, 32, 63, 65, 128])
      expect(verifyAll(new Uint8Array(n).fill(1), new Uint8Array(0), pk)).toBe(false)
    expect(verifyAll(concatBytes(sig, Uint8Array.of(0)), new Uint8Array(0), pk)).toBe(false)
    expect(verifyAll(sig.subarray(0, 63), new Uint8Array(0), pk)).toBe(false)
  })
})

describe('X25519', () => {
  test('RFC 7748 section 6.1: same public keys and shared secret on both backends', () => {
    const alice = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    const bob = fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb')
    for (const backend of BOTH) {
      const alicePub = backend.x25519PublicKey(alice)
      const bobPub = backend.x25519PublicKey(bob)
      expect(toHex(alicePub)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')
      expect(toHex(bobPub)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')
      const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'
      expect(toHex(backend.x25519(alice, bobPub) ?? new Uint8Array(0))).toBe(shared)
      expect(toHex(backend.x25519(bob, alicePub) ?? new Uint8Array(0))).toBe(shared)
    }
  })

  test('public keys and shared secrets are identical, and both sides agree', () => {
    fc.assert(
      fc.property(bytes(32), bytes(32), (a, b) => {
        const pubA = noble.x25519PublicKey(a)
        const pubB = noble.x25519PublicKey(b)
        expect(toHex(native.x25519PublicKey(a))).toBe(toHex(pubA))
        expect(toHex(native.x25519PublicKey(b))).toBe(toHex(pubB))
        const shared = toHex(noble.x25519(a, pubB) ?? new Uint8Array(0))
        expect(shared).toHaveLength(64)
        expect(toHex(native.x25519(a, pubB) ?? new Uint8Array(0))).toBe(shared)
        expect(toHex(native.x25519(b, pubA) ?? new Uint8Array(0))).toBe(shared)
      }),
      { numRuns: 100 },
    )
  })

  test('arbitrary 32-byte peer keys (twist, u >= p, top bit set): same result on both', () => {
    const show = (v: Uint8Array | undefined) => (v === undefined ? 'undefined' : toHex(v))
    fc.assert(
      fc.property(bytes(32), bytes(32), (secret, peer) => {
        expect(show(native.x25519(secret, peer))).toBe(show(noble.x25519(secret, peer)))
      }),
      { numRuns: 200 },
    )
  })

  test('small-order peer keys (and their top-bit-set forms): undefined on both', () => {
    const u = [
      0n,
      1n,
      leToBigInt(fromHex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800')), // order 8
      leToBigInt(fromHex('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157')), // order 8
      P - 1n,
      P,
      P + 1n,
    ]
    const keys = u.flatMap((n) => [le32(n), flipBit(le32(n), 255)])
    fc.assert(
      fc.property(bytes(32), (secret) => {
        for (const key of keys) {
          for (const backend of BOTH)
            expect(backend.x25519(secret, key), `${backend.name} ${toHex(key)}`).toBeUndefined()
        }
      }),
      { numRuns: 10 },
    )
  })

  test('peer keys of the wrong length: undefined on both', () => {
    const secret = new Uint8Array(32).fill(5)
    for (const n of [0, 31, 33, 64]) {
      for (const backend of BOTH) expect(backend.x25519(secret, new Uint8Array(n).fill(9))).toBeUndefined()
    }
  })
})

describe('AEAD', () => {
  const ALGORITHMS: AeadAlgorithm[] = ['chacha20-poly1305', 'aes-256-gcm']
  const algorithmArb = fc.constantFrom(...ALGORITHMS)
  const payloadArb = fc.uint8Array({ maxLength: 2048 })

  test('seal outputs are identical and each backend opens the other one', () => {
    fc.assert(
      fc.property(algorithmArb, bytes(32), bytes(12), payloadArb, payloadArb, (alg, key, nonce, plaintext, aad) => {
        const sealed = noble.aeadSeal(alg, key, nonce, plaintext, aad)
        expect(sealed.length).toBe(plaintext.length + 16)
        expect(toHex(native.aeadSeal(alg, key, nonce, plaintext, aad))).toBe(toHex(sealed))
        for (const backend of BOTH) {
          expect(toHex(backend.aeadOpen(alg, key, nonce, sealed, aad) ?? Uint8Array.of(0))).toBe(toHex(plaintext))
        }
      }),
      { numRuns: 300 },
    )
  })

  test('a flipped bit in ciphertext, tag, aad or nonce: undefined on both', () => {
    fc.assert(
      fc.property(
        algorithmArb,
        bytes(32),
        bytes(12),
        payloadArb,
        fc.uint8Array({ minLength: 1, maxLength: 256 }),
        fc.constantFrom('sealed', 'aad', 'nonce', 'key'),
        fc.nat(),
        (alg, key, nonce, plaintext, aad, where, bit) => {
          const sealed = native.aeadSeal(alg, key, nonce, plaintext, aad)
          const args: Record<'key' | 'nonce' | 'sealed' | 'aad', Uint8Array> = { key, nonce, sealed, aad }
          args[where] = flipBit(args[where], bit)
          for (const backend of BOTH) {
            expect(backend.aeadOpen(alg, args.key, args.nonce, args.sealed, args.aad)).toBeUndefined()
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  test('truncated or extended ciphertexts: undefined on both', () => {
    fc.assert(
      fc.property(algorithmArb, bytes(32), bytes(12), payloadArb, fc.nat(), (alg, key, nonce, plaintext, cut) => {
        const sealed = noble.aeadSeal(alg, key, nonce, plaintext, new Uint8Array(0))
        const shorter = sealed.subarray(0, cut % sealed.length)
        const longer = concatBytes(sealed, Uint8Array.of(cut & 0xff))
        for (const backend of BOTH) {
          expect(backend.aeadOpen(alg, key, nonce, shorter, new Uint8Array(0))).toBeUndefined()
          expect(backend.aeadOpen(alg, key, nonce, longer, new Uint8Array(0))).toBeUndefined()
        }
      }),
      { numRuns: 100 },
    )
  })

  test.each(ALGORITHMS)('%s: empty plaintext and/or empty aad', (alg) => {
    const key = new Uint8Array(32).fill(0x42)
    const nonce = new Uint8Array(12).fill(0x24)
    const empty = new Uint8Array(0)
    const some = Uint8Array.of(1, 2, 3)
    for (const [plaintext, aad] of [
      [empty, empty],
      [empty, some],
      [some, empty],
    ] as const) {
      const sealed = noble.aeadSeal(alg, key, nonce, plaintext, aad)
      expect(sealed.length).toBe(plaintext.length + 16)
      expect(toHex(native.aeadSeal(alg, key, nonce, plaintext, aad))).toBe(toHex(sealed))
      for (const backend of BOTH) {
        const opened = backend.aeadOpen(alg, key, nonce, sealed, aad)
        expect(opened).toBeInstanceOf(Uint8Array)
        expect(toHex(opened ?? Uint8Array.of(0))).toBe(toHex(plaintext))
        // The empty aad and a missing aad byte are not the same thing.
        expect(backend.aeadOpen(alg, key, nonce, sealed, aad.length ? empty : Uint8Array.of(0))).toBeUndefined()
      }
    }
    // Anything shorter than a tag cannot be opened.
    for (const backend of BOTH) {
      for (const n of [0, 1, 15]) expect(backend.aeadOpen(alg, key, nonce, new Uint8Array(n), empty)).toBeUndefined()
    }
  })

  test.each(ALGORITHMS)('%s: a key other than 32 bytes or a nonce other than 12 is refused by both', (alg) => {
    // noble's AES-GCM alone would run AES-128/192 on a 16/24-byte key, and accept other nonce
    // sizes, while the native backend refused them: the backends must refuse alike.
    const plaintext = Uint8Array.of(1, 2, 3)
    const cases: Array<[number, number]> = [
      [16, 12],
      [24, 12],
      [31, 12],
      [33, 12],
      [0, 12],
      [32, 0],
      [32, 8],
      [32, 11],
      [32, 13],
      [32, 16],
      [32, 24],
    ]
    for (const [keyLength, nonceLength] of cases) {
      const key = new Uint8Array(keyLength).fill(1)
      const nonce = new Uint8Array(nonceLength).fill(2)
      // What a 32-byte key / 12-byte nonce would have sealed, truncated or padded as needed.
      const sealed = noble.aeadSeal(alg, new Uint8Array(32).fill(1), new Uint8Array(12).fill(2), plaintext, plaintext)
      for (const backend of BOTH) {
        expect(() => backend.aeadSeal(alg, key, nonce, plaintext, plaintext), backend.name).toThrow(RangeError)
        expect(backend.aeadOpen(alg, key, nonce, sealed, plaintext), backend.name).toBeUndefined()
      }
    }
    // The case that really diverged: AES-128-GCM under noble, refused by OpenSSL's AES-256-GCM.
    if (alg === 'aes-256-gcm') {
      const key16 = new Uint8Array(16).fill(1)
      const nonce = new Uint8Array(12).fill(2)
      const aes128Sealed = gcm(key16, nonce, plaintext).encrypt(plaintext)
      for (const backend of BOTH) expect(backend.aeadOpen(alg, key16, nonce, aes128Sealed, plaintext)).toBeUndefined()
    }
  })
})

describe('randomBytes', () => {
  test.each(BOTH.map((b) => [b.name, b] as const))('%s: requested length, fresh bytes', (_name, backend) => {
    for (const n of [0, 1, 12, 32, 1000]) expect(backend.randomBytes(n)).toHaveLength(n)
    expect(toHex(backend.randomBytes(32))).not.toBe(toHex(backend.randomBytes(32)))
  })
})
