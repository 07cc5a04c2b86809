// What a policy means, for the operator: the warnings the key server gives when a policy is
// set (those that need the enrolled principals, and those that need only the policy, which
// `policy validate` shows offline), and one principal's rights with the rules that grant them
// (`policy explain`). Pure functions of a policy evaluator; nothing here changes state.
import {
  type AclAction,
  type AclRule,
  filtersIntersect,
  type Policy,
  type PolicyEvaluator,
  type PrincipalContext,
  type PublishRights,
  publishRightsProblem,
  substitutePattern,
} from '@smqtt/core'

/** Why a writer is missing from its group's writers (logged, and a policy warning). */
export function writerLeftOut(group: number, principal: string, problem: string): string {
  return `${principal}'s publish rights in group ${group} cannot go in a key bundle (${problem}): left out of the group's writers until the policy is fixed`
}

/**
 * Warnings about `principals` under the policy: a reader that gets keys for topics it may not
 * subscribe to, and a writer whose rights a key bundle cannot carry. A principal that writes
 * nothing in a group is no problem and gives no warning.
 */
export function principalWarnings(evaluator: PolicyEvaluator, principals: readonly PrincipalContext[]): string[] {
  return [...evaluator.wideGroupWarnings(principals).map((w) => w.message), ...writerWarnings(evaluator, principals)]
}

/** Writers whose rights a bundle cannot carry, by group then principal; each principal's groups come from the index. */
function writerWarnings(evaluator: PolicyEvaluator, principals: readonly PrincipalContext[]): string[] {
  const position = new Map(evaluator.policy.groups.map((group, i) => [group, i]))
  const found: { group: number; message: string }[] = []
  for (const writer of principals)
    for (const group of evaluator.groupsWrittenBy(writer)) {
      const problem = publishRightsProblem(evaluator.publishRightsIn(group, writer), group.filter)
      if (problem) found.push({ group: position.get(group) ?? 0, message: writerLeftOut(group.id, writer.id, problem) })
    }
  // A stable sort: principals keep their order within a group.
  return found.sort((a, b) => a.group - b.group).map((f) => f.message)
}

/**
 * Warnings that need only the policy: an allowed publish filter that no key group and no
 * plaintext filter reaches (the broker refuses every publish there), and a key group that no
 * allow rule reaches (its keys go to nobody). Only certain problems: a filter that reaches a
 * group in part is not reported.
 */
export function policyWarnings(policy: Policy): string[] {
  const warnings: string[] = []
  const destinations = [...policy.groups.map((g) => g.filter), ...policy.plaintext]
  policy.rules.forEach((rule, i) => {
    if (rule.effect !== 'allow' || !rule.actions.includes('publish')) return
    rule.topics.forEach((topic, j) => {
      if (!destinations.some((d) => filtersIntersect(anyValue(topic), d)))
        warnings.push(
          `rules[${i}].topics[${j}] ${JSON.stringify(topic)} allows publishing where no key group and no plaintext filter reaches: the broker refuses every publish there (add a key group or a plaintext filter)`,
        )
    })
  })
  for (const group of policy.groups) {
    const reached = policy.rules.some(
      (rule) => rule.effect === 'allow' && rule.topics.some((t) => filtersIntersect(anyValue(t), group.filter)),
    )
    if (!reached)
      warnings.push(
        `key group ${group.id} ${JSON.stringify(group.name)} (${group.filter}): no allow rule reaches it, so nobody reads or writes it`,
      )
  }
  return warnings
}

/** A rule pattern with every level that holds `%c` or `%u` widened to `+`: every value it may take. */
function anyValue(pattern: string): string {
  return pattern
    .split('/')
    .map((level) => (level.includes('%') ? '+' : level))
    .join('/')
}

/** One rule's filter as it applies to the principal. */
export interface RuleMatch {
  /** Index in the policy's `rules`. */
  readonly rule: number
  /** The pattern as written (`%c`, `%u` unsubstituted). */
  readonly pattern: string
  /** The pattern for this principal; null when a substitution was refused. */
  readonly filter: string | null
  /** Why the rule applies: `role R`, `principal ID` or `everyone`. */
  readonly via: string
}

/** An allowed filter and the deny rules that cut topics out of it. */
export interface AllowMatch extends RuleMatch {
  readonly cutBy: readonly RuleMatch[]
}

