/**
 * Token buckets by key (a principal id): each key may spend `burst` at once and `perSecond`
 * after that. Bounded: when `maxKeys` buckets are held, the full ones (idle keys, nothing to
 * remember) are dropped; a key that still finds no room is refused rather than let through.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>()
  readonly #perSecond: number
  readonly #burst: number
  readonly #maxKeys: number

  constructor(options: { perSecond: number; burst: number; maxKeys?: number }) {
    this.#perSecond = options.perSecond
    this.#burst = options.burst
    this.#maxKeys = options.maxKeys ?? 100_000
  }

  /** Spends one token of `key` at `now` (seconds, monotonic); false when it has none left. */
  take(key: string, now: number): boolean {
    let bucket = this.#buckets.get(key)
    if (!bucket) {
      if (this.#buckets.size >= this.#maxKeys) this.#dropFull(now)
      if (this.#buckets.size >= this.#maxKeys) return false
      bucket = { tokens: this.#burst, at: now }
      this.#buckets.set(key, bucket)
    }
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perSecond)
    bucket.at = now
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  #dropFull(now: number): void {
    for (const [key, bucket] of this.#buckets)
      if (bucket.tokens + (now - bucket.at) * this.#perSecond >= this.#burst) this.#buckets.delete(key)
  }
}
