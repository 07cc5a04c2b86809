// Issue 14, cliff 4, at the key server: a reader's key bundle listed every writer of its groups
// (~200 B each: 3,000 writers made a 600 KB bundle, 10,000 one the client refuses). Now a bundle
// lists at most `bundleInlineWriters` writers per group (and past it only the recipient itself),
// and a reader fetches the others' signed records by key id (`POST /v1/writers`).
import { type Identity, openKeyBundle, openWriterRecord } from '@smqtt/core'
import { addWriters, type Harness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { startSmartHomeHarness } from './_harness.js'

const WRITERS = 3_000

let h: Harness
beforeEach(async () => {
  h = await startSmartHomeHarness()
})
afterEach(() => h.close())

async function bundleOf(identity: Identity) {
  const response = await h.device(identity, 'GET', '/v1/bundle')
  expect(response.status, response.text).toBe(200)
  const signed = (response.body as { bundle: unknown }).bundle
  const opened = openKeyBundle(signed, {
    keyServerPublicKey: h.keyServer.publicKey,
    recipient: identity,
    now: h.clock.now,
  })
  return { bytes: JSON.stringify(signed).length, opened }
}

test('a reader’s bundle does not grow with the writers of its group (3,000 writers)', async () => {
  const app = await h.enroll('app-1', ['app'])
  const small = await bundleOf(app.identity)
  await addWriters(h, WRITERS)
  h.clock.now += 10
  const large = await bundleOf(app.identity)
  // Before: 3,000 writer entries, ~600 KB. The bound: a few KB whatever the writers.
  expect(large.bytes).toBeLessThan(8 * 1024)
  expect(large.bytes).toBeLessThan(small.bytes + 1024)
  expect(large.opened.groups.find((g) => g.group === 1)?.writers.size).toBe(0)
})

test('a writer of a large group finds itself in its own bundle, and only itself', async () => {
  await addWriters(h, WRITERS)
  const device = await h.enroll('thermostat-1', ['thermostat'])
  const { opened, bytes } = await bundleOf(device.identity)
  const writers = opened.groups.find((g) => g.group === 1)?.writers
  expect([...(writers?.keys() ?? [])]).toEqual([device.kid])
  expect(writers?.get(device.kid)?.publish).toEqual({ allow: ['home/+/thermostat/thermostat-1/#'], deny: [] })
  expect(bytes).toBeLessThan(8 * 1024)
})

test('a member fetches writers’ records by key id: the entries a bundle would carry, bound to it and the group', async () => {
  const kids = await addWriters(h, WRITERS)
  const device = await h.enroll('thermostat-new', ['thermostat'])
  const app = await h.enroll('app-1', ['app'])
  const asked = [kids[0] as number, kids[2_999] as number, device.kid, 999_999_999, app.kid]
  const response = await h.device(app.identity, 'POST', '/v1/writers', { group: 1, kids: asked })
  expect(response.status, response.text).toBe(200)
  const record = openWriterRecord((response.body as { record: unknown }).record, {
    keyServerPublicKey: h.keyServer.publicKey,
    reader: 'app-1',
    now: h.clock.now,
  })
  expect(record.group).toBe(1)
  expect(record.filter).toBe('home/+/thermostat/#')
  expect(record.notAfter - record.issuedAt).toBe(300)
  // Not writers of group 1: an unknown id, and the app (it writes lock commands, not temperatures).
  expect([...record.writers.keys()].sort((a, b) => a - b)).toEqual([kids[0], kids[2_999], device.kid])
  expect(record.writers.get(device.kid)).toMatchObject({
    principal: 'thermostat-new',
    publish: { allow: ['home/+/thermostat/thermostat-new/#'], deny: [] },
  })
  // Bound to the reader: another principal cannot use it as its own.
  expect(() =>
    openWriterRecord((response.body as { record: unknown }).record, {
      keyServerPublicKey: h.keyServer.publicKey,
      reader: 'thermostat-new',
      now: h.clock.now,
    }),
  ).toThrow(expect.objectContaining({ code: 'ERR_BUNDLE_WRONG_RECIPIENT' }))
})

test('only a member of the group may ask, at most 256 ids at once', async () => {
  const lock = await h.enroll('lock-1', ['lock']) // reads lock commands only
  const refused = await h.device(lock.identity, 'POST', '/v1/writers', { group: 1, kids: [1] })
  expect(refused.status).toBe(403)
  const app = await h.enroll('app-1', ['app'])
  const tooMany = await h.device(app.identity, 'POST', '/v1/writers', {
    group: 1,
    kids: Array.from({ length: 257 }, (_, i) => i),
  })
  expect(tooMany.status).toBe(400)
})
