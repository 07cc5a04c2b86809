// A verified broker snapshot, indexed for the hooks: principals by id and by kid, the policy
// compiled once, and the epochs per group. Built once per snapshot, read on every packet.
import {
  type BrokerSnapshot,
  PolicyEvaluator,
  type PrincipalContext,
  type SnapshotEpoch,
  type SnapshotPrincipal,
} from '@smqtt/core'

/** The snapshot the hooks enforce, with its lookups. Immutable: a new snapshot builds a new one. */
export interface EnforcedSnapshot {
  readonly snapshot: BrokerSnapshot
  readonly acl: PolicyEvaluator
  readonly principals: ReadonlyMap<string, SnapshotPrincipal>
  readonly epochs: ReadonlyMap<number, readonly SnapshotEpoch[]>
}

/**
 * Indexes a verified snapshot, in one go (tests and small snapshots; the plugin uses
 * {@link enforceSnapshotInSlices}).
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
 * Indexes `snapshot` without holding the event loop for more than about `sliceMs` at a time:
 * runs slices until the budget is spent, then gives the loop a turn (setImmediate) and goes on.
 * A small snapshot is done within its first slice, synchronously: `{ enforced }` comes back.
 * Otherwise the build goes on in later turns; its `done` resolves with the result (undefined
 * when cancelled) and rejects if the policy is invalid.
 *
 * @example
 * ```ts
 * const build = enforceSnapshotInSlices(snapshot, 4)
 * if ('enforced' in build) swapIn(build.enforced)
 * else build.done.then((built) => built && swapIn(built))
 * ```
 */
export function enforceSnapshotInSlices(
  snapshot: BrokerSnapshot,
  sliceMs: number,
): { readonly enforced: EnforcedSnapshot } | SlicedBuild {
  const steps = enforceSnapshotSteps(snapshot)
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
