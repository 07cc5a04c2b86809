// The snapshot worker thread (see snapshot-opener.ts): opens signed broker snapshots and answers
// each in parts, the next one when asked.
import { parentPort } from 'node:worker_threads'
import { openBrokerSnapshot, type SnapshotPrincipal } from '../broker-snapshot.js'
import { isSmqttError } from '../errors.js'
import type { SnapshotWorkerReply, SnapshotWorkerRequest } from './_snapshot-protocol.js'
import { PRINCIPALS_PER_PART } from './snapshot-opener.js'

const port = parentPort
if (!port) throw new Error('snapshot-worker runs as a worker thread of snapshot-opener')
const reply = (message: SnapshotWorkerReply) => port.postMessage(message)

// Each request's principals and how many of them were sent.
const unsent = new Map<number, { readonly principals: readonly SnapshotPrincipal[]; sent: number }>()

port.on('message', (request: SnapshotWorkerRequest) => {
  if (request.type === 'next') {
    const left = unsent.get(request.id)
    const part = left?.principals.slice(left.sent, left.sent + PRINCIPALS_PER_PART) ?? []
    if (left && part.length > 0) {
      left.sent += part.length
      reply({ id: request.id, type: 'principals', principals: withPackedKeys(part) })
    } else {
      unsent.delete(request.id)
      reply({ id: request.id, type: 'done' })
    }
    return
  }
  const { id, signed, payload, keyServerPublicKey } = request
  let opened: ReturnType<typeof openBrokerSnapshot>
  try {
    const document = payload ? { ...(signed as object), payload: Buffer.from(payload).toString('latin1') } : signed
    opened = openBrokerSnapshot(document, keyServerPublicKey)
  } catch (err) {
    if (!isSmqttError(err)) throw err // a bug: the worker dies and the opener refuses the snapshot
    reply({ id, type: 'refused', code: err.code, message: err.message })
    return
  }
  const { principals, ...head } = opened
  unsent.set(id, { principals, sent: 0 })
  reply({ id, type: 'head', snapshot: head })
})

/**
 * The part with its signing keys copied into one buffer, each key a view into it: one backing
 * store per part crosses to the broker instead of one per principal, which its garbage collector
 * would otherwise track one by one (100,000 at a fleet of 100,000).
 */
function withPackedKeys(part: readonly SnapshotPrincipal[]): SnapshotPrincipal[] {
  const keys = new Uint8Array(part.reduce((sum, p) => sum + p.signingKey.length, 0))
  let at = 0
  return part.map((p) => {
    keys.set(p.signingKey, at)
    at += p.signingKey.length
    return { ...p, signingKey: keys.subarray(at - p.signingKey.length, at) }
  })
}
