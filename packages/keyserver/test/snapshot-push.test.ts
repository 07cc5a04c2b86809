// What the key server pushes brokers after a change (issue 14, cliff 2): the signed snapshot
// while it is small, past `maxInlineBytes` a signed notice whose ETag and issuedAt a pull made
// after it honours (the same content, stamped no earlier).
import { openBrokerSnapshot, openBrokerSnapshotNotice } from '@smqtt/core'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { type Harness, SMART_HOME_POLICY, startHarness } from '../src/testing.js'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await h.enroll('thermostat-1', ['thermostat'])
})
afterEach(async () => {
  await h.close()
})

test('a snapshot under the limit is pushed whole', async () => {
  const pushed = await h.keyServer.brokerSnapshotPush(64 * 1024)
  if (!('snapshot' in pushed)) throw new Error('expected the snapshot itself')
  expect(openBrokerSnapshot(pushed.snapshot, h.keyServer.publicKey).principals.map((p) => p.id)).toContain(
    'thermostat-1',
  )
})

test('a snapshot over the limit is announced by a signed notice that the next pull honours', async () => {
  const pushed = await h.keyServer.brokerSnapshotPush(1024)
  if (!('notice' in pushed)) throw new Error('expected a notice')
  expect(JSON.stringify(pushed.notice).length).toBeLessThan(400)
  const notice = openBrokerSnapshotNotice(pushed.notice, h.keyServer.publicKey)
  // A snapshot is no notice, nor the other way round (separate signature contexts).
  expect(() => openBrokerSnapshot(pushed.notice, h.keyServer.publicKey)).toThrow()
  const { tag, snapshot } = await h.keyServer.brokerSnapshotUnless(undefined)
  expect(tag).toBe(notice.tag)
  expect(openBrokerSnapshot(snapshot, h.keyServer.publicKey).issuedAt).toBeGreaterThanOrEqual(notice.issuedAt)
  expect(() => openBrokerSnapshotNotice(snapshot, h.keyServer.publicKey)).toThrow()

  // A change in the same second (the harness clock stands still): the next notice is stamped
  // later and names other content.
  await h.enroll('thermostat-2', ['thermostat'])
  const after = await h.keyServer.brokerSnapshotPush(1024)
  if (!('notice' in after)) throw new Error('expected a notice')
  const next = openBrokerSnapshotNotice(after.notice, h.keyServer.publicKey)
  expect(next.issuedAt).toBeGreaterThan(notice.issuedAt)
  expect(next.tag).not.toBe(notice.tag)
})
