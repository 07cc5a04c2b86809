import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'
import { ERROR_CODES, isSmqttError, SmqttError } from '../src/errors.js'

const docs = readFileSync(fileURLToPath(new URL('../../../docs/errors.md', import.meta.url)), 'utf8')
const documented = new Set([...docs.matchAll(/^\|\s*`(ERR_[A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]))

test('docs/errors.md lists every error code, and no code that does not exist', () => {
  expect([...documented].sort()).toEqual(Object.keys(ERROR_CODES).sort())
})

test('SmqttError carries a stable code and a default message', () => {
  const err = new SmqttError('ERR_REPLAY')
  expect(err.code).toBe('ERR_REPLAY')
  expect(err.message).toBe(ERROR_CODES.ERR_REPLAY)
  expect(err.name).toBe('SmqttError')
  expect(isSmqttError(err, 'ERR_REPLAY')).toBe(true)
  expect(isSmqttError(err, 'ERR_STALE')).toBe(false)
  expect(isSmqttError(new Error('x'))).toBe(false)
})

test('two copies of @smqtt/core: isSmqttError recognises the other copy’s errors, which instanceof does not', async () => {
  // A second instance of the module, as when an application and a plugin each install their own core.
  const secondCopy = '../src/errors.js?second-copy'
  const other = (await import(/* @vite-ignore */ secondCopy)) as typeof import('../src/errors.js')
  expect(other.SmqttError).not.toBe(SmqttError)
  const foreign = new other.SmqttError('ERR_REPLAY')
  expect(foreign instanceof SmqttError).toBe(false)
  expect(isSmqttError(foreign)).toBe(true)
  expect(isSmqttError(foreign, 'ERR_REPLAY')).toBe(true)
  expect(isSmqttError(foreign, 'ERR_STALE')).toBe(false)
  expect(other.isSmqttError(new SmqttError('ERR_STALE'), 'ERR_STALE')).toBe(true)
  // Look-alikes are not SmqttErrors: a plain error with a code, an object with the name.
  expect(isSmqttError(Object.assign(new Error('x'), { code: 'ERR_REPLAY' }))).toBe(false)
  expect(isSmqttError({ name: 'SmqttError', code: 'ERR_REPLAY' })).toBe(false)
})
