import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import {
  filterCovers,
  filterIntersection,
  filtersIntersect,
  isValidFilter,
  isValidTopic,
  topicMatches,
  unionCovers,
  validateFilter,
  validateTopic,
} from '../src/topic-filter.js'
import { codeOf } from './_fixtures.js'

describe('validateTopic', () => {
  test.each(['a', '/', 'a//b', '/finance', 'sport/tennis/player1', '$SYS/broker/uptime', 'température/€', '😀/x', ' '])(
    'accepts %j',
    (topic) => {
      expect(() => validateTopic(topic)).not.toThrow()
      expect(isValidTopic(topic)).toBe(true)
    },
  )

  test.each(['', 'a/+', '+', '#', 'a/#', 'sport+', 'a\u0000b', '\ud800', 'a\ud800b', '\udc00', 'x\ude00\ud83d'])(
    'refuses %j',
    (topic) => {
      expect(codeOf(() => validateTopic(topic))).toBe('ERR_TOPIC_INVALID')
      expect(isValidTopic(topic)).toBe(false)
    },
  )

  test('refuses non-strings with the typed error (untrusted input)', () => {
    for (const value of [undefined, null, 1, {}, ['a']])
      expect(codeOf(() => validateTopic(value as string))).toBe('ERR_TOPIC_INVALID')
  })

  test('counts UTF-8 bytes, not UTF-16 code units', () => {
    expect(isValidTopic('éé', { maxBytes: 4 })).toBe(true)
    expect(isValidTopic('éé', { maxBytes: 3 })).toBe(false)
    expect(isValidTopic('€', { maxBytes: 3 })).toBe(true)
    expect(isValidTopic('€', { maxBytes: 2 })).toBe(false)
    expect(isValidTopic('😀', { maxBytes: 4 })).toBe(true)
    expect(isValidTopic('😀', { maxBytes: 3 })).toBe(false)
  })

  test('default limits: 65,535 bytes and 128 levels', () => {
    expect(isValidTopic('a'.repeat(65_535))).toBe(true)
    expect(codeOf(() => validateTopic('a'.repeat(65_536)))).toBe('ERR_TOPIC_INVALID')
    expect(isValidTopic(Array(128).fill('a').join('/'))).toBe(true)
    expect(codeOf(() => validateTopic(Array(129).fill('a').join('/')))).toBe('ERR_TOPIC_INVALID')
    expect(isValidTopic('a/b/c', { maxLevels: 2 })).toBe(false)
    expect(isValidTopic('a/b', { maxLevels: 2 })).toBe(true)
  })

  test('bad limits are programmer mistakes (RangeError)', () => {
    expect(() => validateTopic('a', { maxBytes: 0 })).toThrow(RangeError)
    expect(() => validateTopic('a', { maxLevels: 1.5 })).toThrow(RangeError)
  })
})

describe('validateFilter', () => {
  test.each([
    '#',
    '+',
    '+/+',
    '/+',
    '+/',
    'a/#',
    'sport/tennis/+',
    'sport/+/player1/#',
    '$SYS/#',
    'a//b',
    '+/monitor/Clients',
  ])('accepts %j', (filter) => {
    expect(() => validateFilter(filter)).not.toThrow()
    expect(isValidFilter(filter)).toBe(true)
  })

  test.each([
    '',
    'a#',
    'sport/tennis#',
    'a/#/b',
    '#/a',
    '##',
    '#+',
    'a+',
    '+a',
    'sport+/x',
    'a/b+',
    '++',
    'a/\u0000',
    '\ud800/#',
  ])('refuses %j', (filter) => {
    expect(codeOf(() => validateFilter(filter))).toBe('ERR_FILTER_INVALID')
    expect(isValidFilter(filter)).toBe(false)
  })

  test('limits apply to filters too', () => {
    expect(isValidFilter('a/+/#', { maxLevels: 2 })).toBe(false)
    expect(isValidFilter('a/#', { maxBytes: 2 })).toBe(false)
  })
})

