import { SmqttError } from './errors.js'

/**
 * Durable storage for a sender's sequence reservation. Implementations: a file on Node,
 * IndexedDB/localStorage in browsers, memory in tests (see `@smqtt/client`).
 */
export interface SequenceStore {
  /** The reservation limit saved last, or undefined on first start. */
  load(): Promise<number | undefined>
  /** Durably records that every number below `limit` may have been used; resolves once durable. */
  save(limit: number): Promise<void>
}

export interface SequenceCounterOptions {
  /** How many numbers to reserve per write (default 1024). Larger: fewer writes, bigger gaps after a crash. */
  readonly blockSize?: number
}

const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER

/**
 * Hands out sequence numbers that never repeat, also across crashes, restarts and clock
 * resets: numbers are used only below a limit that is saved *before* they are used (the
 * OSCORE way). A restart resumes at the saved limit, skipping at most one block. The next
 * block is saved in the background once half of the current one is used, so `next()`
 * normally resolves without waiting for storage.
 *
 * @example
 * ```ts
 * const counter = await SequenceCounter.open(fileStore('./seq'))
 * const seq = await counter.next()
 * ```
 */
export class SequenceCounter {
  readonly #store: SequenceStore
  readonly #blockSize: number
  #next: number
  #limit: number
  #extending: Promise<void> | undefined

  private constructor(store: SequenceStore, start: number, limit: number, blockSize: number) {
    this.#store = store
    this.#next = start
    this.#limit = limit
    this.#blockSize = blockSize
  }

  /** Loads the last reservation and reserves the first block before handing out anything. */
  static async open(store: SequenceStore, options: SequenceCounterOptions = {}): Promise<SequenceCounter> {
    const blockSize = options.blockSize ?? 1024
    if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 2 ** 32)
      throw new RangeError('blockSize must be an integer in [1, 2^32]')
    const saved = await store.load()
    if (saved !== undefined && (!Number.isSafeInteger(saved) || saved < 0))
      throw new SmqttError('ERR_SEQUENCE_EXHAUSTED', 'the stored sequence reservation is corrupt')
    const start = saved ?? 0
    const limit = Math.min(start + blockSize, MAX_SEQUENCE)
    await store.save(limit)
    return new SequenceCounter(store, start, limit, blockSize)
  }

  /** The next unused sequence number. */
  async next(): Promise<number> {
    for (;;) {
      if (this.#next >= MAX_SEQUENCE) throw new SmqttError('ERR_SEQUENCE_EXHAUSTED')
      if (this.#limit - this.#next <= this.#blockSize / 2) this.#extend()
      if (this.#next < this.#limit) return this.#next++
      await this.#extend()
    }
  }

  /** Numbers below this are reserved in storage. */
  get reservedUntil(): number {
    return this.#limit
  }

  #extend(): Promise<void> {
    if (!this.#extending) {
      const target = Math.min(this.#limit + this.#blockSize, MAX_SEQUENCE)
      this.#extending = this.#store.save(target).then(
        () => {
          this.#limit = Math.max(this.#limit, target)
          this.#extending = undefined
        },
        (err: unknown) => {
          this.#extending = undefined
          throw err
        },
      )
      // A background extension that fails is retried by the next caller that needs it.
      this.#extending.catch(() => {})
    }
    return this.#extending
  }
}

/**
 * A {@link SequenceStore} in memory, for tests: it forgets everything with the process.
 *
 * @example
 * ```ts
 * const counter = await SequenceCounter.open(memorySequenceStore())
 * ```
 */
export function memorySequenceStore(initial?: number): SequenceStore & { readonly saved: number | undefined } {
  let saved = initial
  return {
    get saved() {
      return saved
    },
    load: async () => saved,
    save: async (limit) => {
      saved = limit
    },
  }
}
