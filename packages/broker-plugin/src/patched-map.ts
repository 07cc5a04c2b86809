// A read-only map made of a base map and the changes made since (issue 14): applying a snapshot
// delta to the broker's index of 100,000 principals costs what the delta holds, not a copy of
// the index. Patches of patches keep one base: the changes merge, so a lookup is at most two
// map reads. Once the changes grow to a fair share of the base, the caller folds them into a new
// base (`compactInSlices`), a slice at a time.

/** Folds in when the changes reach this share of the base (or the base is small). */
const COMPACT_SHARE = 1 / 8
const COMPACT_MIN = 1_024

export class PatchedMap<K, V> implements ReadonlyMap<K, V> {
  readonly #base: ReadonlyMap<K, V>
  /** Values set since the base: keys changed in it, or not in it. */
  readonly #set: ReadonlyMap<K, V>
  /** Keys of the base removed since. */
  readonly #removed: ReadonlySet<K>
  readonly size: number

  private constructor(base: ReadonlyMap<K, V>, set: ReadonlyMap<K, V>, removed: ReadonlySet<K>, size: number) {
    this.#base = base
    this.#set = set
    this.#removed = removed
    this.size = size
  }

  /** `from` with `set` set and `removed` removed (a key in both: removed). */
  static patched<K, V>(from: ReadonlyMap<K, V>, set: Iterable<[K, V]>, removed: Iterable<K>): PatchedMap<K, V> {
    const base = from instanceof PatchedMap ? (from.#base as ReadonlyMap<K, V>) : from
    const nextSet = new Map(from instanceof PatchedMap ? (from.#set as ReadonlyMap<K, V>) : [])
    const nextRemoved = new Set(from instanceof PatchedMap ? (from.#removed as ReadonlySet<K>) : [])
    const has = (key: K) => nextSet.has(key) || (!nextRemoved.has(key) && base.has(key))
    let size = from.size
    for (const [key, value] of set) {
      if (!has(key)) size++
      nextRemoved.delete(key)
      nextSet.set(key, value)
    }
    for (const key of removed) {
      if (has(key)) size--
      nextSet.delete(key)
      if (base.has(key)) nextRemoved.add(key)
    }
    return new PatchedMap(base, nextSet, nextRemoved, size)
  }

  /** Whether the changes are large enough to fold into a new base. */
  get wantsCompaction(): boolean {
    const changes = this.#set.size + this.#removed.size
    return changes >= COMPACT_MIN && changes >= this.#base.size * COMPACT_SHARE
  }

  get(key: K): V | undefined {
    const value = this.#set.get(key)
    if (value !== undefined || this.#set.has(key)) return value
    return this.#removed.has(key) ? undefined : this.#base.get(key)
  }

  has(key: K): boolean {
    return this.#set.has(key) || (!this.#removed.has(key) && this.#base.has(key))
  }

  *entries(): MapIterator<[K, V]> {
    for (const [key, value] of this.#base) {
      if (this.#removed.has(key)) continue
      yield [key, this.#set.has(key) ? (this.#set.get(key) as V) : value]
    }
    for (const entry of this.#set) if (!this.#base.has(entry[0])) yield entry
  }

  *keys(): MapIterator<K> {
    for (const [key] of this.entries()) yield key
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries()
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this)
  }
}

/** `map` as one plain map, built a slice of entries per step (the caller runs the steps in slices). */
export function* compactInSlices<K, V>(
  map: ReadonlyMap<K, V>,
  entriesPerStep: number,
): Generator<undefined, Map<K, V>> {
  const copy = new Map<K, V>()
  let i = 0
  for (const [key, value] of map) {
    copy.set(key, value)
    if (++i % entriesPerStep === 0) yield
  }
  return copy
}
