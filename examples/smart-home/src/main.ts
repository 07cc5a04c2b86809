// `npm run scenario -w @smqtt/example-smart-home`: runs the scenario and exits 0 only if every
// defence held. Bounded: gives up after 50 s, and a process that fails to exit by itself once
// everything is closed is reported and stopped.
import { within } from './_wait.js'
import { runScenario } from './scenario.js'

const LIMIT_MS = 50_000
const started = Date.now()

try {
  const results = await within(runScenario({ log: (line) => console.log(line) }), LIMIT_MS, 'the scenario to finish')
  const held = results.filter((r) => r.held).length
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log('')
  console.log(`${held} of ${results.length} defences held (${seconds} s).`)
  process.exitCode = held === results.length ? 0 : 1
} catch (err) {
  console.error('')
  console.error(`scenario could not run: ${err instanceof Error ? err.message : String(err)}`)
  process.exitCode = 2
}

// Everything was closed above; if a handle still keeps the process alive, say so and stop.
setTimeout(() => {
  console.error('something was left running after the scenario; exiting')
  process.exit(process.exitCode === 0 ? 3 : (process.exitCode ?? 3))
}, 5_000).unref()
