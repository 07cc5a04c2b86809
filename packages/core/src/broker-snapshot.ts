// What a broker plugin needs to enforce policy without asking anyone: the policy, the
// directory of principals (public keys and status, no secrets) and the accepted epochs (no
// keys). Signed by the key server; brokers keep the newest one they have verified.
import { defaultBackend } from '#crypto-backend'
import { toBase64Url } from './_bytes.js'
import { type Policy, parsePolicy } from './acl.js'
import type { CryptoBackend } from './crypto/backend.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import {
  type DocumentKind,
  openSignedDocument,
  type SignedDocument,
  type StrictJsonReader,
  signDocument,
} from './signed-document.js'

/**
 * The HTTP response header in which `GET /v1/broker/snapshot` answers a matching `If-None-Match`
 * (304) with a signed notice for that content: the signed document as JSON (~300 bytes).
 */
export const SNAPSHOT_NOTICE_HEADER = 'smqtt-snapshot-notice'

const TYPE = 'smqtt.broker-snapshot'
const NOTICE_TYPE = 'smqtt.broker-snapshot-notice'

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
  /**
   * The content's entity tag: a digest, chosen by the key server, of everything above but
   * issuedAt (the `ETag` of `GET /v1/broker/snapshot`, unquoted). Signed with the rest, so a
   * signed notice naming it later vouches that this content is still current.
   */
  readonly tag?: string
}

/** A tag as snapshots and notices carry it: base64url, at most 64 characters. */
function readTag(read: StrictJsonReader, value: unknown, path: string): string {
  const tag = read.string(value, path, 64)
  if (!/^[A-Za-z0-9_-]+$/.test(tag)) read.fail(`${path}: not base64url`)
  return tag
}

const snapshotKind: DocumentKind<BrokerSnapshot> = {
  type: TYPE,
  malformed: 'ERR_SNAPSHOT_MALFORMED',
  signatureInvalid: 'ERR_SNAPSHOT_SIGNATURE_INVALID',
  parseBody(body, read) {
    const o = read.object(
      body,
      'snapshot',
      ['type', 'v', 'issuedAt', 'policy', 'principals', 'epochs', 'revocationListVersion'],
      ['tag'],
    )
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
      ...(o.tag === undefined ? {} : { tag: readTag(read, o.tag, 'snapshot.tag') }),
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
    ...(snapshot.tag === undefined ? {} : { tag: snapshot.tag }),
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

/**
 * What the key server pushes to brokers over MQTT when its snapshot is too large for a packet
 * (issue 14): the new snapshot's issuedAt and a digest of its content (the HTTP ETag), signed.
 * A broker that has applied nothing as new pulls the snapshot over HTTPS; the pulled snapshot's
 * own signature, staleness and rollback rules decide what is applied, so a notice can only
 * cause a pull, never a change.
 */
export interface BrokerSnapshotNotice {
  /** Unix seconds: the issuedAt of the snapshot it announces (a pull returns that or later). */
  readonly issuedAt: number
  /** The snapshot content's entity tag (`ETag` of `GET /v1/broker/snapshot`, unquoted). */
  readonly tag: string
}

const noticeKind: DocumentKind<BrokerSnapshotNotice> = {
  type: NOTICE_TYPE,
  malformed: 'ERR_SNAPSHOT_MALFORMED',
  signatureInvalid: 'ERR_SNAPSHOT_SIGNATURE_INVALID',
  parseBody(body, read) {
    const o = read.object(body, 'notice', ['type', 'v', 'issuedAt', 'tag'])
    read.literal(o.type, 'notice.type', NOTICE_TYPE)
    read.literal(o.v, 'notice.v', 1)
    return { issuedAt: read.uint32(o.issuedAt, 'notice.issuedAt'), tag: readTag(read, o.tag, 'notice.tag') }
  },
}

/**
 * Signs a snapshot notice (key server side). Its signature context differs from the snapshot's,
 * so neither can be passed off as the other.
 *
 * @example
 * ```ts
 * const signed = createBrokerSnapshotNotice({ issuedAt, tag }, keyServerIdentity)
 * ```
 */
export function createBrokerSnapshotNotice(
  notice: BrokerSnapshotNotice,
  keyServer: SigningKeyPair,
  backend: CryptoBackend = defaultBackend,
): SignedDocument {
  const body = { type: NOTICE_TYPE, v: 1, issuedAt: notice.issuedAt, tag: notice.tag }
  return signDocument(NOTICE_TYPE, body, keyServer, backend)
}

/**
 * Verifies and parses a snapshot notice under the pinned key-server key (at most 1 KiB).
 *
 * @example
 * ```ts
 * const { issuedAt, tag } = openBrokerSnapshotNotice(message.notice, keyServerPublicKey)
 * ```
 */
export function openBrokerSnapshotNotice(
  signed: unknown,
  keyServerPublicKey: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): BrokerSnapshotNotice {
  return openSignedDocument(signed, { kind: noticeKind, signingKey: keyServerPublicKey, maxBytes: 1024, backend })
}
