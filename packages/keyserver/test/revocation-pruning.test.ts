// The key server's side of issue 14, cliff 1: the revocation list it signs holds the revocations
// made since 60 s before its watermark (now minus the retention), the watermark never goes down,
// and a burst of revocations past the 512 KiB cap moves the watermark forward instead of growing
// the list past what a client accepts.
import { RevocationList } from '@smqtt/core'
import { addRevokedFleet, type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, expect, test } from 'vitest'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

async function publishedList(harness: Harness): Promise<RevocationList> {
  const list = new RevocationList()
  const signed = await harness.keyServer.revocationList()
  if (!list.accept(signed, { keyServerPublicKey: harness.keyServer.publicKey })) throw new Error('list refused')
  return list
}

test('lists the revocations of the retention window (and its 60 s slack), with the watermark at now minus the retention', async () => {
  h = await startHarness({ settings: { bundleTtlSeconds: 600, revocationRetentionSeconds: 3_600 } })
  const now = h.clock.now
  await addRevokedFleet(h, 100, 10_000) // one every 100 s over the past 10,000 s
  await h.enroll('thermostat-stolen', ['thermostat'])
  expect((await h.admin('POST', '/v1/admin/principals/thermostat-stolen/revoke')).status).toBe(200)
  const list = await publishedList(h)
  expect(list.prunedBefore).toBe(now - 3_600)
  const listed = list.entries.map((e) => e.revokedAt)
  expect(Math.min(...listed)).toBeGreaterThanOrEqual(now - 3_600 - 60)
  // Every revocation at or after the watermark minus the slack: 36 of the fleet and the one just made.
  const expected = (await h.store.listPrincipals()).filter(
    (p) => p.status === 'revoked' && (p.statusChangedAt ?? 0) >= now - 3_660,
  )
  expect(list.entries.length).toBe(expected.length)
  expect(list.entries.length).toBe(37)

  // The next list moves the watermark with the clock (and never back: it starts from the last one).
  h.clock.now = now + 10
  await h.enroll('thermostat-2', ['thermostat'])
  expect((await h.admin('POST', '/v1/admin/principals/thermostat-2/revoke')).status).toBe(200)
  expect((await publishedList(h)).prunedBefore).toBe(now + 10 - 3_600)
})

test('a burst past 512 KiB of entries moves the watermark forward; the list stays under the 1 MiB a client accepts', async () => {
  h = await startHarness()
  const now = h.clock.now
  await addRevokedFleet(h, 12_000, 12_000, 'a-long-revoked-principal-id-') // one a second, all within the day
  await h.enroll('thermostat-stolen', ['thermostat'])
  expect((await h.admin('POST', '/v1/admin/principals/thermostat-stolen/revoke')).status).toBe(200)
  const signed = await h.keyServer.revocationList()
  expect(JSON.stringify(signed).length).toBeLessThan(1024 * 1024)
  const list = await publishedList(h)
  expect(list.prunedBefore).toBeGreaterThan(now - 86_400)
  // Still complete from 60 s before the watermark on: nothing a usable bundle may list is missing.
  const since = list.prunedBefore - 60
  const expected = (await h.store.listPrincipals()).filter(
    (p) => p.status === 'revoked' && (p.statusChangedAt ?? 0) >= since,
  )
  const listed = new Set(list.entries.map((e) => e.principal))
  for (const p of expected) expect(listed.has(p.id)).toBe(true)
  expect(listed.has('thermostat-stolen')).toBe(true)
}, 60_000)
