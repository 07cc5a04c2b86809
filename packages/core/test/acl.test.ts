import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import {
  type AclRule,
  type KeyGroupPolicy,
  type Policy,
  PolicyEvaluator,
  type PrincipalContext,
  parsePolicy,
  publishRightsAllow,
  substitutePattern,
} from '../src/acl.js'
import { isSmqttError } from '../src/errors.js'
import { filterCovers, isValidFilter, topicMatches } from '../src/topic-filter.js'
import { codeOf, thrown } from './_fixtures.js'

const policyOf = (rules: AclRule[], groups: KeyGroupPolicy[] = [], plaintext: string[] = []): Policy => ({
  version: 1,
  rules,
  groups,
  plaintext,
})
const acl = (rules: AclRule[], groups: KeyGroupPolicy[] = [], plaintext: string[] = []) =>
  new PolicyEvaluator(policyOf(rules, groups, plaintext))
const who = (id: string, roles: string[] = [], username?: string): PrincipalContext =>
  username === undefined ? { id, roles } : { id, roles, username }

const alice = who('alice')
const both: AclRule['actions'] = ['publish', 'subscribe']

describe('deny by default, deny wins', () => {
  test('an empty policy allows nothing', () => {
    const evaluator = acl([])
    expect(evaluator.mayPublish(alice, 'a')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'a')).toBe(false)
    expect(evaluator.maySubscribe(alice, '#')).toBe(false)
  })

  test('an allow grants only its action and its topics', () => {
    const evaluator = acl([{ effect: 'allow', actions: ['publish'], topics: ['sensors/#'] }])
    expect(evaluator.mayPublish(alice, 'sensors/kitchen/temp')).toBe(true)
    expect(evaluator.mayPublish(alice, 'sensors')).toBe(true)
    expect(evaluator.mayPublish(alice, 'actuators/kitchen')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'sensors/#')).toBe(false)
  })

  test.each([
    ['deny first', true],
    ['allow first', false],
  ])('deny wins over allow (%s)', (_, denyFirst) => {
    const allow: AclRule = { effect: 'allow', actions: both, topics: ['home/#'] }
    const deny: AclRule = { effect: 'deny', actions: both, topics: ['home/+/secret'] }
    const evaluator = acl(denyFirst ? [deny, allow] : [allow, deny])
    expect(evaluator.mayPublish(alice, 'home/kitchen/temp')).toBe(true)
    expect(evaluator.mayPublish(alice, 'home/kitchen/secret')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'home/kitchen/secret')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'home/kitchen/temp')).toBe(true)
  })

  test('a subscription that partly overlaps a deny is refused as a whole', () => {
    const evaluator = acl([
      { effect: 'allow', actions: ['subscribe'], topics: ['home/#'] },
      { effect: 'deny', actions: ['subscribe'], topics: ['home/+/secret'] },
    ])
    expect(evaluator.maySubscribe(alice, 'home/#')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'home/kitchen/+')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'home/kitchen/#')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'home/+/temp')).toBe(true)
    expect(evaluator.maySubscribe(alice, 'home/kitchen/temp/#')).toBe(true)
    expect(evaluator.maySubscribe(alice, 'home/+')).toBe(true)
  })

  test('a subscription must stay inside what is allowed', () => {
    const evaluator = acl([{ effect: 'allow', actions: ['subscribe'], topics: ['home/+/temp'] }])
    expect(evaluator.maySubscribe(alice, 'home/kitchen/temp')).toBe(true)
    expect(evaluator.maySubscribe(alice, 'home/+/temp')).toBe(true)
    expect(evaluator.maySubscribe(alice, 'home/#')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'home/+/+')).toBe(false)
    expect(evaluator.maySubscribe(alice, '#')).toBe(false)
  })

  test('several allow rules together may cover a subscription', () => {
    const evaluator = acl([
      { effect: 'allow', actions: ['subscribe'], topics: ['status'] },
      { effect: 'allow', actions: ['subscribe'], topics: ['status/+/#'] },
    ])
    expect(evaluator.maySubscribe(alice, 'status/#')).toBe(true)
  })

  test("'$SYS/#' is not reachable through '#' or '+'", () => {
    const evaluator = acl([{ effect: 'allow', actions: both, topics: ['#', '+/monitor/#'] }])
    expect(evaluator.maySubscribe(alice, '#')).toBe(true)
    expect(evaluator.maySubscribe(alice, '$SYS/#')).toBe(false)
    expect(evaluator.maySubscribe(alice, '$SYS/monitor/Clients')).toBe(false)
    expect(evaluator.mayPublish(alice, '$SYS/broker/uptime')).toBe(false)
    const sys = acl([{ effect: 'allow', actions: ['subscribe'], topics: ['$SYS/#'] }])
    expect(sys.maySubscribe(alice, '$SYS/broker/+')).toBe(true)
    expect(sys.maySubscribe(alice, '#')).toBe(false)
  })

  test("a deny on '#' does not deny '$' topics, and a deny on '$SYS/#' does not block '#'", () => {
    const evaluator = acl([
      { effect: 'allow', actions: ['subscribe'], topics: ['#', '$SYS/#'] },
      { effect: 'deny', actions: ['subscribe'], topics: ['$SYS/secret/#'] },
    ])
    expect(evaluator.maySubscribe(alice, '#')).toBe(true)
    expect(evaluator.maySubscribe(alice, '$SYS/#')).toBe(false)
    expect(evaluator.maySubscribe(alice, '$SYS/broker/#')).toBe(true)
  })

  test('invalid topics and filters are refused, not thrown', () => {
    const evaluator = acl([{ effect: 'allow', actions: both, topics: ['#'] }])
    expect(evaluator.mayPublish(alice, 'a/#')).toBe(false)
    expect(evaluator.mayPublish(alice, '')).toBe(false)
    expect(evaluator.mayPublish(alice, 'a\u0000')).toBe(false)
    expect(evaluator.maySubscribe(alice, 'a#')).toBe(false)
    expect(evaluator.maySubscribe(alice, '')).toBe(false)
  })
})

