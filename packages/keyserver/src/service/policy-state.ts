import { type Policy, PolicyEvaluator, type PrincipalContext, parsePolicy } from '@smqtt/core'
import type { PrincipalRecord } from '../store/key-store.js'

/** Deny everything: the policy of a fresh key server. */
export const EMPTY_POLICY: Policy = { version: 1, rules: [], groups: [], plaintext: [] }

/** The ACL view of a stored principal. */
export function principalContext(principal: PrincipalRecord): PrincipalContext {
  return principal.username === undefined
    ? { id: principal.id, roles: principal.roles }
    : { id: principal.id, username: principal.username, roles: principal.roles }
}

/** A parsed policy with its evaluator and store version, replaced whole on every change. */
export class PolicyState {
  readonly version: number
  readonly policy: Policy
  readonly evaluator: PolicyEvaluator

  constructor(version: number, policy: Policy) {
    this.version = version
    this.policy = policy
    this.evaluator = new PolicyEvaluator(policy)
  }

  static fromDocument(version: number, document: string): PolicyState {
    return new PolicyState(version, parsePolicy(JSON.parse(document)))
  }

  /** Group ids the principal may read (subscribe to some topic of). */
  readableGroups(principal: PrincipalRecord): Set<number> {
    return new Set(this.evaluator.groupsReadBy(principalContext(principal)).map((g) => g.id))
  }

  /** Group ids the principal may read or write: the groups whose keys it receives. */
  keyedGroups(principal: PrincipalRecord): Set<number> {
    const ids = this.readableGroups(principal)
    for (const g of this.evaluator.groupsWrittenBy(principalContext(principal))) ids.add(g.id)
    return ids
  }
}
