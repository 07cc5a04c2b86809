// Key bundles, their tags (freshness) and writer records: what a principal is handed, built
// from the directory and cached until the next change.
import {
  createKeyBundle,
  createWriterRecord,
  DEFAULT_SUITE,
  type KeyGroupWriter,
  MAX_RECORD_WRITERS,
  type SignedDocument,
  SmqttError,
} from '@smqtt/core'
import type { PrincipalRecord } from '../store/key-store.js'
import { digest } from './content-digest.js'
import type { KeyServerContext } from './context.js'
import type { Directory } from './directory.js'
import { SealedKeyCache } from './sealed-key-cache.js'

/** See Bundles.bundleFor. */
const BUNDLE_REUSE_SECONDS = 60
const MAX_CACHED_BUNDLES = 10_000
const MAX_BUNDLE_ISSUED_AT = 100_000

export class Bundles {
  readonly #ctx: KeyServerContext
  // Signed bundles by principal id, valid until the next change (see bundleFor).
  readonly #bundles = new Map<
    string,
    { readonly document: SignedDocument; readonly builtAt: number; readonly generation: number }
  >()
  // The issuedAt of each principal's last bundle, kept across changes (unlike #bundles): clients
  // keep only strictly newer bundles, so one built after a change in the same second must be later.
  readonly #bundleIssuedAt = new Map<string, number>()
  // Epoch keys sealed to each holder, kept across changes (unlike #bundles): see SealedKeyCache.
  readonly #sealedKeys = new SealedKeyCache()
  // Bundle tags by principal id, for the directory generation they were computed from (see freshnessFor).
  readonly #tags = new Map<string, { readonly tag: string; readonly generation: number }>()

