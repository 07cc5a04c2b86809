// Project Wycheproof vectors (C2SP/wycheproof, testvectors_v1, commit dac1dd47; copied into
// packages/core/vectors/wycheproof/) through every crypto backend. Each backend must give the
// expected answer on every case, and the backends must give the same answer as each other on
// every case, including the ones Wycheproof only calls 'acceptable'.
//
// Each file is one test per backend that lists every failing tcId, plus an exact count of the
// cases that ran, so a filter bug cannot silently skip them.
import { ed25519 } from '@noble/curves/ed25519.js'
import { describe, expect, test } from 'vitest'
import { concatBytes, fromHex, toHex } from '../src/_bytes.js'
import type { AeadAlgorithm, CryptoBackend } from '../src/crypto/backend.js'
import { hkdf, hmacSha256 } from '../src/crypto/kdf.js'
import {
  type AeadGroup,
  casesOf,
  type EddsaGroup,
  type HkdfGroup,
  loadBackends,
  loadWycheproof,
  type MacGroup,
  type XdhGroup,
} from './_vectors.js'

const { noble, native } = loadBackends()
const BACKENDS: Array<[string, CryptoBackend]> = [
  ['noble', noble],
  ['native', native],
]

/** Caches one computation per backend, so the per-backend and agreement tests share it. */
function perBackend<V>(compute: (backend: CryptoBackend) => V): (backend: CryptoBackend) => V {
  const cache = new Map<CryptoBackend, V>()
  return (backend) => {
    let value = cache.get(backend)
    if (value === undefined) {
      value = compute(backend)
      cache.set(backend, value)
    }
    return value
  }
}

const show = (bytes: Uint8Array | undefined): string => (bytes === undefined ? 'undefined' : toHex(bytes))

/** tcIds on which two outcome maps differ, with both outcomes, for a readable failure. */
function disagreements(a: Map<number, string>, b: Map<number, string>): string[] {
  const out: string[] = []
  for (const [tcId, outcome] of a) {
    if (b.get(tcId) !== outcome) out.push(`#${tcId}: noble ${outcome} / native ${b.get(tcId)}`)
  }
  if (a.size !== b.size) out.push(`case counts differ: ${a.size} / ${b.size}`)
  return out
}

// ---------------------------------------------------------------------------------------------
// Ed25519: strict verification (RFC 8032 with libsodium's rule). Every case is 'valid' or
// 'invalid'; verify must be true exactly for 'valid'.

const ED25519 = loadWycheproof<EddsaGroup>('ed25519_test.json', 'EDDSA')
const ED25519_CASES = casesOf(ED25519)
const ED25519_EXPECTED = { total: 151, valid: 88, invalid: 63 }

const ed25519Outcomes = perBackend((backend) => {
  const out = new Map<number, string>()
  for (const { group, test } of ED25519_CASES) {
    const ok = backend.ed25519Verify(fromHex(test.sig), fromHex(test.msg), fromHex(group.publicKey.pk))
    out.set(test.tcId, String(ok))
  }
  return out
})

// ---------------------------------------------------------------------------------------------
// X25519. Every case has a 32-byte private and public key. 'valid': the shared secret must match.
// Expected shared secret all zero (31 'acceptable' cases, low-order public keys): the backend
// must return undefined. Other 'acceptable' cases (223: public keys on the twist, non-canonical
// u >= p, u with the top bit set, edge-case multiplications): RFC 7748 defines the result, and
// both backends return exactly Wycheproof's shared secret (noble: masks the top bit and reduces
// u mod p; libsodium: the same, its small-order blocklist only hits keys whose result is zero
// anyway), so they are held to it, as well as to agreeing with each other.

const X25519 = loadWycheproof<XdhGroup>('x25519_test.json', 'XDH')
const X25519_CASES = casesOf(X25519, (group) => group.curve === 'curve25519')
const X25519_EXPECTED = { total: 518, valid: 264, acceptable: 223, zeroShared: 31 }
const isZero = (hex: string) => /^(00)+$/.test(hex)

const x25519Outcomes = perBackend((backend) => {
  const out = new Map<number, string>()
  for (const { test } of X25519_CASES) {
    out.set(test.tcId, show(backend.x25519(fromHex(test.private), fromHex(test.public))))
  }
  return out
})

// ---------------------------------------------------------------------------------------------
// AEAD: only our suites' parameters (32-byte key, 12-byte nonce, 16-byte tag). Other key and
// nonce sizes are outside the CryptoBackend contract, and both backends refuse them (see
// backends.test.ts); the groups with those sizes (9 ChaCha20-Poly1305, 250 AES-GCM cases) are not run.

