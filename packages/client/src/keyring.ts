import {
  constantTimeEqual,
  type EnvelopeKeys,
  EpochKey,
  type OpenedEpochKey,
  type OpenedKeyBundle,
  type OpenedKeyGroup,
  type OpenedKeyGroupWriter,
  type OpenedWriterRecord,
  publishRightsAllow,
  SmqttError,
  SUITES,
  type SuiteId,
  topicMatches,
  type WriterLookup,
} from '@smqtt/core'

/** One epoch held for a group. */
export interface HeldEpoch {
  readonly epoch: number
  readonly activatesAt: number
  readonly retiresAt: number
  readonly key: EpochKey
}

/** One key group as the keyring holds it. */
export interface HeldGroup {
  readonly group: number
  readonly name: string
  readonly filter: string
  readonly suite: SuiteId
  /** Ascending by epoch number. */
  readonly epochs: readonly HeldEpoch[]
  readonly writers: ReadonlyMap<number, OpenedKeyGroupWriter>
}

/** What a sender needs to seal for one topic. */
export interface SealingKey {
  readonly group: HeldGroup
  readonly epochKey: EpochKey
}

/** Topics remembered per writer; a writer cycling through more just starts the cache over. */
const RIGHTS_CACHE_LIMIT = 1024

/** Writers learned from records, held at most (all groups); past it the least recently used goes. */
export const MAX_RECORD_WRITERS_HELD = 10_000

/** A writer learned from a writer record, for as long as the record is valid. */
interface RecordWriter {
  readonly filter: string
  readonly issuedAt: number
  readonly notAfter: number
  readonly writer: OpenedKeyGroupWriter
}

const isSuite = (suite: number): suite is SuiteId => Object.hasOwn(SUITES, suite)

/**
 * The keys of one principal, from its latest key bundle, in the shape `openEnvelope` wants.
 * Epoch keys are `EpochKey` objects kept across bundle updates, so per-sender key derivation
 * happens once per epoch and sender, not once per message or per refresh. An epoch past its
 * `retiresAt` is treated as gone even before the next bundle drops it.
 *
 * @example
 * ```ts
 * const keyring = new Keyring(() => Math.floor(Date.now() / 1000))
 * keyring.apply(openKeyBundle(signed, { keyServerPublicKey, recipient: identity, now }))
 * openEnvelope(bytes, topic, { keys: keyring })
 * ```
 */
export class Keyring implements EnvelopeKeys {
  readonly #now: () => number
  readonly #recordUsable: (issuedAt: number) => boolean
  #groups = new Map<number, HeldGroup>()
  /** Answers of {@link writerMayPublish} per writer and topic, for the bundle held (a new one starts afresh). */
  #rights = new WeakMap<OpenedKeyGroupWriter, Map<string, boolean>>()
  #held: OpenedKeyBundle | undefined
  /**
   * Writers the bundle does not list, from writer records, by `group:kid`, in least recently
   * used order. Kept across bundles (a rotation must not make every sender unknown again), each
   * only while its record is valid and its group is held with the same filter. Not persisted: a
   * restart fetches them again on first sight.
   */
  readonly #records = new Map<string, RecordWriter>()

  /**
   * @param recordUsable whether a writer record issued at this time may still be used: a client
   * passes its revocation list's `coversBundleIssuedAt`, so a record is dropped, as a bundle is,
   * once the list's watermark passes it (a writer revoked since may have been pruned from it).
   */
  constructor(now: () => number, recordUsable: (issuedAt: number) => boolean = () => true) {
    this.#now = now
    this.#recordUsable = recordUsable
  }

  /** `issuedAt` of the bundle held, or -1 before the first. */
  get issuedAt(): number {
    return this.#held?.issuedAt ?? -1
  }

  /** `notAfter` of the bundle held (unix seconds), 0 before the first. */
  get notAfter(): number {
    return this.#held?.notAfter ?? 0
  }

