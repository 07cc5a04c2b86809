// Learning writers that joined after the keys were loaded, over any broker. With the SMQTT
// plugin the key server pushes every member its new bundle; beside a third-party broker nothing
// is pushed, and the freshness poll may be half a minute away. So an envelope whose sender the
// bundle does not list is held while the keys are fetched again, then opened.
//
// Anyone who can publish on a plain broker can write any sender id into a header without a key,
// so the fetches are bounded, not the ids: at most one per `intervalMs`, and an id still
// unknown after a fetch triggers none for `quietMs` (its envelopes are refused at once). What is
// held is bounded too (count and bytes); beyond it an envelope is refused at once.
// The refresh fetches the held senders' signed writer records by key id (a bundle lists a bounded
// number of writers per group), verified under the pinned key as a bundle is; a key server
// without them gets the client's usual bundle refresh.

export interface UnknownSendersOptions<T> {
  /** At most one refresh per this many milliseconds. */
  readonly intervalMs: number
  /** A sender still unknown after a refresh triggers none for this many milliseconds. */
  readonly quietMs: number
  /** Most envelopes held at once. */
  readonly maxHeld: number
  /** Most bytes held at once (envelope sizes). */
  readonly maxHeldBytes: number
  /** Fetches the records of the `wanted` senders, or the keys again; may reject. */
  readonly refresh: (wanted: readonly { readonly group: number; readonly sender: number }[]) => Promise<void>
  /** Whether the keys held now list `sender` as a writer of `group`. */
  readonly isKnown: (group: number, sender: number) => boolean
  /** Takes back held items, in arrival order, to open them now (those still unknown are refused there). */
  readonly release: (item: T) => void
  /** Milliseconds; injectable for tests. */
  readonly now?: () => number
}

interface Held<T> {
  readonly key: string
  readonly group: number
  readonly sender: number
  readonly size: number
  readonly item: T
  /** In the refresh in flight (arrived before it started). */
  inFlight: boolean
}

/** Ids remembered as still unknown after a refresh; past it the oldest is forgotten (the interval still holds). */
const MAX_QUIET = 4_096

const senderKey = (group: number, sender: number) => `${group}:${sender}`

/** Holds envelopes from senders the bundle does not list while a rate-limited refresh runs. */
export class UnknownSenders<T> {
  readonly #options: UnknownSendersOptions<T>
  readonly #now: () => number
  #held: Held<T>[] = []
  #heldBytes = 0
  /** Envelopes held per id. */
  readonly #heldPerSender = new Map<string, number>()
  /** Until when (ms) each id stays refused without a refresh. */
  readonly #quiet = new Map<string, number>()
  #lastRefresh = Number.NEGATIVE_INFINITY
  #timer: ReturnType<typeof setTimeout> | undefined
  #running: Promise<void> | undefined
  #stopped = false
  /** Refreshes started, for stats and tests. */
  refreshes = 0

  constructor(options: UnknownSendersOptions<T>) {
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  /** Whether an envelope of (group, sender) must wait behind held ones of the same sender, to keep its order. */
  holding(group: number, sender: number): boolean {
    return this.#held.length > 0 && this.#heldPerSender.has(senderKey(group, sender))
  }

  /**
   * Holds `item` (from `sender` of `group`, `size` bytes) until the next refresh. False when it
   * must be refused now: the id stayed unknown after a recent refresh, too much is held, or the
   * client is ending.
   */
  hold(group: number, sender: number, size: number, item: T): boolean {
    if (this.#stopped) return false
    const key = senderKey(group, sender)
    const quietUntil = this.#quiet.get(key)
    if (quietUntil !== undefined) {
      if (quietUntil > this.#now()) return false
      this.#quiet.delete(key)
    }
    if (this.#held.length >= this.#options.maxHeld || this.#heldBytes + size > this.#options.maxHeldBytes) return false
    this.#held.push({ key, group, sender, size, item, inFlight: false })
    this.#heldBytes += size
    this.#heldPerSender.set(key, (this.#heldPerSender.get(key) ?? 0) + 1)
    this.#schedule()
    return true
  }

  /** Stops refreshing; releases what is held (to be refused) once a refresh in flight is done. */
  stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    if (!this.#running) this.#releaseAll()
    return this.#running ?? Promise.resolve()
  }

  #schedule(): void {
    if (this.#timer || this.#running || this.#stopped || this.#held.length === 0) return
    const wait = this.#lastRefresh + this.#options.intervalMs - this.#now()
    if (wait <= 0) {
      this.#run()
      return
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#run()
    }, wait)
    // Held envelopes alone must not keep a Node process alive.
    ;(this.#timer as { unref?: () => void }).unref?.()
  }

  #run(): void {
    if (this.#stopped) {
      this.#releaseAll()
      return
    }
    this.#lastRefresh = this.#now()
    this.refreshes++
    const wanted = new Map<string, { group: number; sender: number }>()
    for (const held of this.#held) {
      held.inFlight = true
      wanted.set(held.key, { group: held.group, sender: held.sender })
    }
    this.#running = this.#options.refresh([...wanted.values()]).then(
      () => this.#settle(true),
      () => this.#settle(false),
    )
  }

  /**
   * After a refresh: releases, in order, what it was for and whatever is known now. An id still
   * unknown after a refresh that answered goes quiet; after a failed one it does not (the key
   * server was down, not the sender forged), and the interval alone bounds the retries.
   */
  #settle(answered: boolean): void {
    this.#running = undefined
    const now = this.#now()
    if (answered)
      for (const held of this.#held)
        if (held.inFlight && !this.#options.isKnown(held.group, held.sender)) this.#quieten(held.key, now)
    const release: Held<T>[] = []
    const keep: Held<T>[] = []
    for (const held of this.#held)
      (this.#stopped || held.inFlight || this.#quiet.has(held.key) || this.#options.isKnown(held.group, held.sender)
        ? release
        : keep
      ).push(held)
    this.#held = keep
    this.#count()
    this.#release(release)
    this.#schedule()
  }

  #quieten(key: string, now: number): void {
    this.#quiet.delete(key)
    if (this.#quiet.size >= MAX_QUIET) this.#quiet.delete(this.#quiet.keys().next().value as string)
    this.#quiet.set(key, now + this.#options.quietMs)
  }

  #releaseAll(): void {
    const release = this.#held
    this.#held = []
    this.#count()
    this.#release(release)
  }

  #count(): void {
    this.#heldBytes = 0
    this.#heldPerSender.clear()
    for (const held of this.#held) {
      this.#heldBytes += held.size
      this.#heldPerSender.set(held.key, (this.#heldPerSender.get(held.key) ?? 0) + 1)
    }
  }

  #release(items: readonly Held<T>[]): void {
    for (const held of items)
      try {
        this.#options.release(held.item)
      } catch (err) {
        // A throwing listener must not keep the rest held; surface it as a plain client would.
        queueMicrotask(() => {
          throw err
        })
      }
  }
}
