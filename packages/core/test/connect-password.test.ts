import { expect, test } from 'vitest'
import { createConnectPassword, verifyConnectPassword } from '../src/connect-password.js'
import { generateIdentity } from '../src/identity.js'

const device = generateIdentity('lock-1')
const NOW = 1_790_000_000
const refused = { code: 'ERR_UNAUTHENTICATED' }

test('a CONNECT password verifies for its client id and key, and yields its nonce', () => {
  const password = createConnectPassword(device, 'lock-1', { now: NOW })
  const nonce = verifyConnectPassword(password, { clientId: 'lock-1', signingKey: device.signingKey, now: NOW + 5 })
  expect(password).toContain(nonce)
})

test('another client id, another key, a stale time or a tampered password are refused alike', () => {
  const password = createConnectPassword(device, 'lock-1', { now: NOW })
  const check = (pw: string, clientId: string, key: Uint8Array, now: number) => () =>
    verifyConnectPassword(pw, { clientId, signingKey: key, now })
  expect(check(password, 'lock-2', device.signingKey, NOW)).toThrow(expect.objectContaining(refused))
  expect(check(password, 'lock-1', generateIdentity('x').signingKey, NOW)).toThrow(expect.objectContaining(refused))
  expect(check(password, 'lock-1', device.signingKey, NOW + 61)).toThrow(expect.objectContaining(refused))
  const tampered = password.replace(/\.(\d+)\./, (_m, t: string) => `.${Number(t) + 1}.`)
  expect(check(tampered, 'lock-1', device.signingKey, NOW)).toThrow(expect.objectContaining(refused))
  for (const junk of ['', 'smqtt1.', 'hunter2', `${password}x`])
    expect(check(junk, 'lock-1', device.signingKey, NOW)).toThrow(expect.objectContaining(refused))
})
