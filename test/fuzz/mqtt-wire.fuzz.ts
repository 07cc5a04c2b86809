// `npm run fuzz:mqtt` (long: 100,000 hostile MQTT inputs over TLS by default; FUZZ_RUNS to change,
// FUZZ_SEED to replay, FUZZ_CONCURRENCY for parallel connections). Spawns the real
// `smqtt-broker` process; prints a markdown report for docs/reliability.md. Exits 1 if an input
// that must close the connection did not, the process died or wrote on stderr, or a secure round
// trip failed after a batch.
import { fuzzSettings, lazyBatches, runToExitCode } from './_campaign.js'
import { hostileInput } from './_mqtt-packets.js'
import { markdownReport, runCampaign, startBrokerProcess } from './_wire-harness.js'

const { runs, seed, concurrency } = fuzzSettings({ runs: 100_000, concurrency: 16 })

console.log(`raw MQTT over TLS: ${runs} inputs, seed ${seed}, ${concurrency} connections at a time`)
await runToExitCode(await startBrokerProcess(concurrency), async (broker) => {
  const report = await runCampaign(broker, lazyBatches(hostileInput, runs, seed, 1_000), {
    concurrency,
    mustCloseMs: 5_000,
    settleMs: 300,
    onBatch: (done) => process.stderr.write(`\r${done}/${runs}`),
  })
  process.stderr.write('\n')
  console.log(`\n${markdownReport(report, broker)}`)
  return report.notClosed.size > 0
})
