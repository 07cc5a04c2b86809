// Issue 14, cliff 3: the evaluator and the parser find candidates through a topic-filter trie
// instead of trying every rule and every pair of groups. These properties pin that the indexed
// answers are exactly those of the straightforward definitions, on random policies and topics.
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { FilterTrie } from '../src/_filter-trie.js'
import {
  type AclRule,
  type KeyGroupPolicy,
  type Policy,
  PolicyEvaluator,
  type PrincipalContext,
  parsePolicy,
  policyProblems,
  substitutePattern,
} from '../src/acl.js'
import {
  filterCovers,
  filtersIntersect,
  isValidFilter,
  isValidTopic,
  topicMatches,
  unionCovers,
} from '../src/topic-filter.js'

const LEVELS = ['a', 'b', 'c', '', '$x']
const level = fc.constantFrom(...LEVELS)
// Valid topic names only: "" (one empty level) is none (MQTT §4.7.3), and two groups may both
// match it without sharing a valid topic ("+" and "/#"), so a first-match reference and the index
// could name different groups for it (fast-check found it, seed -557102689).
const topicArb = fc
  .array(level, { minLength: 1, maxLength: 4 })
  .map((l) => l.join('/'))
  .filter((t) => isValidTopic(t))
const filterArb = fc
  .tuple(fc.array(fc.constantFrom(...LEVELS, '+'), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([l, hash]) => (hash ? [...l, '#'] : l).join('/'))
  .filter((f) => isValidFilter(f))
const patternArb = fc
  .tuple(fc.array(fc.constantFrom(...LEVELS, '+', '%c', '%u', 'x%c'), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([l, hash]) => (hash ? [...l, '#'] : l).join('/'))
  .filter((f) => isValidFilter(f))
const ROLES = ['r1', 'r2']
const IDS = ['a', 'b', '$x', 'q/#', '']
const ruleArb: fc.Arbitrary<AclRule> = fc.record(
  {
    effect: fc.constantFrom('allow' as const, 'deny' as const),
    actions: fc.subarray(['publish', 'subscribe'] as ('publish' | 'subscribe')[], { minLength: 1 }),
    topics: fc.array(patternArb, { minLength: 1, maxLength: 3 }),
    principals: fc.subarray(
      IDS.filter((id) => id !== ''),
      { minLength: 1 },
    ),
    roles: fc.subarray(ROLES, { minLength: 1 }),
  },
  { requiredKeys: ['effect', 'actions', 'topics'] },
)
const principalArb: fc.Arbitrary<PrincipalContext> = fc.record(
  { id: fc.constantFrom(...IDS), username: fc.constantFrom('a', 'b', '$x', '+'), roles: fc.subarray(ROLES) },
  { requiredKeys: ['id', 'roles'] },
)

/** Keeps the groups whose filters meet no earlier kept one (a valid policy's groups). */
function disjoint(filters: string[]): KeyGroupPolicy[] {
  const kept: KeyGroupPolicy[] = []
  for (const filter of filters)
    if (!kept.some((g) => filtersIntersect(g.filter, filter)))
      kept.push({ id: kept.length, name: `g${kept.length}`, filter })
  return kept
}
const policyArb: fc.Arbitrary<Policy> = fc
  .tuple(fc.array(ruleArb, { maxLength: 8 }), fc.array(filterArb, { maxLength: 6 }))
  .map(([rules, groupFilters]) => ({ version: 1 as const, rules, groups: disjoint(groupFilters), plaintext: [] }))

// The straightforward definitions: every rule, in order, as the evaluator did before issue 14.
const substituted = (pattern: string, p: PrincipalContext): string | undefined => {
  try {
    return substitutePattern(pattern, p)
  } catch {
    return undefined
  }
}
const appliesTo = (rule: AclRule, p: PrincipalContext) =>
  (rule.principals === undefined && rule.roles === undefined) ||
  (rule.principals?.includes(p.id) ?? false) ||
  p.roles.some((r) => rule.roles?.includes(r) ?? false)
function perms(policy: Policy, action: 'publish' | 'subscribe', p: PrincipalContext) {
  const allow: string[] = []
  const deny: string[] = []
  let denyAll = false
  for (const rule of policy.rules) {
    if (!rule.actions.includes(action) || !appliesTo(rule, p)) continue
    for (const pattern of rule.topics) {
      const f = substituted(pattern, p)
      if (f !== undefined) (rule.effect === 'deny' ? deny : allow).push(f)
      else if (rule.effect === 'deny') denyAll = true
    }
  }
  return { allow, deny, denyAll }
}
function referencePublish(policy: Policy, p: PrincipalContext, topic: string): boolean {
  if (!isValidTopic(topic)) return false
  const { allow, deny, denyAll } = perms(policy, 'publish', p)
  return !denyAll && !deny.some((d) => topicMatches(d, topic)) && allow.some((a) => topicMatches(a, topic))
}
function referenceSubscribe(policy: Policy, p: PrincipalContext, filter: string): boolean {
  if (!isValidFilter(filter)) return false
  const { allow, deny, denyAll } = perms(policy, 'subscribe', p)
  if (denyAll || deny.some((d) => filtersIntersect(d, filter))) return false
  return allow.some((a) => filterCovers(a, filter)) || unionCovers(allow, filter)
}

describe('issue 14: the filter trie', () => {
  test('finds every stored filter that matches a topic or meets a filter (a superset, never fewer)', () => {
    fc.assert(
      fc.property(fc.array(patternArb, { maxLength: 12 }), topicArb, filterArb, (stored, topic, query) => {
        const trie = new FilterTrie<number>()
        stored.forEach((f, i) => {
          trie.add(f, i)
        })
        const matching = new Set(trie.matching(topic))
        const meeting = new Set(trie.intersecting(query))
        stored.forEach((f, i) => {
          const concrete = f.replaceAll('%c', 'v').replaceAll('%u', 'v')
          if (topicMatches(concrete, topic)) expect(matching.has(i)).toBe(true)
          if (filtersIntersect(concrete, query)) expect(meeting.has(i)).toBe(true)
        })
      }),
      { numRuns: 500 },
    )
  })
})

describe('issue 14: the indexed evaluator answers like the straightforward definitions', () => {
  test('mayPublish, maySubscribe (filters and concrete topics), groupForTopic', () => {
    fc.assert(
      fc.property(policyArb, principalArb, topicArb, filterArb, (policy, p, topic, filter) => {
        const acl = new PolicyEvaluator(policy)
        expect(acl.mayPublish(p, topic)).toBe(referencePublish(policy, p, topic))
        expect(acl.maySubscribe(p, topic)).toBe(referenceSubscribe(policy, p, topic))
        expect(acl.maySubscribe(p, filter)).toBe(referenceSubscribe(policy, p, filter))
        expect(acl.groupForTopic(topic)).toEqual(policy.groups.find((g) => topicMatches(g.filter, topic)))
      }),
      { numRuns: 1_000 },
    )
  })

  test('groupsReadBy / groupsWrittenBy agree with readersOf / writersOf, group by group', () => {
    fc.assert(
      fc.property(policyArb, principalArb, (policy, p) => {
        const acl = new PolicyEvaluator(policy)
        const read = acl.policy.groups.filter((g) => acl.readersOf(g, [p]).length > 0)
        const written = acl.policy.groups.filter((g) => acl.writersOf(g, [p]).length > 0)
        expect(acl.groupsReadBy(p)).toEqual(read)
        expect(acl.groupsWrittenBy(p)).toEqual(written)
      }),
      { numRuns: 500 },
    )
  })

  test('wideGroupWarnings come group by group, then principal by principal', () => {
    fc.assert(
      fc.property(policyArb, fc.array(principalArb, { maxLength: 4 }), (policy, principals) => {
        const acl = new PolicyEvaluator(policy)
        const expected = acl.policy.groups.flatMap((g) =>
          principals.flatMap((p) => acl.wideGroupWarnings([p]).filter((w) => w.groupId === g.id)),
        )
        expect(acl.wideGroupWarnings(principals)).toEqual(expected)
      }),
      { numRuns: 300 },
    )
  })

  test('an evaluator built in steps is the same as one built at once', () => {
    fc.assert(
      fc.property(policyArb, principalArb, topicArb, (policy, p, topic) => {
        const steps = PolicyEvaluator.inSteps(policy)
        let step = steps.next()
        while (!step.done) step = steps.next()
        const acl = step.value
        expect(acl.policy).toEqual(new PolicyEvaluator(policy).policy)
        expect(acl.mayPublish(p, topic)).toBe(referencePublish(policy, p, topic))
        expect(acl.maySubscribe(p, topic)).toBe(referenceSubscribe(policy, p, topic))
      }),
      { numRuns: 200 },
    )
  })
})

describe('issue 14: the group checks report what the pairwise checks reported', () => {
  const groupArb = fc.record({
    id: fc.integer({ min: 0, max: 3 }),
    name: fc.constantFrom('x', 'y', 'z'),
    filter: filterArb,
  })
  test('duplicate ids and names, overlapping filters and plaintext, in the same order', () => {
    fc.assert(
      fc.property(
        fc.array(groupArb, { maxLength: 6 }),
        fc.array(filterArb, { maxLength: 3 }),
        (groups: KeyGroupPolicy[], plaintext) => {
          const expected: string[] = []
          groups.forEach((group, i) => {
            for (let j = 0; j < i; j++) {
              const other = groups[j] as KeyGroupPolicy
              if (other.id === group.id) expected.push(`groups[${i}].id: duplicates groups[${j}].id`)
              else if (other.name === group.name) expected.push(`groups[${i}].name: duplicates groups[${j}].name`)
              else if (filtersIntersect(other.filter, group.filter))
                expected.push(`groups[${i}].filter: shares topics with groups[${j}].filter`)
            }
            plaintext.forEach((filter, j) => {
              if (filtersIntersect(filter, group.filter))
                expected.push(
                  `plaintext[${j}]: shares topics with groups[${i}].filter (a topic is either encrypted or not)`,
                )
            })
          })
          const policy = { version: 1, rules: [], groups, plaintext }
          expect(policyProblems(policy)).toEqual(expected)
          if (expected.length === 0) expect(parsePolicy(policy).groups).toEqual(groups)
          else expect(() => parsePolicy(policy)).toThrow(expected[0])
        },
      ),
      { numRuns: 1_000 },
    )
  })
})
