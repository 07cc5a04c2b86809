// Broker snapshots: the signed content broker plugins enforce from (policy, principals, live
// epochs, no keys), cached until the directory moves, stamped so brokers keep the newest, and
// answered with a small signed notice when a broker already holds it.
import { type BrokerSnapshot, createBrokerSnapshot, createBrokerSnapshotNotice, type SignedDocument } from '@smqtt/core'
import type { EpochRecord, PrincipalRecord } from '../store/key-store.js'
import { contentJson, digestJson } from './content-digest.js'
import type { KeyServerContext } from './context.js'
import type { Directory } from './directory.js'
import { REVOCATION_SLACK_SECONDS, revocationRetention } from './revocation.js'

export class BrokerSnapshots {
  readonly #ctx: KeyServerContext
  // The issuedAt of the last broker snapshot and a digest of its content (see brokerSnapshot).
  #lastSnapshot: { readonly issuedAt: number; readonly fingerprint: string } | undefined
  /** The last snapshot content built, and what it was built from (see #snapshotContent). */
  #snapshotCache:
    | { readonly from: SnapshotSources; readonly validUntil: number; readonly value: SnapshotContent }
    | undefined

  constructor(context: KeyServerContext) {
    this.#ctx = context
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
   * principals), and the notice counts for its snapshot's age as a new snapshot would.
   */
  async brokerSnapshotUnless(
    knownTag: string | undefined,
  ): Promise<{ tag: string } & ({ snapshot: SignedDocument } | { notice: SignedDocument })> {
    const current = await this.#snapshotContent()
    const tag = current.fingerprint
    if (tag === knownTag) return { tag, notice: this.#signSnapshot(current, 'notice') }
    return { tag, snapshot: this.#signSnapshot(current, 'snapshot') }
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
    const principals = await this.#ctx.store.listPrincipals({ revokedSince: Math.max(0, now - listedFor) })
    const epochs = (await this.#ctx.store.listEpochs()).filter((e) => e.retiresAt === undefined || e.retiresAt > now)
    const revocations = await this.#ctx.store.getRevocationList()
    const content = {
      policy: this.#ctx.policy.policy,
      principals: principals.map((p) => ({
        id: p.id,
        kid: p.kid,
        roles: p.roles,
        signingKey: p.signingKey,
        status: p.status,
        ...(p.username === undefined ? {} : { username: p.username }),
        ...(p.certificateSerial === undefined ? {} : { certificateSerial: p.certificateSerial }),
      })),
      epochs: epochs.map((e) => ({
        group: e.group,
        epoch: e.epoch,
        activatesAt: e.activatesAt,
        ...(e.retiresAt === undefined ? {} : { retiresAt: e.retiresAt }),
      })),
      revocationListVersion: revocations?.version ?? 0,
    }
    const json = contentJson(content)
    const value = { content, fingerprint: digestJson(json), jsonBytes: Buffer.byteLength(json) }
    const validUntil = snapshotChangesByTimeAt(epochs, principals, listedFor)
    this.#snapshotCache = { from, validUntil, value }
    return value
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
}
