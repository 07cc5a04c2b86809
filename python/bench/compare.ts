// The TypeScript half of python/bench/compare.sh: seal / open (with a replay window) / verify
// (broker, no group key) on @smqtt/core's native backend (libsodium through sodium-native), with
// the same keys, topic, payload sizes and loop as python/bench/compare.py. Prints JSON:
// {"backend": name, "rows": {"seal 256 B": µs, ...}}.
import { createNativeBackend, loadSodium } from '../../packages/core/src/crypto/native.js'
import { EpochKey } from '../../packages/core/src/envelope/epoch-key.js'
import { openEnvelope } from '../../packages/core/src/envelope/open.js'
import { sealEnvelope } from '../../packages/core/src/envelope/seal.js'
import { createEnvelopeSigner } from '../../packages/core/src/envelope/signer.js'
import { verifyEnvelope } from '../../packages/core/src/envelope/verify.js'
import { ReplayWindow } from '../../packages/core/src/replay-window.js'

const TOPIC = 'home/hall/thermostat/t-1/temp'
const NOW = 1_790_000_000
const SIZES = [16, 256, 4096]
const COUNT = Number(process.argv[2] ?? 2000)
const ROUNDS = 3

const sodium = loadSodium()
if (!sodium) throw new Error('sodium-native is not installed: no native backend to compare with')
const backend = createNativeBackend(sodium)

/** Best of ROUNDS runs of COUNT calls, µs per call (as compare.py). */
function perCall(run: (i: number) => unknown): number {
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < ROUNDS; round++) {
    run(0)
    const start = process.hrtime.bigint()
    for (let i = 1; i <= COUNT; i++) run(round * COUNT + i)
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1000 / COUNT)
  }
  return best
}

const seed = Uint8Array.from({ length: 32 }, (_, i) => i + 1)
const epochKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: Uint8Array.from({ length: 32 }, (_, i) => i) })
const signer = createEnvelopeSigner({ kid: 1000, seed }, backend)
const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
const rows: Record<string, number> = {}
for (const size of SIZES) {
  const payload = new Uint8Array(size)
  const envelopes = Array.from({ length: ROUNDS * COUNT + 1 }, (_, seq) =>
    sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq, sentAt: NOW }, { backend }),
  )
  const replay = new ReplayWindow({ windowSize: 4096 })
  rows[`seal ${size} B`] = perCall((seq) =>
    sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq, sentAt: NOW }, { backend }),
  )
  rows[`open ${size} B`] = perCall((i) =>
    openEnvelope(envelopes[i] as Uint8Array, TOPIC, { keys, backend, now: NOW, ...(i > 0 ? { replay } : {}) }),
  )
  rows[`verify ${size} B`] = perCall((i) =>
    verifyEnvelope(envelopes[i] as Uint8Array, TOPIC, { writerKey: keys.writerKey, backend }),
  )
}
console.log(JSON.stringify({ backend: backend.name, rows }))
