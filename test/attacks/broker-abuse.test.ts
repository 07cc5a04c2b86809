// The attack catalogue of issue 12, broker half: abuse of the broker's own bookkeeping (CONNECT
// budgets, the audit log, the DUP flag, one-time CONNECT passwords, the control-topic rule).
// Real parts: the key server over HTTPS, Aedes with the plugin behind TLS
// (`@smqtt/test-kit/broker`), mqtt.js attackers from several loopback addresses.
// The broker's clock is injectable, so time windows are crossed without sleeping. Each test
// asserts the refusal and its reason code in the broker's audit entries.
import { createConnectPassword, generateIdentity, principalControlTopic } from '@smqtt/core'
import {
  closed,
  type Deployment,
  type Enrolled,
  inbox,
  sleep,
  startDeployment,
  TEST_POLICY,
  within,
} from '@smqtt/test-kit/broker'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'

const TOPIC = 'home/h1/thermostat/thermostat-1/temp'
/** The default per-principal CONNECT budget (reconnect loops of one device, 10 s windows). */
const PER_CLIENT_ID = 20

/** The broker's clock: real time unless a test pins it. */
let clock: number | undefined
const now = () => clock ?? Math.floor(Date.now() / 1000)

let d: Deployment
let seen = 0
beforeAll(async () => {
  // Every legitimate client connects from 127.0.0.1: only the per-address CONNECT limit is raised.
  d = await startDeployment({ connectLimits: { perAddress: 10_000 }, now })
  d.smqtt.applySnapshot(await d.freshSnapshot())
}, 60_000)
afterAll(async () => {
  await d?.close()
})
beforeEach(() => {
  clock = undefined
  seen = d.logs.length
})

/** Audit entries logged during the current test. */
const audit = () => d.logs.slice(seen).filter((line) => line.audit === true)
const refusals = () => audit().filter((line) => line.event === 'refused')

async function enroll(id: string, roles: string[]): Promise<Enrolled> {
  const enrolled = await d.enroll(id, roles)
  d.smqtt.applySnapshot(await d.freshSnapshot())
  return enrolled
}

/** How the broker took a QoS 1 PUBLISH: acknowledged, or refused (Aedes closes the connection). */
function outcome(client: MqttClient, payload: Uint8Array, options: { dup?: boolean } = {}) {
  const acked = client.publishAsync(TOPIC, Buffer.from(payload), { qos: 1, ...options }).then(() => 'acked' as const)
  return within(Promise.race([acked, closed(client).then(() => 'closed' as const)]), 'the outcome of the PUBLISH')
}

async function refusedCount(hook: string, reason: string): Promise<number> {
  const text = await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_refusals_total')
  const match = new RegExp(`hook="${hook}",reason="${reason}"} (\\d+)`).exec(text)
  return Number(match?.[1] ?? 0)
}

test('client-id lockout by unauthenticated CONNECT flood: the real device still connects', async () => {
  const lock = await enroll('lock-1', ['lock'])
  // 21 CONNECTs per 10 s naming the device's client id, from three addresses (7 failures each:
  // under the ban threshold), without its key.
  const mallory = generateIdentity('lock-1')
  const addresses = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
  for (let i = 0; i <= PER_CLIENT_ID; i++) {
    const attempt = d.connect({
      clientId: 'lock-1',
      username: 'lock-1',
      password: createConnectPassword(mallory, 'lock-1'),
      localAddress: addresses[i % addresses.length],
    } as IClientOptions)
    await expect(attempt).rejects.toMatchObject({ code: 4 })
  }
  const device = await d.connectAs(lock)
  expect(device.connected).toBe(true)
  device.end(true)
  expect(new Set(refusals().map((r) => `${r.reason} ${r.clientId}`))).toEqual(new Set(['bad-credentials lock-1']))
  expect(new Set(refusals().map((r) => r.address))).toEqual(new Set(addresses))

  // Flapping protection still holds for the authenticated device: its own reconnect loop is cut off.
  for (let i = 1; i < PER_CLIENT_ID; i++) (await d.connectAs(lock)).end(true)
  await expect(d.connectAs(lock)).rejects.toMatchObject({ code: 3 })
  expect(refusals().at(-1)).toMatchObject({ hook: 'connect', reason: 'rate-limited', principal: 'lock-1' })
}, 30_000)

test('refused-SUBSCRIBE flood with 60 KB filters: audit lines bounded and aggregated, every refusal counted', async () => {
  const app = await enroll('app-2', ['app'])
  const client = await d.connectAs(app)
  const before = await refusedCount('subscribe', 'acl-denied')
  const FLOOD = 100
  const huge = (i: number) => `home/${i}/${'x'.repeat(60_000)}`
  const subacks = Array.from(
    { length: FLOOD },
    (_, i) => new Promise<void>((resolve) => client.subscribe(huge(i), { qos: 0 }, () => resolve())),
  )
  await within(Promise.all(subacks), `${FLOOD} SUBACKs`, 15_000)
  expect(client.connected).toBe(true) // a refused SUBSCRIBE keeps the session
  expect(await refusedCount('subscribe', 'acl-denied')).toBe(before + FLOOD) // counted regardless

  const logged = refusals()
  expect(logged.length).toBeGreaterThan(0)
  expect(logged.length).toBeLessThanOrEqual(20)
  for (const line of logged) {
    expect(line).toMatchObject({ hook: 'subscribe', reason: 'acl-denied', principal: 'app-2' })
    expect(String(line.topic)).toMatch(/…\[\d+ chars\]$/)
  }
  const bytes = audit().reduce((sum, line) => sum + JSON.stringify(line).length, 0)
  expect(bytes).toBeLessThan(20 * 1_024)

  // Once the interval is over, the next refusal first logs what was held back.
  clock = now() + 10
  await new Promise<void>((resolve) => client.subscribe(huge(FLOOD), { qos: 0 }, () => resolve()))
  const summary = audit().find((line) => line.event === 'refusals-suppressed')
  expect(summary).toMatchObject({
    hook: 'subscribe',
    reason: 'acl-denied',
    principal: 'app-2',
    count: FLOOD - logged.length,
  })
  expect(refusals().at(-1)).toMatchObject({ hook: 'subscribe', reason: 'acl-denied' })
}, 30_000)

