/** How far a signed request's timestamp may be from the key server's clock, either way (seconds). */
export const REQUEST_WINDOW_SECONDS = 60

/** Why a nonce was not taken: already used, or its principal's share (or the whole cache) is full. */
export type NonceRefusal = 'replay' | 'full'

/**
 * Remembers request nonces, per principal, for as long as their request could still be
 * accepted: a request stamped `timestamp` is accepted while `now <= timestamp + window`, so its
 * nonce is kept until then inclusive (keeping it "twice the window from first use" let a
 * request stamped at the window's far edge be replayed at the instant both ended).
 *
 * Bounded twice, failing closed: a principal holding `maxPerPrincipal` live nonces is refused
 * alone (its flood costs only itself), and the whole cache holds at most `maxEntries`.
 */
export class NonceCache {
  readonly #byPrincipal = new Map<string, Map<string, number>>()
  readonly #maxPerPrincipal: number
  readonly #maxEntries: number
  #size = 0

  constructor(options: { maxPerPrincipal?: number; maxEntries?: number } = {}) {
    this.#maxPerPrincipal = options.maxPerPrincipal ?? 1_000
    this.#maxEntries = options.maxEntries ?? 1_000_000
  }

  /** Live nonces held, all principals together. */
  get size(): number {
    return this.#size
  }

  /**
   * Takes `nonce` for `principal`, kept while `now <= acceptedUntil`. Returns undefined the
   * first time, 'replay' while it is kept, 'full' when there is no room for it.
   */
  useOnce(principal: string, nonce: string, acceptedUntil: number, now: number): NonceRefusal | undefined {
    let own = this.#byPrincipal.get(principal)
    const until = own?.get(nonce)
    if (until !== undefined && until >= now) return 'replay'
    if (own && own.size >= this.#maxPerPrincipal) this.#purge(principal, own, now)
    if (this.#size >= this.#maxEntries) for (const [id, nonces] of this.#byPrincipal) this.#purge(id, nonces, now)
    own = this.#byPrincipal.get(principal)
    if ((own?.size ?? 0) >= this.#maxPerPrincipal || this.#size >= this.#maxEntries) return 'full'
    if (!own) {
      own = new Map()
      this.#byPrincipal.set(principal, own)
    }
    if (!own.has(nonce)) this.#size++
    own.set(nonce, acceptedUntil)
    return undefined
  }

  #purge(principal: string, nonces: Map<string, number>, now: number): void {
    for (const [nonce, until] of nonces)
      if (until < now) {
        nonces.delete(nonce)
        this.#size--
      }
    if (nonces.size === 0) this.#byPrincipal.delete(principal)
  }
}
