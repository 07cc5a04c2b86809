// Bounds against a client that abuses the broker's bookkeeping, with an explicit clock: the
// audit log (field length, refusals per principal and interval), the CONNECT budgets (per
// address before authentication, per principal after it) and one-time CONNECT password nonces.
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { pino } from 'pino'
import { describe, expect, test } from 'vitest'
import {
  boundedField,
  createAuditor,
  MAX_AUDIT_FIELD,
  REFUSAL_INTERVAL_SECONDS,
  REFUSALS_LOGGED_PER_INTERVAL,
} from '../src/audit.js'
import { CONNECT_PASSWORD_SKEW_SECONDS, NonceCache } from '../src/authenticate.js'
import { ConnectGuard } from '../src/limits.js'
import { createBrokerMetrics } from '../src/metrics.js'
import { PreAuthGate } from '../src/preauth.js'

function auditor() {
  const lines: Record<string, unknown>[] = []
  let now = 1_000
  const metrics = createBrokerMetrics(() => ({ ageSeconds: 0, stale: false }))
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  const audit = createAuditor(logger, metrics, () => now)
  const counted = async () =>
    (await metrics.registry.getMetricsAsJSON())
      .find((m) => m.name === 'smqtt_broker_refusals_total')
      ?.values.reduce((sum, v) => sum + v.value, 0)
  const tick = (seconds: number) => {
    now += seconds
  }
  return { lines, audit, counted, tick }
}

describe('audit', () => {
  test('every field is cut to MAX_AUDIT_FIELD characters and marked with its length', () => {
    const { lines, audit } = auditor()
    const long = 'x'.repeat(60_000)
    audit.refused('connect', 'bad-credentials', { principal: long, clientId: long, address: '127.0.0.1' })
    audit.refused('subscribe', 'acl-denied', { principal: 'app-1', topic: long, detail: long })
    audit.close()
    for (const line of lines) expect(JSON.stringify(line).length).toBeLessThan(4 * (MAX_AUDIT_FIELD + 32))
    expect(lines[1]?.topic).toBe(`${'x'.repeat(MAX_AUDIT_FIELD)}…[60000 chars]`)
    expect(lines[0]?.address).toBe('127.0.0.1')
    expect(boundedField('short')).toBe('short')
  })

  test('past the budget, refusals of one principal are counted and summed up once per kind and interval', async () => {
    const { lines, audit, counted, tick } = auditor()
    const flood = REFUSALS_LOGGED_PER_INTERVAL + 30
    for (let i = 0; i < flood; i++) audit.refused('subscribe', 'acl-denied', { principal: 'app-1', topic: `t/${i}` })
    for (let i = 0; i < 5; i++) audit.refused('publish', 'replay', { principal: 'app-1', topic: 't' })
    audit.refused('subscribe', 'acl-denied', { principal: 'app-2', topic: 't' }) // another principal: its own budget
    expect(lines.filter((l) => l.principal === 'app-1')).toHaveLength(REFUSALS_LOGGED_PER_INTERVAL)
    expect(lines.filter((l) => l.principal === 'app-2')).toHaveLength(1)
    expect(await counted()).toBe(flood + 5 + 1) // metrics count every refusal

    tick(REFUSAL_INTERVAL_SECONDS)
    audit.refused('subscribe', 'acl-denied', { principal: 'app-1', topic: 'again' })
    const summaries = lines.filter((l) => l.event === 'refusals-suppressed')
    expect(summaries.map((l) => [l.hook, l.reason, l.principal, l.count])).toEqual([
      ['subscribe', 'acl-denied', 'app-1', 30],
      ['publish', 'replay', 'app-1', 5],
    ])
    expect(summaries[0]?.msg).toBe(`30 more subscribe refusals (acl-denied) in the last ${REFUSAL_INTERVAL_SECONDS} s`)
    expect(lines.at(-1)).toMatchObject({ event: 'refused', topic: 'again' }) // a new interval: logged again
    audit.close()
  })

  test('CONNECT refusals are all written (each ends its connection); close writes the summaries held back', () => {
    const { lines, audit } = auditor()
    for (let i = 0; i < REFUSALS_LOGGED_PER_INTERVAL + 5; i++)
      audit.refused('connect', 'bad-credentials', { clientId: 'x', address: '10.0.0.1' })
    for (let i = 0; i < REFUSALS_LOGGED_PER_INTERVAL + 2; i++)
      audit.refused('forward', 'acl-denied', { principal: 'app-1', topic: 't' })
    audit.close()
    expect(lines.filter((l) => l.hook === 'connect')).toHaveLength(REFUSALS_LOGGED_PER_INTERVAL + 5)
    expect(lines.at(-1)).toMatchObject({ event: 'refusals-suppressed', hook: 'forward', count: 2, level: 20 })
  })
})

