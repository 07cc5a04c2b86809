// CI runs the example as a smoke test: the whole scenario, in-process, and every defence must hold.
import { expect, test } from 'vitest'
import { runScenario } from '../src/scenario.js'

test('the smart home runs and every defence holds', async () => {
  const lines: string[] = []
  const results = await runScenario({ log: (line) => lines.push(line) })

  // The story happened: the lock obeyed the homeowner, the app read the thermostat.
  expect(lines).toContainEqual(expect.stringMatching(/front-door +← unlock from homeowner-app: unlocked/))
  expect(lines).toContainEqual(
    expect.stringMatching(/homeowner-app +← \{"celsius":21\.5\} +\(verified: thermostat-hall/),
  )

  // Every attack was tried (none silently dropped), and each was refused.
  expect(results.map((r) => r.defence)).toEqual([
    'eavesdropping on the wire',
    'a curious broker reading payloads',
    'subscribing beyond one’s rights',
    'an unenrolled client',
    'the thermostat sends "unlock"',
    'a replayed "unlock"',
    'a message moved to another topic',
    'a revoked app keeps its session',
    'a revoked app reads new messages',
  ])
  expect(
    results.filter((r) => !r.held),
    lines.join('\n'),
  ).toEqual([])
}, 60_000)
