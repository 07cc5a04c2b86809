import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { type ReplayCheckInput, ReplayWindow } from '../src/replay-window.js'
import { codeOf } from './_fixtures.js'

const NOW = 1_790_000_000

const message = (seq: number, more: Partial<ReplayCheckInput> = {}): ReplayCheckInput => ({
  group: 1,
  epoch: 1,
  sender: 1,
  seq,
  sentAt: NOW,
  now: NOW,
  ...more,
})

const accepts = (window: ReplayWindow, input: ReplayCheckInput) => codeOf(() => window.accept(input)) === 'ok'

describe('sliding window', () => {
  test('a duplicate is refused, the next number is accepted', () => {
    const window = new ReplayWindow()
    window.accept(message(5))
    expect(codeOf(() => window.accept(message(5)))).toBe('ERR_REPLAY')
    expect(codeOf(() => window.check(message(5)))).toBe('ERR_REPLAY')
    expect(accepts(window, message(6))).toBe(true)
  })

  test('sequence number 0 and 2^53 - 1 work', () => {
    const window = new ReplayWindow()
    expect(accepts(window, message(0))).toBe(true)
    expect(accepts(window, message(0))).toBe(false)
    expect(accepts(window, message(Number.MAX_SAFE_INTEGER))).toBe(true)
    expect(accepts(window, message(Number.MAX_SAFE_INTEGER))).toBe(false)
    expect(accepts(window, message(Number.MAX_SAFE_INTEGER - 1))).toBe(true)
  })

  test('out of order within the window is accepted once', () => {
    const window = new ReplayWindow({ windowSize: 64 })
    window.accept(message(100))
    for (const seq of [99, 37, 50, 99 - 20]) {
      expect(accepts(window, message(seq))).toBe(true)
      expect(accepts(window, message(seq))).toBe(false)
    }
  })

  test('older than the window is refused even if never seen', () => {
    const window = new ReplayWindow({ windowSize: 64 })
    window.accept(message(100))
    expect(codeOf(() => window.accept(message(36)))).toBe('ERR_REPLAY')
    expect(accepts(window, message(37))).toBe(true) // 100 - 63: the oldest number still inside
  })

  test('a big jump forgets everything below the new window', () => {
    const window = new ReplayWindow({ windowSize: 128 })
    for (let seq = 0; seq < 10; seq++) window.accept(message(seq))
    window.accept(message(1_000_000))
    expect(accepts(window, message(9))).toBe(false)
    expect(accepts(window, message(999_873))).toBe(true)
    expect(accepts(window, message(999_872))).toBe(false)
  })

  test.each([1, 31, 32, 33, 100, 4096])('window size %i keeps exactly that many numbers', (size) => {
    const window = new ReplayWindow({ windowSize: size })
    window.accept(message(10_000))
    expect(accepts(window, message(10_000 - size))).toBe(false)
    if (size > 1) expect(accepts(window, message(10_000 - size + 1))).toBe(true)
    // Shifts of every size keep the bits in the right place.
    const seen = [10_000]
    for (const step of [1, 5, 31, 32, 33, 64, 7]) {
      const seq = (seen.at(-1) as number) + step
      window.accept(message(seq))
      seen.push(seq)
    }
    const top = seen.at(-1) as number
    for (const seq of seen) expect(accepts(window, message(seq))).toBe(false)
    for (let seq = top - 1; seq > top - size && seq > 10_000; seq--) {
      if (!seen.includes(seq)) expect(window.check(message(seq))).toBeUndefined()
    }
  })

  test('check() records nothing', () => {
    const window = new ReplayWindow()
    window.check(message(5))
    window.check(message(5))
    expect(accepts(window, message(5))).toBe(true)
    expect(accepts(window, message(5))).toBe(false)
  })

  test('a refused message is not recorded', () => {
    const window = new ReplayWindow()
    expect(codeOf(() => window.accept(message(5, { sentAt: NOW - 3600 })))).toBe('ERR_STALE')
    expect(accepts(window, message(5))).toBe(true)
  })

  test('senders, groups and epochs have separate windows; a new epoch starts fresh', () => {
    const window = new ReplayWindow()
    window.accept(message(500))
    expect(accepts(window, message(500, { sender: 2 }))).toBe(true)
    expect(accepts(window, message(500, { group: 2 }))).toBe(true)
    expect(accepts(window, message(1, { epoch: 2 }))).toBe(true)
    // The previous epoch's window is still there for in-flight messages of the grace period.
    expect(accepts(window, message(499))).toBe(true)
    expect(accepts(window, message(500))).toBe(false)
    expect(accepts(window, message(1, { epoch: 2 }))).toBe(false)
  })

  test('programmer mistakes are TypeError / RangeError', () => {
    const window = new ReplayWindow()
    expect(() => window.check(message(-1))).toThrow(RangeError)
    expect(() => window.check(message(1.5))).toThrow(TypeError)
    expect(() => window.check(message(2 ** 53))).toThrow(RangeError)
    expect(() => window.check(message(1, { now: Number.NaN }))).toThrow(TypeError)
    expect(() => window.check(message(1, { sentAt: Number.POSITIVE_INFINITY }))).toThrow(TypeError)
    expect(() => new ReplayWindow({ windowSize: 0 })).toThrow(RangeError)
    expect(() => new ReplayWindow({ windowSize: 4097 })).toThrow(RangeError)
    expect(() => new ReplayWindow({ maxSenders: 0 })).toThrow(RangeError)
    expect(() => new ReplayWindow({ maxAgeSeconds: Number.POSITIVE_INFINITY })).toThrow(RangeError)
    expect(() => new ReplayWindow({ retainedMaxAgeSeconds: Number.POSITIVE_INFINITY })).not.toThrow()
  })
})

