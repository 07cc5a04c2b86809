// What bundles, bundle tags and writer records are built from: each key group's writers (with
// their publish rights in the group), the groups' opened epoch keys, and the revocation list's
// version. Built whole from the store once, then kept current by following the store's
// directory change log (KeyStore.listDirectoryChanges): a principal's change re-derives that
// principal's entries alone, an epoch change re-reads the epochs of its key group, and only a
// policy change (or a log that no longer reaches back) builds it whole again. So an enrollment,
// a revocation or a home's re-key at 100,000 principals costs about what it costs at 100, and a
// key server with nothing new pays one small query per check instead of a rebuild (issue 14).
// It also indexes who holds each group's keys, so the push after a re-key finds a home's 10
// members without evaluating the policy for the whole fleet.
import {
  constantTimeEqual,
  type KeyGroupPolicy,
  type KeyGroupWriter,
  type PrincipalContext,
  publishRightsProblem,
} from '@smqtt/core'
import type { Logger } from 'pino'
import type { MasterKey } from '../master-key.js'
import type { DirectoryChange, KeyStore, PrincipalRecord } from '../store/key-store.js'
import { writerLeftOut } from './policy-review.js'
import { type PolicyState, principalContext } from './policy-state.js'

export interface OpenedEpoch {
  readonly epoch: number
  readonly key: Uint8Array
  readonly activatesAt: number
  readonly retiresAt: number | undefined
}

/** Most log entries applied one by one; past that a whole rebuild is cheaper. */
const MAX_CHANGES_APPLIED = 1_000

/** The store label an epoch key is sealed under (see KeyServer.rotateGroup). */
export const epochLabel = (group: number, epoch: number) => `epoch:${group}:${epoch}`

/** What the directory reads: the store, the master key that opens epoch keys, the policy in force. */
export interface DirectorySource {
  readonly store: KeyStore
  readonly masterKey: MasterKey
  readonly logger: Logger
  policy(): PolicyState
  /** Reads the policy from the store (another process may have changed it) and answers the one in force. */
  reloadPolicy(): Promise<PolicyState>
  /** A number never handed out before (see Directory.generation). */
  nextGeneration(): number
}

export class Directory {
  /** Moves whenever the content does: bundles and tags cached under another are stale. */
  generation: number
  /** When the log was last checked (unix seconds); -Infinity: check at the next use. */
  checkedAt: number
  epochs: ReadonlyMap<number, readonly OpenedEpoch[]>
  /** Version of the stored revocation list, 0 when none (it moves no generation). */
  revocations: number
  /** Each group's share of a bundle tag, filled as asked for (see KeyServer.freshnessFor). */
  readonly groupTags = new Map<number, string>()
  // The last change of the store's log reflected here.
  #seq: number
  readonly #policyVersion: number
  // group → kid → writer; kid → the groups it writes (to take them out again).
  readonly #writers = new Map<number, Map<number, KeyGroupWriter>>()
  readonly #writtenBy = new Map<number, readonly number[]>()
  // Writers of a group ordered by kid, as bundles list them; dropped when the group changes.
  readonly #ordered = new Map<number, readonly KeyGroupWriter[]>()
  // group → kids of the active principals holding its keys (readers and writers: exactly
  // PolicyState.keyedGroups); kid → those groups (to take them out again).
  readonly #holders = new Map<number, Set<number>>()
  readonly #holds = new Map<number, readonly number[]>()
  // group → epoch → its key as opened, with its sealed bytes: the live epochs' alone (see #readEpochs).
  readonly #openedKeys = new Map<number, Map<number, OpenedKey>>()

  private constructor(seq: number, policyVersion: number, generation: number, now: number) {
    this.#seq = seq
    this.#policyVersion = policyVersion
    this.generation = generation
    this.checkedAt = now
    this.epochs = new Map()
    this.revocations = 0
  }

  /** Everything read afresh: every active principal, the epochs, the revocation list. */
  static async build(source: DirectorySource, now: number): Promise<Directory> {
    // The log position first, then the policy and the rest: a change committed meanwhile is
    // applied again on top (idempotent) or, for a policy, makes the next check rebuild; never missed.
    const { latest } = await source.store.listDirectoryChanges(0, 0)
    const policy = await source.reloadPolicy()
    const directory = new Directory(latest, policy.version, source.nextGeneration(), now)
    await directory.#readEpochs(source, 'all')
    directory.revocations = await readRevocations(source)
    for (const principal of await source.store.listPrincipals())
      if (principal.status === 'active') directory.#setPrincipal(principal.kid, principalEntries(source, principal))
    return directory
  }

