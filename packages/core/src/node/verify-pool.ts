// Envelope signatures checked on more than one core (Node only: `@smqtt/core/verify-pool`).
// Ed25519 verification (~40-60 µs) is most of a broker's cost per message in `full` mode and of
// a busy subscriber's, and the event loop is one core. Callers do their cheap checks inline and
// hand the signature here. The envelopes queued in one
// event-loop turn are split: most go to a worker thread as one message (one copy into one
// transferred buffer, so message passing costs a few µs per batch, not per envelope), and a
// share is verified right here meanwhile. Why share: Aedes reads a client's next packets only
// once all of the current read are authorized, so one busy publisher gains only from splitting
// its batch; and a small batch (a quiet broker) skips the thread hop and its latency.
//
// Fail closed: when a worker crashes or stops answering, every envelope it held is answered
// `unavailable` (the hook refuses them) and a new worker takes its place.
import { availableParallelism } from 'node:os'
import type { Worker } from 'node:worker_threads'
import type { EnvelopeProperties } from '../envelope/bound-properties.js'
import { verifyEnvelope } from '../envelope/verify.js'
import { startWorker } from './start-worker.js'

// The type this entry point's signatures use (the main entry's `EnvelopeProperties`).
export type { EnvelopeProperties } from '../envelope/bound-properties.js'

export const SIGNING_KEY_BYTES = 32

/** A batch for the worker: per envelope, its signing key then its bytes, back to back in `bytes`. */
export type WorkerRequest =
  | {
      readonly type: 'verify'
      readonly id: number
      readonly topics: readonly string[]
      readonly lengths: Uint32Array
      readonly bytes: Uint8Array
      /** Per envelope, the MQTT 5 properties received with it; only in batches where one has some. */
      readonly properties?: readonly (EnvelopeProperties | undefined)[]
    }
  | { readonly type: 'pause'; readonly ms: number }

/** The worker's answers: loaded, and per batch `valid[i]` = 1 when envelope i's signature holds. */
export type WorkerReply =
  | { readonly type: 'ready' }
  | { readonly type: 'verdicts'; readonly id: number; readonly valid: Uint8Array }

/** What became of a signature: checked (`valid`, `invalid`) or not checkable (`unavailable`). */
export type Verdict = 'valid' | 'invalid' | 'unavailable'

/** Why a worker was replaced. */
export type WorkerFailure = 'crashed' | 'timeout'

export interface VerifyPoolOptions {
  /** Worker threads (at least 1). */
  readonly workers: number
  /** A worker holding envelopes that has not answered for this long is replaced (default 10 s). */
  readonly timeoutMs?: number
  /**
   * Start the workers on the first batch big enough to hand off, not at once (default false):
   * a client that never sees a burst never pays for a thread.
   */
  readonly lazy?: boolean
  /**
   * The share of a batch the event loop verifies itself beside one worker (default 0.25), so that
   * both finish together: the event loop also does everything else for each message. A broker's
   * loop parses, authorizes and routes (0.25 measured best); a client's only opens and delivers
   * (0.4 measured best). With w workers each takes (1 - share) of the loop's work per envelope.
   */
  readonly eventLoopShare?: number
  /** A worker was replaced; `refused` envelopes it held were answered `unavailable`. */
  readonly onFailure?: (reason: WorkerFailure, refused: number, error?: Error) => void
}

interface Job {
  readonly signingKey: Uint8Array
  readonly topic: string
  readonly envelope: Uint8Array
  readonly properties: EnvelopeProperties | undefined
  readonly done: (verdict: Verdict) => void
}

interface Slot {
  worker: Worker | undefined
  /** Loaded (the timeout counts from then: loading from sources compiles TypeScript first). */
  ready: boolean
  spawnedAt: number
  readonly batches: Map<number, Job[]>
  timer: NodeJS.Timeout | undefined
}

/** Envelopes per message to a worker at most, so several workers share a burst. */
const MAX_BATCH = 256
/**
 * Smaller batches are verified on the event loop: waking the worker costs ~50 µs on an idle
 * machine and milliseconds on a busy one, which only pays off when it takes over at least ~0.5 ms
 * of verification. Bursts at moderate rates stay inline; a saturated event loop hands off.
 */
const MIN_OFFLOAD = 16
/** A worker dying this soon after its start is not restarted at once (a start that always fails). */
const RESPAWN_BACKOFF_MS = 1_000
/** A worker not loaded after this long is replaced. */
const START_TIMEOUT_MS = 30_000

/**
 * True when `envelope`'s signature holds under `signingKey`. The caller has already bound the
 * envelope's sender to the session's principal, whose key this is. `properties`: the MQTT 5
 * properties the packet carried, for an envelope that binds some (docs/envelope.md).
 */
