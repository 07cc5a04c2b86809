// Issue 14, cliff 5: a re-key after a revocation, at N readers of one group. Value: ms from
// the revocation until every remaining reader's new bundle is built (what the push then sends,
// readers before writers), on the key server's one event loop; note: the same for the 5th
// re-key within the grace period (before: each epoch still in its grace period was sealed
// again for every reader, so it grew with recent rotations), µs per reader, the key server's
// heap growth per reader, and what a logarithmic key tree (LKH) would cost the key server for
// the same revocation (a model with the real primitives: 2·⌈log2 N⌉ key wraps and one
// signature, its broadcast bytes) — see docs/decisions.md, "re-key after revocation".
import { cryptoBackend } from '@smqtt/core'
import { addPrincipals, fleetId } from '@smqtt/test-kit/keyserver'
import { type ScaleCurve, timed } from './_curve.js'
import { heapAfterGc } from './_heap.js'
import { withKeyServer } from './_key-server.js'

const ROUNDS = 5
const READER_POLICY = {
  version: 1,
  rules: [
    { effect: 'allow', actions: ['subscribe'], topics: ['fleet/announce/#'], roles: ['reader'] },
    { effect: 'allow', actions: ['publish'], topics: ['fleet/announce/#'], roles: ['announcer'] },
  ],
  groups: [{ id: 1, name: 'announcements', filter: 'fleet/announce/#', graceSeconds: 600 }],
  plaintext: [],
}

/** The key server's work for one LKH revocation at `readers`: new path keys, each wrapped under its two children, signed. */
function lkhModel(readers: number): { ms: number; bytes: number } {
  const wraps = 2 * Math.ceil(Math.log2(readers))
  const kek = cryptoBackend.randomBytes(32)
  const seed = cryptoBackend.randomBytes(32)
  const publicKey = cryptoBackend.ed25519PublicKey(seed)
  const repeats = 200
  let bytes = 0
  const started = performance.now()
  for (let r = 0; r < repeats; r++) {
    const parts: Uint8Array[] = []
    for (let i = 0; i < wraps; i++) {
      const nodeId = new Uint8Array(4)
      new DataView(nodeId.buffer).setUint32(0, i)
      const nonce = cryptoBackend.randomBytes(12)
      parts.push(
        nodeId,
        nonce,
        cryptoBackend.aeadSeal('chacha20-poly1305', kek, nonce, cryptoBackend.randomBytes(32), nodeId),
      )
    }
    const message = Buffer.concat(parts)
    cryptoBackend.ed25519Sign(message, seed, publicKey)
    bytes = message.length + 64
  }
  return { ms: (performance.now() - started) / repeats, bytes }
}

export const rekey: ScaleCurve = {
  name: 'rekey',
  title:
    'Re-key after a revocation: ms until every remaining reader’s new bundle is built (5th re-key in the grace period, LKH model in the note)',
  unit: 'ms',
  axis: { label: 'readers', sizes: [100, 1_000, 10_000, 100_000], quickSizes: [100, 1_000] },
  measure: (size) =>
    withKeyServer({ policy: READER_POLICY }, async (h) => {
      await addPrincipals(h, size + ROUNDS, { prefix: 'reader-', roles: ['reader'], signing: true })
      const buildAll = async () => {
        for (const reader of await h.keyServer.principalsHoldingKeys([1])) await h.keyServer.bundleFor(reader)
      }
      await buildAll() // every reader has had a bundle before the first revocation
      const heapBefore = heapAfterGc()
      const times: number[] = []
      for (let round = 0; round < ROUNDS; round++) {
        h.clock.now += 10 // all within the 600 s grace period
        const { ms } = await timed(async () => {
          await h.keyServer.revokePrincipal(fleetId('reader-', round), 'bench')
          await buildAll()
        })
        times.push(ms)
      }
      const heapPerReader = (heapAfterGc() - heapBefore) / size
      const [first = 0, last = 0] = [times[0], times.at(-1)]
      const lkh = lkhModel(size)
      return {
        value: first,
        note: `5th re-key ${last.toFixed(0)} ms; ${((first * 1000) / size).toFixed(0)} µs/reader; heap +${heapPerReader.toFixed(0)} B/reader after 5; LKH model ${lkh.ms.toFixed(2)} ms, ${lkh.bytes} B broadcast`,
      }
    }),
}
