// One access policy, enforced by the broker (who may publish and subscribe) and by the key
// server (who gets which group keys). Deny by default, deny wins, exact MQTT wildcards.
//
// Rule patterns may name the principal: `%c` is replaced by its id and `%u` by its username,
// as a whole level or inside one (`devices/%c/#`, `users/%u-inbox`). A value that is empty,
// contains `+`, `#`, `/` or U+0000, or would turn the filter into a `$` topic, is refused, never
// matched: an id of `a/#` must not turn `devices/%c` into `devices/a/#`. A refused ALLOW simply
// does not apply. A refused DENY denies the whole action for that principal: the deny was meant
// to exclude some topics of this principal and we cannot tell which, so the only safe reading
// is "all of them" (failing open would hand out what the operator meant to withhold).

import { FilterTrie } from './_filter-trie.js'
import { isPlainObject, type ObjectProblem, objectProblem } from './_strict-json.js'
import { isSmqttError, SmqttError } from './errors.js'
import {
  filterCovers,
  filterIntersection,
  filtersIntersect,
  isValidFilter,
  isValidTopic,
  topicMatches,
  unionCovers,
  validateFilter,
} from './topic-filter.js'

/** What a rule governs. `subscribe` also governs receiving: the broker re-checks on forward. */
export type AclAction = 'publish' | 'subscribe'

/**
 * One policy rule. A rule with neither `principals` nor `roles` applies to everyone; otherwise
 * it applies to a principal whose id is in `principals` OR who holds a role in `roles`.
 */
export interface AclRule {
  effect: 'allow' | 'deny'
  actions: AclAction[]
  /** Topic filters; may contain `%c` (principal id) and `%u` (username). */
  topics: string[]
  principals?: string[]
  roles?: string[]
}

/** A key group: every concrete topic its filter matches shares the group's epoch keys. */
export interface KeyGroupPolicy {
  /** Group id carried in envelopes, an integer in [0, 2^32 - 1]. */
  id: number
  name: string
  filter: string
  rotateEverySeconds?: number
  graceSeconds?: number
}

/** The whole policy document. */
export interface Policy {
  version: 1
  rules: AclRule[]
  groups: KeyGroupPolicy[]
  /** Filters where unencrypted payloads are allowed (e.g. `$SYS/#`); they meet no group. */
  plaintext: string[]
}

/** Who is asking: the authenticated principal. */
export interface PrincipalContext {
  id: string
  username?: string
  roles: readonly string[]
}

/**
 * What one principal may publish inside one key group: a topic of the group iff some `allow`
 * filter matches it and no `deny` filter does. Both lists are already cut down to the group
 * (substituted, intersected with its filter, none covered by another of its list).
 */
export interface PublishRights {
  readonly allow: readonly string[]
  readonly deny: readonly string[]
}

/**
 * True iff `rights` let their holder publish on `topic`: some allow filter matches and no deny
 * filter does. Subscribers check it on a verified sender, with the rights from their key bundle.
 *
 * @example
 * ```ts
 * publishRightsAllow({ allow: ['home/+/thermostat/t-1/#'], deny: [] }, 'home/hall/thermostat/t-2/temp') // false
 * ```
 */
export function publishRightsAllow(rights: PublishRights, topic: string): boolean {
  return rights.allow.some((f) => topicMatches(f, topic)) && !rights.deny.some((f) => topicMatches(f, topic))
}

/** A key group a principal reads but may not subscribe to all of (see {@link PolicyEvaluator.wideGroupWarnings}). */
export interface WideGroupWarning {
  groupId: number
  groupName: string
  principalId: string
  /** `partly-denied`: a deny rule reaches into the group; `not-fully-allowed`: allow rules do not cover it. */
  reason: 'partly-denied' | 'not-fully-allowed'
  message: string
}

const MAX_GROUP_ID = 0xffff_ffff
const SUBSTITUTION = /%[cu]/g

/**
 * Replaces `%c` and `%u` in a rule pattern with the principal's id and username, in one pass
 * (a value containing `%u` is not substituted again).
 *
 * @throws SmqttError('ERR_ACL_SUBSTITUTION_REFUSED') when a needed value is missing or empty,
 * contains `+`, `#`, `/` or U+0000, makes a `$` filter out of one that was not, or makes the
 * result an invalid filter.
 * @example
 * ```ts
 * substitutePattern('devices/%c/#', { id: 'thermostat-1', roles: [] }) // 'devices/thermostat-1/#'
 * substitutePattern('devices/%c/#', { id: 'a/#', roles: [] }) // throws ERR_ACL_SUBSTITUTION_REFUSED
 * ```
 */
