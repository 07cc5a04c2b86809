// The key server's signed statement of who a principal is: id, sender key id, roles and public
// keys. A client keeps its own record; anyone holding the pinned key-server key can check one.
import { defaultBackend } from '#crypto-backend'
import { toBase64Url } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import type { HpkeKem } from './crypto/hpke.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import { assertValidPublicKeys } from './identity.js'
import { type DocumentKind, openSignedDocument, type SignedDocument, signDocument } from './signed-document.js'

const TYPE = 'smqtt.principal'

export interface PrincipalRecord {
  readonly id: string
  /** Sender key id in envelopes. */
  readonly kid: number
  readonly roles: readonly string[]
  readonly signingKey: Uint8Array
  readonly agreementKey: Uint8Array
  readonly kem: HpkeKem
  readonly issuedAt: number
}

const principalRecordKind: DocumentKind<PrincipalRecord> = {
  type: TYPE,
  malformed: 'ERR_IDENTITY_MALFORMED',
  signatureInvalid: 'ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID',
  parseBody(body, read) {
    const o = read.object(body, 'principal', [
      'type',
      'v',
      'id',
      'kid',
      'roles',
      'signingKey',
      'agreementKey',
      'kem',
      'issuedAt',
    ])
    read.literal(o.type, 'principal.type', TYPE)
    read.literal(o.v, 'principal.v', 1)
    const kem = read.oneOf(o.kem, 'principal.kem', ['x25519', 'xwing'] as const)
    const roles = read.array(o.roles, 'principal.roles', 64).map((r, i) => read.string(r, `principal.roles[${i}]`, 64))
    const record: PrincipalRecord = {
      id: read.principal(o.id, 'principal.id'),
      kid: read.uint32(o.kid, 'principal.kid'),
      roles,
      signingKey: read.bytes(o.signingKey, 'principal.signingKey', 32),
      agreementKey: read.bytes(o.agreementKey, 'principal.agreementKey'),
      kem,
      issuedAt: read.uint32(o.issuedAt, 'principal.issuedAt'),
    }
    try {
      assertValidPublicKeys(kem, record.signingKey, record.agreementKey)
    } catch (err) {
      if (err instanceof SmqttError) read.fail(`principal keys: ${err.message}`)
      throw err
    }
    return record
  },
}

/**
 * Signs a principal record (key server side).
 *
 * @example
 * ```ts
 * const signed = createPrincipalRecord({ id, kid, roles, signingKey, agreementKey, kem, issuedAt }, keyServerIdentity)
 * ```
 */
export function createPrincipalRecord(
  record: PrincipalRecord,
  keyServer: SigningKeyPair,
  backend: CryptoBackend = defaultBackend,
): SignedDocument {
  return signDocument(
    TYPE,
    {
      type: TYPE,
      v: 1,
      id: record.id,
      kid: record.kid,
      roles: [...record.roles],
      signingKey: toBase64Url(record.signingKey),
      agreementKey: toBase64Url(record.agreementKey),
      kem: record.kem,
      issuedAt: record.issuedAt,
    } as { type: string },
    keyServer,
    backend,
  )
}

/**
 * Verifies and parses a principal record under the pinned key-server key.
 *
 * @example
 * ```ts
 * const me = openPrincipalRecord(enrollment.principal, keyServerPublicKey)
 * ```
 */
export function openPrincipalRecord(
  signed: unknown,
  keyServerPublicKey: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): PrincipalRecord {
  return openSignedDocument(signed, { kind: principalRecordKind, signingKey: keyServerPublicKey, backend })
}
