// POST /v1/sequence: each run of a device gets sequence numbers no other run was given, so a
// second copy or a restored backup never reuses a nonce (issue 12, item 1; the store's part is
// in the conformance suite).
import type { Harness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { errorCode, startSmartHomeHarness } from './_harness.js'

let h: Harness
beforeEach(async () => {
  h = await startSmartHomeHarness()
})
afterEach(() => h.close())

const range = (response: { body: unknown }) => response.body as { start: number; end: number }

test('ranges are disjoint and rising, above the floor a device remembers, whatever it asks', async () => {
  const { identity } = await h.enroll('thermostat-1', ['thermostat'])
  const first = await h.device(identity, 'POST', '/v1/sequence', { atLeast: 0, size: 1024 })
  expect(first.status, first.text).toBe(200)
  expect(range(first)).toEqual({ start: 0, end: 1024 })
  // A device restored from an old backup remembers 0 again: it still gets numbers above.
  expect(range(await h.device(identity, 'POST', '/v1/sequence', { atLeast: 0, size: 2048 }))).toEqual({
    start: 1024,
    end: 3072,
  })
  // A floor above the key server's (its database restored from an old backup) is respected.
  expect(range(await h.device(identity, 'POST', '/v1/sequence', { atLeast: 1_000_000, size: 1 }))).toEqual({
    start: 1_000_000,
    end: 1_000_001,
  })
  const other = await h.enroll('thermostat-2', ['thermostat'])
  expect(range(await h.device(other.identity, 'POST', '/v1/sequence', { atLeast: 0, size: 10 }))).toEqual({
    start: 0,
    end: 10,
  })
})

test('bad sizes and floors are refused with ERR_REQUEST_INVALID; an exhausted space with ERR_SEQUENCE_EXHAUSTED', async () => {
  const { identity } = await h.enroll('thermostat-1', ['thermostat'])
  for (const body of [
    { atLeast: 0, size: 0 },
    { atLeast: 0, size: 65_537 },
    { atLeast: -1, size: 10 },
    { atLeast: 0 },
    { atLeast: 0, size: 10, extra: 1 },
  ]) {
    const refused = await h.device(identity, 'POST', '/v1/sequence', body)
    expect(refused.status, JSON.stringify(body)).toBe(400)
    expect(errorCode(refused)).toBe('ERR_REQUEST_INVALID')
  }
  const exhausted = await h.device(identity, 'POST', '/v1/sequence', {
    atLeast: Number.MAX_SAFE_INTEGER - 5,
    size: 10,
  })
  expect(exhausted.status).toBe(409)
  expect(errorCode(exhausted)).toBe('ERR_SEQUENCE_EXHAUSTED')
})

test('unsigned requests and revoked principals get nothing', async () => {
  const { identity } = await h.enroll('thermostat-1', ['thermostat'])
  const unsigned = await h.request('POST', '/v1/sequence', { body: { atLeast: 0, size: 10 } })
  expect(unsigned.status).toBe(401)
  expect((await h.admin('POST', '/v1/admin/principals/thermostat-1/revoke')).status).toBe(200)
  const revoked = await h.device(identity, 'POST', '/v1/sequence', { atLeast: 0, size: 10 })
  expect(revoked.status).toBe(403)
  expect(errorCode(revoked)).toBe('ERR_PRINCIPAL_REVOKED')
})
