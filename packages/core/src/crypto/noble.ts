// Portable backend: pure JavaScript (@noble), for browsers, Deno, Bun and Node without libsodium.
import { gcm } from '@noble/ciphers/aes.js'
import { chacha20poly1305 } from '@noble/ciphers/chacha.js'
import { ed25519, x25519 } from '@noble/curves/ed25519.js'
import { sha512 } from '@noble/hashes/sha2.js'
import { randomBytes } from '@noble/hashes/utils.js'
import { abytes } from '../_bytes.js'
import { AEAD_KEY_LENGTH, AEAD_NONCE_LENGTH, type AeadAlgorithm, type CryptoBackend } from './backend.js'

const Point = ed25519.Point
const L = Point.Fn.ORDER

function leToBigInt(bytes: Uint8Array): bigint {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] as number)
  return n
}

/** Strict decoding: canonical y < p, no x=0 with the sign bit set, not of small order. */
function strictPoint(bytes: Uint8Array): InstanceType<typeof Point> | undefined {
  try {
    const point = Point.fromBytes(bytes, false)
    return point.isSmallOrder() ? undefined : point
  } catch {
    return undefined
  }
}

// noble's own verify is cofactored (and ZIP-215 by default); libsodium and OpenSSL are
// cofactorless. A signer could craft a signature that only one of them accepts, so the
// message would pass the broker and fail a browser. We check libsodium's exact rule instead.
function verifyStrict(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false
  const s = leToBigInt(signature.subarray(32))
  if (s >= L) return false
  const A = strictPoint(publicKey)
  const R = strictPoint(signature.subarray(0, 32))
  if (!A || !R) return false
  const k = Point.Fn.create(leToBigInt(sha512(concat3(signature.subarray(0, 32), publicKey, message))))
  const SB = s === 0n ? Point.ZERO : Point.BASE.multiply(s)
  const kA = k === 0n ? Point.ZERO : A.multiplyUnsafe(k)
  return SB.equals(R.add(kA))
}

function concat3(a: Uint8Array, b: Uint8Array, c: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length + c.length)
  out.set(a, 0)
  out.set(b, a.length)
  out.set(c, a.length + b.length)
  return out
}

function cipher(algorithm: AeadAlgorithm, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array) {
  // noble's gcm would also take a 16- or 24-byte key (AES-128/192) and nonces of other lengths,
  // which the native backend refuses: every backend accepts exactly a 32-byte key and 12-byte nonce.
  abytes(key, 'key', AEAD_KEY_LENGTH)
  abytes(nonce, 'nonce', AEAD_NONCE_LENGTH)
  return algorithm === 'chacha20-poly1305' ? chacha20poly1305(key, nonce, aad) : gcm(key, nonce, aad)
}

export const nobleBackend: CryptoBackend = {
  name: 'noble',
  randomBytes: (length) => randomBytes(length),
  ed25519PublicKey: (seed) => ed25519.getPublicKey(seed),
  ed25519Sign: (message, seed) => ed25519.sign(message, seed),
  ed25519Verify: verifyStrict,
  x25519PublicKey: (secret) => x25519.getPublicKey(secret),
  x25519(secret, publicKey) {
    try {
      const shared = x25519.getSharedSecret(secret, publicKey)
      return shared.some((b) => b !== 0) ? shared : undefined
    } catch {
      return undefined // noble refuses an all-zero result itself
    }
  },
  aeadSeal: (algorithm, key, nonce, plaintext, aad) => cipher(algorithm, key, nonce, aad).encrypt(plaintext),
  aeadOpen(algorithm, key, nonce, ciphertext, aad) {
    try {
      return cipher(algorithm, key, nonce, aad).decrypt(ciphertext)
    } catch {
      return undefined
    }
  },
}
