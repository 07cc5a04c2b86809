// The verification worker thread (see verify-pool.ts): checks the envelope signatures of one
// batch at a time and answers one bit per envelope. Stateless: each batch carries the signing
// keys, topics and envelopes it needs (and the MQTT 5 properties of envelopes that bind some).
import { parentPort } from 'node:worker_threads'
import { SIGNING_KEY_BYTES, signatureHolds, type WorkerReply, type WorkerRequest } from './verify-pool.js'

const port = parentPort
if (!port) throw new Error('verify-worker runs as a worker thread of verify-pool')

port.on('message', (request: WorkerRequest) => {
  if (request.type === 'pause') {
    // Test hook: hold the thread so a test can kill it with a batch in flight.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, request.ms)
    return
  }
  const { id, topics, lengths, bytes, properties } = request
  const valid = new Uint8Array(topics.length)
  let offset = 0
  for (let i = 0; i < topics.length; i++) {
    const signingKey = bytes.subarray(offset, offset + SIGNING_KEY_BYTES)
    const end = offset + SIGNING_KEY_BYTES + (lengths[i] as number)
    const envelope = bytes.subarray(offset + SIGNING_KEY_BYTES, end)
    offset = end
    valid[i] = signatureHolds(signingKey, topics[i] as string, envelope, properties?.[i]) ? 1 : 0
  }
  const reply: WorkerReply = { type: 'verdicts', id, valid }
  port.postMessage(reply, [valid.buffer])
})
port.postMessage({ type: 'ready' } satisfies WorkerReply)
