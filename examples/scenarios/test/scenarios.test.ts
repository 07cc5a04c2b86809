// CI runs every scenario as a smoke test, in-process: the story must happen, every attack must be
// tried, and every defence must hold. The outcomes are data (DefenceResult[]), not only lines.
import { expect, test } from 'vitest'
import { SCENARIOS } from '../src/scenarios.js'

const EXPECTED: Record<string, { story: RegExp; defences: string[] }> = {
  hospital: {
    story: /station-ward-a +← \{"bpm":72\} +\(verified: wearable-bed-7, group 1 epoch 1\)/,
    defences: [
      'another ward subscribes',
      'another ward decrypts',
      'a visitor forges an alarm',
      'a lost wearable is revoked',
      'the lost wearable reads or fakes readings',
    ],
  },
  factory: {
    story: /press-1 +← stop: stopped/,
    defences: ['a sensor writes on another line', 'a sensor passes for another', 'a sensor commands the press'],
  },
  agriculture: {
    story: /valve-north +← open from farm-controller, epoch 2: open/,
    defences: ['only the controller’s signed commands', 'a replayed "open"', 'a command from before the rotation'],
  },
}

test('main runs exactly these scenarios', () => {
  expect(Object.keys(SCENARIOS)).toEqual(Object.keys(EXPECTED))
})

test.each(Object.entries(EXPECTED))('%s: the story happens and every defence holds', async (name, expected) => {
  const run = SCENARIOS[name]
  if (!run) throw new Error(`no scenario ${name}`)
  const lines: string[] = []
  const results = await run({ log: (line) => lines.push(line) })
  expect(lines).toContainEqual(expect.stringMatching(expected.story))
  // Every attack was tried (none silently dropped), and each was refused.
  expect(results.map((r) => r.defence)).toEqual(expected.defences)
  expect(
    results.filter((r) => !r.held),
    lines.join('\n'),
  ).toEqual([])
})