export function signatureHolds(
  signingKey: Uint8Array,
  topic: string,
  envelope: Uint8Array,
  properties?: EnvelopeProperties,
): boolean {
  try {
    verifyEnvelope(envelope, topic, { writerKey: () => signingKey, ...(properties ? { properties } : {}) })
    return true
  } catch {
    return false
  }
}

/** Default worker count: one when a second core is there to run it, else 0 (verify inline). */
export function defaultVerifyWorkers(): number {
  return availableParallelism() >= 2 ? 1 : 0
}

/**
 * Worker threads verifying envelope signatures in batches.
 *
 * @example
 * ```ts
 * const pool = new VerifyPool({ workers: 1 })
 * pool.verify(principal.signingKey, packet.topic, packet.payload, (verdict) => …)
 * await pool.close()
 * ```
 */
export class VerifyPool {
  readonly #slots: Slot[] = []
  readonly #timeoutMs: number
  readonly #onFailure: NonNullable<VerifyPoolOptions['onFailure']>
  readonly #eventLoopShare: number
  #queue: Job[] = []
  #flushScheduled = false
  #nextBatch = 0
  #closed = false
  /** Lazy workers not started yet. */
  #unstarted: boolean
  /**
   * Whether the event loop verifies a share of each batch itself (default true). Tests switch it
   * off to force every envelope through a worker.
   */
  shareWithMainThread = true

