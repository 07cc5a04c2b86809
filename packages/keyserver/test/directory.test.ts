// The directory every bundle is built from follows the store's change log (issue 14): an
// enrollment or a revocation re-derives one principal instead of re-reading the fleet, and a
// second key server process sharing the store sees each kind of change another one makes.
import { openKeyBundle, type SignedDocument } from '@smqtt/core'
import { addWriters, type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, expect, test } from 'vitest'
import { KeyServer } from '../src/service/key-server.js'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

/** The principals a signed writer record (`POST /v1/writers`) lists. */
function recordedWriters(response: { body: unknown }): string[] {
  const { record } = response.body as { record: SignedDocument }
  const body = JSON.parse(Buffer.from(record.payload, 'base64url').toString('utf8')) as {
    writers: { principal: string }[]
  }
  return body.writers.map((w) => w.principal)
}

/** Counts the store's whole-fleet reads from now on. */
function countFleetReads(harness: Harness): { readonly count: number } {
  const counter = { count: 0 }
  const listPrincipals = harness.store.listPrincipals.bind(harness.store)
  harness.store.listPrincipals = (options) => {
    counter.count++
    return listPrincipals(options)
  }
  return counter
}

test('an enrollment, its first bundle and a poll read one principal, not the fleet', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await addWriters(h, 2_000)
  const app = await h.enroll('app-reader', ['app'])
  expect((await h.device(app.identity, 'GET', '/v1/bundle')).status).toBe(200) // the directory is built
  const fleetReads = countFleetReads(h)

  const thermostat = await h.enroll('thermostat-new', ['thermostat'])
  expect((await h.device(thermostat.identity, 'GET', '/v1/bundle')).status).toBe(200)
  expect((await h.device(app.identity, 'GET', '/v1/freshness')).status).toBe(200)
  h.clock.now += 3 // past the check interval: one small query, nothing to rebuild
  expect((await h.device(app.identity, 'GET', '/v1/freshness')).status).toBe(200)
  expect(fleetReads.count).toBe(0)

  // The newcomer is a writer of group 1 at once: in a record a reader asks for by its kid.
  const record = await h.device(app.identity, 'POST', '/v1/writers', { group: 1, kids: [thermostat.kid] })
  expect(record.status, record.text).toBe(200)
  expect(recordedWriters(record)).toEqual(['thermostat-new'])
})

test('a second key server process sees what the first changes: enrollment, revocation, rotation, policy', async () => {
  h = await startHarness()
  const harness = h
  await harness.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const app = await harness.enroll('app-reader', ['app'])
  const other = await KeyServer.open({
    store: harness.store,
    masterKey: harness.masterKey,
    now: () => harness.clock.now,
  })
  const bundleFromOther = async () => {
    const principal = await harness.store.getPrincipal('app-reader')
    if (!principal) throw new Error('no app-reader')
    const signed: SignedDocument = await other.bundleFor(principal)
    const opened = openKeyBundle(signed, {
      keyServerPublicKey: other.publicKey,
      recipient: app.identity,
      now: harness.clock.now,
    })
    const thermostats = opened.groups.find((g) => g.group === 1)
    return {
      writers: [...(thermostats?.writers.values() ?? [])].map((w) => w.principal),
      epochs: thermostats?.epochs.map((e) => e.epoch),
      groups: opened.groups.map((g) => g.group),
    }
  }
  expect(await bundleFromOther()).toEqual({ writers: [], epochs: [1], groups: [1, 2, 3] })

  await harness.enroll('thermostat-a', ['thermostat'])
  await harness.enroll('thermostat-b', ['thermostat'])
  harness.clock.now += 3
  expect((await bundleFromOther()).writers).toEqual(['thermostat-a', 'thermostat-b'])

  expect((await harness.admin('POST', '/v1/admin/principals/thermostat-a/revoke')).status).toBe(200)
  harness.clock.now += 3
  expect(await bundleFromOther()).toMatchObject({ writers: ['thermostat-b'], epochs: [1, 2] })
  const reader = await harness.store.getPrincipal('app-reader')
  expect(reader && (await other.freshnessFor(reader)).revocations).toBe(1)

  const readsLocksOnly = {
    ...SMART_HOME_POLICY,
    rules: SMART_HOME_POLICY.rules.filter((r) => !r.topics.includes('home/+/thermostat/#')),
  }
  expect((await harness.admin('PUT', '/v1/admin/policy', { policy: readsLocksOnly })).status).toBe(200)
  harness.clock.now += 3
  expect((await bundleFromOther()).groups).toEqual([2])
})

test('a log pruned past what a process has applied makes it rebuild, and the rebuild is current', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const app = await h.enroll('app-reader', ['app'])
  expect((await h.device(app.identity, 'GET', '/v1/bundle')).status).toBe(200)
  const fleetReads = countFleetReads(h)
  await addWriters(h, 3) // straight into the store, as another process or tool would
  await h.store.pruneDirectoryChanges(0)
  h.clock.now += 3
  const record = await h.device(app.identity, 'POST', '/v1/writers', { group: 1, kids: [2, 3, 4] })
  expect(record.status, record.text).toBe(200)
  expect(recordedWriters(record)).toEqual(['writer-0000000', 'writer-0000001', 'writer-0000002'])
  expect(fleetReads.count).toBe(1)
})
