// The soak of `npm run soak` (scripts/soak.ts) in a short configuration: the same code, the real
// key server and broker, 50 devices in their own process, a rotation and a revocation every 10 s
// for 30 s. Every verdict must pass, and the run must really have done what the verdicts judge.
import { expect, test } from 'vitest'
import { renderReport } from '../scripts/_soak/report.js'
import { runSoak } from '../scripts/_soak/run.js'

test('50 devices for 30 s with a rotation and a revocation every 10 s: nothing lost, nothing legitimate refused, revoked devices cut off', async () => {
  const result = await runSoak({
    devices: 50,
    durationSeconds: 30,
    ratePerSecond: 20,
    periodSeconds: 10,
    drainSeconds: 15,
  })
  const report = renderReport(result)
  expect(
    result.verdicts.filter((v) => !v.pass),
    report,
  ).toEqual([])

  // The verdicts judged real traffic, real rotations and real revocations.
  expect(result.periods).toHaveLength(3)
  expect(result.rotations).toHaveLength(3)
  expect(result.revocations.map((r) => r.role)).toEqual(['app', 'thermostat', 'lock'])
  expect(result.final.sent, report).toBeGreaterThan(300)
  expect(result.final.expected, report).toBeGreaterThan(300)
  expect(result.final.received + result.final.missedByRevoked).toBe(result.final.expected)
  expect(result.sessionsClosed.revoked).toBe(3)
  for (const revoked of result.final.revoked) expect(revoked.disconnectedAfterMs, report).toBeDefined()
  // Every device but the three revoked stayed connected to the end.
  expect(result.periods.at(-1)?.connected, report).toBe(47)
  expect(report).toContain('| time | connected | sent | owed | received |')
}, 150_000)
