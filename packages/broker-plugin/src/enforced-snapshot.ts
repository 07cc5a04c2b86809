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
 * Indexes a verified snapshot.
 *
 * @example
 * ```ts
 * const enforced = enforceSnapshot(openBrokerSnapshot(signed, keyServerKey))
 * enforced.principals.get('lock-1')?.status
 * ```
 */
export function enforceSnapshot(snapshot: BrokerSnapshot): EnforcedSnapshot {
  const epochs = new Map<number, SnapshotEpoch[]>()
  for (const epoch of snapshot.epochs) {
    const list = epochs.get(epoch.group) ?? []
    list.push(epoch)
    epochs.set(epoch.group, list)
  }
  return {
    snapshot,
    acl: new PolicyEvaluator(snapshot.policy),
    principals: new Map(snapshot.principals.map((p) => [p.id, p])),
    epochs,
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

/** Certificate serials compared as numbers: case and leading zeros differ between X.509 libraries. */
export function sameSerial(a: string, b: string): boolean {
  const normal = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^0-9a-f]/g, '')
      .replace(/^0+/, '')
  return normal(a) === normal(b) && normal(a).length > 0
}