  /** @throws RangeError unless `workers` is an integer >= 1. */
  constructor(options: VerifyPoolOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1) throw new RangeError('workers must be >= 1')
    this.#timeoutMs = options.timeoutMs ?? 10_000
    const share = options.eventLoopShare ?? 0.25
    if (!(share >= 0 && share < 1)) throw new RangeError('eventLoopShare must be in [0, 1)')
    this.#eventLoopShare = share
    this.#onFailure = options.onFailure ?? (() => {})
    for (let i = 0; i < options.workers; i++) {
      const slot: Slot = { worker: undefined, ready: false, spawnedAt: 0, batches: new Map(), timer: undefined }
      this.#slots.push(slot)
      if (!options.lazy) this.#spawn(slot)
    }
    this.#unstarted = options.lazy === true
  }

  /** Envelopes handed over and not answered yet. */
  get pending(): number {
    let count = this.#queue.length
    for (const slot of this.#slots) for (const jobs of slot.batches.values()) count += jobs.length
    return count
  }

  /** The live worker threads (tests: kill one to see the pool fail closed and recover). */
  get workers(): readonly Worker[] {
    return this.#slots.flatMap((slot) => (slot.worker ? [slot.worker] : []))
  }

  /** Test hook: holds every worker busy for `ms`, so a test can catch envelopes in flight. */
  pause(ms: number): void {
    for (const worker of this.workers) worker.postMessage({ type: 'pause', ms } satisfies WorkerRequest)
  }

  /**
   * Checks `envelope`'s signature under `signingKey` (the sender is already bound by the caller);
   * `done` is called once, asynchronously. `properties`: the MQTT 5 properties the packet carried
   * (needed for envelopes that bind some; see {@link signatureHolds}).
   */
  verify(
    signingKey: Uint8Array,
    topic: string,
    envelope: Uint8Array,
    done: (verdict: Verdict) => void,
    properties?: EnvelopeProperties,
  ): void {
    if (this.#closed || signingKey.length !== SIGNING_KEY_BYTES) {
      const verdict = this.#closed ? 'unavailable' : 'invalid'
      queueMicrotask(() => done(verdict))
      return
    }
    this.#queue.push({ signingKey, topic, envelope, properties, done })
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    // After the poll phase: every PUBLISH parsed from this turn's socket reads joins the batch.
    setImmediate(this.#flush)
  }

  /** Ends the workers; envelopes still pending are answered `unavailable`. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#flush()
    const exits: Promise<number>[] = []
    for (const slot of this.#slots) {
      const worker = slot.worker
      this.#retire(slot)
      if (worker) exits.push(worker.terminate())
    }
    await Promise.all(exits)
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false
    const queue = this.#queue
    this.#queue = []
    if (this.#closed) {
      for (const job of queue) job.done('unavailable')
      return
    }
    if (this.#unstarted && queue.length >= MIN_OFFLOAD) {
      this.#unstarted = false
      for (const slot of this.#slots) this.#spawn(slot)
    }
    const here = this.#shareOfEventLoop(queue.length)
    for (let start = here; start < queue.length; start += MAX_BATCH) {
      const slot = this.#leastBusy() as Slot
      this.#post(slot, slot.worker as Worker, queue.slice(start, start + MAX_BATCH))
    }
    for (let i = 0; i < here; i++) {
      const job = queue[i] as Job
      job.done(signatureHolds(job.signingKey, job.topic, job.envelope, job.properties) ? 'valid' : 'invalid')
    }
  }

  /** How many of `n` queued envelopes the event loop verifies itself. */
  #shareOfEventLoop(n: number): number {
    const workers = this.workers.length
    if (workers === 0) return n // one is restarting: verify rather than refuse
    if (!this.shareWithMainThread) return 0
    if (n < MIN_OFFLOAD) return n
    const share = this.#eventLoopShare
    // (The epsilon keeps a share that is exact in decimal, 0.25 of 20, from rounding up.)
    return Math.ceil((n * share) / (share + (1 - share) * workers) - 1e-9)
  }

  #post(slot: Slot, worker: Worker, jobs: Job[]): void {
    let size = 0
    for (const job of jobs) size += SIGNING_KEY_BYTES + job.envelope.length
    const bytes = new Uint8Array(size)
    const lengths = new Uint32Array(jobs.length)
    const topics: string[] = new Array(jobs.length)
    let properties: (EnvelopeProperties | undefined)[] | undefined
    let offset = 0
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i] as Job
      bytes.set(job.signingKey, offset)
      bytes.set(job.envelope, offset + SIGNING_KEY_BYTES)
      offset += SIGNING_KEY_BYTES + job.envelope.length
      lengths[i] = job.envelope.length
      topics[i] = job.topic
      if (job.properties !== undefined) {
        properties ??= new Array(jobs.length)
        properties[i] = job.properties
      }
    }
    const id = this.#nextBatch++
    slot.batches.set(id, jobs)
    // Properties (rare) cross by structured clone; the envelopes in one transferred buffer.
    const request: WorkerRequest = { type: 'verify', id, topics, lengths, bytes, ...(properties ? { properties } : {}) }
    worker.postMessage(request, [bytes.buffer, lengths.buffer])
    if (slot.ready) slot.timer ??= this.#deadline(slot, this.#timeoutMs)
  }

  #deadline(slot: Slot, ms: number): NodeJS.Timeout {
    return setTimeout(() => this.#fail(slot, 'timeout'), ms)
  }

  #leastBusy(): Slot | undefined {
    let best: Slot | undefined
    for (const slot of this.#slots)
      if (slot.worker && (best === undefined || slot.batches.size < best.batches.size)) best = slot
    return best
  }

  #spawn(slot: Slot): void {
    const worker = startWorker('verify-worker', import.meta.url)
    worker.unref() // a forgotten close() must not keep the process alive
    slot.worker = worker
    slot.ready = false
    slot.spawnedAt = performance.now()
    slot.timer = this.#deadline(slot, Math.max(START_TIMEOUT_MS, this.#timeoutMs))
    worker.on('message', (reply: WorkerReply) => {
      if (slot.worker !== worker) return
      if (reply.type === 'ready') {
        slot.ready = true
        clearTimeout(slot.timer)
        slot.timer = slot.batches.size > 0 ? this.#deadline(slot, this.#timeoutMs) : undefined
        return
      }
      const jobs = slot.batches.get(reply.id)
      if (jobs === undefined) return
      slot.batches.delete(reply.id)
      clearTimeout(slot.timer)
      slot.timer = slot.batches.size > 0 ? this.#deadline(slot, this.#timeoutMs) : undefined
      for (let i = 0; i < jobs.length; i++) (jobs[i] as Job).done(reply.valid[i] === 1 ? 'valid' : 'invalid')
    })
    worker.on('error', (err) => {
      if (slot.worker === worker) this.#fail(slot, 'crashed', err)
    })
    worker.on('exit', () => {
      if (slot.worker === worker) this.#fail(slot, 'crashed')
    })
  }

  /** Refuses what `slot`'s worker held, ends it, and (unless closed) starts another. */
  #fail(slot: Slot, reason: WorkerFailure, error?: Error): void {
    const worker = slot.worker
    const refused = this.#retire(slot)
    void worker?.terminate()
    if (this.#closed) return
    this.#onFailure(reason, refused, error)
    const respawn = () => {
      if (!this.#closed && slot.worker === undefined) this.#spawn(slot)
    }
    if (performance.now() - slot.spawnedAt < RESPAWN_BACKOFF_MS) setTimeout(respawn, RESPAWN_BACKOFF_MS).unref()
    else respawn()
  }

  /** Detaches `slot`'s worker and answers its envelopes `unavailable`; returns how many. */
  #retire(slot: Slot): number {
    slot.worker = undefined
    clearTimeout(slot.timer)
    slot.timer = undefined
    let refused = 0
    for (const jobs of slot.batches.values()) {
      refused += jobs.length
      for (const job of jobs) job.done('unavailable')
    }
    slot.batches.clear()
    return refused
  }
}
