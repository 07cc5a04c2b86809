// Per-principal PUBLISH rate limit: a token bucket, so a device may burst (a reconnect flushing
// its offline queue) but not sustain more than `perSecond`. Keyed by principal, not connection:
// reconnecting does not refill the bucket.

/** Limits of {@link PublishRateLimiter}. */
export interface PublishRate {
  /** Sustained publishes per second per principal. */
  readonly perSecond: number
  /** Bucket size: publishes allowed back to back after a quiet period. */
  readonly burst: number
}

/**
 * Default: 1,000 msgs/s, bursts of 2,000. Finite, so one compromised or looping device cannot
 * take the broker's whole capacity (about 10,000 verified msgs/s per core), yet far above what a
 * sensor or an app sends.
 */
export const DEFAULT_PUBLISH_RATE: PublishRate = { perSecond: 1_000, burst: 2_000 }

interface Bucket {
  tokens: number
  /** Time of the last refill, ms (monotonic). */
  at: number
}

const MAX_TRACKED = 100_000

/**
 * Token buckets by principal id. Memory is bounded: past 100,000 principals, full buckets (the
 * same as no bucket) are dropped, then the oldest.
 *
 * @example
 * ```ts
 * const limiter = new PublishRateLimiter({ perSecond: 100, burst: 200 })
 * if (!limiter.take(principalId, performance.now())) refuse('rate-limited')
 * ```
 */
export class PublishRateLimiter {
  readonly #perMs: number
  readonly #burst: number
  readonly #buckets = new Map<string, Bucket>()

  /** @throws RangeError unless both limits are positive. */
  constructor(rate: PublishRate) {
    if (!(rate.perSecond > 0) || !(rate.burst >= 1)) throw new RangeError('publishRate needs perSecond > 0, burst >= 1')
    this.#perMs = rate.perSecond / 1000
    this.#burst = rate.burst
  }

  /** Takes one token for `principalId` at `nowMs`; false when the bucket is empty. */
  take(principalId: string, nowMs: number): boolean {
    let bucket = this.#buckets.get(principalId)
    if (bucket === undefined) {
      if (this.#buckets.size >= MAX_TRACKED) this.#prune(nowMs)
      bucket = { tokens: this.#burst, at: nowMs }
      this.#buckets.set(principalId, bucket)
    } else if (nowMs > bucket.at) {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (nowMs - bucket.at) * this.#perMs)
      bucket.at = nowMs
    }
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  #prune(nowMs: number): void {
    for (const [id, bucket] of this.#buckets)
      if (bucket.tokens + (nowMs - bucket.at) * this.#perMs >= this.#burst) this.#buckets.delete(id)
    while (this.#buckets.size >= MAX_TRACKED) this.#buckets.delete(this.#buckets.keys().next().value as string)
  }
}
