// What a device sends to enroll: its public identity, the one-time token, and a proof that
// it holds the signing key it registers (so nobody can enroll someone else's public key).
// Built by the device (@smqtt/client), checked by the key server.
import { defaultBackend } from '#crypto-backend'
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import { sha256 } from './crypto/kdf.js'
import { signWithContext, signWithContextAsync, verifyWithContext } from './crypto/signature.js'
import type { NonExtractableIdentity } from './crypto/webcrypto-keys.js'
import {
  exportPublicIdentity,
  type Identity,
  type PublicIdentity,
  type PublicIdentityJson,
  publicIdentity,
} from './identity.js'

const CONTEXT = 'enrollment'

/** The body of `POST /v1/enroll`. */
export interface EnrollmentRequest {
  readonly token: string
  readonly identity: PublicIdentityJson
  /** Ed25519, context `enrollment`, over sha256(token) || signing key || agreement key. */
  readonly proof: string
  /** If given, must equal the roles the token grants (a mismatch is refused, not merged). */
  readonly roles?: readonly string[]
  /** DER SPKI (base64url) of the device's P-256 TLS key, to receive a client certificate. */
  readonly tlsPublicKey?: string
}

function provenBytes(token: string, identity: PublicIdentity): Uint8Array {
  return concatBytes(sha256(utf8(token)), identity.signingKey, identity.agreementKey)
}

/**
 * Builds an enrollment request for `identity` with a one-time token.
 *
 * @example
 * ```ts
 * const body = createEnrollmentRequest(identity, token, { roles: ['device'] })
 * await fetch(`${keyServerUrl}/v1/enroll`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
 * ```
 */
export function createEnrollmentRequest(
  identity: Identity,
  token: string,
  options: EnrollmentRequestOptions = {},
): EnrollmentRequest {
  const backend = options.backend ?? defaultBackend
  const proof = signWithContext(identity, CONTEXT, provenBytes(token, identity), backend)
  return enrollmentRequest(identity, token, proof, options)
}

/**
 * {@link createEnrollmentRequest} for either kind of identity, e.g. a non-extractable WebCrypto one.
 *
 * @example
 * ```ts
 * const body = await createEnrollmentRequestAsync(await generateNonExtractableIdentity('app-1'), token)
 * ```
 */
export async function createEnrollmentRequestAsync(
  identity: Identity | NonExtractableIdentity,
  token: string,
  options: EnrollmentRequestOptions = {},
): Promise<EnrollmentRequest> {
  const backend = options.backend ?? defaultBackend
  const proof = await signWithContextAsync(identity, CONTEXT, provenBytes(token, identity), backend)
  return enrollmentRequest(identity, token, proof, options)
}

/** Options of {@link createEnrollmentRequest} and {@link createEnrollmentRequestAsync}. */
export interface EnrollmentRequestOptions {
  /** If given, must equal the roles the token grants (a mismatch is refused, not merged). */
  roles?: readonly string[]
  /** DER SPKI of the device's P-256 TLS key, to receive a client certificate. */
  tlsPublicKey?: Uint8Array
  backend?: CryptoBackend
}

function enrollmentRequest(
  identity: PublicIdentity,
  token: string,
  proof: Uint8Array,
  options: EnrollmentRequestOptions,
): EnrollmentRequest {
  return {
    token,
    identity: exportPublicIdentity(publicIdentity(identity)),
    proof: toBase64Url(proof),
    ...(options.roles ? { roles: [...options.roles] } : {}),
    ...(options.tlsPublicKey ? { tlsPublicKey: toBase64Url(options.tlsPublicKey) } : {}),
  }
}

/**
 * True when `proof` shows possession of `identity`'s signing key for this token.
 *
 * @example
 * ```ts
 * if (!verifyEnrollmentProof(request.token, importPublicIdentity(request.identity), request.proof)) refuse()
 * ```
 */
export function verifyEnrollmentProof(
  token: string,
  identity: PublicIdentity,
  proof: string,
  backend: CryptoBackend = defaultBackend,
): boolean {
  const signature = fromBase64Url(proof)
  return (
    signature?.length === 64 &&
    verifyWithContext(identity.signingKey, CONTEXT, provenBytes(token, identity), signature, backend)
  )
}