describe('who a rule applies to', () => {
  const evaluator = acl([
    { effect: 'allow', actions: ['publish'], topics: ['ops/#'], roles: ['operator'] },
    { effect: 'allow', actions: ['publish'], topics: ['bob/#'], principals: ['bob'] },
    { effect: 'deny', actions: ['publish'], topics: ['ops/danger'], roles: ['trainee'], principals: ['carol'] },
  ])

  test('roles', () => {
    expect(evaluator.mayPublish(who('x', ['operator']), 'ops/restart')).toBe(true)
    expect(evaluator.mayPublish(who('x', ['viewer']), 'ops/restart')).toBe(false)
    expect(evaluator.mayPublish(who('x', ['operator', 'trainee']), 'ops/danger')).toBe(false)
    expect(evaluator.mayPublish(who('x', ['operator']), 'ops/danger')).toBe(true)
  })

  test('principal ids, and principals OR roles', () => {
    expect(evaluator.mayPublish(who('bob'), 'bob/x')).toBe(true)
    expect(evaluator.mayPublish(who('bobby'), 'bob/x')).toBe(false)
    expect(evaluator.mayPublish(who('carol', ['operator']), 'ops/danger')).toBe(false)
    expect(evaluator.mayPublish(who('carol', ['operator']), 'ops/safe')).toBe(true)
  })

  test('a role name is not a principal id', () => {
    expect(evaluator.mayPublish(who('operator'), 'ops/restart')).toBe(false)
  })
})