type AeadFile = { file: string; algorithm: AeadAlgorithm; expected: { total: number; valid: number; invalid: number } }
const AEAD_FILES: AeadFile[] = [
  {
    file: 'chacha20_poly1305_test.json',
    algorithm: 'chacha20-poly1305',
    expected: { total: 316, valid: 256, invalid: 60 },
  },
  { file: 'aes_gcm_test.json', algorithm: 'aes-256-gcm', expected: { total: 66, valid: 39, invalid: 27 } },
]
const WYCHEPROOF_AEAD_NAME: Record<AeadAlgorithm, string> = {
  'chacha20-poly1305': 'CHACHA20-POLY1305',
  'aes-256-gcm': 'AES-GCM',
}
const ourSuite = (group: AeadGroup) => group.keySize === 256 && group.ivSize === 96 && group.tagSize === 128

const aeadCases = new Map(
  AEAD_FILES.map(({ file, algorithm }) => [
    algorithm,
    casesOf(loadWycheproof<AeadGroup>(file, WYCHEPROOF_AEAD_NAME[algorithm]), ourSuite),
  ]),
)
function aeadCasesOf(algorithm: AeadAlgorithm) {
  const cases = aeadCases.get(algorithm)
  if (!cases) throw new Error(`no cases loaded for ${algorithm}`)
  return cases
}

interface AeadOutcome {
  seal: string
  open: string
}
const aeadOutcomes = new Map(
  AEAD_FILES.map(({ algorithm }) => [
    algorithm,
    perBackend((backend) => {
      const out = new Map<number, AeadOutcome>()
      for (const { test } of aeadCasesOf(algorithm)) {
        const [key, nonce, aad, msg] = [fromHex(test.key), fromHex(test.iv), fromHex(test.aad), fromHex(test.msg)]
        const sealed = concatBytes(fromHex(test.ct), fromHex(test.tag))
        out.set(test.tcId, {
          seal: show(backend.aeadSeal(algorithm, key, nonce, msg, aad)),
          open: show(backend.aeadOpen(algorithm, key, nonce, sealed, aad)),
        })
      }
      return out
    }),
  ]),
)
function aeadOutcomesOf(algorithm: AeadAlgorithm, backend: CryptoBackend) {
  const outcomes = aeadOutcomes.get(algorithm)
  if (!outcomes) throw new Error(`no outcomes for ${algorithm}`)
  return outcomes(backend)
}

// ---------------------------------------------------------------------------------------------

describe.each(BACKENDS)('%s backend', (_name, backend) => {
  test(`ed25519_test.json: verify is true exactly for 'valid' cases`, () => {
    const outcomes = ed25519Outcomes(backend)
    const failures: string[] = []
    for (const { test } of ED25519_CASES) {
      const expected = String(test.result === 'valid')
      const got = outcomes.get(test.tcId)
      if (got !== expected) failures.push(`#${test.tcId} (${test.result}, ${test.comment}): verify ${got}`)
    }
    expect(failures).toEqual([])
    expect(ED25519_CASES.length).toBe(ED25519_EXPECTED.total)
    expect(ED25519_CASES.filter(({ test }) => test.result === 'valid').length).toBe(ED25519_EXPECTED.valid)
    expect(ED25519_CASES.filter(({ test }) => test.result === 'invalid').length).toBe(ED25519_EXPECTED.invalid)
  })

  test('ed25519_test.json #151 (R = (x=-0, y=1), accepted by ZIP-215) is rejected', () => {
    const found = ED25519_CASES.find(({ test }) => test.tcId === 151)
    expect(found).toBeDefined()
    if (!found) return
    const { group, test: tc } = found
    const [sig, msg, pk] = [fromHex(tc.sig), fromHex(tc.msg), fromHex(group.publicKey.pk)]
    expect(tc.result).toBe('invalid')
    // The case discriminates: noble's own verify accepts it under ZIP-215 rules...
    expect(ed25519.verify(sig, msg, pk, { zip215: true })).toBe(true)
    // ...and the strict rule every backend follows refuses it.
    expect(backend.ed25519Verify(sig, msg, pk)).toBe(false)
  })

  test('x25519_test.json: shared secrets, undefined for an all-zero result', () => {
    const outcomes = x25519Outcomes(backend)
    const failures: string[] = []
    for (const { test } of X25519_CASES) {
      const got = outcomes.get(test.tcId)
      // Not in this file (every key is 32 bytes), but the contract is: a key of another length
      // yields undefined.
      const expected = test.public.length !== 64 || isZero(test.shared) ? 'undefined' : test.shared
      if (got !== expected) failures.push(`#${test.tcId} (${test.result}, ${test.flags.join(',')}): ${got}`)
    }
    expect(failures).toEqual([])
    const count = (predicate: (t: (typeof X25519_CASES)[number]['test']) => boolean) =>
      X25519_CASES.filter(({ test }) => predicate(test)).length
    expect(X25519_CASES.length).toBe(X25519_EXPECTED.total)
    expect(count((t) => t.result === 'valid')).toBe(X25519_EXPECTED.valid)
    expect(count((t) => t.result === 'acceptable' && !isZero(t.shared))).toBe(X25519_EXPECTED.acceptable)
    expect(count((t) => isZero(t.shared))).toBe(X25519_EXPECTED.zeroShared)
    expect(count((t) => t.public.length !== 64 || t.private.length !== 64)).toBe(0)
  })

  test.each(AEAD_FILES)('$file: seal gives ct||tag, open gives msg, forgeries are refused', (file) => {
    const { algorithm, expected } = file
    const cases = aeadCasesOf(algorithm)
    const outcomes = aeadOutcomesOf(algorithm, backend)
    const failures: string[] = []
    for (const { test } of cases) {
      const got = outcomes.get(test.tcId)
      const sealed = test.ct + test.tag
      if (test.result === 'valid') {
        if (got?.seal !== sealed) failures.push(`#${test.tcId} (valid): seal ${got?.seal}`)
        if (got?.open !== test.msg) failures.push(`#${test.tcId} (valid): open ${got?.open}`)
      } else if (got?.open !== 'undefined') {
        failures.push(`#${test.tcId} (${test.result}, ${test.comment}): open ${got?.open}`)
      }
    }
    expect(failures).toEqual([])
    expect(cases.length).toBe(expected.total)
    expect(cases.filter(({ test }) => test.result === 'valid').length).toBe(expected.valid)
    expect(cases.filter(({ test }) => test.result === 'invalid').length).toBe(expected.invalid)
  })
})

