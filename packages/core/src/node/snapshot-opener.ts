// Opens large broker snapshots on a worker thread (Node only: `@smqtt/core/snapshot-opener`;
// issue 14, cliff 3). At 100,000 principals checking the signature of the 19 MB signed payload,
// decoding it and validating the policy and every principal's fields takes ~0.7 s of one core,
// which a broker's event loop cannot give in one piece: it would answer no client meanwhile.
// The worker does all of it and answers the opened snapshot in parts, one at a time as the
// event loop asks (a MessagePort hands every queued message over in one go), so taking it in
// costs the event loop a few ms at a time. The payload goes over as bytes in a transferred
// buffer, encoded a slice at a time: posting the 19 MB string would copy it in one ~100 ms block.
//
// Fail closed: a worker that crashes or exits refuses the snapshots it held (the broker keeps
// enforcing the one it has), and the next snapshot starts a new one.
import type { Worker } from 'node:worker_threads'
import type { BrokerSnapshot, SnapshotPrincipal } from '../broker-snapshot.js'
import { SmqttError } from '../errors.js'
import type { SnapshotWorkerReply, SnapshotWorkerRequest } from './_snapshot-protocol.js'
import { startWorker } from './start-worker.js'

// The types this entry point's signatures use, so `@smqtt/core/snapshot-opener` reads on its own
// (the same types as the main entry's).
export type { AclAction, AclRule, KeyGroupPolicy, Policy } from '../acl.js'
export type { BrokerSnapshot, SnapshotEpoch, SnapshotPrincipal } from '../broker-snapshot.js'

/** Principals per message from the worker: a few ms to take in on the event loop. */
export const PRINCIPALS_PER_PART = 2_000

/** Payload bytes encoded per event-loop turn (~3 ms). */
const ENCODE_SLICE = 1 << 20

interface Opening {
  head?: Omit<BrokerSnapshot, 'principals'>
  readonly principals: SnapshotPrincipal[]
  resolve(snapshot: BrokerSnapshot): void
  reject(err: Error): void
}

/**
 * A worker thread that opens signed broker snapshots as `openBrokerSnapshot` does, with the
 * same verdicts and errors; started on the first snapshot.
 *
 * @example
 * ```ts
 * const opener = new SnapshotOpener(keyServerPublicKey)
 * const snapshot = await opener.open(signed) // throws SmqttError like openBrokerSnapshot
 * await opener.close()
 * ```
 */
export class SnapshotOpener {
  readonly #keyServerPublicKey: Uint8Array
  readonly #openings = new Map<number, Opening>()
  #worker: Worker | undefined
  #nextId = 0
  #closed = false

  constructor(keyServerPublicKey: Uint8Array) {
    this.#keyServerPublicKey = keyServerPublicKey
  }

  /** Snapshots handed to the worker and not answered yet. */
  get pending(): number {
    return this.#openings.size
  }

  /** The worker thread, once started (tests: terminate it to see the opener fail closed). */
  get worker(): Worker | undefined {
    return this.#worker
  }

  async open(signed: unknown): Promise<BrokerSnapshot> {
    const { rest, payload } = await payloadAsBytes(signed)
    if (this.#closed) throw new Error('snapshot opener closed')
    const id = this.#nextId++
    return new Promise<BrokerSnapshot>((resolve, reject) => {
      this.#openings.set(id, { principals: [], resolve, reject })
      const request: SnapshotWorkerRequest = {
        type: 'open',
        id,
        signed: rest,
        payload,
        keyServerPublicKey: this.#keyServerPublicKey,
      }
      this.#started().postMessage(request, payload ? [payload.buffer as ArrayBuffer] : [])
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    const worker = this.#worker
    this.#failAll('snapshot opener closed')
    if (worker) await worker.terminate()
  }

  #started(): Worker {
    if (this.#worker) return this.#worker
    const worker = startWorker('snapshot-worker', import.meta.url)
    worker.unref() // a broker that closes without close() still exits
    worker.on('message', (reply: SnapshotWorkerReply) => this.#receive(reply))
    worker.on('error', (err) => this.#lost(worker, `snapshot worker failed: ${err.message}`))
    worker.on('exit', (code) => this.#lost(worker, `snapshot worker exited (${code})`))
    this.#worker = worker
    return worker
  }

  #receive(reply: SnapshotWorkerReply): void {
    const opening = this.#openings.get(reply.id)
    if (!opening) return
    switch (reply.type) {
      case 'head':
        opening.head = reply.snapshot
        this.#askForNext(reply.id)
        return
      case 'principals':
        for (const principal of reply.principals) opening.principals.push(principal)
        this.#askForNext(reply.id)
        return
      case 'done':
        this.#openings.delete(reply.id)
        if (opening.head) opening.resolve({ ...opening.head, principals: opening.principals })
        else opening.reject(new Error('snapshot worker answered no snapshot'))
        return
      case 'refused':
        this.#openings.delete(reply.id)
        opening.reject(new SmqttError(reply.code, reply.message))
    }
  }

  // On the next turn of the event loop: what else waits runs first.
  #askForNext(id: number): void {
    setImmediate(() => this.#worker?.postMessage({ type: 'next', id } satisfies SnapshotWorkerRequest))
  }

  #lost(worker: Worker, reason: string): void {
    if (this.#worker !== worker) return
    this.#worker = undefined
    this.#failAll(reason)
  }

  #failAll(reason: string): void {
    for (const opening of this.#openings.values()) opening.reject(new Error(reason))
    this.#openings.clear()
  }
}

/**
 * `signed` with a string payload taken out as ASCII bytes, or as it is. A payload with any other
 * character (which base64url has not) is left in place for the worker to refuse, as
 * openBrokerSnapshot would.
 */
async function payloadAsBytes(signed: unknown): Promise<{ rest: unknown; payload: Uint8Array | undefined }> {
  if (typeof signed !== 'object' || signed === null || Array.isArray(signed))
    return { rest: signed, payload: undefined }
  const { payload, ...rest } = signed as { payload?: unknown }
  if (typeof payload !== 'string') return { rest: signed, payload: undefined }
  const bytes = new Uint8Array(payload.length)
  const encoder = new TextEncoder()
  for (let start = 0; start < payload.length; start += ENCODE_SLICE) {
    const slice = payload.slice(start, start + ENCODE_SLICE)
    // UTF-8 writes one byte per character only for ASCII: anything else is not base64url.
    if (encoder.encodeInto(slice, bytes.subarray(start)).written !== slice.length)
      return { rest: signed, payload: undefined }
    if (start + ENCODE_SLICE < payload.length) await new Promise((resolve) => setImmediate(resolve))
  }
  return { rest, payload: bytes }
}
