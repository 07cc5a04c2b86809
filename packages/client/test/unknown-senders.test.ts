// The hold for envelopes from senders the bundle does not list (src/_unknown-senders.ts), on its
// own: fake timers and a fake refresh, so every bound is checked exactly.
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { UnknownSenders } from '../src/_unknown-senders.js'

beforeEach(() => vi.useFakeTimers())
afterEach(() => vi.useRealTimers())

function setup(options: { maxHeld?: number; maxHeldBytes?: number; fail?: boolean } = {}) {
  const known = new Set<string>()
  const released: string[] = []
  let refreshes = 0
  let finish: (() => void) | undefined
  const hold = new UnknownSenders<string>({
    intervalMs: 5_000,
    quietMs: 60_000,
    maxHeld: options.maxHeld ?? 256,
    maxHeldBytes: options.maxHeldBytes ?? 1_000_000,
    refresh: () => {
      refreshes++
      return new Promise<void>((resolve, reject) => {
        finish = options.fail ? () => reject(new Error('down')) : resolve
      })
    },
    isKnown: (group, sender) => known.has(`${group}:${sender}`),
    release: (item) => released.push(item),
  })
  const answer = async () => {
    finish?.()
    finish = undefined
    await vi.advanceTimersByTimeAsync(0)
  }
  return { hold, known, released, answer, refreshes: () => refreshes }
}

test('one refresh in flight, at most one per interval; what it was for is released in order', async () => {
  const t = setup()
  expect(t.hold.hold(1, 7, 10, 'a1')).toBe(true)
  expect(t.hold.hold(1, 8, 10, 'b1')).toBe(true) // joins nothing: the refresh already started
  expect(t.refreshes()).toBe(1)
  t.known.add('1:7')
  await t.answer()
  // a1 known, released; b1 arrived during the refresh, unknown: kept for the next one
  expect(t.released).toEqual(['a1'])
  await vi.advanceTimersByTimeAsync(4_999)
  expect(t.refreshes()).toBe(1)
  await vi.advanceTimersByTimeAsync(1)
  expect(t.refreshes()).toBe(2)
  await t.answer()
  expect(t.released).toEqual(['a1', 'b1']) // still unknown: released to be refused
})

test('a sender still unknown after a refresh is refused at once for the quiet period, then may trigger one again', async () => {
  const t = setup()
  t.hold.hold(1, 9, 10, 'x1')
  await t.answer()
  expect(t.released).toEqual(['x1'])
  await vi.advanceTimersByTimeAsync(10_000)
  expect(t.hold.hold(1, 9, 10, 'x2')).toBe(false)
  expect(t.refreshes()).toBe(1)
  await vi.advanceTimersByTimeAsync(50_000)
  expect(t.hold.hold(1, 9, 10, 'x3')).toBe(true)
  expect(t.refreshes()).toBe(2)
})

test('a failed refresh releases what it held without quietening the senders', async () => {
  const t = setup({ fail: true })
  t.hold.hold(1, 9, 10, 'x1')
  await t.answer()
  expect(t.released).toEqual(['x1'])
  expect(t.hold.hold(1, 9, 10, 'x2')).toBe(true) // held for the next try, one interval later
  expect(t.refreshes()).toBe(1)
  await vi.advanceTimersByTimeAsync(5_000)
  expect(t.refreshes()).toBe(2)
})

test('bounded by count and bytes; a sender with envelopes held keeps its order', async () => {
  const t = setup({ maxHeld: 3, maxHeldBytes: 100 })
  expect(t.hold.hold(1, 1, 60, 'a')).toBe(true)
  expect(t.hold.hold(1, 2, 50, 'b')).toBe(false) // 110 bytes
  expect(t.hold.hold(1, 2, 20, 'c')).toBe(true)
  expect(t.hold.hold(1, 3, 10, 'd')).toBe(true)
  expect(t.hold.hold(1, 4, 1, 'e')).toBe(false) // 4 envelopes
  expect(t.hold.holding(1, 2)).toBe(true)
  expect(t.hold.holding(1, 5)).toBe(false)
  t.known.add('1:1').add('1:2')
  await t.answer()
  // c and d came during the refresh: c's sender is known now, d waits for the next refresh
  expect(t.released).toEqual(['a', 'c'])
  expect(t.hold.holding(1, 2)).toBe(false)
  expect(t.hold.holding(1, 3)).toBe(true)
  await vi.advanceTimersByTimeAsync(5_000)
  await t.answer()
  expect(t.released).toEqual(['a', 'c', 'd'])
})

test('stop releases what is held at once, or after the refresh in flight', async () => {
  const t = setup()
  t.hold.hold(1, 1, 1, 'a')
  const stopped = t.hold.stop()
  expect(t.released).toEqual([])
  expect(t.hold.hold(1, 2, 1, 'b')).toBe(false)
  await t.answer()
  await stopped
  expect(t.released).toEqual(['a'])
})
