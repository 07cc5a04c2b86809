// What the key server pushes brokers after a change (issue 14, cliff 2): the signed snapshot
// while it is small, past `maxInlineBytes` a signed notice whose ETag and issuedAt a pull made
// after it honours (the same content, stamped no earlier).
import { openBrokerSnapshot, openBrokerSnapshotNotice } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { KeyServer, snapshotChangesByTimeAt } from '../src/service/key-server.js'

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
  const snapshot = await h.keyServer.brokerSnapshot()
  const opened = openBrokerSnapshot(snapshot, h.keyServer.publicKey)
  expect(opened.tag).toBe(notice.tag) // signed into the snapshot: what a broker asks about later
  expect(opened.issuedAt).toBeGreaterThanOrEqual(notice.issuedAt)
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

test('unchanged content is answered by a signed notice, a changed one by the snapshot', async () => {
  const { tag } = openBrokerSnapshot(await h.keyServer.brokerSnapshot(), h.keyServer.publicKey)
  const unchanged = await h.keyServer.brokerSnapshotUnless(tag)
  if (!('notice' in unchanged)) throw new Error('expected a notice')
  expect(openBrokerSnapshotNotice(unchanged.notice, h.keyServer.publicKey).tag).toBe(tag)

  await h.enroll('thermostat-3', ['thermostat'])
  const changed = await h.keyServer.brokerSnapshotUnless(tag)
  if (!('snapshot' in changed)) throw new Error('expected the snapshot')
  const opened = openBrokerSnapshot(changed.snapshot, h.keyServer.publicKey)
  expect(opened.tag).toBe(changed.tag)
  expect(opened.tag).not.toBe(tag)
  expect(opened.principals.map((p) => p.id)).toContain('thermostat-3')
})

test('the snapshot content is read once while nothing changes; a change from any process, an epoch retiring or a revocation ageing out is in the next', async () => {
  const contentOf = async (keyServer: KeyServer = h.keyServer) =>
    openBrokerSnapshot(await keyServer.brokerSnapshot(), h.keyServer.publicKey)
  let reads = 0
  const listPrincipals = h.store.listPrincipals.bind(h.store)
  h.store.listPrincipals = (options) => {
    reads++
    return listPrincipals(options)
  }
  const first = await contentOf()
  const readsForFirst = reads
  h.clock.now += 5
  const again = await contentOf()
  expect(again.tag).toBe(first.tag)
  expect(again.issuedAt).toBe(first.issuedAt + 5)
  expect(reads).toBe(readsForFirst) // the second answer came from what the first read

  // Another process on the same store revokes: this one's very next snapshot lists it revoked.
  const other = await KeyServer.open({ store: h.store, masterKey: h.masterKey, now: () => h.clock.now })
  await other.revokePrincipal('thermostat-1', 'test')
  const revoked = await contentOf()
  expect(revoked.principals.find((p) => p.id === 'thermostat-1')?.status).toBe('revoked')
  expect(revoked.tag).not.toBe(first.tag)

  // The rotation that revocation caused retires the old epoch after its grace period: the first
  // snapshot past it drops that epoch, although nothing was logged at that moment.
  const retiring = revoked.epochs.filter((e) => e.retiresAt !== undefined)
  expect(retiring.length).toBeGreaterThan(0)
  h.clock.now = Math.max(...retiring.map((e) => e.retiresAt as number))
  const retired = await contentOf()
  for (const e of retiring) expect(retired.epochs).not.toContainEqual(e)

  // A revocation stays listed as long as revocation lists keep it, then drops out by time alone.
  h.clock.now += 400 * 86_400
  const aged = await contentOf()
  expect(aged.principals.map((p) => p.id)).not.toContain('thermostat-1')
  const readsSoFar = reads
  expect((await contentOf()).tag).toBe(aged.tag)
  expect(reads).toBe(readsSoFar)
})

test('the time the kept content changes by itself is found among more revocations than a call takes arguments', () => {
  const revoked = Array.from({ length: 300_000 }, (_, i) => ({
    status: 'revoked' as const,
    statusChangedAt: 2_000_000 - i,
  }))
  const active = { status: 'active' as const, statusChangedAt: 1 } // not listed for a time: no bound
  expect(snapshotChangesByTimeAt([{ retiresAt: undefined }], [active, ...revoked], 100)).toBe(2_000_000 - 299_999 + 101)
  expect(snapshotChangesByTimeAt([{ retiresAt: 1_500_000 }], revoked, 100)).toBe(1_500_000)
  expect(snapshotChangesByTimeAt([], [active], 100)).toBe(Number.POSITIVE_INFINITY)
})
