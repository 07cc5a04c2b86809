// The bound on refusal logging shared by the key server and the broker (the refusals themselves
// are tested against real listeners in test/attacks/deadlines.test.ts).
import { expect, test } from 'vitest'
import { boundedLog, boundedText, LOGGED_PER_INTERVAL } from '../src/node/bounded-log.js'

test('a flood of refusals writes 20 lines per 10 s, then one summary with the count held back', () => {
  let now = 0
  const written: string[] = []
  const summaries: number[] = []
  const log = boundedLog(
    (address: string) => written.push(address),
    (count) => summaries.push(count),
    () => now,
  )
  for (let i = 0; i < 1_000; i++) log('203.0.113.7')
  expect(written).toHaveLength(LOGGED_PER_INTERVAL)
  expect(summaries).toEqual([])
  now = 10_000
  log('203.0.113.7')
  expect(summaries).toEqual([1_000 - LOGGED_PER_INTERVAL])
  expect(written).toHaveLength(LOGGED_PER_INTERVAL + 1)
})

test('an attacker-chosen field is cut to its bound and marked with its full length', () => {
  expect(boundedText('short', 10)).toBe('short')
  expect(boundedText('x'.repeat(60_000), 256)).toBe(`${'x'.repeat(256)}…[60000 chars]`)
})
