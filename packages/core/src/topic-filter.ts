// MQTT topic names and topic filters with the exact semantics of MQTT 3.1.1 §4.7 / MQTT 5 §4.7:
// `/` separates levels, empty levels count, `+` is one whole level, `#` is the whole last level
// and also matches its parent, and a filter that starts with a wildcard never matches a topic
// that starts with `$` (MQTT-4.7.2-1). The broker calls `topicMatches` per message, so it is a
// single pass over both strings with no split and no regex; the set operations (`filterCovers`,
// `filtersIntersect`, `filterIntersection`, `unionCovers`) run per subscribe or per policy
// change and work level by level on split arrays.
import { SmqttError } from './errors.js'

/** Limits on topic names and filters, on top of MQTT's own. */
export interface TopicLimits {
  /** Longest UTF-8 encoding accepted, in bytes. Default 65,535 (the MQTT maximum). */
  readonly maxBytes?: number
  /** Most levels accepted (separators + 1). Default 128. */
  readonly maxLevels?: number
}

const DEFAULT_MAX_BYTES = 65_535
const DEFAULT_MAX_LEVELS = 128

const NUL = 0x00
const HASH = 0x23
const DOLLAR = 0x24
const PLUS = 0x2b
const SLASH = 0x2f

/**
 * Throws `SmqttError('ERR_TOPIC_INVALID')` unless `topic` is a valid MQTT topic name: a
 * non-empty, well-formed UTF-16 string without `+`, `#` or U+0000, at most `limits.maxBytes`
 * UTF-8 bytes and `limits.maxLevels` levels.
 *
 * @example
 * ```ts
 * validateTopic('home/kitchen/temperature') // ok
 * validateTopic('home/+/temperature') // throws ERR_TOPIC_INVALID: wildcards are for filters
 * ```
 */
export function validateTopic(topic: string, limits?: TopicLimits): void {
  const problem = problemWith(topic, limits, false)
  if (problem !== undefined) throw new SmqttError('ERR_TOPIC_INVALID', `topic ${problem}`)
}

/**
 * True when {@link validateTopic} would accept `topic`.
 *
 * @example
 * ```ts
 * isValidTopic('a//b') // true: empty levels are allowed
 * isValidTopic('a/#') // false
 * ```
 */
export function isValidTopic(topic: string, limits?: TopicLimits): boolean {
  return problemWith(topic, limits, false) === undefined
}

/**
 * Throws `SmqttError('ERR_FILTER_INVALID')` unless `filter` is a valid MQTT topic filter: like a
 * topic name, but `+` may stand alone as any level and `#` alone as the last level.
 *
 * @example
 * ```ts
 * validateFilter('sport/tennis/+/#') // ok
 * validateFilter('sport/tennis#') // throws ERR_FILTER_INVALID
 * ```
 */
export function validateFilter(filter: string, limits?: TopicLimits): void {
  const problem = problemWith(filter, limits, true)
  if (problem !== undefined) throw new SmqttError('ERR_FILTER_INVALID', `topic filter ${problem}`)
}

/**
 * True when {@link validateFilter} would accept `filter`.
 *
 * @example
 * ```ts
 * isValidFilter('+/monitor/Clients') // true
 * isValidFilter('a/#/b') // false
 * ```
 */
export function isValidFilter(filter: string, limits?: TopicLimits): boolean {
  return problemWith(filter, limits, true) === undefined
}

/** One pass over the UTF-16 code units; returns what is wrong, or undefined when valid. */
function problemWith(text: unknown, limits: TopicLimits | undefined, isFilter: boolean): string | undefined {
  const maxBytes = limitOf(limits?.maxBytes, DEFAULT_MAX_BYTES, 'maxBytes')
  const maxLevels = limitOf(limits?.maxLevels, DEFAULT_MAX_LEVELS, 'maxLevels')
  if (typeof text !== 'string') return 'must be a string'
  if (text.length === 0) return 'must not be empty'
  let bytes = 0
  let levels = 1
  let levelStart = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === NUL) return `contains U+0000 at index ${i}`
    if (c === SLASH) {
      levels++
      levelStart = i + 1
    } else if (c === PLUS || c === HASH) {
      if (!isFilter) return `contains the wildcard '${text[i]}' at index ${i} (wildcards are only allowed in filters)`
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : -1
      if (i !== levelStart) return `has '${text[i]}' inside a level at index ${i}`
      if (c === PLUS && next !== -1 && next !== SLASH) return `has '+' inside a level at index ${i}`
      if (c === HASH && next !== -1) return `has '#' before the last level at index ${i}`
    }
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff) {
      const low = i + 1 < text.length ? text.charCodeAt(i + 1) : 0
      if (low < 0xdc00 || low > 0xdfff) return `has a lone surrogate at index ${i}`
      bytes += 4
      i++
    } else if (c >= 0xdc00 && c <= 0xdfff) return `has a lone surrogate at index ${i}`
    else bytes += 3
  }
  if (bytes > maxBytes) return `is ${bytes} UTF-8 bytes, more than the limit of ${maxBytes}`
  if (levels > maxLevels) return `has ${levels} levels, more than the limit of ${maxLevels}`
  return undefined
}

