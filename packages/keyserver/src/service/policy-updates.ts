// Policy changes: a new policy replaces the old one whole, and every group that loses a member
// is re-keyed at once.
import { parsePolicy, SmqttError } from '@smqtt/core'
import type { KeyServerContext } from './context.js'
import { policyWarnings, principalWarnings } from './policy-review.js'
import { PolicyState, principalContext } from './policy-state.js'
import { activePrincipals } from './principals.js'
import type { Rotation } from './rotation.js'

export class PolicyUpdates {
  readonly #ctx: KeyServerContext
  readonly #rotation: Rotation

  constructor(context: KeyServerContext, rotation: Rotation) {
    this.#ctx = context
    this.#rotation = rotation
  }

  /**
   * Replaces the policy (optimistically: `expectedVersion` must be the current version when
   * given). Groups that lose a member (reader or writer) are re-keyed at once. Returns the warnings
   * of policy-review.ts: about the policy alone, and about the active principals under it.
   */
  async setPolicy(
    document: unknown,
    actor: string,
    expectedVersion?: number,
  ): Promise<{ version: number; warnings: string[] }> {
    const policy = parsePolicy(document)
    const current = this.#ctx.policy
    if (expectedVersion !== undefined && expectedVersion !== current.version)
      throw new SmqttError('ERR_CONFLICT', `policy is at version ${current.version}, not ${expectedVersion}`)
    const next = new PolicyState(current.version + 1, policy)
    const active = await activePrincipals(this.#ctx.store)
    if (!(await this.#ctx.store.putPolicy(JSON.stringify(policy), current.version, this.#ctx.now())))
      throw new SmqttError('ERR_CONFLICT', 'the policy changed concurrently; re-read and retry')
    this.#ctx.policy = next
    // A member that loses a group's key (reading or writing: a writer's key opens the group's
    // traffic too) must not hold the next epoch's.
    const lostMember = current.policy.groups
      .filter((g) => next.policy.groups.some((n) => n.id === g.id))
      .filter((g) => active.some((p) => current.keyedGroups(p).has(g.id) && !next.keyedGroups(p).has(g.id)))
      .map((g) => g.id)
    const warnings = [...policyWarnings(policy), ...principalWarnings(next.evaluator, active.map(principalContext))]
    await this.#ctx.audit.record({
      actor,
      action: 'policy.update',
      subject: `policy:${next.version}`,
      outcome: 'ok',
      details: { rekeyed: lostMember, warnings },
    })
    await this.#rotation.ensureEpochs()
    for (const group of lostMember)
      await this.#rotation.rotateGroup(group, { immediate: true, actor: 'system', reason: 'member removed' })
    this.#ctx.emit({ kind: 'policy', version: next.version })
    return { version: next.version, warnings }
  }
}
