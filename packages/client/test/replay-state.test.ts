// The saved replay state is built incrementally (cached JSON per entry); it must always be the
// very text a full JSON.stringify(exportState(keep)) would save, and cost only what changed.
import { ReplayWindow } from '@smqtt/core'
import fc from 'fast-check'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { ReplayStateText, SavedReplayWindow } from '../src/_replay-state.js'
import { type ClientStorage, memoryStorage } from '../src/storage.js'

const NOW = 1_790_000_000
const keepAll = () => true

afterEach(() => {
  vi.restoreAllMocks()
})

/** Accepts, ignoring refusals (replays, stale): the sequences are random. */
function offer(window: ReplayWindow, group: number, epoch: number, sender: number, seq: number, now: number) {
  try {
    window.accept({ group, epoch, sender, seq, sentAt: now, now })
  } catch {}
}

describe('ReplayStateText', () => {
  test('property: after random accepts, evictions, keep() changes, restores and resets, the text is the full export', () => {
    const op = fc.oneof(
      {
        weight: 20,
        arbitrary: fc.record({ group: fc.nat(1), epoch: fc.nat(1), sender: fc.nat(15), back: fc.nat(50) }),
      },
      // Frequent saves: small changes between them, as on the receive path (few keep chunk merges).
      { weight: 15, arbitrary: fc.constant('save' as const) },
      // Which (group, epoch)s keep() accepts now: bit group * 2 + epoch of the mask.
      { weight: 2, arbitrary: fc.record({ keepMask: fc.nat(15) }) },
      { weight: 1, arbitrary: fc.constant('restore' as const) },
      { weight: 1, arbitrary: fc.constant('reset' as const) },
    )
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(op, { maxLength: 200, size: 'max' }),
        (maxSenders, chunkSize, ops) => {
          const window = new ReplayWindow({ windowSize: 40, maxSenders, maxFutureSkewSeconds: 0 })
          const saver = new ReplayStateText(window, chunkSize)
          let mask = 15
          const keep = (group: number, epoch: number) => ((mask >>> (group * 2 + epoch)) & 1) === 1
          let now = NOW
          const expectFull = () => {
            const text = saver.text(keep)
            expect(text).toBe(JSON.stringify(window.exportState(keep)))
            new ReplayWindow({ windowSize: 40, maxSenders, maxFutureSkewSeconds: 0 }).restoreState(
              JSON.parse(text),
              now,
            ) // strict loader
          }
          for (const step of ops) {
            now++
            if (step === 'save') expectFull()
            else if (step === 'restore') window.restoreState(JSON.parse(JSON.stringify(window.exportState())), now)
            else if (step === 'reset') window.resetAfterLoss(now)
            else if ('keepMask' in step) mask = step.keepMask
            // Mostly new sequence numbers (accepted), some old ones (inside the window or refused).
            else offer(window, step.group, step.epoch, step.sender, Math.max(0, now - NOW - step.back), now)
          }
          expectFull()
        },
      ),
    )
  })

  test('a save re-serializes and rejoins only around the entries that changed', () => {
    const window = new ReplayWindow()
    for (let sender = 0; sender < 1_000; sender++) offer(window, 1, 1, sender, 1, NOW)
    const saver = new ReplayStateText(window)
    saver.text(keepAll)
    const takeChanges = vi.spyOn(window, 'takeChanges')
    const join = vi.spyOn(Array.prototype, 'join')
    offer(window, 1, 1, 500, 2, NOW)
    const text = saver.text(keepAll)
    // One bitmap, the chunk sender 500 left and the one it joined: not one per sender or chunk.
    expect(join.mock.calls.length).toBeLessThanOrEqual(3)
    join.mockRestore()
    expect(takeChanges.mock.results[0]?.value.changed).toHaveLength(1)
    expect(text).toBe(JSON.stringify(window.exportState()))
    expect(JSON.parse(text).windows.at(-1)?.[2]).toBe(500) // most recently used last
  })
})

describe('SavedReplayWindow', () => {
  test('stores the full export; a failed save is retried with the latest state', async () => {
    const memory = memoryStorage()
    let failNext = false
    const storage: ClientStorage = {
      get: memory.get,
      set: async (key, value) => {
        if (failNext) {
          failNext = false
          throw new Error('disk full')
        }
        await memory.set(key, value)
      },
    }
    const errors: Error[] = []
    const window = new ReplayWindow({ maxSenders: 2 })
    const saved = new SavedReplayWindow(window, {
      storage,
      key: 'replay:x',
      keep: (_group, epoch) => epoch !== 9,
      onError: (err) => errors.push(err),
    })
    await saved.load(NOW, false)
    expect(await storage.get('replay:x')).toBe('{"v":1,"notBefore":null,"windows":[],"floors":[]}')
    const stored = async () => JSON.parse((await storage.get('replay:x')) ?? '')
    for (const [sender, epoch] of [
      [1, 1],
      [2, 9],
      [3, 1],
    ] as const)
      offer(window, 1, epoch, sender, 5, NOW)
    saved.markDirty()
    failNext = true
    await saved.save()
    expect(errors.map((e) => e.message)).toEqual(['disk full'])
    expect(await stored()).toEqual({ v: 1, notBefore: null, windows: [], floors: [] })
    offer(window, 1, 1, 3, 6, NOW)
    await saved.save() // still dirty from the failure
    expect(await stored()).toEqual(window.exportState((_group, epoch) => epoch !== 9))
    expect((await stored()).windows.map((w: number[]) => w[2])).toEqual([3]) // sender 2: epoch 9, not kept
    expect((await stored()).floors.map((f: number[]) => f[2])).toEqual([1])

    const restarted = new ReplayWindow({ maxSenders: 2 })
    await new SavedReplayWindow(restarted, {
      storage,
      key: 'replay:x',
      keep: keepAll,
      onError: (e) => errors.push(e),
    }).load(NOW, true)
    expect(errors).toHaveLength(1)
    expect(() => restarted.check({ group: 1, epoch: 1, sender: 3, seq: 6, sentAt: NOW, now: NOW })).toThrow(/seen/)
  })
})
