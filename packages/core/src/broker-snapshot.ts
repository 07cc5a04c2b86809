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

/**
 * The request header (value `1`) with which a broker says it takes deltas: `GET
 * /v1/broker/snapshot` with `If-None-Match` may then answer `{ delta }` (see BrokerSnapshotDelta).
 */
export const SNAPSHOT_ACCEPT_DELTA_HEADER = 'smqtt-accept-delta'

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

/** Most principals, epochs or groups a snapshot or delta lists. */
const MAX_ENTRIES = 1_000_000

/** A tag as snapshots and notices carry it: base64url, at most 64 characters. */
function readTag(read: StrictJsonReader, value: unknown, path: string): string {
  const tag = read.string(value, path, 64)
  if (!/^[A-Za-z0-9_-]+$/.test(tag)) read.fail(`${path}: not base64url`)
  return tag
}

/**
 * A kind of document the key server signs for brokers: its body is `keys` (and maybe `optional`)
 * after its type and version 1, read on by `parse`; refusals are snapshot errors.
 */
function brokerKind<T>(
  type: string,
  path: string,
  fields: { readonly keys: readonly string[]; readonly optional?: readonly string[] },
  parse: (o: Record<string, unknown>, read: StrictJsonReader) => T,
): DocumentKind<T> {
  return {
    type,
    malformed: 'ERR_SNAPSHOT_MALFORMED',
    signatureInvalid: 'ERR_SNAPSHOT_SIGNATURE_INVALID',
    parseBody(body, read) {
      const o = read.object(body, path, ['type', 'v', ...fields.keys], fields.optional)
      read.literal(o.type, `${path}.type`, type)
      read.literal(o.v, `${path}.v`, 1)
      return parse(o, read)
    },
  }
}

function readPolicy(read: StrictJsonReader, value: unknown, path: string): Policy {
  try {
    return parsePolicy(value)
  } catch (err) {
    if (err instanceof SmqttError) read.fail(`${path}: ${err.message}`)
    throw err
  }
}

function readPrincipal(read: StrictJsonReader, value: unknown, path: string): SnapshotPrincipal {
  const p = read.object(value, path, ['id', 'kid', 'roles', 'signingKey', 'status'], ['username', 'certificateSerial'])
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
}

function readEpoch(read: StrictJsonReader, value: unknown, path: string): SnapshotEpoch {
  const e = read.object(value, path, ['group', 'epoch', 'activatesAt'], ['retiresAt'])
  return {
    group: read.uint32(e.group, `${path}.group`),
    epoch: read.uint32(e.epoch, `${path}.epoch`),
    activatesAt: read.uint32(e.activatesAt, `${path}.activatesAt`),
    ...(e.retiresAt === undefined ? {} : { retiresAt: read.uint32(e.retiresAt, `${path}.retiresAt`) }),
  }
}

/** The JSON form of principals (keys as base64url), as snapshots and deltas sign them. */
const principalsJson = (principals: readonly SnapshotPrincipal[]) =>
  principals.map((p) => ({ ...p, roles: [...p.roles], signingKey: toBase64Url(p.signingKey) }))

/** How the key server signs one kind of broker document: its type and version, then `bodyOf` the value. */
function signerOf<T>(kind: DocumentKind<T>, bodyOf: (value: T) => Record<string, unknown>) {
  return (value: T, keyServer: SigningKeyPair, backend: CryptoBackend = defaultBackend): SignedDocument => {
    const body = { type: kind.type, v: 1, ...bodyOf(value) }
    return signDocument(kind.type, body, keyServer, backend)
  }
}

/** How a broker opens one kind: under the pinned key-server key, at most `maxBytes`. */
function openerOf<T>(kind: DocumentKind<T>, maxBytes: number) {
  return (signed: unknown, keyServerPublicKey: Uint8Array, backend: CryptoBackend = defaultBackend): T =>
    openSignedDocument(signed, { kind, signingKey: keyServerPublicKey, maxBytes, backend })
}

