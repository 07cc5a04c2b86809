// Domain-separated Ed25519: every SMQTT signature covers
//   utf8("smqtt/v1 " + context) || 0x00 || message
// so a signature made for one purpose (a key bundle, a revocation list, an envelope) can never
// be replayed as another, even when the message bytes happen to coincide. The context is
// printable ASCII, so it contains no 0x00 and the separator is unambiguous.
import { defaultBackend } from '#crypto-backend'
import { abytes, concatBytes, utf8 } from '../_bytes.js'
import type { CryptoBackend } from './backend.js'

/** An Ed25519 key pair: the 32-byte seed and its 32-byte public key. An `Identity` is one. */
export interface SigningKeyPair {
  readonly signingSeed: Uint8Array
  readonly signingKey: Uint8Array
}

/**
 * An Ed25519 key whose seed this code never sees (a non-extractable WebCrypto key): `sign`
 * resolves with the plain Ed25519 signature (64 bytes) of `message`.
 */
export interface AsyncSigningKey {
  readonly signingKey: Uint8Array
  sign(message: Uint8Array): Promise<Uint8Array>
}

const CONTEXT = /^[\x20-\x7e]{1,128}$/
const PREFIX = 'smqtt/v1 '

/**
 * The exact bytes a context signature covers. Exposed so other formats (the envelope) can
 * document and test them; sign with {@link signWithContext}.
 *
 * @example
 * ```ts
 * const bytes = signedBytes('smqtt.key-bundle', payload) // "smqtt/v1 smqtt.key-bundle\0" || payload
 * ```
 */
export function signedBytes(context: string, message: Uint8Array): Uint8Array {
  if (typeof context !== 'string' || !CONTEXT.test(context))
    throw new TypeError('context must be 1 to 128 printable ASCII characters')
  abytes(message, 'message')
  return concatBytes(utf8(PREFIX + context), new Uint8Array([0]), message)
}

/**
 * Signs `message` for one purpose, named by `context`.
 *
 * @example
 * ```ts
 * const signature = signWithContext(identity, 'smqtt.key-bundle', payload)
 * ```
 */
export function signWithContext(
  keys: SigningKeyPair,
  context: string,
  message: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): Uint8Array {
  abytes(keys.signingSeed, 'signingSeed', 32)
  abytes(keys.signingKey, 'signingKey', 32)
  return backend.ed25519Sign(signedBytes(context, message), keys.signingSeed, keys.signingKey)
}

/**
 * {@link signWithContext} for either kind of key: a raw key pair signs here, an
 * {@link AsyncSigningKey} (a non-extractable WebCrypto key) signs in WebCrypto. Same signature
 * bytes for the same key (Ed25519 is deterministic).
 *
 * @example
 * ```ts
 * const signature = await signWithContextAsync(identity, 'smqtt.key-bundle', payload)
 * ```
 */
export async function signWithContextAsync(
  keys: SigningKeyPair | AsyncSigningKey,
  context: string,
  message: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): Promise<Uint8Array> {
  if (!('sign' in keys)) return signWithContext(keys, context, message, backend)
  abytes(keys.signingKey, 'signingKey', 32)
  const signature = await keys.sign(signedBytes(context, message))
  abytes(signature, 'signature', 64)
  return signature
}

/**
 * Verifies a signature made by {@link signWithContext} for the same `context` (strict RFC 8032,
 * identical on every backend). Never throws for bad signatures or keys: returns false.
 *
 * @example
 * ```ts
 * if (!verifyWithContext(keyServerKey, 'smqtt.key-bundle', payload, signature)) throw ...
 * ```
 */
export function verifyWithContext(
  signingKey: Uint8Array,
  context: string,
  message: Uint8Array,
  signature: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): boolean {
  abytes(signingKey, 'signingKey')
  abytes(signature, 'signature')
  return backend.ed25519Verify(signature, signedBytes(context, message), signingKey)
}
