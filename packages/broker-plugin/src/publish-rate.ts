// Per-principal PUBLISH rate limit: a token bucket, so a device may burst (a reconnect flushing
// its offline queue) but not sustain more than `perSecond`. Keyed by principal, not connection:
// reconnecting does not refill the bucket.

/** Limits of the per-principal publish rate limiter (a token bucket). */
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
  /** Tokens taken since the last {@link PublishRateLimiter.drain} (scale-out: not yet charged to Redis). */
  unsynced: number
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
    if (bucket === undefined) bucket = this.#create(principalId, nowMs)
    else this.#refill(bucket, nowMs)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    bucket.unsynced++
    return true
  }

  /**
   * Scale-out: the tokens taken since the last call, by principal (of one principal, or all),
   * and starts counting again. See cluster-limits.ts.
   */
  drain(principalId?: string): [string, number][] {
    const counts: [string, number][] = []
    const take = (id: string, bucket: Bucket) => {
      if (bucket.unsynced === 0) return
      counts.push([id, bucket.unsynced])
      bucket.unsynced = 0
    }
    if (principalId === undefined) for (const [id, bucket] of this.#buckets) take(id, bucket)
    else {
      const bucket = this.#buckets.get(principalId)
      if (bucket) take(principalId, bucket)
    }
    return counts
  }

  /** Scale-out: counts a {@link drain} returned that could not be charged, to charge them later. */
  restore(principalId: string, taken: number): void {
    const bucket = this.#buckets.get(principalId)
    if (bucket) bucket.unsynced += taken
  }

  /** Scale-out: lowers the principal's bucket to `tokens` (what the cluster has left; may be negative). */
  clamp(principalId: string, tokens: number, nowMs: number): void {
    let bucket = this.#buckets.get(principalId)
    if (bucket === undefined) bucket = this.#create(principalId, nowMs)
    else this.#refill(bucket, nowMs)
    bucket.tokens = Math.min(bucket.tokens, tokens)
  }

  #create(principalId: string, nowMs: number): Bucket {
    if (this.#buckets.size >= MAX_TRACKED) this.#prune(nowMs)
    const bucket = { tokens: this.#burst, at: nowMs, unsynced: 0 }
    this.#buckets.set(principalId, bucket)
    return bucket
  }

  #refill(bucket: Bucket, nowMs: number): void {
    if (nowMs <= bucket.at) return
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (nowMs - bucket.at) * this.#perMs)
    bucket.at = nowMs
  }

  #prune(nowMs: number): void {
    for (const [id, bucket] of this.#buckets)
      if (bucket.unsynced === 0 && bucket.tokens + (nowMs - bucket.at) * this.#perMs >= this.#burst)
        this.#buckets.delete(id)
    while (this.#buckets.size >= MAX_TRACKED) this.#buckets.delete(this.#buckets.keys().next().value as string)
  }
}
