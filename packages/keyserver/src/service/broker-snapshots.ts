// Broker snapshots: the signed content broker plugins enforce from (policy, principals, live
// epochs, no keys), cached until the directory moves, stamped so brokers keep the newest, and
// answered with a small signed notice when a broker already holds it, or with a signed delta
// when it holds a recent one (issue 14: a revocation at 100,000 principals sends each broker a
// few hundred bytes, not 17 MiB).
import {
  type BrokerSnapshot,
  type BrokerSnapshotDelta,
  createBrokerSnapshot,
  createBrokerSnapshotDelta,
  createBrokerSnapshotNotice,
  type Policy,
  type SignedDocument,
  type SnapshotEpoch,
  type SnapshotPrincipal,
} from '@smqtt/core'
import type { EpochRecord, PrincipalRecord } from '../store/key-store.js'
import { contentJson, digestPieces } from './content-digest.js'
import type { KeyServerContext } from './context.js'
import type { Directory } from './directory.js'
import { REVOCATION_SLACK_SECONDS, revocationRetention } from './revocation.js'
import { SnapshotFleet } from './snapshot-fleet.js'

export class BrokerSnapshots {
  readonly #ctx: KeyServerContext
  // The issuedAt of the last broker snapshot and a digest of its content (see brokerSnapshot).
  #lastSnapshot: { readonly issuedAt: number; readonly fingerprint: string } | undefined
  /** The last snapshot content built, and what it was built from (see #snapshotContent). */
  #snapshotCache:
    | { readonly from: SnapshotSources; readonly validUntil: number; readonly value: SnapshotContent }
    | undefined
  /** The last few contents built, newest last: the bases deltas are made from. */
  readonly #recent: SnapshotContent[] = []
  /** Deltas to the newest content, by base tag, made once and signed per answer. */
  readonly #deltas = new Map<string, DeltaContent | undefined>()
  /** What the content lists of the store, kept current from its change log. */
  readonly #fleet: SnapshotFleet
  readonly #listedByRow = new WeakMap<PrincipalRecord, SnapshotPrincipal>()
  readonly #jsonOf = new WeakMap<SnapshotPrincipal, string>()
  #lastPolicy: { readonly policy: Policy; readonly json: string } | undefined

  constructor(context: KeyServerContext) {
    this.#ctx = context
    this.#fleet = new SnapshotFleet(context.store)
  }

  /** The signed snapshot broker plugins enforce from: policy, directory, live epochs (no keys). */
  async brokerSnapshot(): Promise<SignedDocument> {
    return this.#signSnapshot(await this.#snapshotContent(), 'snapshot')
  }