export function substitutePattern(pattern: string, principal: PrincipalContext): string {
  const result = substitute(pattern, principal)
  if (result === undefined)
    throw new SmqttError(
      'ERR_ACL_SUBSTITUTION_REFUSED',
      'a %c/%u value is missing, empty, contains +, #, / or U+0000, or makes an invalid or $ filter',
    )
  return result
}

// The broker substitutes on every publish and every delivery; the result depends only on the
// pattern, the id and the username, so remember recent ones (bounded; null = refused).
const substitutions = new Map<string, string | null>()
const SUBSTITUTION_CACHE_LIMIT = 10_000

/** Non-throwing core of {@link substitutePattern}: the broker calls it per message. */
function substitute(pattern: string, principal: PrincipalContext): string | undefined {
  // Length-prefixed parts: no id or username can make two different inputs share a key.
  const { id, username } = principal
  const key = `${pattern.length}:${pattern}${id.length}:${id}${username === undefined ? '-' : `${username.length}:${username}`}`
  const known = substitutions.get(key)
  if (known !== undefined) return known ?? undefined
  const result = substituteUncached(pattern, principal)
  if (substitutions.size >= SUBSTITUTION_CACHE_LIMIT) substitutions.clear()
  substitutions.set(key, result ?? null)
  return result
}

function substituteUncached(pattern: string, principal: PrincipalContext): string | undefined {
  let refused = false
  const result = pattern.replace(SUBSTITUTION, (token) => {
    const value = token === '%c' ? principal.id : principal.username
    if (!isSafeValue(value)) refused = true
    return refused ? '' : (value as string)
  })
  if (refused || !isValidFilter(result)) return undefined
  // An id like `$SYS` must not turn `%c/#` into the broker's own `$SYS/#`.
  if (result.charCodeAt(0) === 0x24 && pattern.charCodeAt(0) !== 0x24) return undefined
  return result
}

function isSafeValue(value: unknown): boolean {
  if (typeof value !== 'string' || value.length === 0) return false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x2b || c === 0x23 || c === 0x2f || c === 0x00) return false
  }
  return true
}

// ---------------------------------------------------------------------------------------------
// Parsing: strict, every problem reported with its path, nothing but ERR_POLICY_INVALID escapes.

/**
 * Validates an untrusted policy document (e.g. `JSON.parse` of a file or HTTP body) and returns
 * a fresh, well-typed copy. Strict: unknown fields, wrong types, invalid filters, unknown
 * `%` substitutions, duplicate or out-of-range group ids, duplicate group names, two groups whose
 * filters intersect, or a plaintext filter that meets a group are all refused. A root `$schema`
 * string (for editors, see `@smqtt/keyserver/policy.schema.json`) is accepted and dropped.
 *
 * @throws SmqttError('ERR_POLICY_INVALID') whose message starts with the path of the problem,
 * e.g. `rules[2].topics[0]: ...`.
 * @example
 * ```ts
 * const policy = parsePolicy(JSON.parse(text))
 * const evaluator = new PolicyEvaluator(policy)
 * ```
 */
export function parsePolicy(json: unknown): Policy {
  return finish(parsePolicySteps(json))
}

/** {@link parsePolicy} in steps: yields between slices of work, so a caller can give the event loop a turn. */
function* parsePolicySteps(json: unknown): Generator<undefined, Policy> {
  const problems: string[] = []
  const policy = yield* collectPolicy(json, problems)
  if (policy === undefined || problems.length > 0)
    throw new SmqttError('ERR_POLICY_INVALID', problems[0] ?? 'policy: invalid')
  return policy
}

/**
 * Every problem {@link parsePolicy} finds in `json`, each starting with its path (at most one
 * per rule, group or plaintext entry: an entry is checked up to its first problem). Empty when
 * the policy is valid. For tools that show all problems at once, such as `policy validate`.
 *
 * @example
 * ```ts
 * policyProblems({ version: 1, rules: [], groups: [{ id: -1 }], plaintext: ['a/#/b'] })
 * // ['groups[0]: unknown field ...' or 'groups[0].id: ...', 'plaintext[0]: ...']
 * ```
 */
export function policyProblems(json: unknown): string[] {
  const problems: string[] = []
  finish(collectPolicy(json, problems))
  return problems
}

/** Runs steps to the end, synchronously. */
function finish<T>(steps: Generator<undefined, T>): T {
  for (;;) {
    const step = steps.next()
    if (step.done) return step.value
  }
}

/** Entries handled between two yields of the step generators: well under a millisecond of work. */
const SLICE = 256

