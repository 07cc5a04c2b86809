import { afterEach, describe, expect, test, vi } from 'vitest'
import { SmqttError } from '../src/errors.js'
import {
  memorySequenceSource,
  SequenceCounter,
  type SequenceRange,
  type SequenceSource,
} from '../src/sequence-counter.js'

async function take(counter: SequenceCounter, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await counter.next())
  return out
}

/** Hands out the given ranges in order, recording when each was asked for. */
function scripted(ranges: SequenceRange[], delayMs = 0): SequenceSource & { asked: number } {
  const source = {
    asked: 0,
    async reserve() {
      const range = ranges[source.asked++]
      if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs))
      if (!range) throw new Error('source exhausted')
      return range
    },
  }
  return source
}

afterEach(() => {
  vi.useRealTimers()
})

describe('SequenceCounter', () => {
  test('numbers come only from reserved ranges, each once, rising', async () => {
    const counter = new SequenceCounter(
      scripted([
        { start: 0, end: 8 },
        { start: 100, end: 104 },
        { start: 5000, end: 5008 },
      ]),
    )
    expect(await take(counter, 20)).toEqual([
      0,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      100,
      101,
      102,
      103,
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => 5000 + i),
    ])
  })

  test('the next range is reserved once half of the current one is used, before it runs out', async () => {
    const source = scripted([
      { start: 0, end: 8 },
      { start: 8, end: 16 },
    ])
    const counter = new SequenceCounter(source)
    await take(counter, 3)
    expect(source.asked).toBe(1)
    await take(counter, 2) // 4 is the first of the second half
    expect(source.asked).toBe(2)
  })

  test('concurrent callers get distinct numbers while the source is slow', async () => {
    const counter = new SequenceCounter(
      scripted(
        Array.from({ length: 20 }, (_, i) => ({ start: i * 4, end: i * 4 + 4 })),
        2,
      ),
    )
    const all = await Promise.all(Array.from({ length: 50 }, () => counter.next()))
    expect(new Set(all).size).toBe(50)
    expect(Math.max(...all)).toBeLessThan(counter.reservedUntil)
  })

  test('a failing source stops numbering instead of running past its ranges', async () => {
    const counter = new SequenceCounter(scripted([{ start: 0, end: 4 }]))
    await expect(take(counter, 10)).rejects.toThrow('source exhausted')
    expect(counter.reservedUntil).toBe(4)
  })

  test('a range below one already held, or an empty one, is refused with a typed error', async () => {
    let calls = 0
    const below = new SequenceCounter({
      reserve: async () => (calls++ === 0 ? { start: 10, end: 12 } : { start: 11, end: 20 }),
    })
    await take(below, 2)
    await expect(below.next()).rejects.toMatchObject({ code: 'ERR_SEQUENCE_EXHAUSTED' })
    await expect(new SequenceCounter(scripted([{ start: 5, end: 5 }])).next()).rejects.toBeInstanceOf(SmqttError)
  })

  test('prepare reserves the first range ahead; a failed reservation ahead is retried after 5 s, not on every number', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    let fail = false
    let asked = 0
    const counter = new SequenceCounter({
      reserve: async () => {
        asked++
        if (fail) throw new Error('key server down')
        return { start: asked * 100, end: asked * 100 + 10 }
      },
    })
    await counter.prepare()
    await counter.prepare()
    expect(asked).toBe(1)
    fail = true
    expect(await take(counter, 6)).toEqual([100, 101, 102, 103, 104, 105]) // 105: half used, asks ahead
    await Promise.resolve()
    expect(asked).toBe(2)
    await take(counter, 3)
    expect(asked).toBe(2) // not again within 5 s
    vi.setSystemTime(Date.now() + 5_001)
    fail = false
    await counter.next() // 109, and asks ahead again
    await Promise.resolve()
    expect(asked).toBe(3)
    expect(await counter.next()).toBe(300)
  })

  test('exhaustion raises a typed error', async () => {
    const counter = new SequenceCounter(memorySequenceSource(Number.MAX_SAFE_INTEGER - 1, 1))
    await counter.next()
    await expect(counter.next()).rejects.toMatchObject({ code: 'ERR_SEQUENCE_EXHAUSTED' })
  })
})
