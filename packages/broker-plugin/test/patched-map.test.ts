// The broker's patched indexes (issue 14): after any run of patches, a PatchedMap answers every
// read as a plain map given the same changes would, and folds into one when the changes grow.
import fc from 'fast-check'
import { expect, test } from 'vitest'
import { compactInSlices, PatchedMap } from '../src/patched-map.js'

type Patch = { set: [number, string][]; removed: number[] }
const patch: fc.Arbitrary<Patch> = fc.record({
  set: fc.array(fc.tuple(fc.nat({ max: 60 }), fc.string({ maxLength: 3 })), { maxLength: 12 }),
  removed: fc.array(fc.nat({ max: 60 }), { maxLength: 12 }),
})

const sorted = (entries: Iterable<[number, string]>) => [...entries].sort((a, b) => a[0] - b[0])

test('property: any run of patches reads as a plain map with the same changes', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat({ max: 60 }), fc.string())),
      fc.array(patch, { maxLength: 8 }),
      (start, patches) => {
        const model = new Map(start)
        let map: ReadonlyMap<number, string> = new Map(start)
        for (const { set, removed } of patches) {
          for (const [key, value] of set) model.set(key, value)
          for (const key of removed) model.delete(key)
          map = PatchedMap.patched(map, set, removed)
        }
        expect(map.size).toBe(model.size)
        expect(sorted(map)).toEqual(sorted(model))
        expect(sorted(map.entries())).toEqual(sorted(model.entries()))
        expect([...map.keys()].sort((a, b) => a - b)).toEqual([...model.keys()].sort((a, b) => a - b))
        expect([...map.values()].sort()).toEqual([...model.values()].sort())
        for (let key = 0; key <= 61; key++) {
          expect(map.get(key)).toBe(model.get(key))
          expect(map.has(key)).toBe(model.has(key))
        }
      },
    ),
  )
})

test('a patch of a patch keeps one base: its changes merge, and it asks to be folded once they are a fair share', () => {
  const base = new Map(Array.from({ length: 10_000 }, (_, i) => [i, `v${i}`] as [number, string]))
  let map = PatchedMap.patched(base, [[1, 'changed']], [2])
  let added = 0
  while (!map.wantsCompaction) map = PatchedMap.patched(map, [[20_000 + added++, 'new']], [])
  // 1,250 changes: an eighth of the base.
  expect(added + 2).toBe(1_250)
  expect(map.size).toBe(10_000 - 1 + added)
  const steps = compactInSlices(map, 1_000)
  let step = steps.next()
  let slices = 0
  while (!step.done) {
    slices++
    step = steps.next()
  }
  expect(slices).toBeGreaterThanOrEqual(10)
  expect(sorted(step.value)).toEqual(sorted(map))
  expect(step.value.get(1)).toBe('changed')
  expect(step.value.has(2)).toBe(false)
})
