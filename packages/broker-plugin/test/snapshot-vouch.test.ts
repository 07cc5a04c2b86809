// Attack: a path to the key server that answers for it (a compromised TLS-terminating proxy, a
// stolen key-server TLS key). Scheduled pulls are conditional (issue 14): the broker names the
// tag signed into the snapshot it holds, and while that content is current the key server
// answers 304 with a signed notice instead of the snapshot. Such a path can answer anything over
// TLS but cannot sign: a 304 it makes up, a notice it replays, or a genuine notice for other
// content must not count as "nothing changed", or it could hide a revocation from the broker for
// as long as it likes. Real key server over HTTPS, a real HTTPS proxy in front of it, the plugin
// on a real Aedes pulling through the proxy. The key server keeps near the wall clock (requests
// are signed with it) and moves a second per pull; the broker's clock moves as the tests say.
import { openBrokerSnapshotNotice, SNAPSHOT_NOTICE_HEADER } from '@smqtt/core'
import type { Harness } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, expect, test } from 'vitest'
import type { SmqttPlugin } from '../src/index.js'
import { type KeyServerPath, type PathStack, startPathStack } from './_keyserver-path.js'

let h: Harness
let plugin: SmqttPlugin
let path: KeyServerPath

/** The path answers conditional requests itself: 304 with this notice header (none: a bare 304). */
const forge = (notice: string | undefined) => {
  path.intercept = (request) =>
    request.headers['if-none-match'] === undefined
      ? undefined
      : {
          status: 304,
          headers: notice === undefined ? {} : { [SNAPSHOT_NOTICE_HEADER]: notice },
          body: Buffer.alloc(0),
        }
}
/** The broker's clock, unix seconds. */
let brokerNow = Math.floor(Date.now() / 1000)

let stack: PathStack
beforeAll(async () => {
  stack = await startPathStack(
    async (h) => {
      h.clock.now = brokerNow
      await h.enroll('thermostat-1', ['thermostat'])
    },
    () => brokerNow,
    { staleAfterSeconds: 90 },
  )
  ;({ h, path, plugin } = stack)
}, 60_000)

afterAll(async () => {
  await stack?.close()
})

const count = async (metric: { get(): Promise<{ values: { value: number }[] }> }) =>
  (await metric.get()).values.reduce((sum, v) => sum + v.value, 0)
const statusOf = (id: string) => plugin.snapshot?.principals.find((p) => p.id === id)?.status

/** A genuine notice, as the key server answers a broker holding the current content. */
let capturedNotice: string | undefined

test('unchanged snapshot: each pull is answered by a signed notice instead of the snapshot, and counts as a sync', async () => {
  const applied = await count(plugin.metrics.snapshotsApplied)
  for (let pull = 1; pull <= 2; pull++) {
    brokerNow += 60
    h.clock.now += 1
    expect(plugin.state.snapshotAge).toBe(60)

    expect(await plugin.pull()).toBe(true)
    const last = path.answered.at(-1)
    expect(last).toMatchObject({ status: 304, bodyBytes: 0 })
    capturedNotice ??= last?.notice
    const notice = openBrokerSnapshotNotice(JSON.parse(last?.notice ?? 'null'), h.keyServer.publicKey)
    expect(notice).toEqual({ issuedAt: h.clock.now, tag: plugin.snapshot?.tag })
    // Vouched current at the key server's time: fresh again, and nothing fetched or indexed again.
    expect(plugin.state).toMatchObject({ snapshotIssuedAt: h.clock.now, snapshotAge: 0, stale: false })
    expect(await count(plugin.metrics.snapshotsVouched)).toBe(pull)
  }
  expect(await count(plugin.metrics.snapshotsApplied)).toBe(applied)
})

test('304 made up by the path, replayed notice, notice for other content: none is a sync, the broker goes stale', async () => {
  const revoked = await h.admin('POST', '/v1/admin/principals/thermostat-1/revoke', { reason: 'stolen' })
  expect(revoked.status).toBe(200)
  // The notice the key server signs now names the content with the revocation, not the one held.
  const current = await h.keyServer.brokerSnapshotUnless(undefined)
  if (!('snapshot' in current)) throw new Error('expected the snapshot')
  const otherContent = await h.keyServer.brokerSnapshotUnless(current.tag)
  if (!('notice' in otherContent)) throw new Error('expected a notice')

  const failures = await count(plugin.metrics.snapshotErrors)
  const attempts: (string | undefined)[] = [
    undefined, // a bare 304
    capturedNotice, // a genuine notice for the content held, replayed: older than what vouched since
    JSON.stringify(otherContent.notice), // genuine, newer, but for the content with the revocation
    '{"payload":"e30","signature":"AAAA"}', // not a notice the pinned key signed
  ]
  for (const notice of attempts) {
    forge(notice)
    brokerNow += 30
    h.clock.now += 1
    expect(await plugin.pull()).toBe(false)
  }
  path.intercept = undefined
  expect(path.answered.slice(-4).map((a) => a.status)).toEqual([304, 304, 304, 304])
  expect(await count(plugin.metrics.snapshotErrors)).toBe(failures + 4)
  // The revocation is hidden, but the broker says so: its snapshot is 120 s old and stale.
  expect(statusOf('thermostat-1')).toBe('active')
  expect(plugin.state).toMatchObject({ snapshotAge: 120, stale: true })
  expect(await count(plugin.metrics.snapshotsVouched)).toBe(2)
})

test('an honest path again: the next pull brings the revocation', async () => {
  h.clock.now += 1
  brokerNow += 1
  expect(await plugin.pull()).toBe(true)
  expect(path.answered.at(-1)?.status).toBe(200)
  expect(statusOf('thermostat-1')).toBe('revoked')
  expect(plugin.state).toMatchObject({ snapshotAge: 0, stale: false })
  expect(plugin.snapshot?.tag).not.toBe(
    openBrokerSnapshotNotice(JSON.parse(capturedNotice ?? 'null'), h.keyServer.publicKey).tag,
  )
})
