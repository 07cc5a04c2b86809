// The seals a re-key reuses (issue 14, cliff 5): one per holder and slot, pruned with the
// epochs, bounded in count.
import { generateIdentity, publicIdentity } from '@smqtt/core'
import { expect, test } from 'vitest'
import { SealedKeyCache } from '../src/service/sealed-key-cache.js'

const key = new Uint8Array(32).fill(9)
const holder = (id: string, kid: number) => ({ ...publicIdentity(generateIdentity(id)), kid })
const slot = (epoch: number) => ({ group: 1, epoch, suite: 1 })

test('one seal per holder and slot: the same seal again, another for another holder or epoch', () => {
  const cache = new SealedKeyCache()
  const [a, b] = [holder('app-a', 1), holder('app-b', 2)]
  const first = cache.sealed(a, slot(1), key)
  expect(cache.sealed(a, slot(1), key)).toEqual(first)
  expect(cache.sealed(b, slot(1), key).enc).not.toBe(first.enc)
  expect(cache.sealed(a, slot(2), key).enc).not.toBe(first.enc)
  expect(cache.size).toBe(3)
})

test('epochs no longer live are forgotten with their seals', () => {
  const cache = new SealedKeyCache()
  const a = holder('app-a', 1)
  const first = cache.sealed(a, slot(1), key)
  cache.sealed(a, slot(2), key)
  cache.keepOnly([{ group: 1, epoch: 2 }])
  expect(cache.size).toBe(1)
  expect(cache.sealed(a, slot(1), key).enc).not.toBe(first.enc) // sealed afresh
})

test('never holds more than its bound: past it, it starts over', () => {
  const cache = new SealedKeyCache(4)
  for (let kid = 1; kid <= 10; kid++) cache.sealed(holder(`app-${kid}`, kid), slot(1), key)
  expect(cache.size).toBeLessThanOrEqual(4)
  expect(cache.size).toBeGreaterThan(0)
})