const snapshotKind = brokerKind<BrokerSnapshot>(
  TYPE,
  'snapshot',
  { keys: ['issuedAt', 'policy', 'principals', 'epochs', 'revocationListVersion'], optional: ['tag'] },
  (o, read) => {
    const policy = readPolicy(read, o.policy, 'snapshot.policy')
    const principals = read
      .array(o.principals, 'snapshot.principals', MAX_ENTRIES)
      .map((value, i) => readPrincipal(read, value, `snapshot.principals[${i}]`))
    const epochs = read
      .array(o.epochs, 'snapshot.epochs', MAX_ENTRIES)
      .map((value, i) => readEpoch(read, value, `snapshot.epochs[${i}]`))
    return {
      issuedAt: read.uint32(o.issuedAt, 'snapshot.issuedAt'),
      policy,
      principals,
      epochs,
      revocationListVersion: read.uint32(o.revocationListVersion, 'snapshot.revocationListVersion'),
      ...(o.tag === undefined ? {} : { tag: readTag(read, o.tag, 'snapshot.tag') }),
    }
  },
)

/**
 * Signs a broker snapshot (key server side).
 *
 * @example
 * ```ts
 * const signed = createBrokerSnapshot(snapshot, keyServerIdentity)
 * ```
 */
export const createBrokerSnapshot = signerOf(snapshotKind, (snapshot) => ({
  issuedAt: snapshot.issuedAt,
  policy: snapshot.policy,
  principals: principalsJson(snapshot.principals),
  epochs: snapshot.epochs,
  revocationListVersion: snapshot.revocationListVersion,
  ...(snapshot.tag === undefined ? {} : { tag: snapshot.tag }),
}))

/**
 * Verifies and parses a broker snapshot under the pinned key-server key.
 *
 * @example
 * ```ts
 * const snapshot = openBrokerSnapshot(response.snapshot, keyServerPublicKey)
 * ```
 */
export const openBrokerSnapshot = openerOf(snapshotKind, 64 * 1024 * 1024)

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

const noticeKind = brokerKind<BrokerSnapshotNotice>(NOTICE_TYPE, 'notice', { keys: ['issuedAt', 'tag'] }, (o, read) => {
  return { issuedAt: read.uint32(o.issuedAt, 'notice.issuedAt'), tag: readTag(read, o.tag, 'notice.tag') }
})

/**
 * Signs a snapshot notice (key server side). Its signature context differs from the snapshot's,
 * so neither can be passed off as the other.
 *
 * @example
 * ```ts
 * const signed = createBrokerSnapshotNotice({ issuedAt, tag }, keyServerIdentity)
 * ```
 */
export const createBrokerSnapshotNotice = signerOf(noticeKind, (notice) => ({
  issuedAt: notice.issuedAt,
  tag: notice.tag,
}))

/**
 * Verifies and parses a snapshot notice under the pinned key-server key (at most 1 KiB).
 *
 * @example
 * ```ts
 * const { issuedAt, tag } = openBrokerSnapshotNotice(message.notice, keyServerPublicKey)
 * ```
 */
export const openBrokerSnapshotNotice = openerOf(noticeKind, 1024)

const DELTA_TYPE = 'smqtt.broker-snapshot-delta'

/**
 * What changed from one broker snapshot's content to the next (issue 14): a broker holding the
 * content tagged `baseTag` applies it and holds the content tagged `tag`, as if it had pulled
 * that snapshot (17 MiB at 100,000 principals) instead of these few kilobytes. Signed by the key
 * server like a snapshot, under its own signature context, and judged by the same rules: newer
 * issuedAt wins; one whose base is not the content held is not applied (the broker pulls the
 * whole snapshot instead).
 */
export interface BrokerSnapshotDelta {
  /** Unix seconds: the issuedAt the content `tag` is held at once applied. */
  readonly issuedAt: number
  /** The tag of the content this delta applies to. */
  readonly baseTag: string
  /** The tag of the content it makes. */
  readonly tag: string
  /** The policy, when it changed. */
  readonly policy?: Policy
  /** Principals added or changed, whole. */
  readonly principals: readonly SnapshotPrincipal[]
  /** Ids of principals no longer listed. */
  readonly removedPrincipals: readonly string[]
  /** Groups whose epochs changed: their epochs are now exactly those of `epochs` (none: no live epoch). */
  readonly epochGroups: readonly number[]
  /** Every listed epoch of the groups in `epochGroups`. */
  readonly epochs: readonly SnapshotEpoch[]
  /** The revocation list version of the content it makes. */
  readonly revocationListVersion: number
}

