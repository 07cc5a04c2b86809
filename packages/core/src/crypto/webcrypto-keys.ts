// Private keys that never leave WebCrypto: an identity's Ed25519 and X25519 keys made
// non-extractable, so a script injected into a page can use them while it runs but not read
// them (`exportKey` refuses) and carry them away. Only the operations run in WebCrypto: Ed25519
// signing (deterministic RFC 8032, so every verifier accepts it unchanged) and the X25519 step
// of HPKE (hpkeOpenWithAgreement). An X-Wing secret cannot be a WebCrypto key (no ML-KEM
// there), so post-quantum identities keep raw bytes.
import type { PublicIdentity } from '../identity.js'
import { isValidPrincipalId } from '../signed-document.js'
import type { X25519Agreement } from './hpke.js'
import type { AsyncSigningKey } from './signature.js'

/** A WebCrypto `CryptoKey`, as far as this module looks at it. */
export interface WebCryptoKey {
  readonly type: string
  readonly extractable: boolean
  readonly algorithm: { readonly name: string }
}

/** The part of WebCrypto's `SubtleCrypto` used here. */
interface Subtle {
  generateKey(
    algorithm: { name: 'X25519' | 'Ed25519' },
    extractable: boolean,
    usages: string[],
  ): Promise<{ privateKey: WebCryptoKey; publicKey: WebCryptoKey }>
  sign(algorithm: { name: 'Ed25519' }, key: WebCryptoKey, data: Uint8Array): Promise<ArrayBuffer>
  exportKey(format: 'raw', key: WebCryptoKey): Promise<ArrayBuffer>
  importKey(
    format: 'raw',
    data: Uint8Array,
    algorithm: { name: 'X25519' },
    extractable: boolean,
    usages: string[],
  ): Promise<WebCryptoKey>
  deriveBits(
    algorithm: { name: 'X25519'; public: WebCryptoKey },
    key: WebCryptoKey,
    length: number,
  ): Promise<ArrayBuffer>
}

/** A non-extractable X25519 key pair and its agreement operation. */
export interface NonExtractableX25519 {
  /** Store it as it is: IndexedDB keeps a CryptoKey (structured clone), still non-extractable. */
  readonly privateKey: WebCryptoKey
  readonly publicKey: Uint8Array
  readonly agree: X25519Agreement
}

const subtleOf = (subtle?: unknown): Subtle => {
  const found = subtle ?? (globalThis as { crypto?: { subtle?: unknown } }).crypto?.subtle
  if (!found) throw new TypeError('WebCrypto (crypto.subtle) is not available here')
  return found as Subtle
}

/**
 * Makes an X25519 key pair inside WebCrypto, its private key non-extractable. Rejects where the
 * platform has no WebCrypto X25519 (then keep a raw-bytes identity).
 *
 * @example
 * ```ts
 * const { privateKey, publicKey, agree } = await generateNonExtractableX25519()
 * ```
 */
export async function generateNonExtractableX25519(subtle?: unknown): Promise<NonExtractableX25519> {
  const s = subtleOf(subtle)
  const pair = await s.generateKey({ name: 'X25519' }, false, ['deriveBits'])
  const publicKey = new Uint8Array(await s.exportKey('raw', pair.publicKey))
  return { privateKey: pair.privateKey, publicKey, agree: x25519Agreement(pair.privateKey, s) }
}

/**
 * The agreement operation of a stored non-extractable X25519 private key.
 *
 * @example
 * ```ts
 * const agree = x25519Agreement(await keyStore.get('agreement'))
 * ```
 */
