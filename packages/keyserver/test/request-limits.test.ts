// The key server's quotas on signed requests (nonce cache, request rate) and how it groups
// addresses for failed authentication. The end-to-end attacks are in test/attacks/keyserver-abuse.test.ts.

import { addressKey } from '@smqtt/core/address-key'
import { describe, expect, test } from 'vitest'
import { NonceCache, REQUEST_WINDOW_SECONDS } from '../src/service/nonce-cache.js'
import { RateLimiter } from '../src/service/rate-limit.js'

const T = 1_790_000_000

describe('NonceCache', () => {
  test('a nonce is refused as long as its request could still be accepted, and only that long', () => {
    const nonces = new NonceCache()
    // Stamped at the far edge of the window: accepted from T - 60 to T + 60 (timestamp T).
    const until = T + REQUEST_WINDOW_SECONDS
    expect(nonces.useOnce('app-1', 'n1', until, T - REQUEST_WINDOW_SECONDS)).toBeUndefined()
    expect(nonces.useOnce('app-1', 'n1', until, T + REQUEST_WINDOW_SECONDS)).toBe('replay') // the last accepted second
    expect(nonces.useOnce('app-2', 'n1', until, T)).toBeUndefined() // nonces are per principal
  })

  test("one principal filling its share is refused alone; the others' requests are taken", () => {
    const nonces = new NonceCache({ maxPerPrincipal: 100, maxEntries: 1_000 })
    for (let i = 0; i < 100; i++) expect(nonces.useOnce('flooder', `n${i}`, T + 60, T)).toBeUndefined()
    expect(nonces.useOnce('flooder', 'one-more', T + 60, T)).toBe('full')
    for (let i = 0; i < 100; i++) expect(nonces.useOnce(`device-${i}`, 'n', T + 60, T)).toBeUndefined()
    // Once its nonces' requests can no longer be accepted, the flooder gets room again.
    expect(nonces.useOnce('flooder', 'later', T + 121, T + 61)).toBeUndefined()
    expect(nonces.size).toBe(101)
  })

  test('the whole cache is bounded and fails closed when every live nonce is needed', () => {
    const nonces = new NonceCache({ maxPerPrincipal: 10, maxEntries: 20 })
    for (let i = 0; i < 20; i++) expect(nonces.useOnce(`p${i}`, 'n', T + 60, T)).toBeUndefined()
    expect(nonces.useOnce('late', 'n', T + 60, T)).toBe('full')
    expect(nonces.useOnce('late', 'n', T + 121, T + 61)).toBeUndefined() // the old ones expired
    expect(nonces.size).toBe(1)
  })
})

describe('RateLimiter', () => {
  test('a burst, then the rate; each key on its own', () => {
    const limiter = new RateLimiter({ perSecond: 5, burst: 10 })
    const taken = (key: string, count: number, at: number) =>
      Array.from({ length: count }, () => limiter.take(key, at)).filter(Boolean).length
    expect(taken('a', 20, 0)).toBe(10)
    expect(taken('b', 20, 0)).toBe(10)
    expect(taken('a', 20, 1)).toBe(5)
    expect(taken('a', 20, 100)).toBe(10) // refilled up to the burst, no more
  })

  test('bounded: idle keys are dropped to make room; with none idle a new key is refused', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 2, maxKeys: 2 })
    expect(limiter.take('a', 0) && limiter.take('b', 0)).toBe(true)
    expect(limiter.take('c', 0)).toBe(false)
    expect(limiter.take('c', 10)).toBe(true) // a and b are full again: forgotten
  })
})

test('failed authentication is counted per IPv4 address and per IPv6 /64', () => {
  expect(addressKey('192.0.2.7')).toBe('192.0.2.7')
  expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
  expect(addressKey('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64')
  expect(addressKey('2001:DB8:0:1:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:0:1::/64')
  expect(addressKey('::1')).toBe('0:0:0:0::/64')
  expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64')
})
