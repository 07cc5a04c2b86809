// The soak's output: one console line per period, and the markdown report.
import type { PeriodRow, SoakResult } from './run.js'

const clock = (seconds: number) => `${Math.floor(seconds / 60)}:${String(Math.round(seconds % 60)).padStart(2, '0')}`
const mb = (value: number) => value.toFixed(0)
const ms = (value: number) => value.toFixed(1)
const pct = (value: number) => `${value.toFixed(0)}%`

/** `total (a ×2, b ×1)`, or `0`. */
function breakdown(counts: Readonly<Record<string, number>>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1])
  const total = entries.reduce((s, [, n]) => s + n, 0)
  return total === 0 ? '0' : `${total} (${entries.map(([k, n]) => `${k} ×${n}`).join(', ')})`
}

export function formatPeriod(row: PeriodRow): string {
  return (
    `${clock(row.endSeconds)} ${row.connected} connected, sent ${row.sent}, received ${row.received}/${row.expected} owed, ` +
    `broker refused ${breakdown(row.refusals)}, securityErrors ${breakdown(row.securityErrors)}, ` +
    `rotations ${row.rotations}, revocations ${row.revocations}, servers RSS ${mb(row.rssMb)} MB heap ${mb(row.heapMb)} MB ` +
    `CPU ${pct(row.cpuPercent)} lag p99 ${ms(row.lagP99Ms)} ms (fleet CPU ${pct(row.fleetCpuPercent)} lag p99 ${ms(row.fleetLagP99Ms)} ms RSS ${mb(row.fleetRssMb)} MB), ` +
    `load ${row.load.toFixed(2)}`
  )
}

function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

export function renderReport(result: SoakResult): string {
  const { options, setup, final } = result
  const seconds = (value: number) => `${(value / 1000).toFixed(1)} s`
  const periodRows = result.periods.map((r) => [
    clock(r.endSeconds),
    r.connected,
    r.sent,
    r.expected,
    r.received,
    breakdown(r.refusals),
    breakdown(r.securityErrors),
    r.rotations,
    r.revocations,
    mb(r.rssMb),
    mb(r.heapMb),
    pct(r.cpuPercent),
    ms(r.lagP99Ms),
    pct(r.fleetCpuPercent),
    ms(r.fleetLagP99Ms),
    mb(r.fleetRssMb),
    r.load.toFixed(2),
  ])
  const revoked = new Map(final.revoked.map((r) => [r.id, r]))
  const revocationRows = result.revocations.map((r) => {
    const seen = revoked.get(r.id)
    return [
      r.id,
      r.role,
      mb(r.apiMs),
      seen?.disconnectedAfterMs === undefined ? 'never' : mb(seen.disconnectedAfterMs),
      seen?.deliveredAfterRevocation ?? '?',
      seen?.deliveredAfterCutoff ?? '?',
      seen?.reconnected ? 'yes' : 'no',
      r.queued,
    ]
  })
  return [
    `Soak of ${options.devices} devices (${result.homes} homes: ${result.mix.thermostat} thermostats, ` +
      `${result.mix.lock} locks, ${result.mix.app} apps), ${clock(options.durationSeconds)} min, ` +
      `${options.ratePerSecond} scheduled msgs/s, a rotation and a revocation every ${options.periodSeconds} s. ` +
      `Started ${result.startedAt}; ${result.machine}.`,
    '',
    `Setup: servers ${seconds(setup.serversMs)}, ${options.devices} enrollment tokens ${seconds(setup.tokensMs)}, ` +
      `enrollment ${seconds(setup.enrollMs)} (${((options.devices * 1000) / setup.enrollMs).toFixed(0)} devices/s), ` +
      `connection and subscription ${seconds(setup.connectMs)}; the broker applied ${setup.snapshots} snapshots ` +
      "by then (the key server's pushes coalesce the enrollments' changes).",
    '',
    table(
      [
        'time',
        'connected',
        'sent',
        'owed',
        'received',
        'broker refusals',
        'securityErrors',
        'rotations',
        'revocations',
        'servers RSS MB',
        'servers heap MB',
        'servers CPU',
        'servers lag p99 ms',
        'fleet CPU',
        'fleet lag p99 ms',
        'fleet RSS MB',
        'load',
      ],
      periodRows,
    ),
    '',
    `Totals: ${final.sent} messages sent and acknowledged, ${final.expected} deliveries owed, ${final.received} ` +
      `received, ${final.extra} extra (duplicates, or readers revoked before the message), ` +
      `${final.missedByRevoked} owed to devices revoked later that did not arrive; ` +
      `${final.unexpectedDisconnects} disconnections of non-revoked devices.`,
    '',
    `Broker refusals (all): ${breakdown(result.refusals)}. Sessions closed by the plugin: ${breakdown(result.sessionsClosed)}.`,
    '',
    `Rotations: ${result.rotations.map((r) => `group ${r.group} → epoch ${r.epoch} (${mb(r.apiMs)} ms)`).join(', ') || 'none'}.`,
    '',
    table(
      [
        'revoked',
        'role',
        'revoke API ms',
        'disconnected after ms',
        'delivered after revocation',
        'after disconnection',
        'got back in',
        'queued in broker at end',
      ],
      revocationRows,
    ),
    '',
    `Server warnings and errors logged: ${result.warningCount}${result.warnings.length > 0 ? ' (first ones below)' : ''}.`,
    ...result.warnings.map((w) => `    ${w}`),
    ...(final.lostExamples.length > 0
      ? ['', 'Lost deliveries (first 20):', ...final.lostExamples.map((l) => `- ${l}`)]
      : []),
    ...(Object.keys(result.legitimateRefusals).length > 0
      ? ['', `Refusals of non-revoked principals: ${breakdown(result.legitimateRefusals)}`]
      : []),
    '',
    '**Verdict**',
    '',
    ...result.verdicts.map((v) => `- ${v.pass ? 'PASS' : 'FAIL'} ${v.name}: ${v.detail}`),
    '',
  ].join('\n')
}