  /** The groups held, for inspection. */
  get groups(): readonly HeldGroup[] {
    return [...this.#groups.values()]
  }

  /**
   * Makes `bundle` (already verified) the current one if it was issued strictly after the one
   * held. Returns false, changing nothing, when it is the bundle held again (same issuedAt and
   * content, e.g. re-fetched or sealed afresh by another key server process).
   *
   * @throws SmqttError `ERR_BUNDLE_ROLLBACK` when it is older, or issued in the same second
   * with other content: a bundle replayed by the broker must not bring back dropped writers or
   * take away new epochs, and within one second only the key server knows which came last.
   */
  apply(bundle: OpenedKeyBundle): boolean {
    if (this.#held && bundle.issuedAt <= this.#held.issuedAt) {
      if (bundle.issuedAt === this.#held.issuedAt && sameBundle(bundle, this.#held)) return false
      throw new SmqttError(
        'ERR_BUNDLE_ROLLBACK',
        `key bundle issued at ${bundle.issuedAt} is not newer than the one held`,
      )
    }
    const groups = new Map<number, HeldGroup>()
    for (const group of bundle.groups) {
      if (!isSuite(group.suite)) continue // a suite this client cannot use; its messages fail closed
      const suite = group.suite
      const previous = this.#groups.get(group.group)
      const epochs = group.epochs
        .map((epoch): HeldEpoch => {
          const held = previous?.epochs.find((e) => e.epoch === epoch.epoch)
          // Reuse the EpochKey (and its derived sender keys) when the key is unchanged.
          const key =
            held && held.key.suite === suite && constantTimeEqual(keyBytesOf(held), epoch.key)
              ? held.key
              : new EpochKey({ group: group.group, epoch: epoch.epoch, suite, key: epoch.key })
          keyBytes.set(key, epoch.key.slice())
          return { epoch: epoch.epoch, activatesAt: epoch.activatesAt, retiresAt: epoch.retiresAt, key }
        })
        .sort((a, b) => a.epoch - b.epoch)
      groups.set(group.group, {
        group: group.group,
        name: group.name,
        filter: group.filter,
        suite,
        epochs,
        writers: group.writers,
      })
    }
    this.#groups = groups
    this.#rights = new WeakMap()
    this.#held = bundle
    return true
  }

  /**
   * Adds the writers of a verified writer record (`openWriterRecord`), if its group is held with
   * the same filter (their rights were checked within it); returns how many were added. A writer
   * the bundle lists keeps the bundle's entry; of two records, the later issued wins.
   */
  addWriters(record: OpenedWriterRecord): number {
    const held = this.#groups.get(record.group)
    if (
      !held ||
      held.filter !== record.filter ||
      record.notAfter <= this.#now() ||
      !this.#recordUsable(record.issuedAt)
    )
      return 0
    let added = 0
    for (const [kid, writer] of record.writers) {
      if (held.writers.has(kid)) continue
      const key = `${record.group}:${kid}`
      const previous = this.#records.get(key)
      if (previous && previous.issuedAt > record.issuedAt) continue
      this.#records.delete(key)
      if (this.#records.size >= MAX_RECORD_WRITERS_HELD)
        this.#records.delete(this.#records.keys().next().value as string)
      this.#records.set(key, { filter: record.filter, issuedAt: record.issuedAt, notAfter: record.notAfter, writer })
      added++
    }
    return added
  }

  /** Writer `sender` of `group`: the bundle's entry, else a valid record's. */
  #writer(group: number, sender: number): OpenedKeyGroupWriter | undefined {
    const held = this.#groups.get(group)
    if (!held) return undefined
    const listed = held.writers.get(sender)
    if (listed) return listed
    const key = `${group}:${sender}`
    const learned = this.#records.get(key)
    if (!learned) return undefined
    if (learned.notAfter <= this.#now() || learned.filter !== held.filter || !this.#recordUsable(learned.issuedAt)) {
      this.#records.delete(key)
      return undefined
    }
    this.#records.delete(key) // most recently used last
    this.#records.set(key, learned)
    return learned.writer
  }

  /** The key of `group`'s `epoch` if held and not retired (any epoch: the grace period). */
  epochKey(group: number, epoch: number): EpochKey | undefined {
    const held = this.#groups.get(group)?.epochs.find((e) => e.epoch === epoch)
    return held && held.retiresAt > this.#now() ? held.key : undefined
  }

  /** A writer's Ed25519 key, for signature checks. */
  readonly writerKey: WriterLookup = (group, sender) => this.#writer(group, sender)?.signingKey

  /**
   * Whether writer `sender` of `group` may publish on `topic`, by its rights in the bundle or its record;
   * `openEnvelope` refuses the message otherwise, once the signature holds. The signature proves
   * who wrote it for this topic, not that they may: this stops a writer on another writer's
   * topics and, as its rights lie within its group, on another group's topics.
   */
  writerMayPublish(group: number, sender: number, topic: string): boolean {
    const writer = this.#writer(group, sender)
    if (writer === undefined) return false
    // A device publishes on the same few topics over and over: match its rights once per topic.
    let answers = this.#rights.get(writer)
    if (!answers) {
      answers = new Map()
      this.#rights.set(writer, answers)
    }
    let allowed = answers.get(topic)
    if (allowed === undefined) {
      allowed = publishRightsAllow(writer.publish, topic)
      if (answers.size >= RIGHTS_CACHE_LIMIT) answers.clear()
      answers.set(topic, allowed)
    }
    return allowed
  }

  /** The principal id of a writer. */
  writerPrincipal(group: number, sender: number): string | undefined {
    return this.#writer(group, sender)?.principal
  }

  /** The group `topic` belongs to (each topic belongs to at most one). */
  groupOf(topic: string): HeldGroup | undefined {
    for (const group of this.#groups.values()) if (topicMatches(group.filter, topic)) return group
    return undefined
  }

  /**
   * The group and current epoch to seal a message for `topic` as sender `kid`: the highest
   * epoch that has activated and not retired.
   *
   * @throws SmqttError `ERR_NO_KEY_GROUP` (no group holds the topic), `ERR_FORBIDDEN` (this
   * principal is not a writer of the group), `ERR_UNKNOWN_EPOCH` (no epoch is active now).
   */
  sealingKey(topic: string, kid: number): SealingKey {
    const group = this.groupOf(topic)
    if (!group)
      throw new SmqttError('ERR_NO_KEY_GROUP', `no key group of this client holds topic ${topic}`, {
        details: { topic },
      })
    if (!group.writers.has(kid))
      throw new SmqttError('ERR_FORBIDDEN', `this principal is not a writer of key group ${group.name}`)
    const now = this.#now()
    for (let i = group.epochs.length - 1; i >= 0; i--) {
      const epoch = group.epochs[i] as HeldEpoch
      if (epoch.activatesAt <= now && epoch.retiresAt > now) return { group, epochKey: epoch.key }
    }
    throw new SmqttError('ERR_UNKNOWN_EPOCH', `no active epoch held for key group ${group.name}`, {
      details: { group: group.group, topic },
    })
  }
}

// EpochKey keeps its key private; remember the bytes beside it to tell a changed key apart.
const keyBytes = new WeakMap<EpochKey, Uint8Array>()
const keyBytesOf = (held: HeldEpoch): Uint8Array => keyBytes.get(held.key) ?? new Uint8Array(0)

/** Whether two bundles of one principal hand out the same keys, writers and validity. */
const sameBundle = (a: OpenedKeyBundle, b: OpenedKeyBundle): boolean =>
  a.notBefore === b.notBefore && a.notAfter === b.notAfter && sameList(a.groups, b.groups, sameGroup)

const sameGroup = (a: OpenedKeyGroup, b: OpenedKeyGroup): boolean =>
  a.group === b.group &&
  a.name === b.name &&
  a.filter === b.filter &&
  a.suite === b.suite &&
  sameList(a.epochs, b.epochs, sameEpoch) &&
  sameList([...a.writers], [...b.writers], sameWriter)

const sameEpoch = (a: OpenedEpochKey, b: OpenedEpochKey): boolean =>
  a.epoch === b.epoch &&
  a.activatesAt === b.activatesAt &&
  a.retiresAt === b.retiresAt &&
  constantTimeEqual(a.key, b.key)

const sameWriter = ([kidA, a]: [number, OpenedKeyGroupWriter], [kidB, b]: [number, OpenedKeyGroupWriter]): boolean =>
  kidA === kidB &&
  a.principal === b.principal &&
  constantTimeEqual(a.signingKey, b.signingKey) &&
  sameList(a.publish.allow, b.publish.allow, Object.is) &&
  sameList(a.publish.deny, b.publish.deny, Object.is)

function sameList<T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean): boolean {
  return a.length === b.length && a.every((x, i) => same(x, b[i] as T))
}