  /**
   * {@link brokerSnapshot} with its entity tag (a digest of its content, issuedAt aside, signed
   * into the snapshot too), or, when the tag equals `knownTag`, a signed notice instead: "this
   * content is still current at issuedAt". A broker asking whether anything changed
   * (`If-None-Match`) gets ~200 bytes instead of the whole snapshot (17 MiB at 100,000
   * principals), and the notice counts for its snapshot's age as a new snapshot would. With
   * `deltas`, a broker holding one of the last few contents gets what changed since, signed,
   * while that is small (see {@link MAX_DELTA_JSON_BYTES}).
   */
  async brokerSnapshotUnless(
    knownTag: string | undefined,
    options: { readonly deltas?: boolean } = {},
  ): Promise<
    { tag: string } & ({ snapshot: SignedDocument } | { notice: SignedDocument } | { delta: SignedDocument })
  > {
    const current = await this.#snapshotContent()
    const tag = current.fingerprint
    if (tag === knownTag) return { tag, notice: this.#signSnapshot(current, 'notice') }
    const delta = options.deltas && knownTag !== undefined ? this.#deltaTo(current, knownTag) : undefined
    if (delta !== undefined)
      return {
        tag,
        delta: createBrokerSnapshotDelta({ ...delta.body, issuedAt: this.#stampSnapshot(tag) }, this.#ctx.identity),
      }
    return { tag, snapshot: this.#signSnapshot(current, 'snapshot') }
  }

  /**
   * What changed from the content tagged `baseTag` to `current`, when the base is one of the
   * last few built and the change is small enough to be worth it; undefined otherwise.
   */
  #deltaTo(current: SnapshotContent, baseTag: string): DeltaContent | undefined {
    if (this.#recent.at(-1) !== current) return undefined
    if (this.#deltas.has(baseTag)) return this.#deltas.get(baseTag)
    const base = this.#recent.find((c) => c.fingerprint === baseTag)
    const delta = base && contentDelta(base, current)
    const worth = delta && delta.jsonBytes <= Math.min(MAX_DELTA_JSON_BYTES, current.jsonBytes) ? delta : undefined
    // Unknown tags are not remembered: a broker could otherwise fill the map with made-up ones.
    if (base) this.#deltas.set(baseTag, worth)
    return worth
  }

  /**
   * What to push to brokers over MQTT after a change: the signed snapshot itself while its
   * payload stays under `maxInlineBytes`, else a signed notice (issuedAt and ETag, ~200 bytes)
   * on which brokers pull it over HTTPS. A pull made after the notice returns a snapshot of the
   * notice's issuedAt or later (issue 14: a snapshot grows ~190 bytes per principal, and MQTT
   * brokers refuse packets over 256 KiB).
   */
  async brokerSnapshotPush(
    maxInlineBytes: number,
  ): Promise<{ readonly snapshot: SignedDocument } | { readonly notice: SignedDocument }> {
    const current = await this.#snapshotContent()
    // The payload is the content's JSON plus a few fields, sent base64url (4/3).
    if (((current.jsonBytes + 160) * 4) / 3 <= maxInlineBytes)
      return { snapshot: this.#signSnapshot(current, 'snapshot') }
    return { notice: this.#signSnapshot(current, 'notice') }
  }

  /** The current content stamped and signed as a snapshot, or as a notice naming its tag. */
  #signSnapshot({ content, fingerprint }: SnapshotContent, as: 'snapshot' | 'notice'): SignedDocument {
    const issuedAt = this.#stampSnapshot(fingerprint)
    return as === 'notice'
      ? createBrokerSnapshotNotice({ issuedAt, tag: fingerprint }, this.#ctx.identity)
      : createBrokerSnapshot({ issuedAt, ...content, tag: fingerprint }, this.#ctx.identity)
  }

  /** The broker snapshot's content (issuedAt aside), its digest, and its JSON's length. */
  async #snapshotContent(): Promise<SnapshotContent> {
    const now = this.#ctx.now()
    // Built again only when the directory moved (the store's change log: principals, epochs,
    // policy, revocation list, from any process) or time made an epoch retire or a revocation
    // age out: an unchanged pull at 100,000 principals then costs one small query, not a read
    // of the fleet, its JSON and its digest.
    const directory = await this.#ctx.freshDirectory()
    const from: SnapshotSources = { directory, generation: directory.generation, revocations: directory.revocations }
    const cached = this.#snapshotCache
    if (cached && sameSources(cached.from, from) && now < cached.validUntil) return cached.value
    // Revoked principals stay listed (so brokers close their sessions and forget their
    // persistent ones) for as long as the revocation list keeps them; after that a broker refuses
    // them as unknown, and the snapshot does not grow with lifetime revocations.
    const listedFor = revocationRetention(this.#ctx.settings) + REVOCATION_SLACK_SECONDS
    const { principals, epochs, revocations } = await this.#fleet.listed(now, Math.max(0, now - listedFor))
    const content = {
      policy: this.#ctx.policy.policy,
      principals: principals.map((row) => this.#listedPrincipal(row)),
      epochs: epochs.map((e) => ({
        group: e.group,
        epoch: e.epoch,
        activatesAt: e.activatesAt,
        ...(e.retiresAt === undefined ? {} : { retiresAt: e.retiresAt }),
      })),
      revocationListVersion: revocations,
    }
    const policyJson = this.#policyJson(content.policy)
    const { digest, bytes } = digestPieces(contentPieces(content, policyJson, (p) => this.#principalJson(p)))
    const value: SnapshotContent = {
      content,
      fingerprint: digest,
      jsonBytes: bytes,
      byId: new Map(content.principals.map((p) => [p.id, p])),
      epochsByGroup: epochsByGroup(content.epochs),
      policyJson,
    }
    const validUntil = snapshotChangesByTimeAt(epochs, principals, listedFor)
    this.#snapshotCache = { from, validUntil, value }
    const previous = this.#recent.at(-1)
    if (previous?.fingerprint === value.fingerprint) this.#recent[this.#recent.length - 1] = value
    else {
      this.#recent.push(value)
      if (this.#recent.length > DELTA_BASES + 1) this.#recent.shift()
      this.#deltas.clear()
    }
    return value
  }

  /**
   * A stored principal as the snapshot lists it. The same row (the fleet keeps unchanged rows)
   * gives the same object, and so does a row read again unchanged, so a delta finds the changed
   * principals by identity, and kept contents share all but those.
   */
  #listedPrincipal(row: PrincipalRecord): SnapshotPrincipal {
    const known = this.#listedByRow.get(row)
    if (known) return known
    const listed: SnapshotPrincipal = {
      id: row.id,
      kid: row.kid,
      roles: row.roles,
      signingKey: row.signingKey,
      status: row.status,
      ...(row.username === undefined ? {} : { username: row.username }),
      ...(row.certificateSerial === undefined ? {} : { certificateSerial: row.certificateSerial }),
    }
    const before = this.#recent.at(-1)?.byId.get(row.id)
    const same = before && samePrincipal(before, listed) ? before : listed
    this.#listedByRow.set(row, same)
    return same
  }

  /** A listed principal's JSON in the content digest, made once per principal object. */
  #principalJson(principal: SnapshotPrincipal): string {
    let json = this.#jsonOf.get(principal)
    if (json === undefined) {
      json = contentJson(principal)
      this.#jsonOf.set(principal, json)
    }
    return json
  }

  /** The policy's JSON, made once per policy in force (a fleet's is megabytes). */
  #policyJson(policy: Policy): string {
    if (this.#lastPolicy?.policy !== policy) this.#lastPolicy = { policy, json: contentJson(policy) }
    return this.#lastPolicy.json
  }

  /**
   * The issuedAt of a snapshot (or notice) of content `fingerprint`. Brokers keep a snapshot of
   * the same second only if it is the same one (a replayed other one of that second could undo
   * a change), so a changed snapshot is stamped after the last one; never earlier than the last.
   */
  #stampSnapshot(fingerprint: string): number {
    const now = this.#ctx.now()
    const last = this.#lastSnapshot
    const issuedAt = last ? Math.max(now, last.issuedAt + (last.fingerprint === fingerprint ? 0 : 1)) : now
    this.#lastSnapshot = { issuedAt, fingerprint }
    return issuedAt
  }
}

/**
 * The first second at which a snapshot's reads would answer otherwise with no change logged: an
 * epoch retires, or a revocation ages out of the `listedFor` seconds revoked principals stay
 * listed. A loop, not `Math.min(...)`: a fleet may have revoked more principals in that window
 * than a call takes arguments.
 */
export function snapshotChangesByTimeAt(
  epochs: readonly Pick<EpochRecord, 'retiresAt'>[],
  principals: readonly Pick<PrincipalRecord, 'status' | 'statusChangedAt'>[],
  listedFor: number,
): number {
  let at = Number.POSITIVE_INFINITY
  for (const e of epochs) if (e.retiresAt !== undefined) at = Math.min(at, e.retiresAt)
  for (const p of principals)
    if (p.status === 'revoked' && p.statusChangedAt !== undefined) at = Math.min(at, p.statusChangedAt + listedFor + 1)
  return at
}

/** What a snapshot's content was built from: the same directory, not moved since. */
interface SnapshotSources {
  readonly directory: Directory
  readonly generation: number
  readonly revocations: number
}

const sameSources = (a: SnapshotSources, b: SnapshotSources) =>
  a.directory === b.directory && a.generation === b.generation && a.revocations === b.revocations

/** The broker snapshot's content (issuedAt and tag aside), its digest (the tag), and its JSON's length. */
interface SnapshotContent {
  readonly content: Omit<BrokerSnapshot, 'issuedAt' | 'tag'>
  readonly fingerprint: string
  readonly jsonBytes: number
  /** The principals by id, and the rest in the forms a delta compares. */
  readonly byId: ReadonlyMap<string, SnapshotPrincipal>
  readonly epochsByGroup: ReadonlyMap<number, { readonly epochs: SnapshotEpoch[]; readonly json: string }>
  readonly policyJson: string
}

/** A delta's content (issuedAt aside) and its JSON's length. */
interface DeltaContent {
  readonly body: Omit<BrokerSnapshotDelta, 'issuedAt'>
  readonly jsonBytes: number
}

/**
 * Contents kept as delta bases, besides the current one. A broker is normally one change behind
 * (it pulls on every pushed notice), or a few after a burst; one further behind pulls the whole
 * snapshot. Kept contents share their unchanged principals, so each costs about its index
 * (~5 MB at 100,000 principals).
 */
const DELTA_BASES = 4

/**
 * Largest delta answered, as JSON: above it the whole snapshot is sent. Small enough for a
 * broker to open on its event loop in a few milliseconds (a larger signed document goes to its
 * worker thread), large enough for ~1,000 changed principals.
 */
export const MAX_DELTA_JSON_BYTES = 192 * 1024

const samePrincipal = (a: SnapshotPrincipal, b: SnapshotPrincipal) =>
  a.id === b.id &&
  a.kid === b.kid &&
  a.status === b.status &&
  a.username === b.username &&
  a.certificateSerial === b.certificateSerial &&
  a.roles.length === b.roles.length &&
  a.roles.every((role, i) => role === b.roles[i]) &&
  sameBytes(a.signingKey, b.signingKey)

/** Byte equality without the copies `Buffer.from` would make (100,000 keys per content built). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function epochsByGroup(epochs: readonly SnapshotEpoch[]): Map<number, { epochs: SnapshotEpoch[]; json: string }> {
  const byGroup = new Map<number, { epochs: SnapshotEpoch[]; json: string }>()
  for (const e of epochs) {
    const entry = byGroup.get(e.group)
    if (entry) entry.epochs.push(e)
    else byGroup.set(e.group, { epochs: [e], json: '' })
  }
  for (const entry of byGroup.values()) entry.json = JSON.stringify(entry.epochs)
  return byGroup
}

/** What changed from `base` to `current`, as a delta (issuedAt aside). */
function contentDelta(base: SnapshotContent, current: SnapshotContent): DeltaContent {
  const principals = current.content.principals.filter((p) => base.byId.get(p.id) !== p)
  const removedPrincipals = [...base.byId.keys()].filter((id) => !current.byId.has(id))
  const epochGroups = [...new Set([...base.epochsByGroup.keys(), ...current.epochsByGroup.keys()])].filter(
    (group) => base.epochsByGroup.get(group)?.json !== current.epochsByGroup.get(group)?.json,
  )
  const body = {
    baseTag: base.fingerprint,
    tag: current.fingerprint,
    ...(base.policyJson === current.policyJson ? {} : { policy: current.content.policy }),
    principals,
    removedPrincipals,
    epochGroups,
    epochs: epochGroups.flatMap((group) => current.epochsByGroup.get(group)?.epochs ?? []),
    revocationListVersion: current.content.revocationListVersion,
  }
  return { body, jsonBytes: Buffer.byteLength(contentJson(body)) }
}

/**
 * The pieces whose concatenation is `contentJson(content)` (the JSON the tag digests), with the
 * principals' JSON from `principalJson`: only a changed principal's is made again.
 */
export function* contentPieces(
  content: SnapshotContent['content'],
  policyJson: string,
  principalJson: (principal: SnapshotPrincipal) => string,
): Generator<string> {
  yield `{"policy":${policyJson},"principals":[`
  for (const [i, principal] of content.principals.entries()) {
    if (i > 0) yield ','
    yield principalJson(principal)
  }
  yield `],"epochs":${contentJson(content.epochs)},"revocationListVersion":${contentJson(content.revocationListVersion)}}`
}