/** Parses what it can, pushing one problem per entry that fails; undefined when the root is unusable. */
function* collectPolicy(json: unknown, problems: string[]): Generator<undefined, Policy | undefined> {
  const attempt = <T>(parse: () => T): T | undefined => {
    try {
      return parse()
    } catch (err) {
      if (isSmqttError(err) && err.code === 'ERR_POLICY_INVALID') {
        problems.push(err.message)
        return undefined
      }
      throw err
    }
  }
  if (!isPlainObject(json)) {
    problems.push(`policy: ${objectProblemText({ kind: 'not-an-object' })}`)
    return undefined
  }
  const root = json
  // `$schema` lets an editor find policy.schema.json; it is read and dropped.
  for (const key of Object.keys(root))
    if (!ROOT_FIELDS.includes(key)) problems.push(`policy: ${objectProblemText({ kind: 'unknown-field', key })}`)
  if (root.$schema !== undefined && typeof root.$schema !== 'string') problems.push('$schema: must be a string')
  if (root.version !== 1) problems.push('version: must be 1')
  function* list<T>(name: string, parse: (value: unknown, path: string) => T): Generator<undefined, (T | undefined)[]> {
    const array = attempt(() => arrayAt(root[name], name)) ?? []
    const out: (T | undefined)[] = []
    for (let i = 0; i < array.length; i++) {
      out.push(attempt(() => parse(array[i], `${name}[${i}]`)))
      if (i % SLICE === SLICE - 1) yield
    }
    return out
  }
  const rules = yield* list('rules', parseRule)
  const groups = yield* list('groups', parseGroup)
  const plaintext = yield* list('plaintext', (filter, path) => filterAt(filter, path, false))

  // Each group against the earlier ones, in the order (and with the messages) of a pairwise
  // check, but finding the candidates through indexes instead of trying every pair.
  const byId = new Map<number, number[]>()
  const byName = new Map<string, number[]>()
  const earlier = new FilterTrie<number>()
  const plaintextIndex = new FilterTrie<number>()
  plaintext.forEach((filter, j) => {
    if (filter !== undefined) plaintextIndex.add(filter, j)
  })
  const ascending = (a: number, b: number) => a - b
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i]
    if (group === undefined) continue
    const candidates = new Set<number>([
      ...(byId.get(group.id) ?? []),
      ...(byName.get(group.name) ?? []),
      ...earlier.intersecting(group.filter),
    ])
    for (const j of [...candidates].sort(ascending)) {
      const other = groups[j] as KeyGroupPolicy
      if (other.id === group.id) problems.push(`groups[${i}].id: duplicates groups[${j}].id`)
      else if (other.name === group.name) problems.push(`groups[${i}].name: duplicates groups[${j}].name`)
      // A topic must belong to at most one group, or sender and receivers could pick different keys.
      else if (filtersIntersect(other.filter, group.filter))
        problems.push(`groups[${i}].filter: shares topics with groups[${j}].filter`)
    }
    for (const j of plaintextIndex.intersecting(group.filter).sort(ascending)) {
      if (filtersIntersect(plaintext[j] as string, group.filter))
        problems.push(`plaintext[${j}]: shares topics with groups[${i}].filter (a topic is either encrypted or not)`)
    }
    append(byId, group.id, i)
    append(byName, group.name, i)
    earlier.add(group.filter, i)
    if (i % SLICE === SLICE - 1) yield
  }
  if (problems.length > 0) return undefined
  return { version: 1, rules: rules as AclRule[], groups: groups as KeyGroupPolicy[], plaintext: plaintext as string[] }
}

function append<K>(map: Map<K, number[]>, key: K, value: number): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

const ROOT_FIELDS: readonly string[] = ['$schema', 'version', 'rules', 'groups', 'plaintext']

function parseRule(value: unknown, path: string): AclRule {
  const raw = objectAt(value, path, ['effect', 'actions', 'topics', 'principals', 'roles'])
  if (raw.effect !== 'allow' && raw.effect !== 'deny') fail(`${path}.effect`, "must be 'allow' or 'deny'")
  const actions = eachOf(nonEmptyArrayAt(raw.actions, `${path}.actions`), (action, i) => {
    if (action !== 'publish' && action !== 'subscribe')
      fail(`${path}.actions[${i}]`, "must be 'publish' or 'subscribe'")
    return action
  })
  const topics = eachOf(nonEmptyArrayAt(raw.topics, `${path}.topics`), (t, i) =>
    filterAt(t, `${path}.topics[${i}]`, true),
  )
  const rule: AclRule = { effect: raw.effect, actions, topics }
  if (raw.principals !== undefined) rule.principals = namesAt(raw.principals, `${path}.principals`)
  if (raw.roles !== undefined) rule.roles = namesAt(raw.roles, `${path}.roles`)
  return rule
}