describe('CONNECT budgets', () => {
  test('per address before authentication, per principal after it: unauthenticated CONNECTs do not touch a principal', () => {
    const guard = new ConnectGuard({ perAddress: 3, perClientId: 2, windowSeconds: 10 })
    expect([1, 2, 3, 4].map(() => guard.admit('10.0.0.1', 0))).toEqual([true, true, true, false])
    expect(guard.admit('10.0.0.2', 0)).toBe(true) // another address
    expect([1, 2, 3].map(() => guard.admitPrincipal('lock-1', 0))).toEqual([true, true, false])
    expect(guard.admitPrincipal('lock-1', 10)).toBe(true) // the next window
  })

  test('a CONNECT that authenticated is given back to its address; one that did not keeps counting', () => {
    const guard = new ConnectGuard({ perAddress: 2, windowSeconds: 10 })
    for (let i = 0; i < 100; i++) {
      expect(guard.admit('10.0.0.9', 0)).toBe(true)
      guard.refund('10.0.0.9', 0) // a whole site behind one NAT address, each one authenticated
    }
    expect([guard.admit('10.0.0.9', 1), guard.admit('10.0.0.9', 1), guard.admit('10.0.0.9', 1)]).toEqual([
      true,
      true,
      false,
    ])
    guard.refund('10.0.0.9', 11) // a refund for a window that ended changes nothing
    expect(guard.admit('10.0.0.9', 11)).toBe(true)
  })

  test('an IPv6 block cannot dodge the per-address budget and ban by changing addresses within its /64', () => {
    const guard = new ConnectGuard({ perAddress: 3, failuresBeforeBan: 2, banSeconds: 60, windowSeconds: 10 })
    expect(['2001:db8::1', '2001:db8::2', '2001:db8:0:0:ffff::3', '2001:db8::4'].map((a) => guard.admit(a, 0))).toEqual(
      [true, true, true, false],
    )
    expect(guard.admit('2001:db8:0:1::1', 0)).toBe(true) // another /64
    guard.failed('2001:db8:0:1::a', 20)
    guard.failed('2001:db8:0:1::b', 20)
    expect(guard.admit('2001:db8:0:1::c', 21)).toBe(false) // banned as a block
    expect(guard.admit('::ffff:192.0.2.7', 21)).toBe(true)
  })
})

describe('memory held per connection (issue 14)', () => {
  test('expired CONNECT budgets and bans are dropped once a window, not only when 100,000 are held', () => {
    const guard = new ConnectGuard({ perClientId: 2, failuresBeforeBan: 1, banSeconds: 20, windowSeconds: 10 })
    for (let i = 0; i < 50; i++) expect(guard.admitPrincipal(`device-${i}`, 1_000)).toBe(true)
    guard.failed('192.0.2.7', 1_000) // banned until 1,020
    expect(guard.tracked).toBe(51)
    expect(guard.admit('192.0.2.1', 1_010)).toBe(true) // one window later: the buckets have expired
    expect(guard.tracked).toBe(2) // the new address, and the ban still in force
    expect(guard.admit('192.0.2.7', 1_015)).toBe(false)
    expect(guard.admit('192.0.2.1', 1_020)).toBe(true)
    expect(guard.tracked).toBe(1)
    expect(guard.admit('192.0.2.7', 1_021)).toBe(true)
  })

  test('nonces are dropped once their password has expired, and not before', () => {
    const nonces = new NonceCache()
    const until = 1_000 + CONNECT_PASSWORD_SKEW_SECONDS
    for (let i = 0; i < 50; i++) expect(nonces.useOnce(`nonce-${i}`, until, 1_000)).toBe(true)
    expect(nonces.useOnce('late', until + 30, 1_030)).toBe(true)
    expect(nonces.size).toBe(51)
    expect(nonces.useOnce('nonce-0', until, until)).toBe(false) // its last acceptable second
    expect(nonces.useOnce('next', until + 61, until + 1)).toBe(true) // one skew window after the first use
    expect(nonces.size).toBe(2) // 'late' (still live) and 'next'
    expect(nonces.useOnce('late', until + 30, until + 1)).toBe(false)
  })
})

