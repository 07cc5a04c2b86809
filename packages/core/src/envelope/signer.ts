import { defaultBackend } from '#crypto-backend'
import { abytes, auint } from '../_bytes.js'
import type { CryptoBackend } from '../crypto/backend.js'
import type { AsyncSigningKey } from '../crypto/signature.js'
import { MAX_ID } from './header.js'

/** Signs envelopes as one sender. Holding the seed inside a closure keeps it off the options objects. */
export interface EnvelopeSigner {
  /** The sender key id the key server assigned to this principal. */
  readonly kid: number
  /** The Ed25519 public key, as the key server lists it among a group's writers. */
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array
}

/**
 * Makes the signer for {@link sealEnvelope} from a principal's Ed25519 seed and key id.
 *
 * @example
 * ```ts
 * const signer = createEnvelopeSigner({ kid: record.kid, seed: identity.signingSeed })
 * ```
 */
export function createEnvelopeSigner(
  init: { kid: number; seed: Uint8Array },
  backend: CryptoBackend = defaultBackend,
): EnvelopeSigner {
  auint(init.kid, 'kid', MAX_ID)
  abytes(init.seed, 'seed', 32)
  const seed = init.seed.slice()
  const publicKey = backend.ed25519PublicKey(seed)
  return {
    kid: init.kid,
    publicKey,
    sign: (message) => backend.ed25519Sign(message, seed, publicKey),
  }
}

/** An {@link EnvelopeSigner} whose key signs asynchronously (a non-extractable WebCrypto key). */
export interface AsyncEnvelopeSigner {
  readonly kid: number
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Promise<Uint8Array>
}

/**
 * Makes the signer for {@link sealEnvelopeAsync} from a key that signs asynchronously.
 *
 * @example
 * ```ts
 * const signer = createAsyncEnvelopeSigner({ kid: record.kid, key: await generateNonExtractableIdentity('app-1') })
 * ```
 */
export function createAsyncEnvelopeSigner(init: { kid: number; key: AsyncSigningKey }): AsyncEnvelopeSigner {
  auint(init.kid, 'kid', MAX_ID)
  abytes(init.key.signingKey, 'signingKey', 32)
  const { key } = init
  return { kid: init.kid, publicKey: key.signingKey, sign: (message) => key.sign(message) }
}