function limitOf(value: number | undefined, fallback: number, label: string): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${label} must be a positive integer`)
  return value
}

/**
 * True when `topic` is matched by `filter`, with exact MQTT semantics. Both must already be
 * valid (see {@link validateTopic} / {@link validateFilter}); the result for invalid input is
 * unspecified. Runs in one pass without allocating.
 *
 * @example
 * ```ts
 * topicMatches('sport/tennis/player1/#', 'sport/tennis/player1') // true: '#' matches the parent
 * topicMatches('sport/+', 'sport/') // true: '+' matches an empty level
 * topicMatches('#', '$SYS/broker/uptime') // false: wildcards never start a match on '$' topics
 * ```
 */
export function topicMatches(filter: string, topic: string): boolean {
  const fl = filter.length
  const tl = topic.length
  if (topic.charCodeAt(0) === DOLLAR) {
    const first = filter.charCodeAt(0)
    if (first === PLUS || first === HASH) return false
  }
  let fi = 0
  let ti = 0
  // Invariant at the top of the loop: fi and ti are at the start of a level.
  for (;;) {
    const c = filter.charCodeAt(fi)
    if (c === HASH) return true
    if (c === PLUS) {
      fi++
      while (ti < tl && topic.charCodeAt(ti) !== SLASH) ti++
    } else {
      while (fi < fl) {
        const f = filter.charCodeAt(fi)
        if (f === SLASH) break
        if (ti >= tl || topic.charCodeAt(ti) !== f) return false
        fi++
        ti++
      }
      if (ti < tl && topic.charCodeAt(ti) !== SLASH) return false
    }
    // Both at the end of the string or at a '/'.
    if (fi === fl) return ti === tl
    if (ti === tl) return fi + 2 === fl && filter.charCodeAt(fi + 1) === HASH // 'a/#' matches 'a'
    fi++
    ti++
  }
}

const isWildcard = (level: string | undefined): boolean => level === '+' || level === '#'
const isDollarLiteral = (level: string | undefined): boolean => level !== undefined && level.charCodeAt(0) === DOLLAR

/**
 * `#` also matches its parent level, except where that parent would be no topic at all: a
 * lone `#` is the same set as `+/#` (there is no zero-level topic), and `/#` the same as `/+/#`
 * (its parent would be the empty topic, which is invalid). The level-wise algorithms below need
 * that spelled out.
 */
function levelsOf(filter: string): string[] {
  if (filter === '#') return ['+', '#']
  if (filter === '/#') return ['', '+', '#']
  return filter.split('/')
}

/**
 * True when every topic matched by `narrow` is also matched by `wide` (both valid filters).
 * Used to decide whether a subscription stays inside what a rule allows.
 *
 * @example
 * ```ts
 * filterCovers('home/#', 'home/+/temperature') // true
 * filterCovers('home/+', 'home/#') // false: 'home' and 'home/a/b' are not matched by 'home/+'
 * filterCovers('#', '$SYS/#') // false: '#' does not reach '$' topics
 * ```
 */
export function filterCovers(wide: string, narrow: string): boolean {
  const w = levelsOf(wide)
  const n = levelsOf(narrow)
  if (isWildcard(w[0]) && isDollarLiteral(n[0])) return false
  for (let i = 0; ; i++) {
    const wl = w[i]
    const nl = n[i]
    if (wl === '#') return true
    if (wl === undefined || nl === undefined) return wl === nl
    if (nl === '#') return false // narrow also matches its parent and any depth; only '#' covers that
    if (wl !== '+' && wl !== nl) return false // a literal covers neither '+' nor another literal
  }
}

/**
 * True when at least one valid topic is matched by both filters. Used for "deny wins": a
 * subscription that could reach any denied topic is refused.
 *
 * @example
 * ```ts
 * filtersIntersect('home/+/secret', 'home/kitchen/#') // true: 'home/kitchen/secret'
 * filtersIntersect('home/+', 'office/#') // false
 * filtersIntersect('+/#', '$SYS/#') // false
 * ```
 */
export function filtersIntersect(a: string, b: string): boolean {
  return filterIntersection(a, b) !== undefined
}

