// Issue 14, cliff 5: a re-key after a revocation seals the new epoch for every remaining holder
// and reuses, byte for byte, the seals of the epochs still in their grace period, so its cost
// does not grow with the rotations of the last minutes; the new epoch opens for each holder
// alone, and the revoked principal never gets it.
import { openKeyBundle, type SignedDocument } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, expect, test } from 'vitest'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

interface SealedSlot {
  epoch: number
  enc: string
  sealedKey: string
}

/** The sealed epochs of group 1 in a signed bundle, as the key server wrote them. */
function sealedSlots(bundle: SignedDocument): SealedSlot[] {
  const body = JSON.parse(Buffer.from(bundle.payload, 'base64url').toString()) as {
    groups: { group: number; epochs: SealedSlot[] }[]
  }
  return (body.groups.find((g) => g.group === 1)?.epochs ?? []).map(({ epoch, enc, sealedKey }) => ({
    epoch,
    enc,
    sealedKey,
  }))
}

test('each re-key in the grace window seals only the new epoch: the older ones keep their seals, byte for byte', async () => {
  h = await startHarness()
  const harness = h
  await harness.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const reader = await harness.enroll('app-reader', ['app'])
  const bundle = async () => {
    const response = await harness.device(reader.identity, 'GET', '/v1/bundle')
    expect(response.status, response.text).toBe(200)
    return (response.body as { bundle: SignedDocument }).bundle
  }
  let previous = sealedSlots(await bundle())
  expect(previous.map((e) => e.epoch)).toEqual([1])
  for (let round = 0; round < 4; round++) {
    await harness.enroll(`app-leaver-${round}`, ['app'])
    harness.clock.now += 5 // well inside the 120 s grace period of group 1
    const revoked = await harness.admin('POST', `/v1/admin/principals/app-leaver-${round}/revoke`)
    expect(revoked.status, revoked.text).toBe(200)
    const signed = await bundle()
    const slots = sealedSlots(signed)
    expect(slots.map((e) => e.epoch)).toEqual([...previous.map((e) => e.epoch), previous.length + 1])
    expect(slots.slice(0, -1)).toEqual(previous) // the epochs in their grace period: same seals
    const fresh = slots.at(-1)
    expect(previous.some((e) => e.enc === fresh?.enc)).toBe(false)
    // Every epoch opens for the reader, the new one included.
    const opened = openKeyBundle(signed, {
      keyServerPublicKey: harness.keyServer.publicKey,
      recipient: reader.identity,
      now: harness.clock.now,
    })
    expect(opened.groups.find((g) => g.group === 1)?.epochs.length).toBe(slots.length)
    previous = slots
  }
})

test('a seal kept for one holder is never handed to another: two readers of the same epoch get different seals', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const first = await h.enroll('app-first', ['app'])
  const second = await h.enroll('app-second', ['app'])
  const slotsOf = async (identity: typeof first.identity) => {
    const response = await (h as Harness).device(identity, 'GET', '/v1/bundle')
    return sealedSlots((response.body as { bundle: SignedDocument }).bundle)
  }
  const [a, b] = [await slotsOf(first.identity), await slotsOf(second.identity)]
  expect(a.map((e) => e.epoch)).toEqual(b.map((e) => e.epoch))
  expect(a[0]?.enc).not.toBe(b[0]?.enc)
  expect(a[0]?.sealedKey).not.toBe(b[0]?.sealedKey)
})

test('after a re-key the readers come before the writers in the push order (a writer seals under the new epoch at once)', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await h.enroll('thermostat-early', ['thermostat']) // writes group 1, enrolled first
  await h.enroll('app-reader', ['app']) // reads group 1
  await h.enroll('lock-front', ['lock']) // holds neither of group 1's keys
  await h.enroll('app-leaver', ['app'])
  expect((await h.admin('POST', '/v1/admin/principals/app-leaver/revoke')).status).toBe(200)
  const order = (await h.keyServer.principalsHoldingKeys([1])).map((p) => p.id)
  expect(order).toEqual(['app-reader', 'thermostat-early'])
})
