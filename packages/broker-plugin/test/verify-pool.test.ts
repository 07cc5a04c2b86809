// The signature verification worker pool through the plugin, with real worker threads started
// from the TypeScript sources (real Aedes over TLS, real mqtt.js clients, the real key server).
// The pool on its own is tested in core (packages/core/test/verify-pool.test.ts).
import { closed, type Deployment, type Enrolled, inbox, sleep, startDeployment, within } from '@smqtt/test-kit/broker'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, test } from 'vitest'
import { verifyPoolOf } from '../src/attach.js'
import type { SmqttPluginOptions } from '../src/index.js'

const TOPIC = 'home/hall/thermostat/thermostat-1/temp'

let d: Deployment | undefined
afterEach(async () => {
  await d?.close()
  d = undefined
})

/** A deployment whose every checked signature goes through one worker thread. */
async function deploy(options: Partial<SmqttPluginOptions> = {}) {
  d = await startDeployment({ verifyWorkers: 1, ...options })
  const thermostat = await d.enroll('thermostat-1', ['thermostat'])
  const app = await d.enroll('app-1', ['app'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
  const pool = verifyPoolOf(d.smqtt)
  if (!pool) throw new Error('no verification pool')
  pool.shareWithMainThread = false
  return { d, thermostat, app, pool }
}

/** `app` subscribed to every thermostat (its messages collected in `received`), and `thermostat` connected to publish. */
async function connectBoth(deployment: Deployment, thermostat: Enrolled, app: Enrolled) {
  const subscriber = await deployment.connectAs(app)
  const received = inbox(subscriber)
  await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  return { received, publisher: await deployment.connectAs(thermostat) }
}

const auditOf = (deployment: Deployment, reason: string) =>
  deployment.logs.filter((l) => l.audit && l.event === 'refused' && l.reason === reason)

async function until(condition: () => boolean, what: string, ms = 5_000): Promise<void> {
  await within(
    (async () => {
      while (!condition()) await sleep(10)
    })(),
    what,
    ms,
  )
}

/** QoS 1 publish: 'acked', or 'closed' (MQTT 3.1.1 has no PUBACK error). */
function outcome(client: MqttClient, payload: Uint8Array, ms = 5_000) {
  const acked = client.publishAsync(TOPIC, Buffer.from(payload), { qos: 1 }).then(() => 'acked' as const)
  return within(Promise.race([acked, closed(client, ms).then(() => 'closed' as const)]), 'the PUBLISH outcome', ms)
}

describe('verification pool in the plugin', () => {
  test('valid envelopes are verified on the worker and delivered in order', async () => {
    const { d, thermostat, app, pool } = await deploy()
    expect(pool.workers).toHaveLength(1)
    const { received, publisher } = await connectBoth(d, thermostat, app)
    const envelopes = await Promise.all(
      Array.from({ length: 30 }, (_, i) => d.seal(thermostat, TOPIC, i + 1, { payload: `m${i + 1}` })),
    )
    // Sent back to back: several arrive in one read, are checked as one batch, and must come out in order.
    await Promise.all(envelopes.map((e) => publisher.publishAsync(TOPIC, Buffer.from(e), { qos: 1 })))
    await until(() => received.length === 30, 'all 30 deliveries')
    expect(received.map((m) => new Uint8Array(m.payload))).toEqual(envelopes)
    const signatures = await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_envelope_signatures_total')
    expect(signatures).toContain('result="valid"} 30')
    expect(pool.pending).toBe(0)
  })

  test('a bad signature is refused by the worker', async () => {
    const { d, thermostat } = await deploy()
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 1)
    envelope[envelope.length - 1] = (envelope[envelope.length - 1] as number) ^ 1
    expect(await outcome(publisher, envelope)).toBe('closed')
    expect(auditOf(d, 'signature-invalid')).toHaveLength(1)
  })

  test('sampled: a bad signature found by the worker disconnects and bans the principal', async () => {
    const { d, thermostat } = await deploy({ mode: 'sampled', sampleRate: 0.5, random: () => 0, banSeconds: 60 })
    const publisher = await d.connectAs(thermostat)
    expect(await outcome(publisher, await d.seal(thermostat, TOPIC, 1))).toBe('acked')
    const forged = await d.seal(thermostat, TOPIC, 2)
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1
    expect(await outcome(publisher, forged)).toBe('closed')
    await expect(d.connectAs(thermostat)).rejects.toMatchObject({ code: 5 })
    expect(auditOf(d, 'signature-invalid')).toHaveLength(1)
  })

  test('sampled: envelopes that need no check wait behind one being checked (arrival order kept)', async () => {
    let draws = 0
    const random = () => (draws++ % 2 === 0 ? 0 : 0.99) // every other envelope is sampled
    const { d, thermostat, app, pool } = await deploy({ mode: 'sampled', sampleRate: 0.5, random })
    const { received, publisher } = await connectBoth(d, thermostat, app)
    const envelopes = await Promise.all(Array.from({ length: 10 }, (_, i) => d.seal(thermostat, TOPIC, i + 1)))
    pool.pause(300) // the sampled ones wait on the worker; the others must not overtake them
    await Promise.all(envelopes.map((e) => publisher.publishAsync(TOPIC, Buffer.from(e), { qos: 1 })))
    await until(() => received.length === 10, 'all 10 deliveries')
    expect(received.map((m) => new Uint8Array(m.payload))).toEqual(envelopes)
    const signatures = await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_envelope_signatures_total')
    expect(signatures).toContain('result="valid"} 5')
    expect(signatures).toContain('result="skipped"} 5')
  })

  test('one sequence number being verified cannot pass a second time', async () => {
    const { d, thermostat, app, pool } = await deploy()
    const { received, publisher } = await connectBoth(d, thermostat, app)
    const envelope = await d.seal(thermostat, TOPIC, 7)
    pool.pause(1_000) // the first copy waits on the worker while the second arrives
    publisher.publish(TOPIC, Buffer.from(envelope), { qos: 0 })
    publisher.publish(TOPIC, Buffer.from(envelope), { qos: 0 })
    await closed(publisher)
    await until(() => received.length === 1 && pool.pending === 0, 'the first copy', 5_000)
    await sleep(200)
    expect(received).toHaveLength(1)
    expect(auditOf(d, 'replay').map((l) => l.detail)).toEqual(['the same sequence number is being verified'])
  })

  test('a killed worker fails closed: its pending publishes are refused, then the pool recovers', async () => {
    const { d, thermostat, app, pool } = await deploy()
    const { received, publisher } = await connectBoth(d, thermostat, app)
    const [worker] = pool.workers
    pool.pause(10_000)
    const refused = outcome(publisher, await d.seal(thermostat, TOPIC, 1))
    await until(() => pool.pending === 1, 'the envelope to reach the worker')
    await worker?.terminate()
    expect(await refused).toBe('closed')
    expect(auditOf(d, 'verify-unavailable')).toHaveLength(1)
    expect(
      await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_verify_worker_failures_total'),
    ).toContain('reason="crashed"} 1')
    expect(received).toHaveLength(0)

    await until(() => pool.workers.length === 1 && pool.workers[0] !== worker, 'a new worker')
    const again = await d.connectAs(thermostat)
    expect(await outcome(again, await d.seal(thermostat, TOPIC, 2))).toBe('acked')
    await until(() => received.length === 1, 'the delivery through the new worker')
  })

  test('closing the Aedes broker ends the worker threads, without plugin.close()', async () => {
    const { d, pool } = await deploy()
    const [worker] = pool.workers
    const exited = new Promise<number>((resolve) => worker?.once('exit', resolve))
    await new Promise<void>((resolve) => d.broker.close(() => resolve()))
    await within(exited, 'the worker to exit')
    expect(pool.workers).toHaveLength(0)
  })
})