function parseGroup(value: unknown, path: string): KeyGroupPolicy {
  const raw = objectAt(value, path, ['id', 'name', 'filter', 'rotateEverySeconds', 'graceSeconds'])
  const { id, name } = raw
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_GROUP_ID)
    fail(`${path}.id`, `must be an integer in [0, ${MAX_GROUP_ID}]`)
  if (typeof name !== 'string' || name.length === 0) fail(`${path}.name`, 'must be a non-empty string')
  const group: KeyGroupPolicy = { id, name, filter: filterAt(raw.filter, `${path}.filter`, false) }
  if (raw.rotateEverySeconds !== undefined)
    group.rotateEverySeconds = secondsAt(raw.rotateEverySeconds, `${path}.rotateEverySeconds`, 1)
  if (raw.graceSeconds !== undefined) group.graceSeconds = secondsAt(raw.graceSeconds, `${path}.graceSeconds`, 0)
  return group
}

function fail(path: string, problem: string): never {
  throw new SmqttError('ERR_POLICY_INVALID', `${path}: ${problem}`)
}

function objectProblemText(problem: ObjectProblem): string {
  switch (problem.kind) {
    case 'not-an-object':
      return 'must be an object'
    case 'not-plain':
      return 'must be a plain object'
    case 'unknown-field':
      return `unknown field ${JSON.stringify(problem.key)}`
    case 'missing-field':
      return `missing field ${JSON.stringify(problem.key)}`
  }
}

function objectAt(value: unknown, path: string, allowed: readonly string[]): Record<string, unknown> {
  const problem = objectProblem(value, [], allowed)
  if (problem !== undefined) fail(path, objectProblemText(problem))
  return value as Record<string, unknown>
}

function arrayAt(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) fail(path, 'must be an array')
  return value
}

/** Like `Array.prototype.map`, but visits holes of sparse arrays too (as undefined, which then fails). */
function eachOf<T>(array: readonly unknown[], parse: (value: unknown, index: number) => T): T[] {
  const out: T[] = []
  for (let i = 0; i < array.length; i++) out.push(parse(array[i], i))
  return out
}

function nonEmptyArrayAt(value: unknown, path: string): unknown[] {
  const array = arrayAt(value, path)
  if (array.length === 0) fail(path, 'must not be empty')
  return array
}

/** Principal ids or role names: an empty list would be ambiguous (nobody? everybody?), so refuse it. */
function namesAt(value: unknown, path: string): string[] {
  return eachOf(nonEmptyArrayAt(value, path), (name, i) => {
    if (typeof name !== 'string' || name.length === 0) fail(`${path}[${i}]`, 'must be a non-empty string')
    return name
  })
}

function secondsAt(value: unknown, path: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    fail(path, `must be an integer number of seconds >= ${min}`)
  return value
}

/**
 * A valid filter. In rules, `%c` and `%u` are substitutions and any other `%` is refused, so a
 * typo like `%C` fails loudly instead of silently matching nothing (which, in a deny, fails open).
 * Groups and plaintext filters apply to everyone, so substitutions there are refused.
 */