describe('freshness', () => {
  const window = new ReplayWindow({ maxAgeSeconds: 300, maxFutureSkewSeconds: 30 })

  test('too old and too far in the future are stale', () => {
    expect(codeOf(() => window.check(message(1, { sentAt: NOW - 301 })))).toBe('ERR_STALE')
    expect(codeOf(() => window.check(message(1, { sentAt: NOW + 31 })))).toBe('ERR_STALE')
  })

  test('the limits themselves are fresh', () => {
    expect(codeOf(() => window.check(message(1, { sentAt: NOW - 300 })))).toBe('ok')
    expect(codeOf(() => window.check(message(1, { sentAt: NOW + 30 })))).toBe('ok')
  })
})

describe('retained deliveries', () => {
  const options = { maxAgeSeconds: 300, retainedMaxAgeSeconds: 3600 }

  test('use retainedMaxAgeSeconds instead of maxAgeSeconds', () => {
    const window = new ReplayWindow(options)
    expect(codeOf(() => window.check(message(1, { sentAt: NOW - 3000, retained: true })))).toBe('ok')
    expect(codeOf(() => window.check(message(1, { sentAt: NOW - 3601, retained: true })))).toBe('ERR_STALE')
    expect(codeOf(() => window.check(message(1, { sentAt: NOW + 31, retained: true })))).toBe('ERR_STALE')
    const forever = new ReplayWindow({ retainedMaxAgeSeconds: Number.POSITIVE_INFINITY })
    expect(codeOf(() => forever.check(message(1, { sentAt: 0, retained: true })))).toBe('ok')
  })

  test('are delivered again on every subscribe and do not touch the window', () => {
    const window = new ReplayWindow({ ...options, windowSize: 32 })
    window.accept(message(1000))
    // A retained copy of an old message (below the window, even a duplicate) is fine...
    for (let i = 0; i < 3; i++) expect(accepts(window, message(1000, { retained: true }))).toBe(true)
    expect(accepts(window, message(5, { retained: true, sentAt: NOW - 1000 }))).toBe(true)
    // ...and a retained message far ahead does not push live messages out of the window.
    expect(accepts(window, message(1_000_000, { retained: true }))).toBe(true)
    expect(accepts(window, message(999))).toBe(true)
    expect(accepts(window, message(1_000_000))).toBe(true)
  })
})

