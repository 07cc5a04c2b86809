// A principal's identity: an Ed25519 key that signs (envelopes, enrollment proofs) and a KEM
// key that receives sealed group keys. Both are made on the principal and never leave it;
// only the public half (`PublicIdentity`) is sent to the key server.
//
// The KEM key is X25519 (DHKEM), or X-Wing (ML-KEM-768 + X25519) for principals that want
// recorded key bundles to stay safe against a future quantum attacker. An X-Wing secret is a
// 32-byte seed that itself expands into the X25519 and ML-KEM secrets.
import { defaultBackend } from '#crypto-backend'
import { equalBytes, toBase64Url } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import { HPKE_KEM_LENGTHS, type HpkeKem, hpkePublicKey } from './crypto/hpke.js'
import { isValidEd25519PublicKey, isValidX25519PublicKey, isValidXWingPublicKey } from './crypto/keys.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import { isValidPrincipalId, StrictJsonReader } from './signed-document.js'

/** A principal's own keys. Keep it on the principal; send only {@link publicIdentity}. */
export interface Identity extends SigningKeyPair {
  readonly id: string
  /** Ed25519 seed (32 bytes): secret. */
  readonly signingSeed: Uint8Array
  /** Ed25519 public key (32 bytes). */
  readonly signingKey: Uint8Array
  readonly kem: HpkeKem
  /** KEM secret (32 bytes): an X25519 secret key, or an X-Wing seed. Secret. */
  readonly agreementSecret: Uint8Array
  /** KEM public key: 32 bytes (X25519) or 1216 bytes (X-Wing). */
  readonly agreementKey: Uint8Array
}

/** What others may know of a principal. */
export interface PublicIdentity {
  readonly id: string
  readonly signingKey: Uint8Array
  readonly agreementKey: Uint8Array
  readonly kem: HpkeKem
}

/** JSON form of an {@link Identity} (contains secrets: store it like a private key). */
export interface IdentityJson {
  type: 'smqtt.identity'
  v: 1
  id: string
  kem: HpkeKem
  signingSeed: string
  agreementSecret: string
  signingKey: string
  agreementKey: string
}

/** JSON form of a {@link PublicIdentity}. */
export interface PublicIdentityJson {
  type: 'smqtt.public-identity'
  v: 1
  id: string
  kem: HpkeKem
  signingKey: string
  agreementKey: string
}

const KEMS: readonly HpkeKem[] = ['x25519', 'xwing']
const SEED_LENGTH = 32

function assertPrincipalId(id: unknown): asserts id is string {
  if (!isValidPrincipalId(id)) throw new TypeError('id must be 1 to 256 characters without control characters')
}

function buildIdentity(
  id: string,
  kem: HpkeKem,
  signingSeed: Uint8Array,
  agreementSecret: Uint8Array,
  backend: CryptoBackend,
): Identity {
  return Object.freeze({
    id,
    signingSeed,
    signingKey: backend.ed25519PublicKey(signingSeed),
    kem,
    agreementSecret,
    agreementKey: hpkePublicKey(kem, agreementSecret, backend),
  })
}

/**
 * Makes a new identity for principal `id`: a fresh Ed25519 key and a fresh X25519 key, or an
 * X-Wing key when `postQuantum` is set.
 *
 * @example
 * ```ts
 * const identity = generateIdentity('thermostat-hall', { postQuantum: true })
 * await storage.set('identity', JSON.stringify(exportIdentity(identity)))
 * ```
 */
export function generateIdentity(
  id: string,
  options: { postQuantum?: boolean; backend?: CryptoBackend } = {},
): Identity {
  assertPrincipalId(id)
  const backend = options.backend ?? defaultBackend
  const kem: HpkeKem = options.postQuantum === true ? 'xwing' : 'x25519'
  return buildIdentity(id, kem, backend.randomBytes(SEED_LENGTH), backend.randomBytes(SEED_LENGTH), backend)
}

/**
 * The public half of an identity, to send to the key server.
 *
 * @example
 * ```ts
 * const record = exportPublicIdentity(publicIdentity(identity))
 * ```
 */
export function publicIdentity(identity: PublicIdentity): PublicIdentity {
  const { id, signingKey, agreementKey, kem } = identity
  return Object.freeze({ id, signingKey, agreementKey, kem })
}

/**
 * JSON form of an identity, with its secrets in base64url. Store it encrypted or in a file only
 * the principal can read.
 *
 * @example
 * ```ts
 * writeFileSync('identity.json', JSON.stringify(exportIdentity(identity)), { mode: 0o600 })
 * ```
 */
export function exportIdentity(identity: Identity): IdentityJson {
  return {
    type: 'smqtt.identity',
    v: 1,
    id: identity.id,
    kem: identity.kem,
    signingSeed: toBase64Url(identity.signingSeed),
    agreementSecret: toBase64Url(identity.agreementSecret),
    signingKey: toBase64Url(identity.signingKey),
    agreementKey: toBase64Url(identity.agreementKey),
  }
}

