// HPKE (RFC 9180), base mode, single-shot: one message sealed to one recipient public key,
// which is all a key bundle needs (each epoch key is sealed on its own). Suites:
//   DHKEM(X25519, HKDF-SHA256) 0x0020 | X-Wing (ML-KEM-768 + X25519) 0x647a
//   KDF HKDF-SHA256 0x0001, AEAD ChaCha20-Poly1305 0x0003.
// X-Wing follows draft-connolly-cfrg-xwing-kem: its 32-byte shared secret already binds the
// ciphertext and the recipient key, so HPKE uses it directly as shared_secret.
// ML-KEM is not part of CryptoBackend (no native fast path here), so X-Wing always runs on
// @noble/post-quantum; X25519 DHKEM and the AEAD run on the given backend.

import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js'
import { defaultBackend } from '#crypto-backend'
import { abytes, concatBytes, utf8 } from '../_bytes.js'
import { SmqttError } from '../errors.js'
import type { CryptoBackend } from './backend.js'
import { hkdfExpand, hkdfExtract } from './kdf.js'

/** The KEMs SMQTT seals keys with: classic X25519, or the X-Wing post-quantum hybrid. */
export type HpkeKem = 'x25519' | 'xwing'

/** RFC 9180 / IANA identifiers of each KEM. */
export const HPKE_KEM_IDS = { x25519: 0x0020, xwing: 0x647a } as const satisfies Record<HpkeKem, number>

/** Byte lengths per KEM: secret key, public key, encapsulated key (`enc`). */
export const HPKE_KEM_LENGTHS = {
  x25519: { secretKey: 32, publicKey: 32, enc: 32 },
  xwing: { secretKey: 32, publicKey: 1216, enc: 1120 },
} as const satisfies Record<HpkeKem, { secretKey: number; publicKey: number; enc: number }>

/** Bytes the AEAD adds to the plaintext (ChaCha20-Poly1305 tag). */
export const HPKE_TAG_LENGTH = 16

const KDF_ID = 0x0001 // HKDF-SHA256
const AEAD_ID = 0x0003 // ChaCha20Poly1305
const MODE_BASE = 0x00
const N_SECRET = 32
const N_KEY = 32
const N_NONCE = 12
const HPKE_V1 = utf8('HPKE-v1')
const EMPTY = new Uint8Array(0)

/** A KEM key pair. For X-Wing the secret key is the 32-byte seed the draft defines. */
export interface HpkeKeyPair {
  readonly secretKey: Uint8Array
  readonly publicKey: Uint8Array
}

/** Options of {@link hpkeSeal}. */
export interface HpkeSealOptions {
  kem: HpkeKem
  recipientPublicKey: Uint8Array
  /** Context the sealed message is bound to; the opener must pass the same bytes. */
  info: Uint8Array
  aad?: Uint8Array
  plaintext: Uint8Array
  backend?: CryptoBackend
  /**
   * Tests only: the ephemeral secret (X25519: 32-byte secret key; X-Wing: 64-byte `eseed`),
   * as RFC 9180 vectors need. Reusing one across messages breaks confidentiality.
   */
  unsafeEphemeralSecret?: Uint8Array
}

/** Options of {@link hpkeOpen}. */
export interface HpkeOpenOptions {
  kem: HpkeKem
  recipientSecretKey: Uint8Array
  enc: Uint8Array
  info: Uint8Array
  aad?: Uint8Array
  ciphertext: Uint8Array
  backend?: CryptoBackend
}

/**
 * X25519 with a private key this code never sees (e.g. a non-extractable WebCrypto key):
 * resolves with X25519(secret, publicKey), or undefined (or rejects) for a small-order point.
 */
export type X25519Agreement = (publicKey: Uint8Array) => Promise<Uint8Array | undefined>

/** Options of {@link hpkeOpenWithAgreement}: DHKEM(X25519) only (an X-Wing secret is no WebCrypto key). */
export interface HpkeAgreementOpenOptions {
  agree: X25519Agreement
  /** The recipient's X25519 public key (part of the KEM context). */
  recipientPublicKey: Uint8Array
  enc: Uint8Array
  info: Uint8Array
  aad?: Uint8Array
  ciphertext: Uint8Array
  backend?: CryptoBackend
}

