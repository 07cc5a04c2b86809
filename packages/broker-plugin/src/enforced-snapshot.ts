// A verified broker snapshot, indexed for the hooks: principals by id and by kid, the policy
// compiled once, and the epochs per group. Built once per snapshot, read on every packet.
import {
  type BrokerSnapshot,
  type BrokerSnapshotDelta,
  PolicyEvaluator,
  type PrincipalContext,
  type SnapshotEpoch,
  type SnapshotPrincipal,
} from '@smqtt/core'
import { compactInSlices, PatchedMap } from './patched-map.js'

/** The snapshot the hooks enforce, with its lookups. Immutable: a new snapshot builds a new one. */
export interface EnforcedSnapshot {
  readonly snapshot: BrokerSnapshot
  readonly acl: PolicyEvaluator
  readonly principals: ReadonlyMap<string, SnapshotPrincipal>
  readonly epochs: ReadonlyMap<number, readonly SnapshotEpoch[]>
}

/**
 * Indexes a verified snapshot, in one go (tests and small snapshots; the plugin runs
 * {@link enforceSnapshotSteps} through {@link enforceInSlices}).
 *
 * @example
 * ```ts
 * const enforced = enforceSnapshot(openBrokerSnapshot(signed, keyServerKey))
 * enforced.principals.get('lock-1')?.status
 * ```
 */
export function enforceSnapshot(snapshot: BrokerSnapshot): EnforcedSnapshot {
  const steps = enforceSnapshotSteps(snapshot)
  for (;;) {
    const step = steps.next()
    if (step.done) return step.value
  }
}

/** Entries indexed between two yields: a fraction of a millisecond. */
const SLICE = 2048

/** {@link enforceSnapshot} in steps: each `next()` does a slice of the work. */
export function* enforceSnapshotSteps(snapshot: BrokerSnapshot): Generator<undefined, EnforcedSnapshot> {
  const acl = yield* PolicyEvaluator.inSteps(snapshot.policy)
  const principals = new Map<string, SnapshotPrincipal>()
  for (let i = 0; i < snapshot.principals.length; i++) {
    const p = snapshot.principals[i] as SnapshotPrincipal
    principals.set(p.id, p)
    if (i % SLICE === SLICE - 1) yield
  }
  const epochs = new Map<number, SnapshotEpoch[]>()
  for (let i = 0; i < snapshot.epochs.length; i++) {
    const epoch = snapshot.epochs[i] as SnapshotEpoch
    const list = epochs.get(epoch.group)
    if (list === undefined) epochs.set(epoch.group, [epoch])
    else list.push(epoch)
    if (i % SLICE === SLICE - 1) yield
  }
  return { snapshot, acl, principals, epochs }
}

/** An index being built in slices; `cancel()` stops it (a newer snapshot arrived). */
export interface SlicedBuild {
  readonly done: Promise<EnforcedSnapshot | undefined>
  cancel(): void
}

/**
 * {@link enforceSnapshotSteps} for a delta on `base` (whose tag is the delta's base): the policy
 * compiled again only when the delta carries one, the indexes patched (see PatchedMap), so the
 * cost is the delta's, not the fleet's; now and then the patches are folded into new indexes, in
 * slices.
 */
export function* enforceDeltaSteps(
  base: EnforcedSnapshot,
  delta: BrokerSnapshotDelta,
): Generator<undefined, EnforcedSnapshot> {
  const acl = delta.policy === undefined ? base.acl : yield* PolicyEvaluator.inSteps(delta.policy)
  const principals = yield* compactedWhenDue(
    PatchedMap.patched(
      base.principals,
      delta.principals.map((p) => [p.id, p]),
      delta.removedPrincipals,
    ),
  )
  const replaced = new Map<number, SnapshotEpoch[]>()
  for (const epoch of delta.epochs) replaced.set(epoch.group, [...(replaced.get(epoch.group) ?? []), epoch])
  const emptied = delta.epochGroups.filter((group) => !replaced.has(group))
  const epochs = yield* compactedWhenDue(PatchedMap.patched(base.epochs, replaced, emptied))
  const snapshot = snapshotOfIndex(
    {
      issuedAt: delta.issuedAt,
      policy: delta.policy ?? base.snapshot.policy,
      revocationListVersion: delta.revocationListVersion,
      tag: delta.tag,
    },
    principals,
    epochs,
  )
  return { snapshot, acl, principals, epochs }
}

