// Attack: a path to the key server that answers for it (a compromised TLS-terminating proxy, a
// stolen key-server TLS key). Scheduled pulls are conditional (issue 14): the broker names the
// tag signed into the snapshot it holds, and while that content is current the key server
// answers 304 with a signed notice instead of the snapshot. Such a path can answer anything over
// TLS but cannot sign: a 304 it makes up, a notice it replays, or a genuine notice for other
// content must not count as "nothing changed", or it could hide a revocation from the broker for
// as long as it likes. Real key server over HTTPS, a real HTTPS proxy in front of it, the plugin
// on a real Aedes pulling through the proxy. The key server keeps near the wall clock (requests
// are signed with it) and moves a second per pull; the broker's clock moves as the tests say.
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { createServer, request as httpsRequest, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { openBrokerSnapshotNotice, SNAPSHOT_NOTICE_HEADER } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { Aedes } from 'aedes'
import { pino } from 'pino'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { attachSmqtt, type SmqttPlugin } from '../src/index.js'

let h: Harness
let broker: Aedes
let plugin: SmqttPlugin
let proxy: Server

/** What the proxy answered, newest last. */
const answered: { status: number; bodyBytes: number; notice: string | undefined }[] = []
/** Set by a test: the path answers conditional requests itself, with this status and notice header. */
let forge: { notice?: string } | undefined
/** The broker's clock, unix seconds. */
let brokerNow = Math.floor(Date.now() / 1000)

beforeAll(async () => {
  h = await startHarness()
  h.clock.now = brokerNow
  const put = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  await h.enroll('thermostat-1', ['thermostat'])
  const brokerPrincipal = await h.enroll('broker-1', ['broker'])

  // The path: forwards every request to the key server, or answers a conditional one itself.
  const pki = `${h.dir}/pki`
  proxy = createServer(
    { key: readFileSync(`${pki}/server.key`), cert: readFileSync(`${pki}/server.pem`) },
    (req, res) => {
      if (forge && req.headers['if-none-match'] !== undefined) {
        const headers: Record<string, string> =
          forge.notice === undefined ? {} : { [SNAPSHOT_NOTICE_HEADER]: forge.notice }
        answered.push({ status: 304, bodyBytes: 0, notice: forge.notice })
        return void res.writeHead(304, headers).end()
      }
      const upstream = httpsRequest(
        new URL(req.url ?? '/', h.url),
        { method: req.method, headers: req.headers as IncomingHttpHeaders, ca: h.caPem },
        (reply) => {
          const chunks: Buffer[] = []
          reply.on('data', (chunk: Buffer) => chunks.push(chunk))
          reply.on('end', () => {
            const body = Buffer.concat(chunks)
            const notice = reply.headers[SNAPSHOT_NOTICE_HEADER]
            answered.push({
              status: reply.statusCode ?? 0,
              bodyBytes: body.length,
              notice: notice as string | undefined,
            })
            res.writeHead(reply.statusCode ?? 502, reply.headers).end(body)
          })
        },
      )
      req.pipe(upstream)
    },
  )
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))

  broker = await Aedes.createBroker()
  plugin = await attachSmqtt(broker, {
    keyServerPublicKey: h.keyServer.publicKey,
    keyServer: {
      url: `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      ca: h.caPem,
      identity: brokerPrincipal.identity,
      pullIntervalMs: 3_600_000, // only the pulls the tests make
    },
    staleAfterSeconds: 90,
    now: () => brokerNow,
    logger: pino({ level: 'silent' }),
  })
}, 60_000)

afterAll(async () => {
  await plugin?.close()
  await new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve()))
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()))
  await h?.close()
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
    const last = answered.at(-1)
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
    forge = notice === undefined ? {} : { notice }
    brokerNow += 30
    h.clock.now += 1
    expect(await plugin.pull()).toBe(false)
  }
  forge = undefined
  expect(answered.slice(-4).map((a) => a.status)).toEqual([304, 304, 304, 304])
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
  expect(answered.at(-1)?.status).toBe(200)
  expect(statusOf('thermostat-1')).toBe('revoked')
  expect(plugin.state).toMatchObject({ snapshotAge: 0, stale: false })
  expect(plugin.snapshot?.tag).not.toBe(
    openBrokerSnapshotNotice(JSON.parse(capturedNotice ?? 'null'), h.keyServer.publicKey).tag,
  )
})