/** What the key schedule yields; exposed (underscored) so tests can check RFC 9180 vectors. */
export interface _HpkeContext {
  enc: Uint8Array
  sharedSecret: Uint8Array
  key: Uint8Array
  baseNonce: Uint8Array
  exporterSecret: Uint8Array
}

function i2osp2(value: number): Uint8Array {
  return new Uint8Array([value >>> 8, value & 0xff])
}

function kemSuiteId(kem: HpkeKem): Uint8Array {
  return concatBytes(utf8('KEM'), i2osp2(HPKE_KEM_IDS[kem]))
}

function hpkeSuiteId(kem: HpkeKem): Uint8Array {
  return concatBytes(utf8('HPKE'), i2osp2(HPKE_KEM_IDS[kem]), i2osp2(KDF_ID), i2osp2(AEAD_ID))
}

// RFC 9180 §4: every HKDF call is labelled with the protocol version and the suite, so keys
// derived for one suite or purpose can never equal keys for another.
function labeledExtract(suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
  return hkdfExtract(salt, concatBytes(HPKE_V1, suiteId, utf8(label), ikm))
}

function labeledExpand(
  suiteId: Uint8Array,
  prk: Uint8Array,
  label: string,
  info: Uint8Array,
  length: number,
): Uint8Array {
  return hkdfExpand(prk, concatBytes(i2osp2(length), HPKE_V1, suiteId, utf8(label), info), length)
}

// DHKEM §4.1: the shared secret binds the DH output to both public keys.
function extractAndExpand(dh: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const suiteId = kemSuiteId('x25519')
  const eaePrk = labeledExtract(suiteId, EMPTY, 'eae_prk', dh)
  return labeledExpand(suiteId, eaePrk, 'shared_secret', kemContext, N_SECRET)
}

/**
 * Test-only: RFC 9180 DeriveKeyPair for DHKEM(X25519, HKDF-SHA256), deterministic from `ikm`.
 * Production keys come from {@link generateHpkeKeyPair}.
 */
export function _deriveX25519KeyPair(ikm: Uint8Array, backend: CryptoBackend = defaultBackend): HpkeKeyPair {
  abytes(ikm, 'ikm')
  const suiteId = kemSuiteId('x25519')
  const dkpPrk = labeledExtract(suiteId, EMPTY, 'dkp_prk', ikm)
  const secretKey = labeledExpand(suiteId, dkpPrk, 'sk', EMPTY, 32)
  return { secretKey, publicKey: backend.x25519PublicKey(secretKey) }
}

/**
 * A fresh key pair for `kem`, or the one a 32-byte `seed` determines (an X25519 secret key is
 * its seed; an X-Wing secret key is the seed it expands).
 *
 * @example
 * ```ts
 * const { secretKey, publicKey } = generateHpkeKeyPair('xwing')
 * ```
 */
export function generateHpkeKeyPair(
  kem: HpkeKem,
  options: { seed?: Uint8Array; backend?: CryptoBackend } = {},
): HpkeKeyPair {
  const backend = options.backend ?? defaultBackend
  const seed = options.seed ?? backend.randomBytes(32)
  abytes(seed, 'seed', 32)
  return { secretKey: seed.slice(), publicKey: hpkePublicKey(kem, seed, backend) }
}

/**
 * The public key of an HPKE secret key.
 *
 * @example
 * ```ts
 * const publicKey = hpkePublicKey('x25519', secretKey)
 * ```
 */
export function hpkePublicKey(
  kem: HpkeKem,
  secretKey: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): Uint8Array {
  assertKem(kem)
  abytes(secretKey, 'secretKey', HPKE_KEM_LENGTHS[kem].secretKey)
  return kem === 'x25519' ? backend.x25519PublicKey(secretKey) : ml_kem768_x25519.getPublicKey(secretKey)
}