describe('%c and %u substitution', () => {
  test('substitutePattern replaces whole levels and parts of levels, once', () => {
    expect(substitutePattern('devices/%c/#', who('t-1'))).toBe('devices/t-1/#')
    expect(substitutePattern('users/%u-inbox', who('x', [], 'ann'))).toBe('users/ann-inbox')
    expect(substitutePattern('%c/%u', who('a%u', [], 'b'))).toBe('a%u/b')
    expect(substitutePattern('static/+', who('x'))).toBe('static/+')
  })

  test.each(['', '+', '#', 'a/b', 'a/#', 'x+', '\u0000', '\ud800'])('a principal id %j is refused', (id) => {
    expect(codeOf(() => substitutePattern('devices/%c', who(id)))).toBe('ERR_ACL_SUBSTITUTION_REFUSED')
  })

  test('a missing or unsafe username is refused', () => {
    expect(codeOf(() => substitutePattern('users/%u', who('x')))).toBe('ERR_ACL_SUBSTITUTION_REFUSED')
    expect(codeOf(() => substitutePattern('users/%u', who('x', [], '')))).toBe('ERR_ACL_SUBSTITUTION_REFUSED')
    expect(codeOf(() => substitutePattern('users/%u', who('x', [], 'a/b')))).toBe('ERR_ACL_SUBSTITUTION_REFUSED')
    // Only the values the pattern uses matter.
    expect(substitutePattern('devices/%c', who('x'))).toBe('devices/x')
  })

  test("a value may not turn a pattern into a '$' filter", () => {
    expect(codeOf(() => substitutePattern('%c/#', who('$SYS')))).toBe('ERR_ACL_SUBSTITUTION_REFUSED')
    expect(substitutePattern('devices/%c', who('$x'))).toBe('devices/$x')
  })

  test('each principal gets its own topics', () => {
    const evaluator = acl([
      { effect: 'allow', actions: both, topics: ['devices/%c/#'] },
      { effect: 'allow', actions: ['subscribe'], topics: ['users/%u-inbox'] },
    ])
    expect(evaluator.mayPublish(who('d1'), 'devices/d1/state')).toBe(true)
    expect(evaluator.mayPublish(who('d1'), 'devices/d2/state')).toBe(false)
    expect(evaluator.maySubscribe(who('d1'), 'devices/d1/#')).toBe(true)
    expect(evaluator.maySubscribe(who('d1'), 'devices/+/state')).toBe(false)
    expect(evaluator.maySubscribe(who('d1', [], 'ann'), 'users/ann-inbox')).toBe(true)
    expect(evaluator.maySubscribe(who('d1', [], 'ann'), 'users/bob-inbox')).toBe(false)
    expect(evaluator.maySubscribe(who('d1'), 'users/-inbox')).toBe(false)
  })

  test.each(['+', '#', 'a/#', 'a/+', 'd2/#', '', '$SYS'])(
    'the injection attack: an id of %j never grants access beyond itself',
    (id) => {
      const evaluator = acl([{ effect: 'allow', actions: both, topics: ['devices/%c', 'devices/%c/#', '%c/#'] }])
      const attacker = who(id)
      for (const topic of ['devices/d2', 'devices/d2/state', 'devices/a/b', '$SYS/broker', 'd2/x', 'devices/+', 'x'])
        expect(evaluator.mayPublish(attacker, topic)).toBe(false)
      for (const filter of ['devices/+', 'devices/#', '#', 'devices/d2/#', 'devices/a/#', '$SYS/#', '+/#'])
        expect(evaluator.maySubscribe(attacker, filter)).toBe(false)
    },
  )

  test('a deny whose substitution is refused denies the whole action', () => {
    const evaluator = acl([
      { effect: 'allow', actions: both, topics: ['#'] },
      { effect: 'deny', actions: ['publish'], topics: ['users/%u/#'] },
    ])
    const withName = who('x', [], 'ann')
    expect(evaluator.mayPublish(withName, 'users/bob/x')).toBe(true)
    expect(evaluator.mayPublish(withName, 'users/ann/x')).toBe(false)
    // Without a username we cannot tell which topics the deny meant: fail closed for publish...
    expect(evaluator.mayPublish(who('x'), 'users/bob/x')).toBe(false)
    expect(evaluator.mayPublish(who('x'), 'weather')).toBe(false)
    expect(evaluator.mayPublish(who('a/#', [], 'a/#'), 'weather')).toBe(false)
    // ...but the other action is untouched.
    expect(evaluator.maySubscribe(who('x'), 'weather')).toBe(true)
  })
})

