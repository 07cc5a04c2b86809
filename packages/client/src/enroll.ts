import {
  constantTimeEqual,
  createEnrollmentRequestAsync,
  type EnrollmentRequest,
  exportIdentity,
  exportPublicIdentity,
  generateIdentity,
  generateNonExtractableIdentity,
  type Identity,
  importIdentity,
  importPublicIdentity,
  type NonExtractableIdentity,
  nonExtractableIdentity,
  openPrincipalRecord,
  type PrincipalRecord,
  publicIdentity,
  type SignedDocument,
  SmqttError,
} from '@smqtt/core'
import { fromBase64Url, toBase64Url } from './_bytes.js'
import { type EnrollResponse, KeyServerClient } from './key-server-client.js'
import type { ClientStorage } from './storage.js'
import type { KeyServerTransport } from './transport.js'

/** Storage keys of the enrollment (the sequence reservation and bundle have their own). */
const IDENTITY_KEY = 'identity'
/** The identity's private keys as CryptoKey objects (ClientStorage.setKeys), when it has such keys. */
const IDENTITY_KEYS_KEY = 'identity-keys'
const ENROLLMENT_KEY = 'enrollment'
const PINNED_KEY = 'keyserver-key'
/** Pause before the one retry of an enrollment whose answer did not arrive. */
const ENROLL_RETRY_DELAY_MS = 1000

/**
 * The identity an enrollment into storage `S` holds: raw keys when `S` keeps strings only
 * (`fileStorage`, `memoryStorage`, `localStorageStorage`), else possibly non-extractable keys.
 */
export type EnrolledIdentity<S extends ClientStorage> = S['setKeys'] extends undefined
  ? Identity
  : Identity | NonExtractableIdentity

/** What enrollment leaves behind: everything {@link secure} needs. */
export interface Enrollment<I extends Identity | NonExtractableIdentity = Identity | NonExtractableIdentity> {
  /** Non-extractable WebCrypto keys where the storage and platform allow it (see {@link enroll}). */
  readonly identity: I
  readonly kid: number
  /** The key server's Ed25519 key, pinned at first enrollment. */
  readonly keyServerPublicKey: Uint8Array
  readonly keyServerUrl: string
  readonly principal: PrincipalRecord
  /** Client certificate for mutual TLS, when one was requested. */
  readonly certificatePem?: string
  /** PKCS #8 PEM of the certificate's P-256 key (secret). */
  readonly tlsPrivateKeyPem?: string
}

/** Options of {@link enroll}. */
export interface EnrollOptions<S extends ClientStorage = ClientStorage> {
  readonly keyServerUrl: string
  /** PEM of the CA of the key server's TLS certificate (Node). */
  readonly ca?: string
  /** The one-time enrollment token from the operator. */
  readonly token: string
  readonly id: string
  readonly storage: S
  /** Must equal the token's roles when given. */
  readonly roles?: readonly string[]
  /** X-Wing (ML-KEM-768 + X25519) instead of X25519 for receiving group keys. */
  readonly postQuantum?: boolean
  /** The key server key known out of band; without it the first answer is trusted and pinned. */
  readonly keyServerPublicKey?: Uint8Array
  /** Also request a client certificate for mutual TLS (a P-256 key made here). */
  readonly clientCertificate?: boolean
  readonly transport?: KeyServerTransport
}

/** The enrollment as stored (format v1: its field names are kept, whatever the API calls them). */
interface StoredEnrollment {
  v: 1
  kid: number
  keyserverUrl: string
  principal: SignedDocument
  certificatePem?: string
  tlsPrivateKeyPem?: string
}

