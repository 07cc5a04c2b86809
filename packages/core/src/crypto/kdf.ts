// Hashes and key derivation, the same bytes on every backend. They are cheap in pure JS and
// have no native fast path worth the second code path, so they take no backend parameter.
import { expand, extract, hkdf as nobleHkdf } from '@noble/hashes/hkdf.js'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { abytes, auint } from '../_bytes.js'

/** Output length of SHA-256 and of an HKDF-SHA256 extract, in bytes. */
export const SHA256_LENGTH = 32

// RFC 5869: the output of expand is at most 255 hash blocks.
const HKDF_MAX_LENGTH = 255 * SHA256_LENGTH

/**
 * HKDF-SHA256 Extract (RFC 5869 §2.2): a pseudorandom key from input keying material.
 * An empty `salt` means a string of zeros, as the RFC says.
 *
 * @example
 * ```ts
 * const prk = hkdfExtract(salt, sharedSecret) // 32 bytes
 * ```
 */
export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  abytes(salt, 'salt')
  abytes(ikm, 'ikm')
  return extract(nobleSha256, ikm, salt)
}

/**
 * HKDF-SHA256 Expand (RFC 5869 §2.3): `length` bytes (at most 8160) from a pseudorandom key.
 *
 * @example
 * ```ts
 * const key = hkdfExpand(prk, utf8('smqtt/v1 sender key'), 32)
 * ```
 */
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  abytes(prk, 'prk')
  abytes(info, 'info')
  auint(length, 'length', HKDF_MAX_LENGTH)
  if (prk.length < SHA256_LENGTH) throw new RangeError(`prk must be at least ${SHA256_LENGTH} bytes`)
  return expand(nobleSha256, prk, info, length)
}

/**
 * HKDF-SHA256 Extract-then-Expand (RFC 5869).
 *
 * @example
 * ```ts
 * const okm = hkdf(groupKey, salt, utf8('smqtt/v1 sender key'), 32)
 * ```
 */
export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  abytes(ikm, 'ikm')
  abytes(salt, 'salt')
  abytes(info, 'info')
  auint(length, 'length', HKDF_MAX_LENGTH)
  return nobleHkdf(nobleSha256, ikm, salt, info, length)
}

/**
 * SHA-256 of `data` (32 bytes).
 *
 * @example
 * ```ts
 * const digest = sha256(utf8('abc'))
 * ```
 */
export function sha256(data: Uint8Array): Uint8Array {
  abytes(data, 'data')
  return nobleSha256(data)
}

/**
 * HMAC-SHA256 of `data` under `key` (32 bytes).
 *
 * @example
 * ```ts
 * const tag = hmacSha256(key, message)
 * ```
 */
export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  abytes(key, 'key')
  abytes(data, 'data')
  return hmac(nobleSha256, key, data)
}
