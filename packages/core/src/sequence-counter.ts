import { SmqttError } from './errors.js'

/** Sequence numbers `start` (inclusive) to `end` (exclusive), reserved for one user alone. */
export interface SequenceRange {
  readonly start: number
  readonly end: number
}

/**
 * Where a sender's sequence numbers come from. Every range `reserve` resolves must be disjoint
 * from every range it ever resolved before, to this process or any other running the same
 * identity, also after a crash, a restart or a restore of the sender's storage: the SMQTT client
 * asks the key server, which keeps each principal's high-water mark (`POST /v1/sequence`).
 */
export interface SequenceSource {
  reserve(): Promise<SequenceRange>
}

const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER
/** After a failed reservation ahead of need, the next try ahead waits this long (a source that is down is not asked on every number). */
const RETRY_AHEAD_MS = 5_000

/**
 * Hands out sequence numbers that never repeat: only numbers inside ranges its
 * {@link SequenceSource} reserved, each once. The next range is reserved in the background once
 * half of the current one is used, so `next()` normally resolves without waiting. A later range
 * must start above the earlier ones, so numbers rise (receivers' replay windows expect that).
 *
 * @example
 * ```ts
 * const counter = new SequenceCounter(memorySequenceSource())
 * const seq = await counter.next()
 * ```
 */
export class SequenceCounter {
  readonly #source: SequenceSource
  #next = 0
  #end = 0
  #half = 0
  #reserved: SequenceRange | undefined
  #reserving: Promise<void> | undefined
  /** When a reservation last failed. */
  #failedAt = Number.NEGATIVE_INFINITY

  constructor(source: SequenceSource) {
    this.#source = source
  }

  /**
   * The next unused sequence number.
   *
   * @throws SmqttError `ERR_SEQUENCE_EXHAUSTED` when the source has no numbers left; whatever the
   * source rejects with when no range is held.
   */
  async next(): Promise<number> {
    for (;;) {
      if (this.#next < this.#end) {
        if (this.#next >= this.#half && !this.#reserved) this.#reserveAhead()
        return this.#next++
      }
      if (this.#reserved) this.#use(this.#reserved)
      else await this.#reserve()
    }
  }

  /**
   * Reserves the first range now, so the first `next()` neither waits for the source nor depends
   * on it being reachable then. Rejects as the source does; `next()` tries again when needed.
   */
  async prepare(): Promise<void> {
    if (this.#end === 0 && !this.#reserved) await this.#reserve()
  }

  /** Numbers below this may have been handed out (0 before the first range). */
  get reservedUntil(): number {
    return Math.max(this.#end, this.#reserved?.end ?? 0)
  }

  /** In the background; a failure is retried after RETRY_AHEAD_MS, or at once when the numbers run out. */
  #reserveAhead(): void {
    if (Date.now() - this.#failedAt < RETRY_AHEAD_MS) return
    this.#reserve().catch(() => {}) // recorded in #failedAt
  }

  #reserve(): Promise<void> {
    this.#reserving ??= this.#source
      .reserve()
      .then((range) => {
        const { start, end } = range
        if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start)
          throw new SmqttError('ERR_SEQUENCE_EXHAUSTED', 'the sequence source returned an empty or invalid range')
        // A range below one already used would repeat numbers (and be refused as replays).
        if (start < this.reservedUntil)
          throw new SmqttError('ERR_SEQUENCE_EXHAUSTED', 'the sequence source returned a range below one already held')
        if (end > MAX_SEQUENCE) throw new SmqttError('ERR_SEQUENCE_EXHAUSTED')
        if (this.#next >= this.#end) this.#use(range)
        else this.#reserved = range
      })
      .catch((err: unknown) => {
        this.#failedAt = Date.now()
        throw err
      })
      .finally(() => {
        this.#reserving = undefined
      })
    return this.#reserving
  }

  #use(range: SequenceRange): void {
    this.#next = range.start
    this.#end = range.end
    this.#half = range.start + Math.floor((range.end - range.start) / 2)
    this.#reserved = undefined
  }
}

/**
 * A {@link SequenceSource} in memory, for tests and single-process tools: consecutive ranges of
 * `size` numbers from `start`. It forgets everything with the process, so a second run would
 * repeat numbers: never use it for a sender whose envelopes outlive the process.
 *
 * @example
 * ```ts
 * const counter = new SequenceCounter(memorySequenceSource())
 * ```
 */
export function memorySequenceSource(start = 0, size = 1024): SequenceSource & { readonly reserved: number } {
  if (!Number.isSafeInteger(start) || start < 0) throw new RangeError('start must be a non-negative safe integer')
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError('size must be a positive safe integer')
  let next = start
  return {
    get reserved() {
      return next
    },
    reserve: async () => {
      if (next + size > MAX_SEQUENCE) throw new SmqttError('ERR_SEQUENCE_EXHAUSTED')
      const range = { start: next, end: next + size }
      next += size
      return range
    },
  }
}
