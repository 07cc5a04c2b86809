import { describe, expect, test } from 'vitest'
import { SmqttError } from '../src/errors.js'
import { memorySequenceStore, SequenceCounter, type SequenceStore } from '../src/sequence-counter.js'

async function take(counter: SequenceCounter, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await counter.next())
  return out
}

describe('SequenceCounter', () => {
  test('numbers are used only after the limit above them is stored', async () => {
    const saves: number[] = []
    const store: SequenceStore = { load: async () => undefined, save: async (limit) => void saves.push(limit) }
    const counter = await SequenceCounter.open(store, { blockSize: 8 })
    const seen = await take(counter, 40)
    expect(seen).toEqual([...Array(40).keys()])
    for (const seq of seen) expect(saves.some((limit) => limit > seq)).toBe(true)
  })

  test('a restart (even a crash mid-block) never reuses a number', async () => {
    const store = memorySequenceStore()
    const used = new Set<number>()
    for (let restart = 0; restart < 5; restart++) {
      const counter = await SequenceCounter.open(store, { blockSize: 16 })
      for (const seq of await take(counter, 7 + restart * 5)) {
        expect(used.has(seq)).toBe(false)
        used.add(seq)
      }
    }
  })

  test('concurrent callers get distinct numbers while storage is slow', async () => {
    let saved: number | undefined
    const store: SequenceStore = {
      load: async () => saved,
      save: async (limit) => {
        await new Promise((resolve) => setTimeout(resolve, 2))
        saved = limit
      },
    }
    const counter = await SequenceCounter.open(store, { blockSize: 4 })
    const all = await Promise.all(Array.from({ length: 50 }, () => counter.next()))
    expect(new Set(all).size).toBe(50)
    expect(Math.max(...all)).toBeLessThan(counter.reservedUntil)
  })

  test('a failing store stops numbering instead of running past the reservation', async () => {
    let fail = false
    let saved: number | undefined
    const store: SequenceStore = {
      load: async () => saved,
      save: async (limit) => {
        if (fail) throw new Error('disk full')
        saved = limit
      },
    }
    const counter = await SequenceCounter.open(store, { blockSize: 4 })
    fail = true
    await expect(take(counter, 10)).rejects.toThrow('disk full')
    expect(counter.reservedUntil).toBe(4)
  })

  test('a corrupt stored value and exhaustion raise typed errors', async () => {
    await expect(SequenceCounter.open(memorySequenceStore(-1))).rejects.toBeInstanceOf(SmqttError)
    const counter = await SequenceCounter.open(memorySequenceStore(Number.MAX_SAFE_INTEGER - 1), { blockSize: 4 })
    await counter.next()
    await expect(counter.next()).rejects.toMatchObject({ code: 'ERR_SEQUENCE_EXHAUSTED' })
  })
})
