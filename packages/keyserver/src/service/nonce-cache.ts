/**
 * Remembers request nonces for twice the signature time window, so a captured signed request
 * cannot be replayed. Bounded: when full, expired nonces are purged; if the cache is still
 * full, new requests are refused (fail closed) rather than forgetting live nonces.
 */
export class NonceCache {
  readonly #seen = new Map<string, number>()
  readonly #ttlSeconds: number
  readonly #maxEntries: number

  constructor(options: { ttlSeconds?: number; maxEntries?: number } = {}) {
    this.#ttlSeconds = options.ttlSeconds ?? 120
    this.#maxEntries = options.maxEntries ?? 200_000
  }

  /** True the first time a nonce is seen within its lifetime; false for a replay or when full. */
  useOnce(nonce: string, now: number): boolean {
    const expiry = this.#seen.get(nonce)
    if (expiry !== undefined && expiry > now) return false
    if (this.#seen.size >= this.#maxEntries) {
      for (const [key, until] of this.#seen) if (until <= now) this.#seen.delete(key)
      if (this.#seen.size >= this.#maxEntries) return false
    }
    this.#seen.set(nonce, now + this.#ttlSeconds)
    return true
  }
}