describe('noble and native agree on every case', () => {
  test('ed25519_test.json', () => {
    expect(disagreements(ed25519Outcomes(noble), ed25519Outcomes(native))).toEqual([])
    expect(ed25519Outcomes(noble).size).toBe(ED25519_EXPECTED.total)
  })

  test('x25519_test.json (valid, acceptable and zero-result cases alike)', () => {
    expect(disagreements(x25519Outcomes(noble), x25519Outcomes(native))).toEqual([])
    expect(x25519Outcomes(noble).size).toBe(X25519_EXPECTED.total)
  })

  test.each(AEAD_FILES)('$file (seal of every case, open of every case)', ({ algorithm, expected }) => {
    const flat = (backend: CryptoBackend) =>
      new Map([...aeadOutcomesOf(algorithm, backend)].map(([tcId, o]) => [tcId, `seal=${o.seal} open=${o.open}`]))
    expect(disagreements(flat(noble), flat(native))).toEqual([])
    expect(flat(noble).size).toBe(expected.total)
  })
})

// ---------------------------------------------------------------------------------------------
// HKDF-SHA256 and HMAC-SHA256 (src/crypto/kdf.ts): one implementation for every backend.

describe('kdf.ts', () => {
  test('hkdf_sha256_test.json: okm for valid sizes, RangeError past 255 * 32 bytes', () => {
    const cases = casesOf(loadWycheproof<HkdfGroup>('hkdf_sha256_test.json', 'HKDF-SHA-256'))
    const failures: string[] = []
    for (const { test } of cases) {
      const args = [fromHex(test.ikm), fromHex(test.salt), fromHex(test.info), test.size] as const
      if (test.result === 'valid') {
        const okm = toHex(hkdf(...args))
        if (okm !== test.okm) failures.push(`#${test.tcId} (${test.comment}): ${okm}`)
      } else {
        // The only invalid cases ask for more than 255 blocks (RFC 5869 §2.3).
        try {
          hkdf(...args)
          failures.push(`#${test.tcId} (${test.comment}): no error for size ${test.size}`)
        } catch (error) {
          if (!(error instanceof RangeError)) failures.push(`#${test.tcId}: ${String(error)}`)
        }
      }
    }
    expect(failures).toEqual([])
    expect(cases.length).toBe(86)
    expect(cases.filter(({ test }) => test.result === 'invalid').length).toBe(3)
  })

  test('hmac_sha256_test.json: the (possibly truncated) tag matches exactly for valid cases', () => {
    const cases = casesOf(loadWycheproof<MacGroup>('hmac_sha256_test.json', 'HMACSHA256'))
    const failures: string[] = []
    for (const { group, test } of cases) {
      const tag = toHex(hmacSha256(fromHex(test.key), fromHex(test.msg)).subarray(0, group.tagSize / 8))
      if ((tag === test.tag) !== (test.result === 'valid')) {
        failures.push(`#${test.tcId} (${test.result}, ${test.comment}): ${tag}`)
      }
    }
    expect(failures).toEqual([])
    expect(cases.length).toBe(174)
    expect(cases.filter(({ test }) => test.result === 'valid').length).toBe(66)
  })
})