  /**
   * Applies the store's changes since the last check. Resolves false, changing nothing, when
   * only a whole rebuild will do: the policy changed, or the log no longer reaches back.
   */
  async follow(source: DirectorySource, now: number): Promise<boolean> {
    if (source.policy().version !== this.#policyVersion) return false
    const changed = await changesSince(source.store, this.#seq)
    if (changed === undefined) return false
    const { kids, groups, last } = changed
    const epochsChanged = groups === 'all' || groups.size > 0
    if (epochsChanged) await this.#readEpochs(source, groups)
    if (changed.revocations) this.revocations = await readRevocations(source)
    for (const kid of kids) {
      const principal = await source.store.getPrincipalByKid(kid)
      this.#setPrincipal(kid, principal?.status === 'active' ? principalEntries(source, principal) : NO_ENTRIES)
    }
    // Any principal's change moves the generation, a reader's too: its own bundle and tag
    // depend on its roles and status, which other processes may have changed. A group's share
    // of a tag depends on its epochs and writers alone, so an epoch change drops its group's.
    if (epochsChanged || kids.size > 0) {
      this.generation = source.nextGeneration()
      if (groups === 'all' || kids.size > 0) this.groupTags.clear()
      else for (const group of groups) this.groupTags.delete(group)
    }
    this.#seq = last
    this.checkedAt = now
    return true
  }

  /** How many writers `group` has. */
  writerCount(group: number): number {
    return this.#writers.get(group)?.size ?? 0
  }

  /** `group`'s writers, ordered by kid. */
  writers(group: number): readonly KeyGroupWriter[] {
    let ordered = this.#ordered.get(group)
    if (!ordered) {
      ordered = [...(this.#writers.get(group)?.values() ?? [])].sort((a, b) => a.kid - b.kid)
      this.#ordered.set(group, ordered)
    }
    return ordered
  }

  /** The writer of `group` under `kid`, if it is one. */
  writer(group: number, kid: number): KeyGroupWriter | undefined {
    return this.#writers.get(group)?.get(kid)
  }

  /**
   * Kids of the active principals holding the keys of any of `groups` (reading or writing),
   * ascending: proportional to the holders, not to the fleet.
   */
  holders(groups: readonly number[]): number[] {
    const kids = new Set<number>()
    for (const group of groups) for (const kid of this.#holders.get(group) ?? []) kids.add(kid)
    return [...kids].sort((a, b) => a - b)
  }

  /**
   * Reads the epochs of `groups` (or of every group) and their keys. A key opened before from
   * the very same sealed bytes is taken from #openedKeys, so a re-key of one home opens one key,
   * not one per group of the fleet; the bytes are compared because an epoch number can come back
   * with another key once all of a group's epochs are gone. The keys of epochs no longer listed
   * are dropped. Nothing changes unless every read and every key succeeds.
   */
  async #readEpochs(source: DirectorySource, groups: ReadonlySet<number> | 'all'): Promise<void> {
    const records = groups === 'all' ? await source.store.listEpochs() : []
    if (groups !== 'all') for (const group of groups) records.push(...(await source.store.listEpochs(group)))
    const readEpochs = new Map<number, OpenedEpoch[]>()
    const readKeys = new Map<number, Map<number, OpenedKey>>()
    for (const e of records) {
      const known = this.#openedKeys.get(e.group)?.get(e.epoch)
      const key =
        known && constantTimeEqual(known.sealed, e.sealedKey)
          ? known.key
          : source.masterKey.open(epochLabel(e.group, e.epoch), e.sealedKey)
      const list = readEpochs.get(e.group) ?? []
      readEpochs.set(e.group, list)
      list.push({ epoch: e.epoch, key, activatesAt: e.activatesAt, retiresAt: e.retiresAt })
      const keys = readKeys.get(e.group) ?? new Map<number, OpenedKey>()
      readKeys.set(e.group, keys.set(e.epoch, { sealed: e.sealedKey, key }))
    }
    if (groups === 'all') {
      this.epochs = readEpochs
      this.#openedKeys.clear()
    } else {
      // A new map, as a whole read gives: whoever holds the old one keeps what it read.
      const epochs = new Map(this.epochs)
      for (const group of groups) {
        const list = readEpochs.get(group)
        if (list) epochs.set(group, list)
        else epochs.delete(group)
        this.#openedKeys.delete(group)
      }
      this.epochs = epochs
    }
    for (const [group, keys] of readKeys) this.#openedKeys.set(group, keys)
  }

  // Replaces what `kid` holds and writes with `entries`.
  #setPrincipal(kid: number, { keyed, writers }: PrincipalEntries): void {
    for (const group of this.#holds.get(kid) ?? []) {
      const holders = this.#holders.get(group)
      holders?.delete(kid)
      if (holders?.size === 0) this.#holders.delete(group)
    }
    for (const group of keyed) {
      const holders = this.#holders.get(group) ?? new Set<number>()
      this.#holders.set(group, holders.add(kid))
    }
    if (keyed.length === 0) this.#holds.delete(kid)
    else this.#holds.set(kid, keyed)
    this.#setWriter(kid, writers)
  }

  // Replaces what `kid` writes with `entries`.
  #setWriter(kid: number, entries: readonly WriterEntry[]): void {
    for (const group of this.#writtenBy.get(kid) ?? []) {
      this.#writers.get(group)?.delete(kid)
      this.#ordered.delete(group)
    }
    for (const { group, writer } of entries) {
      const writers = this.#writers.get(group) ?? new Map<number, KeyGroupWriter>()
      this.#writers.set(group, writers.set(kid, writer))
      this.#ordered.delete(group)
    }
    if (entries.length === 0) this.#writtenBy.delete(kid)
    else
      this.#writtenBy.set(
        kid,
        entries.map((e) => e.group),
      )
  }
}

interface WriterEntry {
  readonly group: number
  readonly writer: KeyGroupWriter
}

/** What the directory keeps of one active principal: the groups whose keys it holds, and where it writes. */
interface PrincipalEntries {
  readonly keyed: readonly number[]
  readonly writers: readonly WriterEntry[]
}

const NO_ENTRIES: PrincipalEntries = { keyed: [], writers: [] }

/**
 * The groups whose keys `principal` holds: those it reads or writes, as PolicyState.keyedGroups
 * finds them (one evaluation serves both here), and the groups it writes, each with its own
 * topics there (`%c`, `%u` substituted): subscribers refuse its messages elsewhere, whichever
 * broker delivers them. Found from its allow filters through the evaluator's index, so a whole
 * build is linear in the fleet.
 */
function principalEntries(source: DirectorySource, principal: PrincipalRecord): PrincipalEntries {
  const { evaluator } = source.policy()
  const context = principalContext(principal)
  const written = evaluator.groupsWrittenBy(context)
  const keyed = new Set(evaluator.groupsReadBy(context).map((g) => g.id))
  for (const g of written) keyed.add(g.id)
  return { keyed: [...keyed], writers: written.flatMap((g) => writerEntry(source, principal, context, g)) }
}

/** `principal` as a writer of `g`, with its own topics there; none when a bundle cannot carry its rights. */
function writerEntry(
  source: DirectorySource,
  principal: PrincipalRecord,
  context: PrincipalContext,
  g: KeyGroupPolicy,
): WriterEntry[] {
  const publish = source.policy().evaluator.publishRightsIn(g, context)
  // Rights a bundle cannot carry fail closed for this writer alone (subscribers refuse it as
  // an unknown sender) rather than make every bundle of the group unbuildable.
  const problem = publishRightsProblem(publish, g.filter)
  if (problem) {
    source.logger.error({ group: g.id, principal: principal.id }, writerLeftOut(g.id, principal.id, problem))
    return []
  }
  const writer = { kid: principal.kid, principal: principal.id, signingKey: principal.signingKey, publish }
  return [{ group: g.id, writer }]
}

/** An epoch key as the store seals it and as the directory opened it. */
interface OpenedKey {
  readonly sealed: Uint8Array
  readonly key: Uint8Array
}

/**
 * The groups whose epochs `changes` changed, or 'all' when one of them names no group (logged
 * before store migration 6).
 */
/** What the store's change log says changed after `seq` (see {@link changesSince}). */
export interface LoggedChanges {
  /** Principals changed, by kid. */
  readonly kids: ReadonlySet<number>
  /** Groups whose epochs changed; `all` when an entry names none (logged before migration 6). */
  readonly groups: ReadonlySet<number> | 'all'
  readonly revocations: boolean
  /** The seq of the last change: where to read from next time. */
  readonly last: number
}

/**
 * The changes logged after `seq`, or undefined when only a whole rebuild will do: the policy
 * changed, the log no longer reaches back, or there are more than are worth applying one by one.
 */
export async function changesSince(store: KeyStore, seq: number): Promise<LoggedChanges | undefined> {
  const log = await store.listDirectoryChanges(seq, MAX_CHANGES_APPLIED)
  const last = log.changes.at(-1)?.seq ?? seq
  if (!log.complete || last !== log.latest || log.changes.some((c) => c.kind === 'policy')) return undefined
  return {
    kids: new Set(log.changes.flatMap((c) => (c.kind === 'principal' ? [c.kid] : []))),
    groups: epochGroups(log.changes),
    revocations: log.changes.some((c) => c.kind === 'revocations'),
    last,
  }
}

function epochGroups(changes: readonly DirectoryChange[]): Set<number> | 'all' {
  const groups = new Set<number>()
  for (const change of changes) {
    if (change.kind !== 'epochs') continue
    if (change.group === undefined) return 'all'
    groups.add(change.group)
  }
  return groups
}

async function readRevocations(source: DirectorySource): Promise<number> {
  return (await source.store.getRevocationList())?.version ?? 0
}
