// What a broker plugin needs to enforce policy without asking anyone: the policy, the
// directory of principals (public keys and status, no secrets) and the accepted epochs (no
// keys). Signed by the key server; brokers keep the newest one they have verified.
import { defaultBackend } from '#crypto-backend'
import { toBase64Url } from './_bytes.js'
import { type Policy, parsePolicy } from './acl.js'
import type { CryptoBackend } from './crypto/backend.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import { type DocumentKind, openSignedDocument, type SignedDocument, signDocument } from './signed-document.js'

const TYPE = 'smqtt.broker-snapshot'

export interface SnapshotPrincipal {
  readonly id: string
  readonly kid: number
  readonly roles: readonly string[]
  readonly username?: string
  readonly signingKey: Uint8Array
  readonly status: 'active' | 'disabled' | 'revoked'
  /** Serial (hex) of the client certificate issued at enrollment, if any. */
  readonly certificateSerial?: string
}

export interface SnapshotEpoch {
  readonly group: number
  readonly epoch: number
  readonly activatesAt: number
  readonly retiresAt?: number
}

export interface BrokerSnapshot {
  /** Unix seconds. A broker keeps the snapshot with the newest issuedAt it has verified. */
  readonly issuedAt: number
  readonly policy: Policy
  readonly principals: readonly SnapshotPrincipal[]
  readonly epochs: readonly SnapshotEpoch[]
  readonly revocationListVersion: number
}

const snapshotKind: DocumentKind<BrokerSnapshot> = {
  type: TYPE,
  malformed: 'ERR_SNAPSHOT_MALFORMED',
  signatureInvalid: 'ERR_SNAPSHOT_SIGNATURE_INVALID',
  parseBody(body, read) {
    const o = read.object(body, 'snapshot', [
      'type',
      'v',
      'issuedAt',
      'policy',
      'principals',
      'epochs',
      'revocationListVersion',
    ])
    read.literal(o.type, 'snapshot.type', TYPE)
    read.literal(o.v, 'snapshot.v', 1)
    let policy: Policy
    try {
      policy = parsePolicy(o.policy)
    } catch (err) {
      if (err instanceof SmqttError) read.fail(`snapshot.policy: ${err.message}`)
      throw err
    }
    const principals = read.array(o.principals, 'snapshot.principals', 1_000_000).map((value, i) => {
      const path = `snapshot.principals[${i}]`
      const p = read.object(
        value,
        path,
        ['id', 'kid', 'roles', 'signingKey', 'status'],
        ['username', 'certificateSerial'],
      )
      return {
        id: read.principal(p.id, `${path}.id`),
        kid: read.uint32(p.kid, `${path}.kid`),
        roles: read.array(p.roles, `${path}.roles`, 64).map((r, j) => read.string(r, `${path}.roles[${j}]`, 64)),
        signingKey: read.bytes(p.signingKey, `${path}.signingKey`, 32),
        status: read.oneOf(p.status, `${path}.status`, ['active', 'disabled', 'revoked'] as const),
        ...(p.username === undefined ? {} : { username: read.string(p.username, `${path}.username`, 256) }),
        ...(p.certificateSerial === undefined
          ? {}
          : { certificateSerial: read.string(p.certificateSerial, `${path}.certificateSerial`, 64) }),
      }
    })
    const epochs = read.array(o.epochs, 'snapshot.epochs', 1_000_000).map((value, i) => {
      const path = `snapshot.epochs[${i}]`
      const e = read.object(value, path, ['group', 'epoch', 'activatesAt'], ['retiresAt'])
      return {
        group: read.uint32(e.group, `${path}.group`),
        epoch: read.uint32(e.epoch, `${path}.epoch`),
        activatesAt: read.uint32(e.activatesAt, `${path}.activatesAt`),
        ...(e.retiresAt === undefined ? {} : { retiresAt: read.uint32(e.retiresAt, `${path}.retiresAt`) }),
      }
    })
    return {
      issuedAt: read.uint32(o.issuedAt, 'snapshot.issuedAt'),
      policy,
      principals,
      epochs,
      revocationListVersion: read.uint32(o.revocationListVersion, 'snapshot.revocationListVersion'),
    }
  },
}

/**
 * Signs a broker snapshot (key server side).
 *
 * @example
 * ```ts
 * const signed = createBrokerSnapshot(snapshot, keyServerIdentity)
 * ```
 */
export function createBrokerSnapshot(
  snapshot: BrokerSnapshot,
  keyServer: SigningKeyPair,
  backend: CryptoBackend = defaultBackend,
): SignedDocument {
  const body = {
    type: TYPE,
    v: 1,
    issuedAt: snapshot.issuedAt,
    policy: snapshot.policy,
    principals: snapshot.principals.map((p) => ({ ...p, roles: [...p.roles], signingKey: toBase64Url(p.signingKey) })),
    epochs: snapshot.epochs,
    revocationListVersion: snapshot.revocationListVersion,
  }
  return signDocument(TYPE, body, keyServer, backend)
}

/**
 * Verifies and parses a broker snapshot under the pinned key-server key.
 *
 * @example
 * ```ts
 * const snapshot = openBrokerSnapshot(response.snapshot, keyServerPublicKey)
 * ```
 */
export function openBrokerSnapshot(
  signed: unknown,
  keyServerPublicKey: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): BrokerSnapshot {
  return openSignedDocument(signed, {
    kind: snapshotKind,
    signingKey: keyServerPublicKey,
    maxBytes: 64 * 1024 * 1024,
    backend,
  })
}
