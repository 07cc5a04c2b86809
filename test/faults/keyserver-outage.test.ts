// Fault: the key server is killed (SIGKILL) during traffic, then restarted on the same SQLite
// file and port. Meanwhile the broker enforces its last snapshot and says so (log, stale gauge),
// secure clients keep sealing and opening with the keys they hold, and no QoS 1 message is lost.
// After the restart the broker pulls again, and a revocation made then closes the revoked
// principal's session and keeps it out.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadBrokerConfig, type RunningBroker, startBroker } from '@smqtt/broker-plugin'
import type { Enrollment, SecureClient } from '@smqtt/client'
import { afterAll, beforeAll, expect, test } from 'vitest'
import {
  brokerConfig,
  connectAs,
  type KeyServerProcess,
  keyServerProcess,
  type Proc,
  putSmartHomePolicy,
  report,
  secureClient,
  settled,
  stopAll,
  THERMOSTAT_TOPIC,
  tally,
  until,
} from './_cluster.js'

const BATCH = 100

let dir: string
let ks: KeyServerProcess
let ksProc: Proc
let broker: RunningBroker
const logs: Record<string, unknown>[] = []
const clients: SecureClient[] = []
let thermostat: Enrollment
let app: Enrollment
let doomed: Enrollment
let latecomer: Enrollment

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'smqtt-fault-ks-'))
  ks = await keyServerProcess(join(dir, 'keyserver'))
  ksProc = await ks.start()
  await putSmartHomePolicy(ks)
  thermostat = await ks.enroll('thermostat-1', ['thermostat'])
  app = await ks.enroll('app-1', ['app'])
  doomed = await ks.enroll('app-2', ['app'])
  latecomer = await ks.enroll('app-3', ['app'])
  // Pull every second: staleness shows after 3 s, and the restart is noticed within 1 s.
  const file = await brokerConfig(ks, dir, 'node', { pullIntervalSeconds: 1 })
  broker = await startBroker(loadBrokerConfig(file), {
    logDestination: { write: (line: string) => void logs.push(JSON.parse(line)) },
  })
}, 150_000)

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})))
  await broker?.close()
  await stopAll()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function staleGauge(): Promise<string | undefined> {
  return /^smqtt_broker_snapshot_stale (\d)$/m.exec(await broker.plugin.metrics.registry.metrics())?.[1]
}

test('key server killed mid-traffic, restarted on the same store: zero QoS 1 loss, stale then resynced, revocation after restart enforced', async () => {
  const publisher = await secureClient(ks, thermostat, broker.urls.mqtts)
  const subscriber = await secureClient(ks, app, broker.urls.mqtts)
  const victim = await secureClient(ks, doomed, broker.urls.mqtts, { reconnectPeriod: 0 })
  clients.push(publisher, subscriber, victim)
  const { seen, deliveries } = tally(subscriber)
  await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  await victim.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  let sent = 0
  const publishBatch = () =>
    Promise.all(
      Array.from({ length: BATCH }, () => publisher.publishAsync(THERMOSTAT_TOPIC, String(sent++), { qos: 1 })),
    )

  // Traffic while the key server is killed: the publishes in flight do not depend on it.
  const first = publishBatch()
  await ksProc.kill('SIGKILL')
  await first
  await publishBatch()
  await until(
    async () => broker.plugin.state.stale && (await staleGauge()) === '1',
    'the broker to report a stale snapshot',
  )
  expect(logs.some((l) => l.msg === 'snapshot pull failed; enforcing the last snapshot')).toBe(true)
  // A secure client asking for keys now hears of the outage, keeps the keys it holds, and goes on.
  await expect(subscriber.refreshKeys()).rejects.toThrow(/ECONNREFUSED/)
  await publishBatch()
  // A principal the cached snapshot knows can still log in.
  const during = await connectAs(ks, latecomer, broker.urls.mqtts)
  await during.endAsync(true)

  // Restart on the same SQLite file and port: the broker resyncs by itself.
  ksProc = await ks.start()
  await until(async () => !broker.plugin.state.stale && (await staleGauge()) === '0', 'the broker to resync')
  await publishBatch()
  await settled(() => seen.size === sent, 20_000)
  const duplicates = subscriber.stats.rejected.ERR_REPLAY ?? 0
  report({
    fault: 'keyserver-killed',
    sent,
    received: seen.size,
    lost: sent - seen.size,
    duplicates,
    deliveries: deliveries(),
  })
  expect(seen.size).toBe(sent)

  // A change made after the restart reaches the broker: the revoked principal is cut off.
  let victimClosed = false
  victim.once('close', () => {
    victimClosed = true
  })
  expect((await ks.admin('POST', '/v1/admin/principals/app-2/revoke')).status).toBe(200)
  await until(() => victimClosed, 'the revoked session to close', 10_000)
  await expect(connectAs(ks, doomed, broker.urls.mqtts)).rejects.toMatchObject({ code: 5 })
}, 120_000)
