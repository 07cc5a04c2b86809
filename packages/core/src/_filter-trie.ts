// Topic filters indexed by their levels, so that "which stored filters can match this topic"
// and "which can share a topic with this filter" touch only the candidates instead of every
// filter (issue 14: the policy checks were quadratic in key groups and linear in rules).
//
// The answers are a SUPERSET: the trie ignores the `$` rule (MQTT-4.7.2-1) and treats a rule
// level holding `%c` / `%u` as `+` (a substituted value is one whole level). Callers confirm each
// candidate with the exact function (`topicMatches`, `filtersIntersect`), so the index changes
// how fast an answer comes, never what it is.

interface TrieNode<T> {
  readonly literal: Map<string, TrieNode<T>>
  plus: TrieNode<T> | undefined
  /** Values whose filter is this node's path followed by `#`. */
  hash: T[] | undefined
  /** Values whose filter ends exactly at this node. */
  end: T[] | undefined
}

const node = <T>(): TrieNode<T> => ({ literal: new Map(), plus: undefined, hash: undefined, end: undefined })

/** A level as the index sees it: substitutions are one level of any value. */
function indexLevel(level: string): string {
  return level.includes('%') ? '+' : level
}

/** A multimap from topic filters to values, queried by topic or by filter. */
export class FilterTrie<T> {
  readonly #root: TrieNode<T> = node()

  /** Adds `value` under `filter` (a valid filter, or a rule pattern with `%c` / `%u`). */
  add(filter: string, value: T): void {
    let at = this.#root
    const levels = filter.split('/')
    for (let i = 0; i < levels.length; i++) {
      const level = indexLevel(levels[i] as string)
      if (level === '#') {
        at.hash ??= []
        at.hash.push(value)
        return
      }
      if (level === '+') {
        at.plus ??= node()
        at = at.plus
      } else {
        let next = at.literal.get(level)
        if (next === undefined) {
          next = node()
          at.literal.set(level, next)
        }
        at = next
      }
    }
    at.end ??= []
    at.end.push(value)
  }

  /** Every value whose filter may match the concrete `topic` (a superset; see the file comment). */
  matching(topic: string): T[] {
    const out: T[] = []
    const levels = topic.split('/')
    const visit = (at: TrieNode<T>, i: number): void => {
      if (at.hash) for (const v of at.hash) out.push(v) // `a/#` matches `a` and everything below
      if (i === levels.length) {
        if (at.end) for (const v of at.end) out.push(v)
        return
      }
      const next = at.literal.get(levels[i] as string)
      if (next) visit(next, i + 1)
      if (at.plus) visit(at.plus, i + 1)
    }
    visit(this.#root, 0)
    return out
  }

  /** Every value whose filter may share a topic with `filter` (a superset; see the file comment). */
  intersecting(filter: string): T[] {
    const out: T[] = []
    const levels = filter.split('/').map(indexLevel)
    const all = (at: TrieNode<T>): void => {
      if (at.end) for (const v of at.end) out.push(v)
      if (at.hash) for (const v of at.hash) out.push(v)
      for (const child of at.literal.values()) all(child)
      if (at.plus) all(at.plus)
    }
    const visit = (at: TrieNode<T>, i: number): void => {
      const level = levels[i]
      if (level === '#') {
        all(at) // the query's `#` meets everything from here down
        return
      }
      if (at.hash) for (const v of at.hash) out.push(v)
      if (level === undefined) {
        if (at.end) for (const v of at.end) out.push(v)
        return
      }
      if (level === '+') for (const child of at.literal.values()) visit(child, i + 1)
      else {
        const next = at.literal.get(level)
        if (next) visit(next, i + 1)
      }
      if (at.plus) visit(at.plus, i + 1)
    }
    visit(this.#root, 0)
    return out
  }
}
