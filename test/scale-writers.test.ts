// Issue 14, cliff 4, reduced for CI: 3,000 writers in one key group. A reader's key bundle listed
// every writer (~200 B each: 3,000 made it ~600 KB, over the 256 KiB push limit; 10,000 made 2 MB,
// which the client refuses, `ERR_BUNDLE_MALFORMED`). Now a bundle lists a bounded number of
// writers per group, and a subscriber fetches the signed record of a writer it has not seen, by
// key id, when its first envelope arrives. Against the real stack (key server over HTTPS, the
// SMQTT broker, secure clients): a new client is served, and a subscriber receives from a writer
// it never saw, with no security error.
import { within } from '@smqtt/test-kit/broker'
import { addWriters } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type AttackStack, deliveredTo, startAttackStack } from './attacks/_stack.js'

const WRITERS = 3_000

let s: AttackStack
beforeAll(async () => {
  s = await startAttackStack()
  s.followRealTime() // request signatures, epochs and revocations carry the wall clock
  // Writers straight into the store (enrolling 3,000 devices would take minutes); role thermostat:
  // each publishes home/+/thermostat/<its id>/#, in group 1.
  await addWriters(s.h, WRITERS, 'fleet-writer-')
  await s.syncBroker()
}, 120_000)
afterAll(async () => {
  await s?.close()
})

test('3,000 writers in a group: a new reader gets a small bundle and receives from a writer it never saw', async () => {
  const app = await s.enroll('app-1', ['app'])
  const record = await s.h.store.getPrincipal('app-1')
  if (!record) throw new Error('app-1 not stored')
  const bundleBytes = JSON.stringify(await s.h.keyServer.bundleFor(record)).length
  expect(bundleBytes).toBeLessThan(8 * 1024) // before: ~600 KB

  const subscriber = await s.secureClient(app)
  await subscriber.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })

  // A device enrolled after the subscriber loaded its keys: it is in no bundle the subscriber holds.
  const device = await s.enroll('thermostat-new', ['thermostat'])
  const publisher = await s.secureClient(device)
  await within(publisher.client.publishAsync('home/hall/thermostat/thermostat-new/temp', '21.5', { qos: 1 }), 'PUBACK')
  await deliveredTo(subscriber, 1)
  expect(subscriber.messages).toEqual([{ topic: 'home/hall/thermostat/thermostat-new/temp', text: '21.5' }])
  expect(subscriber.errors).toEqual([])
}, 60_000)
