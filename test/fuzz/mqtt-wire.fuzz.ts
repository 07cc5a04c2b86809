// `npm run fuzz:mqtt` (long: 100,000 hostile MQTT inputs over TLS by default; FUZZ_RUNS to change,
// FUZZ_SEED to replay, FUZZ_CONCURRENCY for parallel connections). Spawns the real
// `smqtt-broker` process; prints a markdown report for docs/reliability.md. Exits 1 if an input
// that must close the connection did not, the process died or wrote on stderr, or a secure round
// trip failed after a batch.
import fc from 'fast-check'
import { type HostileInput, hostileInput } from './_mqtt-packets.js'
import { markdownReport, runCampaign, startBrokerProcess } from './_wire-harness.js'

const runs = Number(process.env.FUZZ_RUNS ?? 100_000)
const seed = process.env.FUZZ_SEED === undefined ? Date.now() : Number(process.env.FUZZ_SEED)
const concurrency = Number(process.env.FUZZ_CONCURRENCY ?? 16)
const BATCH = 1_000

/** Batches generated lazily (seed + batch index), so 100,000 inputs never sit in memory at once. */
function* batches(): Generator<HostileInput[]> {
  for (let done = 0, i = 0; done < runs; done += BATCH, i++)
    yield fc.sample(hostileInput, { numRuns: Math.min(BATCH, runs - done), seed: seed + i })
}

console.log(`raw MQTT over TLS: ${runs} inputs, seed ${seed}, ${concurrency} connections at a time`)
const broker = await startBrokerProcess(concurrency)
let failed = false
try {
  const report = await runCampaign(broker, batches(), {
    concurrency,
    mustCloseMs: 5_000,
    settleMs: 300,
    onBatch: (done) => process.stderr.write(`\r${done}/${runs}`),
  })
  process.stderr.write('\n')
  console.log(`\n${markdownReport(report, broker)}`)
  failed = report.notClosed.size > 0
} catch (err) {
  console.error(err)
  failed = true
} finally {
  await broker.close()
}
process.exitCode = failed ? 1 : 0