export interface ActionExplanation {
  readonly allow: readonly AllowMatch[]
  readonly deny: readonly RuleMatch[]
  /** A deny rule's substitution was refused: the whole action is denied (see acl.ts). */
  readonly deniedOutright: boolean
}

export interface GroupExplanation {
  readonly id: number
  readonly name: string
  readonly filter: string
  /** Receives the group's keys because it may subscribe to some topic of the group. */
  readonly reads: boolean
  /** Its signatures count in the group because it may publish on some topic of it. */
  readonly writes: boolean
  /** `rules[i]` of the subscribe (reads) and publish (writes) allows that reach the group. */
  readonly readsVia: readonly string[]
  readonly writesVia: readonly string[]
  /** What key bundles list as its publish rights in the group (writers only). */
  readonly publishRights: PublishRights | null
}

export interface PrincipalExplanation {
  readonly principal: PrincipalContext
  readonly publish: ActionExplanation
  readonly subscribe: ActionExplanation
  /** The key groups it reads or writes (others are left out). */
  readonly groups: readonly GroupExplanation[]
  /** Plaintext filters some of whose topics it may publish or subscribe to. */
  readonly plaintext: readonly { filter: string; publish: boolean; subscribe: boolean }[]
  readonly warnings: readonly string[]
}

/**
 * What `principal` may do under the policy, and which rule says so.
 *
 * @example
 * ```ts
 * explainPrincipal(keyServer.policy.evaluator, { id: 'thermostat-1', roles: ['thermostat'] })
 * ```
 */
export function explainPrincipal(evaluator: PolicyEvaluator, principal: PrincipalContext): PrincipalExplanation {
  const { policy } = evaluator
  const publish = explainAction(policy.rules, 'publish', principal)
  const subscribe = explainAction(policy.rules, 'subscribe', principal)
  const via = (action: ActionExplanation, filter: string) => [
    ...new Set(action.allow.filter((a) => a.filter !== null && filtersIntersect(a.filter, filter)).map(ruleRef)),
  ]
  const groups = policy.groups.flatMap((group): GroupExplanation[] => {
    const reads = evaluator.readersOf(group, [principal]).length > 0
    const writes = evaluator.writersOf(group, [principal]).length > 0
    if (!reads && !writes) return []
    return [
      {
        id: group.id,
        name: group.name,
        filter: group.filter,
        reads,
        writes,
        readsVia: reads ? via(subscribe, group.filter) : [],
        writesVia: writes ? via(publish, group.filter) : [],
        publishRights: writes ? evaluator.publishRightsIn(group, principal) : null,
      },
    ]
  })
  const reaches = (action: ActionExplanation, filter: string) =>
    !action.deniedOutright && via(action, filter).length > 0
  const plaintext = policy.plaintext
    .map((filter) => ({ filter, publish: reaches(publish, filter), subscribe: reaches(subscribe, filter) }))
    .filter((p) => p.publish || p.subscribe)
  return { principal, publish, subscribe, groups, plaintext, warnings: principalWarnings(evaluator, [principal]) }
}

function ruleRef(match: RuleMatch): string {
  return `rules[${match.rule}]`
}

function explainAction(rules: readonly AclRule[], action: AclAction, principal: PrincipalContext): ActionExplanation {
  const allow: RuleMatch[] = []
  const deny: RuleMatch[] = []
  rules.forEach((rule, index) => {
    if (!rule.actions.includes(action)) return
    const via = appliesVia(rule, principal)
    if (via === undefined) return
    for (const pattern of rule.topics) {
      let filter: string | null
      try {
        filter = pattern.includes('%') ? substitutePattern(pattern, principal) : pattern
      } catch {
        filter = null
      }
      if (filter === null && rule.effect === 'allow') continue // a refused allow simply does not apply
      ;(rule.effect === 'deny' ? deny : allow).push({ rule: index, pattern, filter, via })
    }
  })
  const deniedOutright = deny.some((d) => d.filter === null)
  return {
    allow: allow.map((a) => ({
      ...a,
      cutBy: deny.filter((d) => d.filter === null || filtersIntersect(d.filter, a.filter as string)),
    })),
    deny,
    deniedOutright,
  }
}

function appliesVia(rule: AclRule, principal: PrincipalContext): string | undefined {
  if (rule.principals === undefined && rule.roles === undefined) return 'everyone'
  if (rule.principals?.includes(principal.id)) return `principal ${principal.id}`
  const role = rule.roles?.find((r) => principal.roles.includes(r))
  return role === undefined ? undefined : `role ${role}`
}
