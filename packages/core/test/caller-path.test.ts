// Issue 13: `npm run -s cli -w @smqtt/keyserver -- start --config ./ks/config.json` runs in the
// package folder; the path must resolve where the user typed it (npm's INIT_CWD).
import { join, resolve } from 'node:path'
import { describe, expect, test } from 'vitest'
import { resolveCallerPath } from '../src/node/caller-path.js'

const fromOurScript = { INIT_CWD: '/home/me', npm_package_name: '@smqtt/keyserver' }

describe('resolveCallerPath', () => {
  test('resolves a relative path against INIT_CWD when one of our npm scripts started the command', () => {
    expect(resolveCallerPath('./ks/config.json', fromOurScript)).toBe(join('/home/me', 'ks', 'config.json'))
  })
  test("an installed bin run from a user's own npm script keeps that script's directory", () => {
    expect(resolveCallerPath('ks/config.json', { INIT_CWD: '/home/me', npm_package_name: 'my-fleet' })).toBe(
      resolve('ks/config.json'),
    )
  })
  test('falls back to the current directory, and leaves absolute paths alone', () => {
    expect(resolveCallerPath('ks/config.json', {})).toBe(resolve('ks/config.json'))
    expect(resolveCallerPath('/etc/smqtt/config.json', fromOurScript)).toBe('/etc/smqtt/config.json')
  })
})