describe('groups and plaintext', () => {
  const groups: KeyGroupPolicy[] = [
    { id: 1, name: 'thermostats', filter: 'home/+/thermostat/#' },
    { id: 2, name: 'kitchen-light', filter: 'home/kitchen/light' },
  ]
  const evaluator = acl([], groups, ['$SYS/#', 'public/#'])

  test('groupForTopic', () => {
    expect(evaluator.groupForTopic('home/kitchen/thermostat')?.id).toBe(1)
    expect(evaluator.groupForTopic('home/hall/thermostat/setpoint')?.id).toBe(1)
    expect(evaluator.groupForTopic('home/kitchen/light')?.id).toBe(2)
    expect(evaluator.groupForTopic('home/kitchen/light/x')).toBeUndefined()
    expect(evaluator.groupForTopic('public/news')).toBeUndefined()
  })

  test('isPlaintextTopic', () => {
    expect(evaluator.isPlaintextTopic('$SYS/broker/uptime')).toBe(true)
    expect(evaluator.isPlaintextTopic('public')).toBe(true)
    expect(evaluator.isPlaintextTopic('home/kitchen/light')).toBe(false)
  })
})

describe('readers, writers and wide-group warnings', () => {
  const group: KeyGroupPolicy = { id: 7, name: 'home', filter: 'home/#' }
  const rules: AclRule[] = [
    { effect: 'allow', actions: ['subscribe'], topics: ['home/#'], roles: ['resident'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/kitchen/#'], roles: ['cook'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/#'], roles: ['guest'] },
    { effect: 'deny', actions: ['subscribe'], topics: ['home/+/camera'], roles: ['guest'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/garden'], roles: ['gardener'] },
    { effect: 'deny', actions: ['subscribe'], topics: ['home/#'], roles: ['banned'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['office/#'], roles: ['clerk'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/%u/#'], roles: ['tenant'] },
    { effect: 'deny', actions: ['subscribe'], topics: ['private/%u'], roles: ['nameless'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/thermostat'], roles: ['thermostat'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/camera'], roles: ['camera'] },
    { effect: 'deny', actions: ['publish'], topics: ['home/hall/camera'], roles: ['camera'] },
  ]
  const evaluator = acl(rules, [group])
  const principals = [
    who('resident', ['resident']),
    who('cook', ['cook']),
    who('guest', ['guest']),
    who('gardener', ['gardener']),
    who('banned', ['resident', 'banned']),
    who('clerk', ['clerk']),
    who('tenant', ['tenant'], 'flat1'),
    who('tenant-without-name', ['tenant']),
    who('nameless', ['resident', 'nameless']),
    who('thermostat', ['thermostat']),
    who('camera', ['camera']),
  ]
  const ids = (list: PrincipalContext[]) => list.map((p) => p.id)

  test('a reader may subscribe to at least one topic of the group', () => {
    expect(ids(evaluator.readersOf(group, principals))).toEqual(['resident', 'cook', 'guest', 'gardener', 'tenant'])
  })

  test('a writer may publish to at least one topic of the group', () => {
    expect(ids(evaluator.writersOf(group, principals))).toEqual(['thermostat', 'camera'])
  })

  test('a principal whose allowed part of the group is denied by several rules together is no reader', () => {
    const split = acl(
      [
        { effect: 'allow', actions: ['subscribe'], topics: ['home/#'] },
        { effect: 'deny', actions: ['subscribe'], topics: ['home', 'home/+/#'] },
      ],
      [group],
    )
    expect(split.readersOf(group, [alice])).toEqual([])
    expect(split.maySubscribe(alice, 'home')).toBe(false)
  })

  test('wideGroupWarnings names each reader that cannot read the whole group', () => {
    const warnings = evaluator.wideGroupWarnings(principals)
    expect(warnings.map((w) => [w.principalId, w.reason])).toEqual([
      ['cook', 'not-fully-allowed'],
      ['guest', 'partly-denied'],
      ['gardener', 'not-fully-allowed'],
      ['tenant', 'not-fully-allowed'],
    ])
    for (const w of warnings) {
      expect(w.groupId).toBe(7)
      expect(w.groupName).toBe('home')
      expect(w.message).toContain(w.principalId)
    }
  })

  test("publishRightsIn: a writer's own filters within the group, substituted and cut down to it", () => {
    const thermostats: KeyGroupPolicy = { id: 1, name: 'thermostats', filter: 'home/+/thermostat/#' }
    const rights = acl(
      [
        { effect: 'allow', actions: ['publish'], topics: ['home/+/thermostat/%c/#', 'home/%u/#'], roles: ['device'] },
        {
          effect: 'allow',
          actions: ['publish'],
          topics: ['home/+/thermostat/%c/state', 'office/#'],
          roles: ['device'],
        },
        { effect: 'deny', actions: ['publish'], topics: ['home/+/thermostat/%c/firmware', 'home/+/lock/#'] },
      ],
      [thermostats],
    )
    expect(rights.publishRightsIn(thermostats, who('t-1', ['device'], 'hall'))).toEqual({
      // `state` is covered by `#`, `office/#` misses the group, the lock deny meets no allowed topic.
      allow: ['home/+/thermostat/t-1/#', 'home/hall/thermostat/#'],
      deny: ['home/+/thermostat/t-1/firmware'],
    })
    expect(rights.publishRightsIn(thermostats, who('t-1', ['sensor']))).toEqual({ allow: [], deny: [] })
    // Of two filters matching the same topics, one stays.
    const everything = acl([{ effect: 'allow', actions: ['publish'], topics: ['#', '+/#'] }], [thermostats])
    expect(everything.publishRightsIn(thermostats, alice)).toEqual({ allow: ['home/+/thermostat/#'], deny: [] })
  })

  // The exact definition: p reads g iff maySubscribe(p, t) for some concrete topic t of g.
  test('readersOf and writersOf agree with brute force over a finite universe', () => {
    const LEVELS = ['a', 'b', '$x', '']
    const universe: string[] = []
    for (let depth = 1, layer = ['']; depth <= 4; depth++) {
      layer = layer.flatMap((p) => LEVELS.map((l) => (depth === 1 ? l : `${p}/${l}`)))
      universe.push(...layer.filter((t) => t !== ''))
    }
    const arbFilter = fc
      .tuple(fc.array(fc.constantFrom('a', '$x', '', '+'), { maxLength: 3 }), fc.boolean())
      .map(([body, hash]) => (hash || body.length === 0 ? [...body, '#'] : body).join('/'))
      .filter((f) => isValidFilter(f))
    const arbRule = fc.record({
      effect: fc.constantFrom('allow' as const, 'deny' as const),
      actions: fc.constantFrom<AclRule['actions']>(['publish'], ['subscribe'], both),
      topics: fc.array(arbFilter, { minLength: 1, maxLength: 2 }),
    })
    fc.assert(
      fc.property(fc.array(arbRule, { maxLength: 4 }), arbFilter, (rules, groupFilter) => {
        const g: KeyGroupPolicy = { id: 1, name: 'g', filter: groupFilter }
        const evaluator = acl(rules, [g])
        const topics = universe.filter((t) => topicMatches(groupFilter, t))
        expect(evaluator.readersOf(g, [alice]).length === 1).toBe(topics.some((t) => evaluator.maySubscribe(alice, t)))
        expect(evaluator.writersOf(g, [alice]).length === 1).toBe(topics.some((t) => evaluator.mayPublish(alice, t)))
        // The rights a bundle carries decide exactly as mayPublish does, on every topic of the group.
        const rights = evaluator.publishRightsIn(g, alice)
        for (const t of topics) expect(publishRightsAllow(rights, t)).toBe(evaluator.mayPublish(alice, t))
        for (const f of [...rights.allow, ...rights.deny])
          expect(isValidFilter(f) && filterCovers(groupFilter, f)).toBe(true)
        const fullyReadable = topics.every((t) => evaluator.maySubscribe(alice, t))
        const warned = evaluator.wideGroupWarnings([alice]).length === 1
        const reader = evaluator.readersOf(g, [alice]).length === 1
        expect(warned).toBe(reader && !fullyReadable)
      }),
      { numRuns: 500 },
    )
  })
})

describe('parsePolicy', () => {
  const valid = {
    version: 1,
    rules: [
      { effect: 'allow', actions: ['publish', 'subscribe'], topics: ['devices/%c/#'] },
      { effect: 'deny', actions: ['subscribe'], topics: ['devices/+/secret'], principals: ['x'], roles: ['guest'] },
    ],
    groups: [
      { id: 0, name: 'devices', filter: 'devices/#', rotateEverySeconds: 86_400, graceSeconds: 600 },
      { id: 4_294_967_295, name: 'hall', filter: 'hall/+' },
    ],
    plaintext: ['$SYS/#', 'public/#'],
  }
  /** A deep copy of `valid` for one malformed-shape case to change. */
  interface Doc {
    [field: string]: unknown
    rules: unknown[]
    groups: unknown[]
    plaintext: unknown[]
  }
  const withChange = (change: (doc: Doc) => void): unknown => {
    const copy = structuredClone(valid) as unknown as Doc
    change(copy)
    return copy
  }
  const rule = (doc: Doc, i: number) => doc.rules[i] as Record<string, unknown>
  const group = (doc: Doc, i: number) => doc.groups[i] as Record<string, unknown>

  test('accepts a valid policy and returns an equal copy', () => {
    const parsed = parsePolicy(valid)
    expect(parsed).toEqual(valid)
    expect(parsed).not.toBe(valid)
    expect(parsed.rules[0]).not.toBe(valid.rules[0])
    expect(parsePolicy(JSON.parse(JSON.stringify(valid)))).toEqual(valid)
  })

  test.each<[string, (doc: Doc) => void, string]>([
    ['not an object', () => {}, 'policy'],
    ['unknown top-level field', (p) => (p.extra = 1), 'policy: unknown field "extra"'],
    ['wrong version', (p) => (p.version = 2), 'version'],
    ['missing rules', (p) => Reflect.deleteProperty(p, 'rules'), 'rules: must be an array'],
    ['missing groups', (p) => Reflect.deleteProperty(p, 'groups'), 'groups: must be an array'],
    ['rules not an array', (p) => (p.rules = {} as never), 'rules'],
    ['rule not an object', (p) => (p.rules[1] = 'allow'), 'rules[1]'],
    ['unknown rule field', (p) => (rule(p, 0).qos = 1), 'rules[0]: unknown field "qos"'],
    ['bad effect', (p) => (rule(p, 0).effect = 'permit'), 'rules[0].effect'],
    ['empty actions', (p) => (rule(p, 0).actions = []), 'rules[0].actions'],
    ['bad action', (p) => (rule(p, 1).actions = ['read']), 'rules[1].actions[0]'],
    ['empty topics', (p) => (rule(p, 0).topics = []), 'rules[0].topics'],
    ['invalid filter', (p) => (rule(p, 1).topics = ['a', 'a#']), 'rules[1].topics[1]'],
    ['topic not a string', (p) => (rule(p, 0).topics = [7]), 'rules[0].topics[0]'],
    ['unknown substitution', (p) => (rule(p, 0).topics = ['a/%C']), 'rules[0].topics[0]'],
    ['trailing %', (p) => (rule(p, 0).topics = ['a/%']), 'rules[0].topics[0]'],
    ['empty principals', (p) => (rule(p, 1).principals = []), 'rules[1].principals'],
    ['bad principal', (p) => (rule(p, 1).principals = ['']), 'rules[1].principals[0]'],
    ['bad role', (p) => (rule(p, 1).roles = [1]), 'rules[1].roles[0]'],
    ['group id not an integer', (p) => (group(p, 0).id = 1.5), 'groups[0].id'],
    ['group id negative', (p) => (group(p, 0).id = -1), 'groups[0].id'],
    ['group id too large', (p) => (group(p, 1).id = 2 ** 32), 'groups[1].id'],
    ['group id a string', (p) => (group(p, 1).id = '1'), 'groups[1].id'],
    ['duplicate group id', (p) => (group(p, 1).id = 0), 'groups[1].id: duplicates'],
    ['duplicate group name', (p) => (group(p, 1).name = 'devices'), 'groups[1].name'],
    ['empty group name', (p) => (group(p, 1).name = ''), 'groups[1].name'],
    ['unknown group field', (p) => (group(p, 0).epoch = 1), 'groups[0]: unknown field'],
    ['invalid group filter', (p) => (group(p, 0).filter = 'a/#/b'), 'groups[0].filter'],
    ['group with %c', (p) => (group(p, 0).filter = 'devices/%c/#'), 'groups[0].filter'],
    ['overlapping groups', (p) => (group(p, 1).filter = '+/thermo'), 'groups[1].filter'],
    ['bad rotation', (p) => (group(p, 0).rotateEverySeconds = 0), 'rotateEverySeconds'],
    ['bad grace', (p) => (group(p, 0).graceSeconds = -1), 'groups[0].graceSeconds'],
    ['plaintext meets a group', (p) => p.plaintext.push('hall/door'), 'plaintext[2]'],
    ['plaintext not a string', (p) => (p.plaintext[0] = null), 'plaintext[0]'],
    // biome-ignore lint/suspicious/noSparseArray: a hole must be reported, not skipped
    ['sparse array', (p) => (p.plaintext = [, 'a']), 'plaintext[0]'],
  ])('refuses %s', (name, change, path) => {
    const input = name === 'not an object' ? [valid] : withChange(change)
    expect(thrown('ERR_POLICY_INVALID', () => parsePolicy(input)).message).toContain(path)
  })

  test('PolicyEvaluator re-validates what it is given', () => {
    const bad = { ...valid, groups: [...valid.groups, { id: 9, name: 'all', filter: '#' }] } as unknown as Policy
    expect(thrown('ERR_POLICY_INVALID', () => new PolicyEvaluator(bad)).message).toContain('groups[2].filter')
  })

  test('never throws anything but ERR_POLICY_INVALID on arbitrary input', () => {
    const check = (input: unknown) => {
      try {
        parsePolicy(input)
      } catch (err) {
        expect(isSmqttError(err, 'ERR_POLICY_INVALID')).toBe(true)
      }
    }
    fc.assert(fc.property(fc.jsonValue(), check), { numRuns: 500 })
    fc.assert(fc.property(fc.anything({ withSparseArray: true, withNullPrototype: true }), check), { numRuns: 500 })
    // Near-valid documents reach the deep checks.
    const nearValid = fc.record({
      version: fc.constantFrom(1, 1, 2),
      rules: fc.array(
        fc.record(
          {
            effect: fc.constantFrom('allow', 'deny', 'x'),
            actions: fc.array(fc.constantFrom('publish', 'subscribe', 'x'), { maxLength: 2 }),
            topics: fc.array(fc.string({ unit: fc.constantFrom('a', '/', '+', '#', '%', 'c', '\u0000', '\ud800') })),
            principals: fc.array(fc.string()),
          },
          { requiredKeys: ['effect', 'actions', 'topics'] },
        ),
      ),
      groups: fc.array(
        fc.record({
          id: fc.oneof(fc.integer(), fc.double()),
          name: fc.string(),
          filter: fc.string({ unit: fc.constantFrom('a', '/', '+', '#') }),
        }),
      ),
      plaintext: fc.array(fc.string({ unit: fc.constantFrom('a', '/', '+', '#', '$') })),
    })
    fc.assert(fc.property(nearValid, check), { numRuns: 500 })
  })
})

describe('substitution cache', () => {
  const acl = new PolicyEvaluator(
    parsePolicy({
      version: 1,
      rules: [{ effect: 'allow', actions: ['publish'], topics: ['dev/%c/%u/#'], roles: ['d'] }],
      groups: [],
      plaintext: [],
    }),
  )

  test('never answers for one principal with another principal’s substitution, and keeps refusing injections', () => {
    for (let round = 0; round < 3; round++) {
      expect(acl.mayPublish({ id: 'a', username: 'b', roles: ['d'] }, 'dev/a/b/x')).toBe(true)
      expect(acl.mayPublish({ id: 'ab', roles: ['d'] }, 'dev/a/b/x')).toBe(false) // no username: refused
      expect(acl.mayPublish({ id: 'a', username: 'bx', roles: ['d'] }, 'dev/a/b/x')).toBe(false)
      expect(acl.mayPublish({ id: 'a/b', username: 'c', roles: ['d'] }, 'dev/a/b/c/x')).toBe(false) // injection
      expect(acl.mayPublish({ id: '+', username: 'b', roles: ['d'] }, 'dev/z/b/x')).toBe(false)
    }
  })
})