function pem(label: string, der: Uint8Array): string {
  const b64 = btoa(String.fromCharCode(...der))
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)?.join('\n')}\n-----END ${label}-----\n`
}

/**
 * Sends the enrollment, and once more after a pause if its answer did not arrive (network
 * failure, timeout, an answer without an SMQTT error body such as a proxy's 502) or the key
 * server could not serve (503). Safe because the same request is a repeat: if the first one
 * committed, the key server answers it as the first time; if not, the token is still unused.
 */
async function sendEnrollment(keyServer: KeyServerClient, request: EnrollmentRequest): Promise<EnrollResponse> {
  try {
    return await keyServer.enroll(request)
  } catch (err) {
    if (err instanceof SmqttError && err.code !== 'ERR_STORE_UNAVAILABLE') throw err
    await new Promise((resolve) => setTimeout(resolve, ENROLL_RETRY_DELAY_MS))
    return keyServer.enroll(request)
  }
}

/**
 * A fresh identity. Its private keys are non-extractable WebCrypto keys when the storage keeps
 * key objects and the platform has WebCrypto Ed25519 and X25519 (stored here, before the token
 * is spent, so a storage that cannot keep them falls back before anything is sent); raw bytes
 * otherwise, and always for X-Wing (WebCrypto has no ML-KEM).
 */
async function newIdentity(
  storage: ClientStorage,
  id: string,
  postQuantum: boolean,
): Promise<Identity | NonExtractableIdentity> {
  if (!postQuantum && storage.setKeys && storage.getKeys) {
    try {
      const identity = await generateNonExtractableIdentity(id)
      await storage.setKeys(IDENTITY_KEYS_KEY, identity.privateKeys)
      return identity
    } catch {
      // No WebCrypto Ed25519/X25519 here, or the storage cannot keep CryptoKeys: raw keys.
    }
  }
  return generateIdentity(id, postQuantum ? { postQuantum: true } : {})
}

/** What is stored under IDENTITY_KEY: never a secret of a non-extractable identity. */
const identityJson = (identity: Identity | NonExtractableIdentity) =>
  'signingSeed' in identity ? exportIdentity(identity) : exportPublicIdentity(publicIdentity(identity))

/** The stored identity: raw keys from their JSON, or the public identity with its stored CryptoKeys. */
async function storedIdentity(storage: ClientStorage, json: unknown): Promise<Identity | NonExtractableIdentity> {
  if ((json as { type?: unknown } | null)?.type !== 'smqtt.public-identity') return importIdentity(json)
  const keys = await storage.getKeys?.(IDENTITY_KEYS_KEY)
  if (!keys) throw new SmqttError('ERR_IDENTITY_MALFORMED', 'storage holds no private keys for the stored identity')
  try {
    return nonExtractableIdentity(importPublicIdentity(json), keys)
  } catch (err) {
    if (err instanceof SmqttError) throw err
    throw new SmqttError('ERR_IDENTITY_MALFORMED', `the stored private keys are unusable: ${(err as Error).message}`)
  }
}

async function pinnedKey(storage: ClientStorage): Promise<Uint8Array | undefined> {
  const text = await storage.get(PINNED_KEY)
  if (text === undefined) return undefined
  const key = fromBase64Url(text)
  if (key?.length !== 32) throw new SmqttError('ERR_KEY_INVALID', 'the pinned key server key in storage is malformed')
  return key
}

/**
 * First start of a device: makes its identity, redeems the one-time token at the key server,
 * checks the signed principal record it gets back and stores identity, key id and the key
 * server's key through `storage`. The key server key is pinned on first use (or given in
 * `keyServerPublicKey`); a later enrollment against a different key is refused. A request
 * whose answer is lost (network failure, timeout) or refused with 503 is sent once more, the
 * same: the key server answers a repeat of a committed enrollment as the first time.
 *
 * @throws SmqttError `ERR_CONFLICT` when `storage` already holds an enrollment,
 * `ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID` when the record is not signed by the pinned key,
 * `ERR_IDENTITY_MALFORMED` when the record is not about this identity, and the key server's
 * own codes (e.g. `ERR_ENROLLMENT_TOKEN_INVALID`).
 * @example
 * ```ts
 * const storage = fileStorage('./smqtt')
 * const { identity, kid, keyServerPublicKey } = (await loadEnrollment(storage)) ??
 *   (await enroll({ keyServerUrl: 'https://keys:8443', ca, token: process.env.TOKEN, id: 'thermostat-1', storage }))
 * ```
 */
export async function enroll<S extends ClientStorage>(
  options: EnrollOptions<S>,
): Promise<Enrollment<EnrolledIdentity<S>>> {
  const { storage, keyServerUrl, id, token } = options
  if (typeof token !== 'string' || token.length === 0) throw new TypeError('token must be a non-empty string')
  if ((await storage.get(ENROLLMENT_KEY)) !== undefined)
    throw new SmqttError('ERR_CONFLICT', 'this storage already holds an enrollment; use loadEnrollment()')
  const pinnedInStorage = await pinnedKey(storage)
  if (options.keyServerPublicKey && pinnedInStorage && !constantTimeEqual(options.keyServerPublicKey, pinnedInStorage))
    throw new SmqttError(
      'ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID',
      'the given key server key differs from the one pinned in storage',
    )
  const pinned = options.keyServerPublicKey ?? pinnedInStorage
  const identity = await newIdentity(storage, id, options.postQuantum === true)

  let tls: { spki: Uint8Array; privateKeyPem: string } | undefined
  if (options.clientCertificate) {
    const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])
    tls = {
      spki: new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey)),
      privateKeyPem: pem('PRIVATE KEY', new Uint8Array(await crypto.subtle.exportKey('pkcs8', pair.privateKey))),
    }
  }

  const keyServer = new KeyServerClient({
    url: keyServerUrl,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    ...(options.transport === undefined ? {} : { transport: options.transport }),
  })
  const response = await sendEnrollment(
    keyServer,
    await createEnrollmentRequestAsync(identity, token, {
      ...(options.roles ? { roles: options.roles } : {}),
      ...(tls ? { tlsPublicKey: tls.spki } : {}),
    }),
  )
  const offered = fromBase64Url(response.keyServerPublicKey)
  if (offered?.length !== 32) throw new SmqttError('ERR_KEY_INVALID', 'the key server sent a malformed public key')
  if (pinned && !constantTimeEqual(pinned, offered))
    throw new SmqttError('ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID', 'the key server key differs from the pinned one')
  const keyServerPublicKey = pinned ?? offered
  const principal = openPrincipalRecord(response.principal, keyServerPublicKey)
  if (
    principal.id !== identity.id ||
    principal.kid !== response.kid ||
    !constantTimeEqual(principal.signingKey, identity.signingKey) ||
    !constantTimeEqual(principal.agreementKey, identity.agreementKey)
  )
    throw new SmqttError('ERR_IDENTITY_MALFORMED', 'the principal record is not about this identity')

  // Pin first, identity second, enrollment last: loadEnrollment needs all three.
  // Also when the key came out of band: loadEnrollment() reads it from storage later.
  if (!pinnedInStorage) await storage.set(PINNED_KEY, toBase64Url(keyServerPublicKey))
  await storage.set(IDENTITY_KEY, JSON.stringify(identityJson(identity)))
  const stored: StoredEnrollment = {
    v: 1,
    kid: principal.kid,
    keyserverUrl: keyServerUrl,
    principal: response.principal,
    ...(response.certificatePem ? { certificatePem: response.certificatePem } : {}),
    ...(tls && response.certificatePem ? { tlsPrivateKeyPem: tls.privateKeyPem } : {}),
  }
  await storage.set(ENROLLMENT_KEY, JSON.stringify(stored))
  // Only a storage with setKeys gets a non-extractable identity (newIdentity).
  return enrollmentOf(identity, keyServerPublicKey, principal, stored) as Enrollment<EnrolledIdentity<S>>
}

function enrollmentOf(
  identity: Identity | NonExtractableIdentity,
  keyServerPublicKey: Uint8Array,
  principal: PrincipalRecord,
  stored: StoredEnrollment,
): Enrollment {
  return {
    identity,
    kid: principal.kid,
    keyServerPublicKey,
    keyServerUrl: stored.keyserverUrl,
    principal,
    ...(stored.certificatePem ? { certificatePem: stored.certificatePem } : {}),
    ...(stored.tlsPrivateKeyPem ? { tlsPrivateKeyPem: stored.tlsPrivateKeyPem } : {}),
  }
}

/**
 * The enrollment kept in `storage`, or undefined when there is none. The principal record is
 * verified again under the pinned key, so a mixed-up storage fails loudly.
 *
 * @throws SmqttError `ERR_IDENTITY_MALFORMED` / `ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID` for corrupt storage.
 * @example
 * ```ts
 * const enrollment = await loadEnrollment(fileStorage('./smqtt'))
 * if (!enrollment) throw new Error('not enrolled yet')
 * ```
 */
export async function loadEnrollment<S extends ClientStorage>(
  storage: S,
): Promise<Enrollment<EnrolledIdentity<S>> | undefined> {
  const [identityText, enrollmentText] = await Promise.all([storage.get(IDENTITY_KEY), storage.get(ENROLLMENT_KEY)])
  if (identityText === undefined || enrollmentText === undefined) return undefined
  const keyServerPublicKey = await pinnedKey(storage)
  if (!keyServerPublicKey) throw new SmqttError('ERR_IDENTITY_MALFORMED', 'storage holds no pinned key server key')
  let stored: StoredEnrollment
  let identity: Identity | NonExtractableIdentity
  try {
    stored = JSON.parse(enrollmentText) as StoredEnrollment
    identity = await storedIdentity(storage, JSON.parse(identityText))
  } catch (err) {
    if (err instanceof SmqttError) throw err
    throw new SmqttError('ERR_IDENTITY_MALFORMED', 'the stored enrollment is not JSON')
  }
  if (stored?.v !== 1 || typeof stored.keyserverUrl !== 'string')
    throw new SmqttError('ERR_IDENTITY_MALFORMED', 'the stored enrollment is malformed')
  const principal = openPrincipalRecord(stored.principal, keyServerPublicKey)
  if (principal.id !== identity.id || !constantTimeEqual(principal.signingKey, identity.signingKey))
    throw new SmqttError('ERR_IDENTITY_MALFORMED', 'the stored identity and principal record do not match')
  return enrollmentOf(identity, keyServerPublicKey, principal, stored) as Enrollment<EnrolledIdentity<S>>
}