const deltaKind = brokerKind<BrokerSnapshotDelta>(
  DELTA_TYPE,
  'delta',
  {
    keys: [
      'issuedAt',
      'baseTag',
      'tag',
      'principals',
      'removedPrincipals',
      'epochGroups',
      'epochs',
      'revocationListVersion',
    ],
    optional: ['policy'],
  },
  (o, read) => {
    const principals = read
      .array(o.principals, 'delta.principals', MAX_ENTRIES)
      .map((value, i) => readPrincipal(read, value, `delta.principals[${i}]`))
    const removedPrincipals = read
      .array(o.removedPrincipals, 'delta.removedPrincipals', MAX_ENTRIES)
      .map((value, i) => read.principal(value, `delta.removedPrincipals[${i}]`))
    // Each principal and group at most once: a delta has one meaning, whatever the order it is applied in.
    const named = new Set<string>()
    for (const id of [...principals.map((p) => p.id), ...removedPrincipals]) {
      if (named.has(id)) read.fail(`delta: principal ${id} named twice`)
      named.add(id)
    }
    const epochGroups = read
      .array(o.epochGroups, 'delta.epochGroups', MAX_ENTRIES)
      .map((value, i) => read.uint32(value, `delta.epochGroups[${i}]`))
    const groups = new Set(epochGroups)
    if (groups.size !== epochGroups.length) read.fail('delta.epochGroups: a group named twice')
    const epochs = read.array(o.epochs, 'delta.epochs', MAX_ENTRIES).map((value, i) => {
      const epoch = readEpoch(read, value, `delta.epochs[${i}]`)
      if (!groups.has(epoch.group)) read.fail(`delta.epochs[${i}]: group ${epoch.group} is not in epochGroups`)
      return epoch
    })
    return {
      issuedAt: read.uint32(o.issuedAt, 'delta.issuedAt'),
      baseTag: readTag(read, o.baseTag, 'delta.baseTag'),
      tag: readTag(read, o.tag, 'delta.tag'),
      ...(o.policy === undefined ? {} : { policy: readPolicy(read, o.policy, 'delta.policy') }),
      principals,
      removedPrincipals,
      epochGroups,
      epochs,
      revocationListVersion: read.uint32(o.revocationListVersion, 'delta.revocationListVersion'),
    }
  },
)

/**
 * Signs a snapshot delta (key server side).
 *
 * @example
 * ```ts
 * const signed = createBrokerSnapshotDelta(delta, keyServerIdentity)
 * ```
 */
export const createBrokerSnapshotDelta = signerOf(deltaKind, (delta) => ({
  issuedAt: delta.issuedAt,
  baseTag: delta.baseTag,
  tag: delta.tag,
  ...(delta.policy === undefined ? {} : { policy: delta.policy }),
  principals: principalsJson(delta.principals),
  removedPrincipals: delta.removedPrincipals,
  epochGroups: delta.epochGroups,
  epochs: delta.epochs,
  revocationListVersion: delta.revocationListVersion,
}))

/**
 * Verifies and parses a snapshot delta under the pinned key-server key (at most 16 MiB).
 *
 * @example
 * ```ts
 * const delta = openBrokerSnapshotDelta(response.delta, keyServerPublicKey)
 * ```
 */
export const openBrokerSnapshotDelta = openerOf(deltaKind, 16 * 1024 * 1024)

/**
 * The snapshot `delta` makes of `base`, whose tag must be the delta's `baseTag`
 * (`ERR_SNAPSHOT_MALFORMED` otherwise). Principals keep the base's order, new ones last; epochs
 * likewise. A broker applies deltas to its index instead; this whole form is for tests and tools.
 *
 * @example
 * ```ts
 * const next = applyBrokerSnapshotDelta(held, openBrokerSnapshotDelta(signed, keyServerPublicKey))
 * ```
 */
export function applyBrokerSnapshotDelta(base: BrokerSnapshot, delta: BrokerSnapshotDelta): BrokerSnapshot {
  if (base.tag !== delta.baseTag)
    throw new SmqttError('ERR_SNAPSHOT_MALFORMED', `delta: it applies to snapshot ${delta.baseTag}, not ${base.tag}`)
  const changed = new Map(delta.principals.map((p) => [p.id, p]))
  const removed = new Set(delta.removedPrincipals)
  const principals: SnapshotPrincipal[] = []
  for (const p of base.principals) {
    if (removed.has(p.id)) continue
    principals.push(changed.get(p.id) ?? p)
    changed.delete(p.id)
  }
  principals.push(...changed.values())
  const replaced = new Set(delta.epochGroups)
  return {
    issuedAt: delta.issuedAt,
    policy: delta.policy ?? base.policy,
    principals,
    epochs: [...base.epochs.filter((e) => !replaced.has(e.group)), ...delta.epochs],
    revocationListVersion: delta.revocationListVersion,
    tag: delta.tag,
  }
}