function assertKem(kem: unknown): asserts kem is HpkeKem {
  if (kem !== 'x25519' && kem !== 'xwing') throw new TypeError(`unknown HPKE KEM: ${String(kem)}`)
}

function encapsulate(
  kem: HpkeKem,
  recipientPublicKey: Uint8Array,
  backend: CryptoBackend,
  ephemeralSecret: Uint8Array | undefined,
): { enc: Uint8Array; sharedSecret: Uint8Array } {
  if (kem === 'xwing') {
    if (ephemeralSecret !== undefined) abytes(ephemeralSecret, 'unsafeEphemeralSecret', 64)
    try {
      const { cipherText, sharedSecret } = ml_kem768_x25519.encapsulate(recipientPublicKey, ephemeralSecret)
      return { enc: cipherText, sharedSecret }
    } catch (cause) {
      // ML-KEM's encapsulation-key check (coefficients below q) failed: not a valid key.
      throw new SmqttError('ERR_KEY_INVALID', undefined, { cause })
    }
  }
  const skE = ephemeralSecret ?? backend.randomBytes(32)
  abytes(skE, 'unsafeEphemeralSecret', 32)
  const enc = backend.x25519PublicKey(skE)
  const dh = backend.x25519(skE, recipientPublicKey)
  if (!dh) throw new SmqttError('ERR_KEY_INVALID') // small-order recipient key
  return { enc, sharedSecret: extractAndExpand(dh, concatBytes(enc, recipientPublicKey)) }
}

// Returns undefined on any failure; the caller turns that into one uninformative error.
function decapsulate(
  kem: HpkeKem,
  enc: Uint8Array,
  recipientSecretKey: Uint8Array,
  backend: CryptoBackend,
): Uint8Array | undefined {
  if (enc.length !== HPKE_KEM_LENGTHS[kem].enc) return undefined
  if (kem === 'xwing') {
    try {
      return ml_kem768_x25519.decapsulate(enc, recipientSecretKey)
    } catch {
      return undefined
    }
  }
  const dh = backend.x25519(recipientSecretKey, enc)
  if (!dh) return undefined
  const pkR = backend.x25519PublicKey(recipientSecretKey)
  return extractAndExpand(dh, concatBytes(enc, pkR))
}

// RFC 9180 §5.1 KeySchedule for mode_base (no PSK).
function keySchedule(kem: HpkeKem, sharedSecret: Uint8Array, info: Uint8Array) {
  const suiteId = hpkeSuiteId(kem)
  const pskIdHash = labeledExtract(suiteId, EMPTY, 'psk_id_hash', EMPTY)
  const infoHash = labeledExtract(suiteId, EMPTY, 'info_hash', info)
  const context = concatBytes(new Uint8Array([MODE_BASE]), pskIdHash, infoHash)
  const secret = labeledExtract(suiteId, sharedSecret, 'secret', EMPTY)
  return {
    key: labeledExpand(suiteId, secret, 'key', context, N_KEY),
    baseNonce: labeledExpand(suiteId, secret, 'base_nonce', context, N_NONCE),
    exporterSecret: labeledExpand(suiteId, secret, 'exp', context, N_SECRET),
  }
}

/** Test-only: SetupBaseS, returning the whole context so RFC 9180 vectors can be checked. */
export function _setupBaseSender(
  kem: HpkeKem,
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  backend: CryptoBackend = defaultBackend,
  unsafeEphemeralSecret?: Uint8Array,
): _HpkeContext {
  assertKem(kem)
  abytes(recipientPublicKey, 'recipientPublicKey', HPKE_KEM_LENGTHS[kem].publicKey)
  abytes(info, 'info')
  const { enc, sharedSecret } = encapsulate(kem, recipientPublicKey, backend, unsafeEphemeralSecret)
  return { enc, sharedSecret, ...keySchedule(kem, sharedSecret, info) }
}

