// `npm run soak`: the bounded soak of issue 7. The real key server and broker on loopback, a
// fleet of secure clients in a child process, a group rotation and a revocation every minute;
// a line per minute, a markdown report at the end, exit code 1 if a verdict fails.
//
// Options (argv wins over the environment):
//   --devices / SOAK_DEVICES                fleet size, homes of ten (default 1000)
//   --minutes / SOAK_MINUTES                duration, may be fractional (default 10)
//   --rate / SOAK_RATE                      scheduled messages per second across the fleet
//                                           (default devices / 10; lock commands add replies)
//   --report / SOAK_REPORT                  write the markdown report to this file too
//   --period-seconds / SOAK_PERIOD_SECONDS  rotation, revocation and report period (default 60)
//   --drain-seconds / SOAK_DRAIN_SECONDS    wait for owed deliveries at the end (default 30)
import { writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { renderReport } from './_soak/report.js'
import { runSoak } from './_soak/run.js'

/** Each option's flag and environment variable. */
const OPTIONS = {
  devices: 'SOAK_DEVICES',
  minutes: 'SOAK_MINUTES',
  rate: 'SOAK_RATE',
  report: 'SOAK_REPORT',
  'period-seconds': 'SOAK_PERIOD_SECONDS',
  'drain-seconds': 'SOAK_DRAIN_SECONDS',
} as const
type Flag = keyof typeof OPTIONS

const { values } = parseArgs({
  options: Object.fromEntries(Object.keys(OPTIONS).map((flag) => [flag, { type: 'string' }])) as Record<
    Flag,
    { type: 'string' }
  >,
})
const text = (flag: Flag): string | undefined => values[flag] ?? process.env[OPTIONS[flag]]

/** A positive number from argv, else the environment, else `fallback`. */
function option(flag: Flag, fallback: number): number {
  const given = text(flag)
  if (given === undefined || given === '') return fallback
  const value = Number(given)
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`--${flag} / ${OPTIONS[flag]} must be a positive number`)
  return value
}

const devices = Math.round(option('devices', 1000))
const reportFile = text('report')
const result = await runSoak({
  devices,
  durationSeconds: option('minutes', 10) * 60,
  ratePerSecond: option('rate', devices / 10),
  periodSeconds: option('period-seconds', 60),
  drainSeconds: option('drain-seconds', 30),
  print: (line) => console.log(line),
})
const report = renderReport(result)
console.log(`\n${report}`)
if (reportFile) {
  writeFileSync(resolve(reportFile), report)
  console.log(`report written to ${resolve(reportFile)}`)
}
process.exit(result.passed ? 0 : 1)
