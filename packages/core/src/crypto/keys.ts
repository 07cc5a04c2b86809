// Validity checks for public keys that arrive from outside (principal records, key bundles).
// A key is refused here, when it is imported, rather than producing a confusing failure later
// (a signature that never verifies, an HPKE seal with an all-zero shared secret).

import { ed25519 } from '@noble/curves/ed25519.js'
import { toHex } from '../_bytes.js'

// 2^255 - 19
const P = (1n << 255n) - 19n

// The X25519 u-coordinates of small order below p (libsodium's blacklist, canonical part):
// 0 and 1 (orders 4 and 1), the two points of order 8, and p - 1 (order 2).
const SMALL_ORDER_U = new Set<bigint>([
  0n,
  1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
  P - 1n,
])

const ML_KEM_768_POLY_BYTES = 3 * 384 // three polynomials of 256 12-bit coefficients
const ML_KEM_768_PUBLIC_KEY_LENGTH = ML_KEM_768_POLY_BYTES + 32
const ML_KEM_Q = 3329

/** Length of an X-Wing public key: ML-KEM-768 encapsulation key || X25519 public key. */
export const XWING_PUBLIC_KEY_LENGTH = ML_KEM_768_PUBLIC_KEY_LENGTH + 32

function littleEndian(bytes: Uint8Array): bigint {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] as number)
  return n
}

/**
 * True when `publicKey` is a strictly encoded Ed25519 point (canonical y, no negative zero) that
 * is not of small order: the keys libsodium's `crypto_sign_verify_detached` accepts, and
 * therefore every SMQTT backend.
 *
 * @example
 * ```ts
 * if (!isValidEd25519PublicKey(signingKey)) throw new SmqttError('ERR_KEY_INVALID')
 * ```
 */
export function isValidEd25519PublicKey(publicKey: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false
  const id = toHex(publicKey)
  if (KNOWN_VALID_ED25519.has(id)) return true
  let valid: boolean
  try {
    valid = !ed25519.Point.fromBytes(publicKey, false).isSmallOrder()
  } catch {
    valid = false
  }
  if (valid) {
    // Decompressing a point costs ~1 ms in pure JS, and the same writer keys come back in every
    // key bundle. Only valid keys are remembered, in a bounded set, so bad input cannot fill it.
    if (KNOWN_VALID_ED25519.size >= KNOWN_VALID_LIMIT) KNOWN_VALID_ED25519.clear()
    KNOWN_VALID_ED25519.add(id)
  }
  return valid
}

const KNOWN_VALID_LIMIT = 65_536
const KNOWN_VALID_ED25519 = new Set<string>()

/**
 * True when `publicKey` is a canonical X25519 u-coordinate (below p, top bit clear) that is not
 * of small order, so a Diffie-Hellman with it can never give the all-zero secret.
 *
 * @example
 * ```ts
 * if (!isValidX25519PublicKey(agreementKey)) throw new SmqttError('ERR_KEY_INVALID')
 * ```
 */
export function isValidX25519PublicKey(publicKey: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false
  const u = littleEndian(publicKey)
  return u < P && !SMALL_ORDER_U.has(u)
}

/**
 * True when `publicKey` is an X-Wing public key whose ML-KEM-768 part passes FIPS 203's
 * encapsulation-key check (every coefficient below q) and whose X25519 part passes
 * {@link isValidX25519PublicKey}.
 *
 * @example
 * ```ts
 * if (!isValidXWingPublicKey(agreementKey)) throw new SmqttError('ERR_KEY_INVALID')
 * ```
 */
export function isValidXWingPublicKey(publicKey: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== XWING_PUBLIC_KEY_LENGTH) return false
  // Three bytes pack two 12-bit coefficients, little-endian.
  for (let i = 0; i < ML_KEM_768_POLY_BYTES; i += 3) {
    const b0 = publicKey[i] as number
    const b1 = publicKey[i + 1] as number
    const b2 = publicKey[i + 2] as number
    if ((b0 | ((b1 & 0x0f) << 8)) >= ML_KEM_Q || ((b1 >> 4) | (b2 << 4)) >= ML_KEM_Q) return false
  }
  return isValidX25519PublicKey(publicKey.subarray(ML_KEM_768_PUBLIC_KEY_LENGTH))
}