/**
 * The filter matching exactly the topics matched by both `a` and `b`, or undefined when no
 * topic is matched by both. The intersection of two MQTT filters is always itself a filter.
 *
 * @example
 * ```ts
 * filterIntersection('home/+/#', '+/kitchen/temperature') // 'home/kitchen/temperature'
 * filterIntersection('a/#', 'a') // 'a'
 * filterIntersection('#', '$SYS/#') // undefined
 * ```
 */
export function filterIntersection(a: string, b: string): string | undefined {
  const x = a.split('/')
  const y = b.split('/')
  if ((isWildcard(x[0]) && isDollarLiteral(y[0])) || (isWildcard(y[0]) && isDollarLiteral(x[0]))) return undefined
  const out: string[] = []
  for (let i = 0; ; i++) {
    const xl = x[i]
    const yl = y[i]
    if (xl === undefined && yl === undefined) return nonEmpty(out)
    if (xl === undefined) return yl === '#' ? nonEmpty(out) : undefined
    if (yl === undefined) return xl === '#' ? nonEmpty(out) : undefined
    if (xl === '#') return nonEmpty(out.concat(y.slice(i)))
    if (yl === '#') return nonEmpty(out.concat(x.slice(i)))
    if (xl === '+') out.push(yl)
    else if (yl === '+' || yl === xl) out.push(xl)
    else return undefined
  }
}

/** The filter `levels` spell, or undefined for `''`: it would match only the (invalid) empty topic. */
function nonEmpty(levels: readonly string[]): string | undefined {
  const filter = levels.join('/')
  return filter === '' ? undefined : filter
}

/**
 * True when every topic matched by `narrow` is matched by at least one of `wides`. Unlike
 * `wides.some(w => filterCovers(w, narrow))` this sees coverage that needs several filters
 * together, e.g. `a` and `a/+/#` together cover `a/#`.
 *
 * Cost: it branches at each wildcard of `narrow` on the literals the `wides` use at that level,
 * so it is meant for policy-sized inputs (per subscribe, per policy change), not per message.
 *
 * @example
 * ```ts
 * unionCovers(['a', 'a/+/#'], 'a/#') // true
 * unionCovers(['a/b', 'a/c'], 'a/+') // false: 'a/d' is in neither
 * ```
 */
export function unionCovers(wides: readonly string[], narrow: string): boolean {
  const n = levelsOf(narrow)
  let candidates = wides.map(levelsOf)
  // Wildcard-first filters never match '$' topics, so they cannot help cover a '$' filter.
  if (isDollarLiteral(n[0])) candidates = candidates.filter((w) => !isWildcard(w[0]))
  return coveredFrom(
    n,
    0,
    candidates.map((levels) => ({ levels, at: 0 })),
  )
}

/** A candidate filter that has matched every level of the narrow filter so far; `at` is its next level. */
interface Cursor {
  readonly levels: readonly string[]
  readonly at: number
}

/** Is every topic of `narrow` from level `ni` on matched by some cursor from its position on? */
function coveredFrom(narrow: readonly string[], ni: number, active: readonly Cursor[]): boolean {
  if (active.length === 0) return false
  // At level > 0 '#' matches everything that follows; at level 0 the '$' pre-filter made it safe.
  for (const c of active) if (c.levels[c.at] === '#') return true
  const level = narrow[ni]
  if (level === undefined) return active.some((c) => c.at === c.levels.length)
  if (level === '#') {
    // '#' here is "end of topic" or "one more level of any value, then '#' again".
    if (!active.some((c) => c.at === c.levels.length)) return false
    return everyValueCovered(narrow, ni, active, false)
  }
  if (level === '+') return everyValueCovered(narrow, ni + 1, active, ni === 0)
  return coveredFrom(narrow, ni + 1, advance(active, level))
}

/**
 * Is the next level covered whatever its value? Only the literals the cursors name, plus one
 * fresh value standing for every other string, can behave differently, so check those.
 */
function everyValueCovered(
  narrow: readonly string[],
  next: number,
  active: readonly Cursor[],
  first: boolean,
): boolean {
  const literals = new Set<string>()
  for (const c of active) {
    const l = c.levels[c.at]
    // A wildcard-first filter never produces a '$' first level, so those values need no check.
    if (l !== undefined && l !== '+' && !(first && isDollarLiteral(l))) literals.add(l)
  }
  for (const value of literals) if (!coveredFrom(narrow, next, advance(active, value))) return false
  return coveredFrom(narrow, next, advance(active, undefined))
}

/** The cursors that match one more level of value `value` (undefined: a value no cursor names). */
function advance(active: readonly Cursor[], value: string | undefined): Cursor[] {
  const out: Cursor[] = []
  for (const c of active) {
    const l = c.levels[c.at]
    if (l === '+' || (l !== undefined && l === value)) out.push({ levels: c.levels, at: c.at + 1 })
  }
  return out
}
