// `npm run scenario -w @smqtt/example-scenarios [-- NAME…]`: runs the named scenarios (default:
// all three, in turn) and exits 0 only if every defence held, 1 if one failed, 2 if a scenario
// could not run or a name is unknown. Bounded: gives up after 50 s per scenario, and a process
// that fails to exit by itself once everything is closed is reported and stopped.
import { within } from '@smqtt/example-smart-home/wait'
import { SCENARIOS } from './scenarios.js'

const LIMIT_MS = 50_000

const names = process.argv.slice(2)
const unknown = names.filter((name) => !Object.hasOwn(SCENARIOS, name))
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(', ')}; choose from: ${Object.keys(SCENARIOS).join(', ')}`)
  process.exit(2)
}

const summary: string[] = []
let exitCode = 0
for (const name of names.length > 0 ? names : Object.keys(SCENARIOS)) {
  const run = SCENARIOS[name]
  if (!run) continue
  const started = Date.now()
  try {
    const results = await within(run({ log: (line) => console.log(line) }), LIMIT_MS, `the ${name} scenario`)
    const held = results.filter((r) => r.held).length
    const seconds = ((Date.now() - started) / 1000).toFixed(1)
    summary.push(`${name}: ${held} of ${results.length} defences held (${seconds} s)`)
    if (held !== results.length) exitCode = Math.max(exitCode, 1)
  } catch (err) {
    summary.push(`${name}: could not run: ${err instanceof Error ? err.message : String(err)}`)
    exitCode = 2
  }
  console.log('')
}
for (const line of summary) console.log(line)
process.exitCode = exitCode

// Everything was closed above; if a handle still keeps the process alive, say so and stop.
setTimeout(() => {
  console.error('something was left running after the scenarios; exiting')
  process.exit(exitCode === 0 ? 3 : exitCode)
}, 5_000).unref()