describe('topicMatches: cases from MQTT 3.1.1 §4.7 and MQTT 5 §4.7', () => {
  test.each([
    // §4.7.1.2 multi-level wildcard
    ['sport/tennis/player1/#', 'sport/tennis/player1', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true],
    ['sport/tennis/player1/#', 'sport/tennis/player2', false],
    ['sport/tennis/player1/#', 'sport/tennis', false],
    ['sport/#', 'sport', true],
    ['#', 'sport/tennis', true],
    ['#', '/', true],
    // §4.7.1.3 single-level wildcard
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/tennis/+', 'sport/tennis/player2', true],
    ['sport/tennis/+', 'sport/tennis/player1/ranking', false],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    ['+/tennis/#', 'sport/tennis/player1', true],
    ['sport/+/player1', 'sport/tennis/player1', true],
    // §4.7.2 topics beginning with $
    ['#', '$SYS/broker/uptime', false],
    ['+/monitor/Clients', '$SYS/monitor/Clients', false],
    ['$SYS/#', '$SYS/monitor/Clients', true],
    ['$SYS/monitor/+', '$SYS/monitor/Clients', true],
    ['$SYS/#', '$SYS', true],
    ['+/#', '$SYS', false],
    ['a/$b', 'a/$b', true],
    ['a/+', 'a/$b', true],
    ['a/#', 'a/$b', true],
    // §4.7.3 case sensitivity and empty levels
    ['ACCOUNTS', 'Accounts', false],
    ['/finance', '/finance', true],
    ['/finance', 'finance', false],
    ['a//b', 'a//b', true],
    ['a/+/b', 'a//b', true],
    ['a/b', 'a//b', false],
    ['a/', 'a', false],
    ['a', 'a/', false],
    ['a/#', 'a/', true],
    ['a/+', 'a/', true],
    ['+/+', '/', true],
    ['+', '/', false],
    ['a/b', 'a/bc', false],
    ['a/bc', 'a/b', false],
    ['a/b/#', 'a/b', true],
    ['a/b/#', 'a/bb', false],
    ['a/b/#', 'a', false],
    ['a/+/#', 'a', false],
    ['a/+/#', 'a/x', true],
  ])('%j matches %j: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected)
  })
})

describe('set operations: hand-written cases', () => {
  test.each([
    ['#', 'a/b', true],
    ['#', '+/#', true],
    ['+/#', '#', true], // '#' matches nothing with zero levels, so these are the same set
    ['+/+/#', '/#', true], // '/#' does not match its parent: that would be the empty topic
    ['/+/#', '/#', true],
    ['a/#', 'a', true],
    ['a/#', 'a/+/b', true],
    ['a/+', 'a/#', false],
    ['a/+', 'a/b', true],
    ['a/b', 'a/+', false],
    ['#', '$SYS/#', false],
    ['+/#', '$SYS/x', false],
    ['$SYS/#', '$SYS/+', true],
    ['home/+/temperature', 'home/kitchen/temperature', true],
    ['home/+/temperature', 'home/+/humidity', false],
  ])('filterCovers(%j, %j) = %s', (wide, narrow, expected) => {
    expect(filterCovers(wide, narrow)).toBe(expected)
  })

  test.each([
    ['home/+/secret', 'home/kitchen/#', 'home/kitchen/secret'],
    ['a/#', 'a', 'a'],
    ['#', '+', '+'],
    ['+/#', '+', '+'],
    ['#', '$SYS/#', undefined],
    ['+/x', '$SYS/x', undefined],
    ['$SYS/#', '$SYS/+', '$SYS/+'],
    ['a/b', 'a/c', undefined],
    ['a/+', 'a/b/c', undefined],
    ['a/+/#', 'a', undefined],
    ['+/+', '/finance', '/finance'],
    ['+', '/#', undefined], // only the empty topic, which is not a topic
  ])('filterIntersection(%j, %j) = %j', (a, b, expected) => {
    expect(filterIntersection(a, b)).toBe(expected)
    expect(filterIntersection(b, a)).toBe(expected)
    expect(filtersIntersect(a, b)).toBe(expected !== undefined)
  })

  test.each([
    [['a', 'a/+/#'], 'a/#', true],
    [['a/b', 'a/c'], 'a/+', false],
    [['a/b', 'a/+'], 'a/+', true],
    [['+', '+/#'], '#', true],
    [['+/+/#'], '#', false],
    [['+', '+/+/#', '+/b'], '#', true],
    [['+', '+/b/#'], '#', false],
    [['+/+/#'], '/#', true], // '/#' cannot match its parent: that would be the empty topic
    [['#'], '$SYS/#', false],
    [['#', '$SYS'], '$SYS/#', false],
    [['$SYS', '$SYS/+/#'], '$SYS/#', true],
    [[], 'a', false],
  ])('unionCovers(%j, %j) = %s', (wides, narrow, expected) => {
    expect(unionCovers(wides, narrow)).toBe(expected)
  })
})

// ---------------------------------------------------------------------------------------------
// Property tests against an obviously correct reference: recursive level-by-level matching, and
// brute force over every topic of a finite universe.