  constructor(context: KeyServerContext) {
    this.#ctx = context
    context.onForget(() => {
      this.#bundles.clear()
      this.#tags.clear()
    })
    context.onDirectoryChecked((directory) =>
      this.#sealedKeys.keepOnly(
        [...directory.epochs].flatMap(([group, list]) => list.map((e) => ({ group, epoch: e.epoch }))),
      ),
    )
  }

  /**
   * The signed key bundle of a principal: every group it may read or write, live epochs only.
   * A bundle built since the last change is served again for up to BUNDLE_REUSE_SECONDS: its
   * content would be the same, and sealing every epoch afresh for each request is what would
   * limit the key server when a fleet reconnects at once.
   */
  async bundleFor(principal: PrincipalRecord): Promise<SignedDocument> {
    if (principal.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    const now = this.#ctx.now()
    const directory = await this.#ctx.currentDirectory(now)
    const cached = this.#bundles.get(principal.id)
    if (cached && cached.generation === directory.generation && now - cached.builtAt < BUNDLE_REUSE_SECONDS)
      return cached.document
    const issuedAt = Math.max(now, (this.#bundleIssuedAt.get(principal.id) ?? -1) + 1)
    const document = this.#buildBundle(principal, directory, now, issuedAt)
    if (this.#bundleIssuedAt.size >= MAX_BUNDLE_ISSUED_AT) this.#bundleIssuedAt.clear()
    this.#bundleIssuedAt.set(principal.id, issuedAt)
    if (this.#bundles.size >= MAX_CACHED_BUNDLES) this.#bundles.clear()
    this.#bundles.set(principal.id, { document, builtAt: now, generation: directory.generation })
    return document
  }

  #buildBundle(principal: PrincipalRecord, directory: Directory, now: number, issuedAt: number): SignedDocument {
    const notAfter = now + this.#ctx.settings.bundleTtlSeconds
    const groups = this.#ctx.policy.keyedGroups(principal)
    const recipient = {
      id: principal.id,
      kid: principal.kid,
      signingKey: principal.signingKey,
      agreementKey: principal.agreementKey,
      kem: principal.kem,
    }
    const bundleGroups = this.#ctx.policy.policy.groups
      .filter((g) => groups.has(g.id))
      .map((g) => ({
        group: g.id,
        name: g.name,
        filter: g.filter,
        suite: DEFAULT_SUITE,
        epochs: (directory.epochs.get(g.id) ?? [])
          .filter((e) => e.retiresAt === undefined || e.retiresAt > now)
          .map((e) => ({
            epoch: e.epoch,
            activatesAt: e.activatesAt,
            retiresAt: e.retiresAt ?? notAfter + (g.graceSeconds ?? this.#ctx.settings.defaultGraceSeconds),
            sealed: this.#sealedKeys.sealed(recipient, { group: g.id, epoch: e.epoch, suite: DEFAULT_SUITE }, e.key),
          })),
        writers: this.#inlineWriters(g.id, principal, directory),
      }))
    return createKeyBundle({
      recipient,
      groups: bundleGroups,
      validity: { notBefore: now - 60, notAfter },
      issuedAt,
      keyServer: this.#ctx.identity,
    })
  }

  /** Whether bundles list all of `group`'s writers (few enough), or only the recipient's own entry. */
  #listsAllWriters(group: number, directory: Directory): boolean {
    return directory.writerCount(group) <= this.#ctx.settings.bundleInlineWriters
  }

  /** The writers `principal`'s bundle lists for `group`: all of them, or past the bound only itself. */
  #inlineWriters(group: number, principal: PrincipalRecord, directory: Directory): readonly KeyGroupWriter[] {
    if (this.#listsAllWriters(group, directory)) return directory.writers(group)
    const own = directory.writer(group, principal.kid)
    return own && own.principal === principal.id ? [own] : []
  }

  /**
   * A signed record of the writers among `kids` of `group` (`POST /v1/writers`), for `reader` to
   * check envelopes from writers its bundle does not list: the same entries a bundle would carry
   * (the same directory, so revoked, disabled and deleted principals are never in it), bound to
   * the reader, the group and its filter, valid for writerRecordTtlSeconds. Ids that are not
   * writers of the group are left out. Only a principal that holds the group's key may ask.
   */
  async writerRecordFor(reader: PrincipalRecord, group: number, kids: readonly number[]): Promise<SignedDocument> {
    if (reader.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    if (kids.length > MAX_RECORD_WRITERS)
      throw new SmqttError('ERR_REQUEST_INVALID', `at most ${MAX_RECORD_WRITERS} key ids per request`)
    const now = this.#ctx.now()
    const directory = await this.#ctx.currentDirectory(now)
    const keyed = this.#ctx.policy.policy.groups.find((g) => g.id === group)
    if (!keyed || !this.#ctx.policy.keyedGroups(reader).has(group))
      throw new SmqttError('ERR_FORBIDDEN', `not a member of key group ${group}`)
    const writers = [...new Set(kids)].flatMap((kid) => {
      const writer = directory.writer(group, kid)
      return writer ? [writer] : []
    })
    return createWriterRecord({
      reader: reader.id,
      group,
      filter: keyed.filter,
      writers,
      issuedAt: now,
      notAfter: now + this.#ctx.settings.writerRecordTtlSeconds,
      keyServer: this.#ctx.identity,
    })
  }

  // ---- freshness ----------------------------------------------------------------------------

  /**
   * What a client polls (`GET /v1/freshness`, answered 304 while nothing changed) to learn from
   * the key server itself, not through a broker that may drop pushes, that its revocation list
   * or its key bundle is out of date: the revocation list's version (0 when none) and the tag of
   * the bundle this principal would get now. Cheap: the tag is cached per principal until the
   * directory's content changes, the version is read with the directory (at most every
   * DIRECTORY_TTL_SECONDS, and after every change this process makes).
   */
  async freshnessFor(principal: PrincipalRecord): Promise<{ revocations: number; bundle: string }> {
    if (principal.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    const directory = await this.#ctx.currentDirectory(this.#ctx.now())
    return { revocations: directory.revocations, bundle: this.#bundleTag(principal, directory) }
  }

  /**
   * The bundle with its tag. The tag is taken first: a change in between makes the bundle newer
   * than its tag, so the client's next poll sees another tag and fetches once more; it can never
   * hold a tag newer than its bundle and miss the change.
   */
  async bundleWithTag(principal: PrincipalRecord): Promise<{ bundle: SignedDocument; tag: string }> {
    const { bundle: tag } = await this.freshnessFor(principal)
    return { bundle: await this.bundleFor(principal), tag }
  }

  /**
   * A short hash of everything that decides this principal's bundle apart from its sealing
   * randomness and times: for each group it gets, the group (id, name, filter, suite), its open
   * epochs (not yet retiring: what a member seals with now or next) and its writers (kid,
   * principal, publish rights, signing key). Retiring epochs are left out on purpose: an epoch
   * starts retiring only in a rotation, which opens another one (the tag changes then), and its
   * later deletion changes nothing a member needs, so it costs the fleet no refetch.
   */
  #bundleTag(principal: PrincipalRecord, directory: Directory): string {
    const cached = this.#tags.get(principal.id)
    if (cached && cached.generation === directory.generation) return cached.tag
    const groups = this.#ctx.policy.keyedGroups(principal)
    const parts = this.#ctx.policy.policy.groups
      .filter((g) => groups.has(g.id))
      .map((g) => {
        let part = directory.groupTags.get(g.id)
        if (part === undefined) {
          part = digest([
            g.id,
            g.name,
            g.filter,
            DEFAULT_SUITE,
            (directory.epochs.get(g.id) ?? [])
              .filter((e) => e.retiresAt === undefined)
              .map((e) => [e.epoch, e.activatesAt]),
            this.#listsAllWriters(g.id, directory)
              ? directory.writers(g.id).map((w) => [w.kid, w.principal, w.publish, w.signingKey])
              : 'records',
          ])
          directory.groupTags.set(g.id, part)
        }
        if (this.#listsAllWriters(g.id, directory)) return part
        // Only the recipient's own entry is listed: its share of the tag is its own.
        const own = directory.writer(g.id, principal.kid)
        return own ? digest([part, own.principal, own.publish, own.signingKey]) : part
      })
    const tag = digest(parts)
    if (this.#tags.size >= MAX_CACHED_BUNDLES) this.#tags.clear()
    this.#tags.set(principal.id, { tag, generation: directory.generation })
    return tag
  }
}