function filterAt(value: unknown, path: string, substitutions: boolean): string {
  if (typeof value !== 'string') fail(path, 'must be a string')
  try {
    validateFilter(value)
  } catch (err) {
    if (isSmqttError(err)) fail(path, err.message)
    throw err
  }
  for (let i = value.indexOf('%'); i !== -1; i = value.indexOf('%', i + 1)) {
    const next = value[i + 1]
    if (!substitutions) fail(path, "'%' is not allowed here (substitutions %c and %u only apply in rules)")
    if (next !== 'c' && next !== 'u') fail(path, `unknown substitution at index ${i}; only %c and %u exist`)
  }
  return value
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

interface CompiledPattern {
  readonly source: string
  readonly substituted: boolean
}

interface CompiledRule {
  /** Position among the rules of its action, deny rules first: the order of every list built from them. */
  readonly order: number
  readonly deny: boolean
  readonly principals: ReadonlySet<string> | undefined
  readonly roles: ReadonlySet<string> | undefined
  readonly patterns: readonly CompiledPattern[]
}

/** One pattern of one rule, as the topic index holds it; `order` keeps the rules' order. */
interface IndexedPattern {
  readonly order: number
  readonly rule: CompiledRule
  readonly pattern: CompiledPattern
}

/**
 * The rules of one action, indexed by whom they apply to and by topic, so a check touches the
 * rules that could apply to this principal and match this topic, not every rule (issue 14).
 */
interface RuleIndex {
  readonly everyone: readonly CompiledRule[]
  readonly byPrincipal: ReadonlyMap<string, readonly CompiledRule[]>
  readonly byRole: ReadonlyMap<string, readonly CompiledRule[]>
  readonly topics: FilterTrie<IndexedPattern>
  /** Deny rules with a substitution: a refused one denies the whole action, whatever the topic. */
  readonly substitutedDenies: readonly CompiledRule[]
}

/** The filters that apply to one principal for one action. */
interface Permissions {
  readonly allow: string[]
  readonly deny: string[]
  /** A deny rule's substitution was refused: the action is denied outright. */
  denyAll: boolean
}

/** What an evaluator precomputes from its policy (see {@link PolicyEvaluator.inSteps}). */
interface PreparedPolicy {
  readonly source: Policy
  readonly policy: Policy
  readonly publish: RuleIndex
  readonly subscribe: RuleIndex
  readonly exactGroups: ReadonlyMap<string, KeyGroupPolicy>
  /** Group filters to their index in `policy.groups`. */
  readonly groups: FilterTrie<number>
  readonly plaintext: FilterTrie<string>
}

// Hands a policy prepared in steps to the constructor (set and read in one synchronous stretch).
let handOver: PreparedPolicy | undefined

/**
 * Answers access questions for one {@link Policy}. Build it once per policy version; the checks
 * are pure functions of (policy, principal, topic), so policy changes take effect by building a
 * new evaluator and using it for the next check (the broker re-checks on every forward).
 *
 * Invalid topics and filters are refused (`false`), not thrown: they are access decisions.
 * MQTT 5 shared subscriptions must be checked on the filter without its `$share/{name}/` prefix.
 *
 * Building is linear in the size of the policy; a check costs what the rules that could match
 * its topic (and apply to its principal) cost, not what all rules cost.
 *
 * @example
 * ```ts
 * const acl = new PolicyEvaluator(parsePolicy(json))
 * const device = { id: 'thermostat-1', roles: ['device'] }
 * acl.mayPublish(device, 'devices/thermostat-1/temperature')
 * acl.maySubscribe(device, 'devices/thermostat-1/commands/#')
 * ```
 */
export class PolicyEvaluator {
  readonly policy: Policy
  readonly #publish: RuleIndex
  readonly #subscribe: RuleIndex
  readonly #exactGroups: ReadonlyMap<string, KeyGroupPolicy>
  readonly #groups: FilterTrie<number>
  readonly #plaintext: FilterTrie<string>

  /** @throws SmqttError('ERR_POLICY_INVALID') when `policy` breaks the rules of {@link parsePolicy}. */
  constructor(policy: Policy) {
    const ready = handOver?.source === policy ? handOver : finish(preparePolicy(policy))
    handOver = undefined
    this.policy = ready.policy
    this.#publish = ready.publish
    this.#subscribe = ready.subscribe
    this.#exactGroups = ready.exactGroups
    this.#groups = ready.groups
    this.#plaintext = ready.plaintext
  }

  /**
   * Builds an evaluator in steps, for a caller that must not block (the broker applying a
   * snapshot of a large fleet): each `next()` does a slice of well under a millisecond; the
   * last returns the evaluator. Same result and errors as the constructor.
   *
   * @example
   * ```ts
   * const steps = PolicyEvaluator.inSteps(policy)
   * for (let step = steps.next(); ; step = steps.next()) if (step.done) return step.value
   * ```
   */
  static *inSteps(policy: Policy): Generator<undefined, PolicyEvaluator> {
    const ready = yield* preparePolicy(policy)
    handOver = ready
    return new PolicyEvaluator(policy)
  }

  /**
   * True iff some applicable allow rule matches `topic` and no applicable deny rule does.
   *
   * @example
   * ```ts
   * acl.mayPublish({ id: 'd1', roles: [] }, 'devices/d1/state')
   * ```
   */
  mayPublish(principal: PrincipalContext, topic: string): boolean {
    if (!isValidTopic(topic)) return false
    const index = this.#publish
    if (refusedDeny(index, principal)) return false
    let allowed = false
    for (const { rule, pattern } of index.topics.matching(topic)) {
      if (!applies(rule, principal)) continue
      const filter = pattern.substituted ? substitute(pattern.source, principal) : pattern.source
      if (filter === undefined || !topicMatches(filter, topic)) continue
      if (rule.deny) return false
      allowed = true
    }
    return allowed
  }

  /**
   * True iff the applicable allow rules together cover every topic `filter` can match and no
   * applicable deny rule intersects it: a wildcard subscription that could reach any denied
   * topic is refused as a whole.
   *
   * @example
   * ```ts
   * acl.maySubscribe({ id: 'app', roles: ['app'] }, 'home/+/temperature')
   * ```
   */
  maySubscribe(principal: PrincipalContext, filter: string): boolean {
    if (!isValidFilter(filter)) return false
    const index = this.#subscribe
    if (refusedDeny(index, principal)) return false
    const allow: string[] = []
    for (const { rule, pattern } of index.topics.intersecting(filter).sort(byOrder)) {
      if (!applies(rule, principal)) continue
      const f = pattern.substituted ? substitute(pattern.source, principal) : pattern.source
      if (f === undefined) continue
      if (!rule.deny) allow.push(f)
      else if (filtersIntersect(f, filter)) return false
    }
    for (const a of allow) if (filterCovers(a, filter)) return true
    return unionCovers(allow, filter)
  }

  /**
   * The key group `topic` belongs to, if any (at most one, by construction).
   *
   * @example
   * ```ts
   * acl.groupForTopic('home/kitchen/thermostat/setpoint')?.id
   * ```
   */
  groupForTopic(topic: string): KeyGroupPolicy | undefined {
    const exact = this.#exactGroups.get(topic)
    if (exact !== undefined) return exact
    for (const i of this.#groups.matching(topic)) {
      const group = this.policy.groups[i] as KeyGroupPolicy
      if (topicMatches(group.filter, topic)) return group
    }
    return undefined
  }

  /**
   * True when the policy explicitly allows unencrypted payloads on `topic`.
   *
   * @example
   * ```ts
   * acl.isPlaintextTopic('$SYS/broker/uptime')
   * ```
   */
  isPlaintextTopic(topic: string): boolean {
    for (const filter of this.#plaintext.matching(topic)) if (topicMatches(filter, topic)) return true
    return false
  }

  /**
   * The principals that are readers of `group`: those that may subscribe to at least one
   * concrete topic of the group, i.e. for some topic `t` matched by `group.filter`,
   * `maySubscribe(p, t)` holds. Computed exactly (deny rules that together cover the part of
   * the group a principal is allowed are taken into account), and a principal with a refused
   * deny substitution reads nothing. Readers receive the group's keys.
   *
   * @example
   * ```ts
   * const readers = acl.readersOf(group, directory.principals())
   * ```
   */
  readersOf(group: KeyGroupPolicy, principals: Iterable<PrincipalContext>): PrincipalContext[] {
    return [...principals].filter((p) => reaches(permissions(this.#subscribe, p), group.filter))
  }

  /**
   * The principals that are writers of `group`: those for which `mayPublish(p, t)` holds for
   * at least one topic `t` of the group. Subscribers accept signatures only from writers.
   *
   * @example
   * ```ts
   * const writers = acl.writersOf(group, directory.principals())
   * ```
   */
  writersOf(group: KeyGroupPolicy, principals: Iterable<PrincipalContext>): PrincipalContext[] {
    return [...principals].filter((p) => reaches(permissions(this.#publish, p), group.filter))
  }

  /**
   * The groups `principal` reads (is in {@link PolicyEvaluator.readersOf}), in policy order, found through the
   * group index instead of trying every group.
   *
   * @example
   * ```ts
   * acl.groupsReadBy({ id: 'app-1', roles: ['app'] }).map((g) => g.id)
   * ```
   */
  groupsReadBy(principal: PrincipalContext): KeyGroupPolicy[] {
    return this.#reached(permissions(this.#subscribe, principal)).map((i) => this.policy.groups[i] as KeyGroupPolicy)
  }

  /**
   * The groups `principal` writes (is in {@link PolicyEvaluator.writersOf}), in policy order.
   *
   * @example
   * ```ts
   * acl.groupsWrittenBy({ id: 'thermostat-1', roles: ['thermostat'] }).map((g) => g.id)
   * ```
   */
  groupsWrittenBy(principal: PrincipalContext): KeyGroupPolicy[] {
    return this.#reached(permissions(this.#publish, principal)).map((i) => this.policy.groups[i] as KeyGroupPolicy)
  }

  /**
   * `principal`'s publish rights inside `group`, exactly `mayPublish` restricted to the group's
   * topics; empty lists when it is not a writer. The key server puts them in key bundles so
   * subscribers refuse a writer's signed message on a topic it may not publish, even when a
   * broker delivers it.
   *
   * @example
   * ```ts
   * acl.publishRightsIn(thermostats, { id: 'thermostat-1', roles: ['thermostat'] })
   * // { allow: ['home/+/thermostat/thermostat-1/#'], deny: [] }
   * ```
   */
  publishRightsIn(group: KeyGroupPolicy, principal: PrincipalContext): PublishRights {
    const perms = permissions(this.#publish, principal)
    if (!reaches(perms, group.filter)) return { allow: [], deny: [] }
    const allow = narrowest(perms.allow, group.filter)
    // A deny that meets no allowed topic changes nothing: leave it out of the bundle.
    const deny = narrowest(perms.deny, group.filter).filter((d) => allow.some((a) => filtersIntersect(a, d)))
    return { allow, deny }
  }

  /**
   * One warning per (group, reader) where the reader may not subscribe to the whole group
   * filter: it will receive keys for topics it cannot read. The key server shows these so the
   * operator can narrow the group or widen the permission. Ordered by group, then principal.
   *
   * @example
   * ```ts
   * for (const w of acl.wideGroupWarnings(principals)) log.warn(w, w.message)
   * ```
   */
  wideGroupWarnings(principals: Iterable<PrincipalContext>): WideGroupWarning[] {
    const found: { group: number; principal: number; warning: WideGroupWarning }[] = []
    let p = 0
    for (const principal of principals) {
      const perms = permissions(this.#subscribe, principal)
      for (const i of this.#reached(perms)) {
        const group = this.policy.groups[i] as KeyGroupPolicy
        let reason: WideGroupWarning['reason'] | undefined
        if (perms.deny.some((d) => filtersIntersect(d, group.filter))) reason = 'partly-denied'
        else if (!unionCovers(perms.allow, group.filter)) reason = 'not-fully-allowed'
        if (reason === undefined) continue
        const warning: WideGroupWarning = {
          groupId: group.id,
          groupName: group.name,
          principalId: principal.id,
          reason,
          message:
            `principal ${JSON.stringify(principal.id)} reads key group ${JSON.stringify(group.name)} ` +
            `(${group.filter}) but may not subscribe to all of it (${reason}): ` +
            'it will receive keys for topics it cannot read',
        }
        found.push({ group: i, principal: p, warning })
      }
      p++
    }
    found.sort((a, b) => a.group - b.group || a.principal - b.principal)
    return found.map((f) => f.warning)
  }

  /** Indexes (ascending) of the groups `perms` reach: only groups some allow filter meets are tried. */
  #reached(perms: Permissions): number[] {
    if (perms.denyAll) return []
    const candidates = new Set<number>()
    for (const allow of perms.allow) for (const i of this.#groups.intersecting(allow)) candidates.add(i)
    return [...candidates]
      .sort((a, b) => a - b)
      .filter((i) => reaches(perms, (this.policy.groups[i] as KeyGroupPolicy).filter))
  }
}

/** Validates, freezes and indexes `source`, yielding between slices. */
function* preparePolicy(source: Policy): Generator<undefined, PreparedPolicy> {
  // Re-validate: groupForTopic and the reader/writer logic rely on parsePolicy's invariants.
  // The copy is frozen so no caller can change the policy under the precomputed lookups.
  const policy = freezePolicy(yield* parsePolicySteps(source))
  const publish = yield* indexRules(policy.rules, 'publish')
  const subscribe = yield* indexRules(policy.rules, 'subscribe')
  const exactGroups = new Map<string, KeyGroupPolicy>()
  const groups = new FilterTrie<number>()
  for (let i = 0; i < policy.groups.length; i++) {
    const group = policy.groups[i] as KeyGroupPolicy
    groups.add(group.filter, i)
    if (!/[+#]/.test(group.filter)) exactGroups.set(group.filter, group)
    if (i % SLICE === SLICE - 1) yield
  }
  const plaintext = new FilterTrie<string>()
  for (const filter of policy.plaintext) plaintext.add(filter, filter)
  return { source, policy, publish, subscribe, exactGroups, groups, plaintext }
}

function freezePolicy(policy: Policy): Policy {
  for (const rule of policy.rules) {
    for (const list of [rule.actions, rule.topics, rule.principals, rule.roles]) if (list) Object.freeze(list)
    Object.freeze(rule)
  }
  for (const group of policy.groups) Object.freeze(group)
  for (const list of [policy.rules, policy.groups, policy.plaintext]) Object.freeze(list)
  return Object.freeze(policy)
}

function* indexRules(rules: readonly AclRule[], action: AclAction): Generator<undefined, RuleIndex> {
  const ofAction = rules.filter((rule) => rule.actions.includes(action))
  // Deny rules first, each side in policy order (the order the permission lists keep).
  const ordered = [...ofAction.filter((r) => r.effect === 'deny'), ...ofAction.filter((r) => r.effect !== 'deny')]
  const everyone: CompiledRule[] = []
  const byPrincipal = new Map<string, CompiledRule[]>()
  const byRole = new Map<string, CompiledRule[]>()
  const topics = new FilterTrie<IndexedPattern>()
  const substitutedDenies: CompiledRule[] = []
  let patternOrder = 0
  for (let order = 0; order < ordered.length; order++) {
    const rule = ordered[order] as AclRule
    const compiled: CompiledRule = {
      order,
      deny: rule.effect === 'deny',
      principals: rule.principals && new Set(rule.principals),
      roles: rule.roles && new Set(rule.roles),
      patterns: rule.topics.map((source) => ({ source, substituted: source.includes('%') })),
    }
    if (compiled.principals === undefined && compiled.roles === undefined) everyone.push(compiled)
    for (const id of compiled.principals ?? []) appendRule(byPrincipal, id, compiled)
    for (const role of compiled.roles ?? []) appendRule(byRole, role, compiled)
    for (const pattern of compiled.patterns)
      topics.add(pattern.source, { order: patternOrder++, rule: compiled, pattern })
    if (compiled.deny && compiled.patterns.some((p) => p.substituted)) substitutedDenies.push(compiled)
    if (order % SLICE === SLICE - 1) yield
  }
  return { everyone, byPrincipal, byRole, topics, substitutedDenies }
}

function appendRule(map: Map<string, CompiledRule[]>, key: string, rule: CompiledRule): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [rule])
  else if (list[list.length - 1] !== rule) list.push(rule)
}

const byOrder = (a: { readonly order: number }, b: { readonly order: number }) => a.order - b.order

function applies(rule: CompiledRule, principal: PrincipalContext): boolean {
  if (rule.principals === undefined && rule.roles === undefined) return true
  if (rule.principals?.has(principal.id)) return true
  if (rule.roles !== undefined) for (const role of principal.roles) if (rule.roles.has(role)) return true
  return false
}

/** The rules of `index` that apply to `principal`, in rule order, found through the principal and role maps. */
function applicable(index: RuleIndex, principal: PrincipalContext): CompiledRule[] {
  const found = new Set<CompiledRule>(index.everyone)
  for (const rule of index.byPrincipal.get(principal.id) ?? []) found.add(rule)
  for (const role of principal.roles) for (const rule of index.byRole.get(role) ?? []) found.add(rule)
  return [...found].sort(byOrder)
}

/** True when an applicable deny rule's substitution is refused for `principal`: the whole action is denied. */
function refusedDeny(index: RuleIndex, principal: PrincipalContext): boolean {
  for (const rule of index.substitutedDenies) {
    if (!applies(rule, principal)) continue
    for (const pattern of rule.patterns)
      if (pattern.substituted && substitute(pattern.source, principal) === undefined) return true
  }
  return false
}

function permissions(index: RuleIndex, principal: PrincipalContext): Permissions {
  const result: Permissions = { allow: [], deny: [], denyAll: false }
  for (const rule of applicable(index, principal)) {
    for (const pattern of rule.patterns) {
      const filter = pattern.substituted ? substitute(pattern.source, principal) : pattern.source
      if (filter !== undefined) (rule.deny ? result.deny : result.allow).push(filter)
      else if (rule.deny) result.denyAll = true
    }
  }
  return result
}

/** Is some topic of `groupFilter` allowed by one allow filter and outside every deny filter? */
function reaches(perms: Permissions, groupFilter: string): boolean {
  if (perms.denyAll) return false
  for (const allow of perms.allow) {
    const inBoth = filterIntersection(allow, groupFilter)
    if (inBoth !== undefined && !unionCovers(perms.deny, inBoth)) return true
  }
  return false
}

/** `filters` cut down to `groupFilter`, without duplicates or filters another one covers. */
function narrowest(filters: readonly string[], groupFilter: string): string[] {
  const inGroup = [...new Set(filters.flatMap((f) => filterIntersection(f, groupFilter) ?? []))]
  // Of two filters matching the same topics (`#`, `+/#`), the first stays.
  return inGroup.filter(
    (f, i) => !inGroup.some((other, j) => j !== i && filterCovers(other, f) && (j < i || !filterCovers(f, other))),
  )
}
