// A revocation the store cut short (disk full, database gone) must not be left half done: the
// principal is marked revoked first, so before this fix a retry answered 409 "already revoked"
// and the revocation list and the re-keying of its groups never happened. Revoking is now safe
// to repeat: a repeat finishes whatever is missing and re-keys once more.
import { RevocationList } from '@smqtt/core'
import type { Harness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { StoreUnavailableError } from '../src/store/key-store.js'
import { errorCode, startSmartHomeHarness } from './_harness.js'

let h: Harness
beforeEach(async () => {
  h = await startSmartHomeHarness()
})
afterEach(() => h.close())

const newestEpoch = async (group: number) => (await h.store.listEpochs(group)).at(-1)?.epoch ?? 0

async function listed(kid: number): Promise<boolean> {
  const published = await h.keyServer.revocationList()
  const list = new RevocationList()
  if (published) list.accept(published, { keyServerPublicKey: h.keyServer.publicKey })
  return list.isRevokedKid(kid)
}

/** Makes the store's `method` fail (as a full disk would) once it has succeeded `after` times. */
function failAfter(method: 'putRevocationList' | 'insertEpoch', after: number): () => void {
  const store = h.store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
  const original = store[method] as (...args: unknown[]) => Promise<unknown>
  let calls = 0
  store[method] = async (...args) => {
    if (calls++ >= after) throw new StoreUnavailableError('disk full')
    return original.apply(h.store, args)
  }
  return () => {
    store[method] = original
  }
}

for (const [cut, method, successes] of [
  ['before the revocation list', 'putRevocationList', 0],
  ['between two re-keyed groups', 'insertEpoch', 1],
] as const)
  test(`a revocation cut short ${cut} is finished by revoking again`, async () => {
    const { kid } = await h.enroll('app-1', ['app']) // holds the keys of all three groups
    const before = await Promise.all([1, 2, 3].map(newestEpoch))
    const restore = failAfter(method, successes)
    const refused = await h.admin('POST', '/v1/admin/principals/app-1/revoke')
    restore()
    expect(refused.status).toBe(503)
    expect(errorCode(refused)).toBe('ERR_STORE_UNAVAILABLE')
    expect((await h.keyServer.getPrincipal('app-1')).status).toBe('revoked')

    const finished = await h.admin('POST', '/v1/admin/principals/app-1/revoke')
    expect(finished.status, finished.text).toBe(200)
    expect(await listed(kid)).toBe(true)
    const after = await Promise.all([1, 2, 3].map(newestEpoch))
    for (const [i, epoch] of after.entries()) expect(epoch).toBeGreaterThan(before[i] as number)

    // A repeat of a complete revocation keeps the list that names it and re-keys once more.
    const version = (await h.store.getRevocationList())?.version
    const again = await h.admin('POST', '/v1/admin/principals/app-1/revoke')
    expect(again.status).toBe(200)
    expect((await h.store.getRevocationList())?.version).toBe(version)
    for (const [i, epoch] of after.entries()) expect(await newestEpoch(i + 1)).toBe(epoch + 1)
  })