/** Recursive reference matcher, written straight from the spec text. */
function referenceMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  if ((t[0] as string).startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  const from = (i: number, j: number): boolean => {
    if (i === f.length) return j === t.length
    if (f[i] === '#') return true // '#' is last: matches the parent (j === t.length) and any deeper levels
    if (j === t.length) return false
    return (f[i] === '+' || f[i] === t[j]) && from(i + 1, j + 1)
  }
  return from(0, 0)
}

// Filters use the literals 'a', '$x' and ''; the universe also has 'b', a value no filter names,
// which stands in for "any other string" so that a finite check decides the infinite case.
// Filters have at most 3 levels before an optional '#', so topics up to depth 4 are enough:
// beyond that, membership depends only on the first 3 levels.
const FILTER_LITERALS = ['a', '$x', '']
const TOPIC_LEVELS = ['a', 'b', '$x', '']
const UNIVERSE: string[] = []
for (let depth = 1, layer = ['']; depth <= 4; depth++) {
  layer = layer.flatMap((prefix) => TOPIC_LEVELS.map((l) => (depth === 1 ? l : `${prefix}/${l}`)))
  UNIVERSE.push(...layer.filter((t) => t !== ''))
}

const literal = (levels: string[]) => fc.constantFrom(...levels)
const filterFrom = (levels: string[]) =>
  fc
    .tuple(fc.array(fc.oneof(literal(levels), fc.constant('+')), { minLength: 0, maxLength: 3 }), fc.boolean())
    .map(([body, hash]) => (hash || body.length === 0 ? [...body, '#'] : body).join('/'))
    .filter((f) => isValidFilter(f))
const topicFrom = (levels: string[]) =>
  fc
    .array(literal(levels), { minLength: 1, maxLength: 5 })
    .map((l) => l.join('/'))
    .filter((t) => t !== '')

const arbFilter = filterFrom(FILTER_LITERALS)
const matchedSet = (filter: string) => UNIVERSE.filter((t) => referenceMatches(filter, t))

describe('set operations: properties against the reference', () => {
  test('topicMatches agrees with the recursive reference', () => {
    fc.assert(
      fc.property(filterFrom(TOPIC_LEVELS), topicFrom(TOPIC_LEVELS), (filter, topic) => {
        expect(topicMatches(filter, topic)).toBe(referenceMatches(filter, topic))
      }),
      { numRuns: 1000 },
    )
  })

  test('topicMatches agrees with the reference on every topic of the universe', () => {
    fc.assert(
      fc.property(filterFrom(TOPIC_LEVELS), (filter) => {
        for (const topic of UNIVERSE) expect(topicMatches(filter, topic)).toBe(referenceMatches(filter, topic))
      }),
      { numRuns: 200 },
    )
  })

  test('the generators produce both matches and non-matches', () => {
    const results = fc.sample(fc.tuple(arbFilter, topicFrom(TOPIC_LEVELS)), 500).map(([f, t]) => referenceMatches(f, t))
    expect(results.filter(Boolean).length).toBeGreaterThan(25)
    expect(results.filter((r) => !r).length).toBeGreaterThan(25)
  })

  test('filterCovers(wide, narrow) iff every topic of narrow is a topic of wide', () => {
    fc.assert(
      fc.property(arbFilter, arbFilter, (wide, narrow) => {
        const expected = matchedSet(narrow).every((t) => referenceMatches(wide, t))
        expect(filterCovers(wide, narrow)).toBe(expected)
        expect(unionCovers([wide], narrow)).toBe(expected)
      }),
      { numRuns: 1000 },
    )
  })

  test('filtersIntersect and filterIntersection agree with brute force', () => {
    fc.assert(
      fc.property(arbFilter, arbFilter, (a, b) => {
        const both = UNIVERSE.filter((t) => referenceMatches(a, t) && referenceMatches(b, t))
        expect(filtersIntersect(a, b)).toBe(both.length > 0)
        const intersection = filterIntersection(a, b)
        if (intersection === undefined) expect(both).toEqual([])
        else {
          expect(isValidFilter(intersection)).toBe(true)
          expect(matchedSet(intersection)).toEqual(both)
        }
      }),
      { numRuns: 1000 },
    )
  })

  test('unionCovers(wides, narrow) iff every topic of narrow is a topic of some wide', () => {
    fc.assert(
      fc.property(fc.array(arbFilter, { maxLength: 4 }), arbFilter, (wides, narrow) => {
        const expected = matchedSet(narrow).every((t) => wides.some((w) => referenceMatches(w, t)))
        expect(unionCovers(wides, narrow)).toBe(expected)
      }),
      { numRuns: 1000 },
    )
  })
})
