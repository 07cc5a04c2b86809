// The primitives SMQTT needs, behind one interface so that a portable backend (@noble, runs
// everywhere) and a native Node backend (libsodium + OpenSSL, ~30x faster for curves) produce
// and accept exactly the same bytes. Everything else in core calls these, never a library.

/** AEAD algorithms a suite may use. Both take a 32-byte key and a 12-byte nonce, 16-byte tag. */
export type AeadAlgorithm = 'chacha20-poly1305' | 'aes-256-gcm'

export interface CryptoBackend {
  /** Short name for logs and benchmarks: `noble` or `native`. */
  readonly name: string
  randomBytes(length: number): Uint8Array
  /** Ed25519 public key (32 bytes) of a 32-byte seed. */
  ed25519PublicKey(seed: Uint8Array): Uint8Array
  /** Ed25519 signature (64 bytes). `publicKey` must be the seed's; backends may use it to skip a derivation. */
  ed25519Sign(message: Uint8Array, seed: Uint8Array, publicKey: Uint8Array): Uint8Array
  /**
   * Strict Ed25519 verification, identical on every backend (libsodium's rule): canonical S < L,
   * canonical encodings of A and R, neither of small order, cofactorless equation. Never throws.
   */
  ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
  /** X25519 public key of a 32-byte secret. */
  x25519PublicKey(secret: Uint8Array): Uint8Array
  /** X25519 shared secret; undefined when the result is all zero (small-order peer key). */
  x25519(secret: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined
  /** AEAD encryption: ciphertext || 16-byte tag. */
  aeadSeal(
    algorithm: AeadAlgorithm,
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Uint8Array
  /** AEAD decryption; undefined on any failure (never says why). */
  aeadOpen(
    algorithm: AeadAlgorithm,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    aad: Uint8Array,
  ): Uint8Array | undefined
}

export const AEAD_KEY_LENGTH = 32
export const AEAD_NONCE_LENGTH = 12
export const AEAD_TAG_LENGTH = 16
export const ED25519_SIGNATURE_LENGTH = 64
export const PUBLIC_KEY_LENGTH = 32
export const SECRET_KEY_LENGTH = 32