describe('DUP flag', () => {
  let thermostat: Enrolled
  let received: { topic: string; payload: Buffer }[]
  beforeAll(async () => {
    thermostat = await enroll('thermostat-1', ['thermostat'])
    const reader = await enroll('app-1', ['app'])
    const subscriber = await d.connectAs(reader)
    await within(subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 }), 'SUBACK')
    received = inbox(subscriber)
  })

  test('forged DUP retransmission (full mode): a tampered envelope under a used sequence number -> signature-invalid, not forwarded', async () => {
    const envelope = await d.seal(thermostat, TOPIC, 1)
    const sender = await d.connectAs(thermostat)
    expect(await outcome(sender, envelope)).toBe('acked')
    await within(
      (async () => {
        while (received.length < 1) await sleep(10)
      })(),
      'the original delivered',
    )
    const forged = Buffer.from(envelope)
    forged[forged.length - 20] = (forged[forged.length - 20] as number) ^ 0xff
    expect(await outcome(sender, forged, { dup: true })).toBe('closed')
    expect(refusals().map((r) => [r.hook, r.reason, r.principal])).toEqual([
      ['publish', 'signature-invalid', 'thermostat-1'],
    ])
    await sleep(100)
    expect(received.map((m) => Buffer.compare(m.payload, envelope))).toEqual([0])

    // A true retransmission (its PUBACK was lost) is byte for byte what was verified: still acknowledged.
    const again = await d.connectAs(thermostat)
    expect(await outcome(again, envelope, { dup: true })).toBe('acked')
  })
})

describe('DUP flag (sampled mode)', () => {
  let sampled: Deployment
  beforeAll(async () => {
    // No envelope is picked for sampling: only the DUP rule can get the signature checked.
    sampled = await startDeployment({ mode: 'sampled', sampleRate: 0.05, random: () => 0.99, banSeconds: 60 })
  }, 60_000)
  afterAll(async () => {
    await sampled?.close()
  })

  test('forged DUP retransmission (sampled mode): verified anyway -> signature-invalid, the sender banned', async () => {
    const thermostat = await sampled.enroll('thermostat-1', ['thermostat'])
    sampled.smqtt.applySnapshot(await sampled.freshSnapshot())
    const sender = await sampled.connectAs(thermostat)
    const envelope = await sampled.seal(thermostat, TOPIC, 1)
    expect(await outcome(sender, envelope)).toBe('acked')
    const forged = Buffer.from(envelope)
    forged[forged.length - 20] = (forged[forged.length - 20] as number) ^ 0xff
    expect(await outcome(sender, forged, { dup: true })).toBe('closed')
    await expect(sampled.connectAs(thermostat)).rejects.toMatchObject({ code: 5 })
    const reasons = sampled.logs
      .filter((line) => line.audit === true && line.event === 'refused')
      .map((r) => [r.hook, r.reason, r.detail])
    expect(reasons).toEqual([
      ['publish', 'signature-invalid', 'banned for 60 s'],
      ['connect', 'principal-inactive', 'active'],
    ])
  })
})

test('one-time CONNECT password replayed at the far edge of its window: refused -> replayed-password', async () => {
  const app = await enroll('app-3', ['app'])
  const stamped = Math.floor(Date.now() / 1000)
  const password = createConnectPassword(app.identity, 'app-3', { now: stamped })
  const login = { clientId: 'app-3', username: 'app-3', password }
  clock = stamped - 60 // the earliest second the broker accepts it
  ;(await d.connect(login)).end(true)
  clock = stamped + 60 // the latest second the broker accepts it
  await expect(d.connect(login)).rejects.toMatchObject({ code: 4 })
  expect(refusals().map((r) => [r.hook, r.reason, r.principal])).toEqual([['connect', 'replayed-password', 'app-3']])
})

test('control-topic rule: +/+ reaches no control topic and is granted where the ACL allows it; +/+/+, # and smqtt/# are refused -> control-topic', async () => {
  const policy = {
    ...TEST_POLICY,
    rules: [
      ...TEST_POLICY.rules,
      { effect: 'allow', actions: ['subscribe'], topics: ['+/+', '+/+/+'], roles: ['wall'] },
    ],
  }
  const put = await d.h.admin('PUT', '/v1/admin/policy', { policy })
  expect(put.status).toBe(200)
  const wall = await enroll('wall-1', ['wall'])
  const client = await d.connectAs(wall)
  const granted = async (filter: string) => {
    try {
      const [grant] = await within(client.subscribeAsync(filter, { qos: 1 }), `SUBACK ${filter}`)
      return grant?.qos
    } catch (err) {
      return (err as { packet?: { granted?: number[] } }).packet?.granted?.[0]
    }
  }
  expect(await granted('+/+')).toBe(1)
  expect(await granted('+/+/+')).toBe(128)
  expect(await granted('#')).toBe(128)
  expect(await granted('smqtt/#')).toBe(128)
  expect(await granted(principalControlTopic('wall-1'))).toBe(1) // its own
  expect(refusals().map((r) => [r.topic, r.reason])).toEqual([
    ['+/+/+', 'control-topic'],
    ['#', 'control-topic'],
    ['smqtt/#', 'control-topic'],
  ])
})