/**
 * Reads an exported identity strictly: wrong types, lengths or unknown fields throw
 * `SmqttError('ERR_IDENTITY_MALFORMED')`. Public keys are re-derived from the secrets; when the
 * JSON lists them they must match.
 *
 * @example
 * ```ts
 * const identity = importIdentity(JSON.parse(readFileSync('identity.json', 'utf8')))
 * ```
 */
export function importIdentity(json: unknown, options: { backend?: CryptoBackend } = {}): Identity {
  const read: StrictJsonReader = new StrictJsonReader('ERR_IDENTITY_MALFORMED')
  const fields = read.object(
    json,
    'identity',
    ['type', 'v', 'id', 'kem', 'signingSeed', 'agreementSecret'],
    ['signingKey', 'agreementKey'],
  )
  read.literal(fields.type, 'type', 'smqtt.identity')
  read.literal(fields.v, 'v', 1)
  const id = read.principal(fields.id, 'id')
  const kem = read.oneOf(fields.kem, 'kem', KEMS)
  const signingSeed = read.bytes(fields.signingSeed, 'signingSeed', SEED_LENGTH)
  const agreementSecret = read.bytes(fields.agreementSecret, 'agreementSecret', HPKE_KEM_LENGTHS[kem].secretKey)
  const identity = buildIdentity(id, kem, signingSeed, agreementSecret, options.backend ?? defaultBackend)
  // A mismatch means the file was edited or mixed up: using it would sign with one key while
  // the key server believes another.
  if (fields.signingKey !== undefined && !equalBytes(read.bytes(fields.signingKey, 'signingKey'), identity.signingKey))
    read.fail('signingKey does not match signingSeed')
  if (
    fields.agreementKey !== undefined &&
    !equalBytes(read.bytes(fields.agreementKey, 'agreementKey'), identity.agreementKey)
  )
    read.fail('agreementKey does not match agreementSecret')
  return identity
}

/**
 * JSON form of a public identity.
 *
 * @example
 * ```ts
 * await fetch(url, { method: 'POST', body: JSON.stringify(exportPublicIdentity(publicIdentity(identity))) })
 * ```
 */
export function exportPublicIdentity(identity: PublicIdentity): PublicIdentityJson {
  return {
    type: 'smqtt.public-identity',
    v: 1,
    id: identity.id,
    kem: identity.kem,
    signingKey: toBase64Url(identity.signingKey),
    agreementKey: toBase64Url(identity.agreementKey),
  }
}

/**
 * Reads a public identity strictly. Shape errors throw `ERR_IDENTITY_MALFORMED`; keys that are
 * not valid points (small order, non-canonical, bad ML-KEM key) throw `ERR_KEY_INVALID`.
 *
 * @example
 * ```ts
 * const device = importPublicIdentity(request.body)
 * ```
 */
export function importPublicIdentity(json: unknown): PublicIdentity {
  const read: StrictJsonReader = new StrictJsonReader('ERR_IDENTITY_MALFORMED')
  const fields = read.object(json, 'public identity', ['type', 'v', 'id', 'kem', 'signingKey', 'agreementKey'])
  read.literal(fields.type, 'type', 'smqtt.public-identity')
  read.literal(fields.v, 'v', 1)
  const id = read.principal(fields.id, 'id')
  const kem = read.oneOf(fields.kem, 'kem', KEMS)
  const signingKey = read.bytes(fields.signingKey, 'signingKey', 32)
  const agreementKey = read.bytes(fields.agreementKey, 'agreementKey', HPKE_KEM_LENGTHS[kem].publicKey)
  assertValidPublicKeys(kem, signingKey, agreementKey)
  return Object.freeze({ id, signingKey, agreementKey, kem })
}

/**
 * Throws `SmqttError('ERR_KEY_INVALID')` unless `signingKey` is a strict Ed25519 key and
 * `agreementKey` a valid public key for `kem`.
 *
 * @example
 * ```ts
 * assertValidPublicKeys(recipient.kem, recipient.signingKey, recipient.agreementKey)
 * ```
 */
export function assertValidPublicKeys(kem: HpkeKem, signingKey: Uint8Array, agreementKey: Uint8Array): void {
  if (!isValidEd25519PublicKey(signingKey))
    throw new SmqttError('ERR_KEY_INVALID', 'signingKey is not a valid Ed25519 key')
  const valid = kem === 'xwing' ? isValidXWingPublicKey(agreementKey) : isValidX25519PublicKey(agreementKey)
  if (!valid) throw new SmqttError('ERR_KEY_INVALID', `agreementKey is not a valid ${kem} key`)
}
