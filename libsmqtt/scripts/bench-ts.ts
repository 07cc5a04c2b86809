// The same measurement as tools/smqtt-bench.c with @smqtt/core (its default Node backend), so
// scripts/footprint.sh prints both in one run: 64-byte payload, suite 1, ordinary ids.
import { createEnvelopeSigner, EpochKey, openEnvelope, sealEnvelope, verifyEnvelope } from '@smqtt/core'

const runs = Number(process.argv[2] ?? 2000)
const epochKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: new Uint8Array(32).fill(7) })
const signer = createEnvelopeSigner({ kid: 1000, seed: new Uint8Array(32).fill(1) })
const topic = 'home/hall/thermostat/temp'
const payload = new Uint8Array(64)
const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
const time = (run: (i: number) => void): number => {
  for (let i = 0; i < 200; i++) run(i) // warm up the JIT
  const start = process.hrtime.bigint()
  for (let i = 0; i < runs; i++) run(i)
  return Number(process.hrtime.bigint() - start) / 1000 / runs
}
let envelope = new Uint8Array(0)
const seal = time((i) => {
  envelope = sealEnvelope({ topic, payload, epochKey, signer, seq: 100_000 + i, sentAt: 1_790_000_000 })
})
const verify = time(() => verifyEnvelope(envelope, topic, { writerKey: keys.writerKey }))
const open = time(() => openEnvelope(envelope, topic, { keys }))
console.log(
  `64 B payload, ${envelope.length} B envelope, ${runs} runs: seal ${seal.toFixed(1)} us, verify ${verify.toFixed(1)} us, open ${open.toFixed(1)} us`,
)