function* compactedWhenDue<K, V>(map: PatchedMap<K, V>): Generator<undefined, ReadonlyMap<K, V>> {
  return map.wantsCompaction ? yield* compactInSlices(map, SLICE) : map
}

/** A snapshot whose lists are read from the index on first use (nothing on the packet path reads them). */
function snapshotOfIndex(
  head: Omit<BrokerSnapshot, 'principals' | 'epochs'>,
  principals: ReadonlyMap<string, SnapshotPrincipal>,
  epochs: ReadonlyMap<number, readonly SnapshotEpoch[]>,
): BrokerSnapshot {
  let principalList: readonly SnapshotPrincipal[] | undefined
  let epochList: readonly SnapshotEpoch[] | undefined
  return {
    ...head,
    get principals() {
      principalList ??= [...principals.values()]
      return principalList
    },
    get epochs() {
      epochList ??= [...epochs.values()].flat()
      return epochList
    },
  }
}

/**
 * Runs the steps of an index build (a snapshot's, or a delta's) without holding the event loop
 * for more than about `sliceMs` at a time: runs steps until the budget is spent, then gives the
 * loop a turn (setImmediate) and goes on. A small build is done within its first slice,
 * synchronously: `{ enforced }` comes back. Otherwise the build goes on in later turns; its
 * `done` resolves with the result (undefined when cancelled) and rejects if the policy is invalid.
 *
 * @example
 * ```ts
 * const build = enforceInSlices(enforceSnapshotSteps(snapshot), 4)
 * if ('enforced' in build) swapIn(build.enforced)
 * else build.done.then((built) => built && swapIn(built))
 * ```
 */
export function enforceInSlices(
  steps: Generator<undefined, EnforcedSnapshot>,
  sliceMs: number,
): { readonly enforced: EnforcedSnapshot } | SlicedBuild {
  const runSlice = (): EnforcedSnapshot | undefined => {
    const until = performance.now() + sliceMs
    do {
      const step = steps.next()
      if (step.done) return step.value
    } while (performance.now() < until)
    return undefined
  }
  const first = runSlice()
  if (first !== undefined) return { enforced: first }
  let cancelled = false
  const done = new Promise<EnforcedSnapshot | undefined>((resolve, reject) => {
    const next = () => {
      if (cancelled) return resolve(undefined)
      try {
        const result = runSlice()
        if (result !== undefined) resolve(result)
        else setImmediate(next)
      } catch (err) {
        reject(err)
      }
    }
    setImmediate(next)
  })
  return {
    done,
    cancel() {
      cancelled = true
    },
  }
}

/** The ACL's view of a principal. */
export function principalContext(principal: SnapshotPrincipal): PrincipalContext {
  return principal.username === undefined
    ? { id: principal.id, roles: principal.roles }
    : { id: principal.id, username: principal.username, roles: principal.roles }
}

/**
 * True when `epoch` of `group` is live at `now`: listed, active (allowing `skewSeconds` for a
 * sender whose clock runs ahead, since the next epoch is handed out before it activates), and
 * not retired.
 */
export function isLiveEpoch(
  enforced: EnforcedSnapshot,
  group: number,
  epoch: number,
  now: number,
  skewSeconds: number,
): boolean {
  for (const e of enforced.epochs.get(group) ?? []) {
    if (e.epoch !== epoch) continue
    return e.activatesAt <= now + skewSeconds && (e.retiresAt === undefined || now < e.retiresAt)
  }
  return false
}

/** Whether `epoch` is above every epoch the snapshot lists for `group` (a rotation it may not know of yet). */
export function isNewerEpoch(enforced: EnforcedSnapshot, group: number, epoch: number): boolean {
  for (const e of enforced.epochs.get(group) ?? []) if (e.epoch >= epoch) return false
  return true
}

/** Certificate serials compared as numbers: case and leading zeros differ between X.509 libraries. */
export function sameSerial(a: string, b: string): boolean {
  const normal = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^0-9a-f]/g, '')
      .replace(/^0+/, '')
  return normal(a) === normal(b) && normal(a).length > 0
}