describe('memory bound and eviction', () => {
  test('at most maxSenders windows are kept, least recently used evicted', () => {
    const window = new ReplayWindow({ maxSenders: 3 })
    for (let sender = 1; sender <= 10; sender++) {
      const now = NOW + 60 * sender // senders minutes apart: see the churn test below for a burst
      window.accept(message(1, { sender, now, sentAt: now }))
      expect(window.size).toBe(Math.min(sender, 3))
    }
  })

  test('an evicted window does not allow a replay', () => {
    const window = new ReplayWindow({ maxSenders: 2, windowSize: 64 })
    window.accept(message(10, { sender: 1 }))
    window.accept(message(8, { sender: 1 }))
    window.accept(message(1, { sender: 2 }))
    window.accept(message(1, { sender: 3 })) // evicts sender 1
    expect(window.size).toBe(2)
    for (const seq of [10, 8, 9, 2]) expect(codeOf(() => window.accept(message(seq, { sender: 1 })))).toBe('ERR_REPLAY')
    expect(accepts(window, message(11, { sender: 1 }))).toBe(true)
    expect(accepts(window, message(11, { sender: 1 }))).toBe(false)
  })

  test('least recently USED: a sender in use is not evicted', () => {
    const window = new ReplayWindow({ maxSenders: 2 })
    window.accept(message(1, { sender: 1 }))
    window.accept(message(1, { sender: 2 }))
    window.accept(message(2, { sender: 1 })) // sender 1 is now the most recent
    window.accept(message(1, { sender: 3 })) // evicts sender 2
    // Sender 1 still has its full window: an unseen number inside it is accepted.
    expect(accepts(window, message(0, { sender: 1 }))).toBe(true)
    // Sender 2 came back from its floor: everything at or below 1 counts as seen.
    expect(accepts(window, message(0, { sender: 2 }))).toBe(false)
  })

  test('when even the floors overflow, windows created from nothing refuse earlier send times', () => {
    const window = new ReplayWindow({ maxSenders: 1, maxFutureSkewSeconds: 30 })
    window.accept(message(10, { sender: 1, now: NOW }))
    window.accept(message(1, { sender: 2, now: NOW + 1 })) // evicts 1 (floor)
    window.accept(message(1, { sender: 3, now: NOW + 2 })) // evicts 2, floor of 1 is dropped
    // Sender 1's old message is within the freshness limit but its window and floor are gone.
    expect(codeOf(() => window.accept(message(10, { sender: 1, sentAt: NOW, now: NOW + 2 })))).toBe('ERR_REPLAY')
    expect(codeOf(() => window.accept(message(10, { sender: 1, sentAt: NOW + 30, now: NOW + 2 })))).toBe('ERR_REPLAY')
    // Sender 1 was evicted at NOW + 1, so it recorded nothing sent after NOW + 1 + 30.
    expect(codeOf(() => window.accept(message(11, { sender: 1, sentAt: NOW + 31, now: NOW + 31 })))).toBe('ERR_REPLAY')
    expect(accepts(window, message(11, { sender: 1, sentAt: NOW + 32, now: NOW + 32 }))).toBe(true)
  })

  test('property: with heavy eviction, no (group, epoch, sender, seq) is ever accepted twice', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.record({ sender: fc.integer({ min: 0, max: 5 }), seq: fc.integer({ min: 0, max: 40 }) }), {
          maxLength: 200,
        }),
        (maxSenders, inputs) => {
          const window = new ReplayWindow({ maxSenders, windowSize: 8 })
          const accepted = new Set<string>()
          for (const [i, { sender, seq }] of inputs.entries()) {
            const input = message(seq, { sender, now: NOW + i, sentAt: NOW + i })
            if (!accepts(window, input)) continue
            const key = `${sender}/${seq}`
            expect(accepted.has(key)).toBe(false)
            accepted.add(key)
          }
          expect(window.size).toBeLessThanOrEqual(maxSenders)
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('properties', () => {
  test('never accepts the same seq twice; always accepts a seq above all before it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat()), { maxLength: 300 }),
        (windowSize, seqs) => {
          const window = new ReplayWindow({ windowSize })
          const accepted = new Set<number>()
          let highest = -1
          for (const seq of seqs) {
            const ok = accepts(window, message(seq))
            if (seq > highest) expect(ok).toBe(true)
            if (ok) {
              expect(accepted.has(seq)).toBe(false)
              accepted.add(seq)
            }
            highest = Math.max(highest, seq)
          }
        },
      ),
      { numRuns: 500 },
    )
  })

  test('accepts exactly what a reference window (a set and a highest) accepts', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 70 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 300 }),
        (windowSize, seqs) => {
          const window = new ReplayWindow({ windowSize })
          const seen = new Set<number>()
          let highest = -1
          for (const seq of seqs) {
            const expected = !seen.has(seq) && (seq > highest || highest - seq < windowSize)
            expect(accepts(window, message(seq))).toBe(expected)
            if (expected) {
              seen.add(seq)
              highest = Math.max(highest, seq)
            }
          }
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('saved state (exportState / restoreState)', () => {
  const roundTrip = (window: ReplayWindow, options = {}) => {
    const restored = new ReplayWindow(options)
    restored.restoreState(JSON.parse(JSON.stringify(window.exportState())), NOW)
    return restored
  }

  test('a restored window refuses what the original saw and accepts what it did not', () => {
    const window = new ReplayWindow({ windowSize: 64 })
    for (const seq of [100, 98, 40]) window.accept(message(seq))
    window.accept(message(7, { sender: 2 }))
    const restored = roundTrip(window, { windowSize: 64 })
    for (const seq of [100, 98, 40, 30]) expect(codeOf(() => restored.accept(message(seq)))).toBe('ERR_REPLAY')
    expect(codeOf(() => restored.accept(message(7, { sender: 2 })))).toBe('ERR_REPLAY')
    for (const seq of [99, 41, 101]) expect(accepts(restored, message(seq))).toBe(true)
    expect(accepts(restored, message(8, { sender: 2 }))).toBe(true)
  })

  test('floors and the window-wide floor survive; another windowSize turns windows into floors', () => {
    const window = new ReplayWindow({ windowSize: 32, maxSenders: 1 })
    window.accept(message(10, { sender: 1 }))
    window.accept(message(20, { sender: 2 })) // sender 1 -> floor
    window.accept(message(30, { sender: 3 })) // sender 2 -> floor, sender 1's floor dropped
    const restored = roundTrip(window, { windowSize: 32, maxSenders: 1 })
    expect(restored.exportState()).toEqual(window.exportState())
    expect(codeOf(() => restored.accept(message(20, { sender: 2 })))).toBe('ERR_REPLAY')
    expect(codeOf(() => restored.accept(message(11, { sender: 1 })))).toBe('ERR_REPLAY') // notBefore
    const resized = roundTrip(window, { windowSize: 64, maxSenders: 2 })
    expect(resized.size).toBe(0)
    expect(codeOf(() => resized.accept(message(29, { sender: 3 })))).toBe('ERR_REPLAY')
    expect(accepts(resized, message(31, { sender: 3 }))).toBe(true)
  })

  test('exportState leaves out the epochs keep() rejects', () => {
    const window = new ReplayWindow()
    window.accept(message(1, { epoch: 1 }))
    window.accept(message(1, { epoch: 2 }))
    expect(window.exportState((_group, epoch) => epoch === 2).windows.map((w) => w[1])).toEqual([2])
  })

  test.each([
    ['not an object', 'x'],
    ['wrong version', { v: 2, notBefore: null, windows: [], floors: [] }],
    ['windows missing', { v: 1, notBefore: null, floors: [] }],
    ['negative sender', { v: 1, notBefore: null, windows: [[1, 1, -1, 5, null, [1]]], floors: [] }],
    ['fractional seq', { v: 1, notBefore: null, windows: [[1, 1, 1, 5.5, null, [1]]], floors: [] }],
    ['bad bitmap', { v: 1, notBefore: null, windows: [[1, 1, 1, 5, null, 'zz']], floors: [] }],
    ['bitmap word too big', { v: 1, notBefore: null, windows: [[1, 1, 1, 5, null, [2 ** 32]]], floors: [] }],
    ['empty bitmap', { v: 1, notBefore: null, windows: [[1, 1, 1, 5, null, []]], floors: [] }],
    ['bad time', { v: 1, notBefore: 'soon', windows: [], floors: [] }],
    ['duplicate', { v: 1, notBefore: null, windows: [[1, 1, 1, 5, null, [1]]], floors: [[1, 1, 1, 5, null, 0]] }],
    ['short entry', { v: 1, notBefore: null, windows: [], floors: [[1, 1, 1]] }],
  ])('a corrupt state (%s) is ERR_REPLAY_STATE_INVALID and changes nothing', (_name, state) => {
    const window = new ReplayWindow()
    window.accept(message(5))
    expect(codeOf(() => window.restoreState(state, NOW))).toBe('ERR_REPLAY_STATE_INVALID')
    expect(codeOf(() => window.accept(message(5)))).toBe('ERR_REPLAY')
  })

  test('resetAfterLoss refuses everything that could have been accepted before, and nothing sent later', () => {
    const window = new ReplayWindow({ maxFutureSkewSeconds: 30 })
    window.resetAfterLoss(NOW)
    expect(codeOf(() => window.accept(message(1, { sentAt: NOW + 30, now: NOW + 40 })))).toBe('ERR_REPLAY')
    expect(accepts(window, message(1, { sentAt: NOW + 31, now: NOW + 40 }))).toBe(true)
  })
})

describe('takeChanges', () => {
  /** A copy of exportState() kept from takeChanges() alone, as its doc says to. */
  class Copy {
    windows = new Map<string, unknown>()
    floors = new Map<string, unknown>()
    notBefore: number | null = null
    apply(window: ReplayWindow) {
      const { all, notBefore, changed } = window.takeChanges()
      if (all) {
        this.windows.clear()
        this.floors.clear()
      }
      for (const change of changed) {
        this.windows.delete(change.key)
        this.floors.delete(change.key)
        if (change.window) this.windows.set(change.key, change.window)
        else if (change.floor) this.floors.set(change.key, change.floor)
      }
      this.notBefore = notBefore
      return changed.length
    }
    state() {
      return { v: 1, notBefore: this.notBefore, windows: [...this.windows.values()], floors: [...this.floors.values()] }
    }
  }

  test('the first call lists everything, later ones only what changed since', () => {
    const window = new ReplayWindow()
    for (const sender of [1, 2, 3]) window.accept(message(1, { sender }))
    const first = window.takeChanges()
    expect(first.all).toBe(true)
    expect(first.changed.map((c) => c.window?.[2])).toEqual([1, 2, 3])
    expect(window.takeChanges()).toEqual({ all: false, notBefore: null, changed: [] })
    window.accept(message(2, { sender: 2 }))
    const second = window.takeChanges()
    expect(second.all).toBe(false)
    expect(second.changed).toEqual([{ key: '1/1/2', window: [1, 1, 2, 2, null, [3, 0, 0, 0]], floor: undefined }])
  })

  test('eviction, dropped floors, restore and reset show up', () => {
    const window = new ReplayWindow({ windowSize: 32, maxSenders: 1 })
    window.accept(message(10, { sender: 1 }))
    window.takeChanges()
    window.accept(message(20, { sender: 2 })) // sender 1 -> floor
    expect(window.takeChanges().changed.map((c) => [c.key, c.window !== undefined, c.floor !== undefined])).toEqual([
      ['1/1/2', true, false],
      ['1/1/1', false, true],
    ])
    window.accept(message(30, { sender: 3 })) // sender 2 -> floor, sender 1's floor dropped
    const dropped = window.takeChanges()
    // More keys changed (3) than entries (2): listed as everything.
    expect(dropped.all).toBe(true)
    expect(dropped.changed.map((c) => c.key)).toEqual(['1/1/3', '1/1/2'])
    window.restoreState(window.exportState(), NOW)
    expect(window.takeChanges().all).toBe(true)
    window.resetAfterLoss(NOW)
    expect(window.takeChanges()).toEqual({ all: true, notBefore: NOW + 30, changed: [] })
  })

  test('property: a copy kept from the changes always equals exportState()', () => {
    const op = fc.oneof(
      { weight: 20, arbitrary: fc.record({ group: fc.nat(1), epoch: fc.nat(2), sender: fc.nat(5), seq: fc.nat(60) }) },
      { weight: 6, arbitrary: fc.constant('take' as const) },
      { weight: 1, arbitrary: fc.constant('restore' as const) },
      { weight: 1, arbitrary: fc.constant('reset' as const) },
    )
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 150, size: 'max' }), (maxSenders, ops) => {
        const window = new ReplayWindow({ windowSize: 40, maxSenders })
        const copy = new Copy()
        let now = NOW
        for (const step of ops) {
          now++
          if (step === 'take') copy.apply(window)
          else if (step === 'restore') window.restoreState(JSON.parse(JSON.stringify(window.exportState())), now)
          else if (step === 'reset') window.resetAfterLoss(now)
          else codeOf(() => window.accept({ ...step, sentAt: now, now }))
          if (step === 'take') expect(copy.state()).toEqual(window.exportState())
        }
        copy.apply(window)
        expect(copy.state()).toEqual(window.exportState())
      }),
    )
  })
})