/**
 * Seals `plaintext` to a recipient public key (single-shot, sequence number 0). Throws
 * `SmqttError('ERR_KEY_INVALID')` when the recipient key is of small order or not a valid
 * X-Wing key.
 *
 * @example
 * ```ts
 * const { enc, ciphertext } = hpkeSeal({ kem: 'x25519', recipientPublicKey, info, plaintext: epochKey })
 * ```
 */
export function hpkeSeal(options: HpkeSealOptions): { enc: Uint8Array; ciphertext: Uint8Array } {
  const { kem, recipientPublicKey, info, plaintext, aad = EMPTY, backend = defaultBackend } = options
  abytes(plaintext, 'plaintext')
  abytes(aad, 'aad')
  const context = _setupBaseSender(kem, recipientPublicKey, info, backend, options.unsafeEphemeralSecret)
  // Sequence number 0: the nonce is base_nonce itself.
  const ciphertext = backend.aeadSeal('chacha20-poly1305', context.key, context.baseNonce, plaintext, aad)
  return { enc: context.enc, ciphertext }
}

/**
 * Opens what {@link hpkeSeal} sealed. Any failure (wrong recipient, altered `enc`, ciphertext,
 * `info` or `aad`) throws the same `SmqttError('ERR_HPKE_OPEN_FAILED')`.
 *
 * @example
 * ```ts
 * const epochKey = hpkeOpen({ kem: 'x25519', recipientSecretKey, enc, info, ciphertext })
 * ```
 */
export function hpkeOpen(options: HpkeOpenOptions): Uint8Array {
  const { kem, recipientSecretKey, enc, info, ciphertext, aad = EMPTY, backend = defaultBackend } = options
  assertKem(kem)
  abytes(recipientSecretKey, 'recipientSecretKey', HPKE_KEM_LENGTHS[kem].secretKey)
  abytes(enc, 'enc')
  abytes(info, 'info')
  abytes(aad, 'aad')
  abytes(ciphertext, 'ciphertext')
  return openWith(kem, decapsulate(kem, enc, recipientSecretKey, backend), info, ciphertext, aad, backend)
}

/**
 * {@link hpkeOpen} for DHKEM(X25519) with the recipient's private key as an operation, so it can
 * stay a non-extractable WebCrypto key: only the Diffie-Hellman step runs there, the rest of
 * RFC 9180 here. Fails exactly as hpkeOpen does (`ERR_HPKE_OPEN_FAILED`).
 *
 * @example
 * ```ts
 * const epochKey = await hpkeOpenWithAgreement({ agree, recipientPublicKey, enc, info, ciphertext })
 * ```
 */
export async function hpkeOpenWithAgreement(options: HpkeAgreementOpenOptions): Promise<Uint8Array> {
  const { agree, recipientPublicKey, enc, info, ciphertext, aad = EMPTY, backend = defaultBackend } = options
  abytes(recipientPublicKey, 'recipientPublicKey', HPKE_KEM_LENGTHS.x25519.publicKey)
  abytes(enc, 'enc')
  abytes(info, 'info')
  abytes(aad, 'aad')
  abytes(ciphertext, 'ciphertext')
  let dh: Uint8Array | undefined
  if (enc.length === HPKE_KEM_LENGTHS.x25519.enc) dh = await agree(enc).catch(() => undefined)
  const sharedSecret = dh?.length === 32 ? extractAndExpand(dh, concatBytes(enc, recipientPublicKey)) : undefined
  return openWith('x25519', sharedSecret, info, ciphertext, aad, backend)
}

// The key schedule and AEAD open, after decapsulation (undefined: it failed).
function openWith(
  kem: HpkeKem,
  sharedSecret: Uint8Array | undefined,
  info: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
  backend: CryptoBackend,
): Uint8Array {
  if (sharedSecret) {
    const { key, baseNonce } = keySchedule(kem, sharedSecret, info)
    const plaintext = backend.aeadOpen('chacha20-poly1305', key, baseNonce, ciphertext, aad)
    if (plaintext) return plaintext
  }
  throw new SmqttError('ERR_HPKE_OPEN_FAILED')
}