export function x25519Agreement(privateKey: WebCryptoKey, subtle?: unknown): X25519Agreement {
  if (privateKey.type !== 'private' || privateKey.algorithm.name !== 'X25519')
    throw new TypeError('privateKey must be an X25519 private CryptoKey')
  if (privateKey.extractable) throw new TypeError('privateKey must be non-extractable')
  const s = subtleOf(subtle)
  return async (publicKey) => {
    const peer = await s.importKey('raw', publicKey, { name: 'X25519' }, true, [])
    // WebCrypto rejects an all-zero result (a small-order point): hpkeOpenWithAgreement fails closed.
    return new Uint8Array(await s.deriveBits({ name: 'X25519', public: peer }, privateKey, 256))
  }
}

/** The private keys of a {@link NonExtractableIdentity}, as a storage keeps them (CryptoKey objects). */
export interface NonExtractableKeys {
  /** Ed25519 private key, non-extractable, usage `sign`. */
  readonly signing: WebCryptoKey
  /** X25519 private key, non-extractable, usage `deriveBits`. */
  readonly agreement: WebCryptoKey
}

/**
 * A principal's identity whose private keys are non-extractable WebCrypto keys: it signs and
 * opens key bundles as an `Identity` does, asynchronously, but nothing can read its secrets.
 * X25519 only.
 */
export interface NonExtractableIdentity extends PublicIdentity, AsyncSigningKey {
  readonly kem: 'x25519'
  /** Keep these in a storage that holds CryptoKey objects (IndexedDB), never serialized. */
  readonly privateKeys: NonExtractableKeys
  readonly agree: X25519Agreement
}

/**
 * Makes a new identity for principal `id` inside WebCrypto, both private keys non-extractable.
 * Rejects where the platform has no WebCrypto Ed25519 or X25519: then use `generateIdentity`.
 *
 * @example
 * ```ts
 * const identity = await generateNonExtractableIdentity('app-browser')
 * await idb.put(identity.privateKeys, 'identity-keys')
 * ```
 */
export async function generateNonExtractableIdentity(id: string, subtle?: unknown): Promise<NonExtractableIdentity> {
  if (!isValidPrincipalId(id)) throw new TypeError('id must be 1 to 256 characters without control characters')
  const s = subtleOf(subtle)
  const signing = await s.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])
  const agreement = await s.generateKey({ name: 'X25519' }, false, ['deriveBits'])
  const [signingKey, agreementKey] = await Promise.all([
    s.exportKey('raw', signing.publicKey),
    s.exportKey('raw', agreement.publicKey),
  ])
  return nonExtractableIdentity(
    { id, kem: 'x25519', signingKey: new Uint8Array(signingKey), agreementKey: new Uint8Array(agreementKey) },
    { signing: signing.privateKey, agreement: agreement.privateKey },
    s,
  )
}

/**
 * The identity of stored non-extractable keys and the public identity they belong to. Throws
 * `TypeError` unless both are private, non-extractable keys of the right algorithm.
 *
 * @example
 * ```ts
 * const identity = nonExtractableIdentity(importPublicIdentity(json), await idb.get('identity-keys'))
 * ```
 */
export function nonExtractableIdentity(
  identity: PublicIdentity,
  keys: NonExtractableKeys,
  subtle?: unknown,
): NonExtractableIdentity {
  if (identity.kem !== 'x25519') throw new TypeError('only an X25519 identity can have WebCrypto keys')
  const { signing, agreement } = keys
  if (signing?.type !== 'private' || signing.algorithm?.name !== 'Ed25519')
    throw new TypeError('keys.signing must be an Ed25519 private CryptoKey')
  if (signing.extractable) throw new TypeError('keys.signing must be non-extractable')
  const s = subtleOf(subtle)
  const { id, signingKey, agreementKey } = identity
  return Object.freeze({
    id,
    kem: 'x25519' as const,
    signingKey,
    agreementKey,
    privateKeys: Object.freeze({ signing, agreement }),
    // WebCrypto copies `message` before it returns, so a caller may reuse its buffer at once.
    sign: async (message: Uint8Array) => new Uint8Array(await s.sign({ name: 'Ed25519' }, signing, message)),
    agree: x25519Agreement(agreement, s),
  })
}