describe('unauthenticated connections', () => {
  test('an IPv6 block cannot dodge the cap on connections awaiting authentication by changing addresses within its /64', () => {
    const refused: string[] = []
    const gate = new PreAuthGate({
      deadlineMs: 60_000,
      maxPerAddress: 2,
      onRefused: (address) => refused.push(address),
      onDeadline: () => {},
    })
    const socket = (remoteAddress: string, remotePort: number) => {
      const raw = new EventEmitter() as EventEmitter & { remoteAddress: string; remotePort: number; destroy(): void }
      Object.assign(raw, { remoteAddress, remotePort, destroyed: false, destroy: () => raw.emit('close') })
      return raw as unknown as Socket
    }
    const sockets = ['2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8:1::1'].map((a, i) => socket(a, 40_000 + i))
    expect(sockets.map((raw) => gate.accept(raw, 'mqtts'))).toEqual([true, true, false, true])
    expect(refused).toEqual(['2001:db8:0:0::/64'])
    for (const raw of sockets) raw.emit('close') // ends their deadlines
  })

  test('an authenticated connection leaves nothing behind in the gate (issue 14: heap per idle connection)', () => {
    const gate = new PreAuthGate({ deadlineMs: 60_000, maxPerAddress: 2, onRefused: () => {}, onDeadline: () => {} })
    const fake = (remotePort: number) => {
      const socket = new EventEmitter() as EventEmitter & { remoteAddress: string; remotePort: number; destroy(): void }
      Object.assign(socket, { remoteAddress: '192.0.2.1', remotePort, destroy: () => socket.emit('close') })
      return socket as unknown as Socket
    }
    const raw = fake(40_000)
    const tls = fake(40_000) // the TLS socket wrapping it: the same peer
    expect(gate.accept(raw, 'mqtts')).toBe(true)
    gate.handedOver(tls, tls)
    gate.authenticated(tls)
    expect(gate.pending).toBe(0)
    // Its close listeners kept the entry, its cleared timer and closures alive for the session's lifetime.
    expect(raw.listenerCount('close')).toBe(0)
    expect(tls.listenerCount('close')).toBe(0)
    // The address's slot was given back once, and stays given back.
    raw.emit('close')
    expect([gate.accept(fake(40_001), 'mqtts'), gate.accept(fake(40_002), 'mqtts')]).toEqual([true, true])
    expect(gate.accept(fake(40_003), 'mqtts')).toBe(false)
    gate.close()
  })
})

describe('CONNECT password nonces', () => {
  test('a nonce is refused for every second its password is acceptable, both edges included', () => {
    const nonces = new NonceCache()
    const stamped = 5_000
    const acceptedUntil = stamped + CONNECT_PASSWORD_SKEW_SECONDS
    expect(nonces.useOnce('n', acceptedUntil, stamped - CONNECT_PASSWORD_SKEW_SECONDS)).toBe(true)
    for (let t = stamped - CONNECT_PASSWORD_SKEW_SECONDS; t <= acceptedUntil; t++)
      expect(nonces.useOnce('n', acceptedUntil, t)).toBe(false)
  })

  test('full of live nonces it fails closed; expired ones make room', () => {
    const nonces = new NonceCache(2)
    expect(nonces.useOnce('a', 100, 0)).toBe(true)
    expect(nonces.useOnce('b', 200, 0)).toBe(true)
    expect(nonces.useOnce('c', 200, 50)).toBe(false)
    expect(nonces.useOnce('c', 200, 101)).toBe(true) // 'a' is past its password's window
  })
})
