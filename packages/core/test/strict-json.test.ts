// One set of rules for untrusted JSON objects (src/_strict-json.ts), applied by every strict
// reader in core: signed documents, policies, config files and saved replay state. Each refuses
// the same shapes, with its own error code.
import { expect, test } from 'vitest'
import { parsePolicy } from '../src/acl.js'
import { configField } from '../src/config-text.js'
import { ReplayWindow } from '../src/replay-window.js'
import { StrictJsonReader } from '../src/signed-document.js'
import { codeOf } from './_fixtures.js'

/** The four readers, each given an object that should have the keys `keys` and nothing else. */
const READERS = {
  document: (value: unknown) => new StrictJsonReader('ERR_BUNDLE_MALFORMED').object(value, 'bundle', ['v', 'x']),
  config: (value: unknown) => configField.object(value, '$', ['v', 'x']),
  policy: (value: unknown) => parsePolicy(value),
  replayState: (value: unknown) => new ReplayWindow().restoreState(value, 1_790_000_000),
} as const

const CODES = {
  document: 'ERR_BUNDLE_MALFORMED',
  config: 'ERR_CONFIG_INVALID',
  policy: 'ERR_POLICY_INVALID',
  replayState: 'ERR_REPLAY_STATE_INVALID',
} as const

class Smuggled {
  v = 1
}

const SHAPES: Record<string, unknown> = {
  array: [],
  null: null,
  string: 'v',
  'class instance': new Smuggled(),
  'object with a prototype': Object.create({ v: 1 }),
  'unknown field': { v: 1, x: 1, extra: 1, version: 1, windows: [], floors: [] },
  'unknown __proto__ field (as JSON.parse makes it)': JSON.parse('{"__proto__": {"admin": true}, "v": 1}'),
}

for (const [shape, value] of Object.entries(SHAPES))
  test(`every strict reader refuses ${shape}, with its own code`, () => {
    for (const [name, read] of Object.entries(READERS))
      expect([name, codeOf(() => read(value))]).toEqual([name, CODES[name as keyof typeof CODES]])
  })

test('an object of exactly the allowed keys passes the object rules of each reader', () => {
  expect(codeOf(() => READERS.document({ v: 1, x: 2 }))).toBe('ok')
  expect(codeOf(() => READERS.config({ v: 1 }))).toBe('ok')
  expect(codeOf(() => READERS.document(JSON.parse('{"v": 1, "x": 2}')))).toBe('ok')
  expect(codeOf(() => READERS.replayState({ v: 1, notBefore: null, windows: [], floors: [] }))).toBe('ok')
})
