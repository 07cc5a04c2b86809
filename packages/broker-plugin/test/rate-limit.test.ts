// The per-principal PUBLISH rate limit: real clients over TLS through Aedes and the plugin, and
// the token bucket's arithmetic with an explicit clock.
import { closed, type Deployment, startDeployment, within } from '@smqtt/test-kit/broker'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, test } from 'vitest'
import { parseBrokerConfig } from '../src/index.js'
import { PublishRateLimiter } from '../src/publish-rate.js'

const TOPIC = 'home/hall/thermostat/thermostat-1/temp'

let d: Deployment | undefined
afterEach(async () => {
  await d?.close()
  d = undefined
})

function outcome(client: MqttClient, topic: string, payload: Uint8Array | string) {
  const acked = client.publishAsync(topic, Buffer.from(payload), { qos: 1 }).then(() => 'acked' as const)
  return within(Promise.race([acked, closed(client).then(() => 'closed' as const)]), `outcome of PUBLISH ${topic}`)
}

describe('publish rate limit', () => {
  test('a principal past its burst is cut off, reconnecting does not refill it, others are unaffected', async () => {
    // One token per 10 s: nothing refills during the test, however slow the machine.
    d = await startDeployment({ publishRate: { perSecond: 0.1, burst: 3 } })
    const thermostat = await d.enroll('thermostat-1', ['thermostat'])
    const app = await d.enroll('app-1', ['app'])
    d.smqtt.applySnapshot(await d.freshSnapshot())

    const publisher = await d.connectAs(thermostat)
    for (let seq = 1; seq <= 3; seq++)
      expect(await outcome(publisher, TOPIC, await d.seal(thermostat, TOPIC, seq))).toBe('acked')
    expect(await outcome(publisher, TOPIC, await d.seal(thermostat, TOPIC, 4))).toBe('closed')

    const again = await d.connectAs(thermostat)
    expect(await outcome(again, 'public/announcements', 'plaintext counts too')).toBe('closed')

    const other = await d.connectAs(app)
    expect(await outcome(other, 'public/announcements', 'hello')).toBe('acked')

    const refusals = d.logs.filter((l) => l.audit && l.event === 'refused')
    expect(refusals.map((l) => [l.hook, l.reason, l.principal])).toEqual([
      ['publish', 'rate-limited', 'thermostat-1'],
      ['publish', 'rate-limited', 'thermostat-1'],
    ])
    expect(await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_refusals_total')).toContain(
      'hook="publish",reason="rate-limited"} 2',
    )
  })

  test('publishRate: false lifts the limit', async () => {
    d = await startDeployment({ publishRate: false })
    const app = await d.enroll('app-1', ['app'])
    d.smqtt.applySnapshot(await d.freshSnapshot())
    const client = await d.connectAs(app)
    // More than the default burst (2,000), faster than the default rate (1,000/s) refills it.
    const acks = Array.from({ length: 3_000 }, (_, i) => client.publishAsync('public/x', `m${i}`, { qos: 1 }))
    await within(Promise.all(acks), '3,000 PUBACKs', 20_000)
    expect(client.connected).toBe(true)
  })
})

describe('PublishRateLimiter', () => {
  test('bursts, then refills at perSecond up to the burst', () => {
    const limiter = new PublishRateLimiter({ perSecond: 10, burst: 3 })
    const takes = (id: string, at: number, n: number) => Array.from({ length: n }, () => limiter.take(id, at))
    expect(takes('a', 0, 4)).toEqual([true, true, true, false])
    expect(takes('a', 99, 1)).toEqual([false]) // 0.99 of a token
    expect(takes('a', 100, 2)).toEqual([true, false])
    expect(takes('a', 10_000, 4)).toEqual([true, true, true, false]) // capped at the burst
    expect(takes('b', 10_000, 3)).toEqual([true, true, true]) // per principal
    expect(() => new PublishRateLimiter({ perSecond: 0, burst: 1 })).toThrow(RangeError)
  })

  test('config: defaults, burst defaulting to two seconds, false, and strict fields', () => {
    const base = { keyServer: { url: 'https://keys:8443', publicKey: Buffer.alloc(32, 1).toString('base64url') } }
    expect(parseBrokerConfig(base, '/tmp').publishRate).toEqual({ perSecond: 1000, burst: 2000 })
    expect(parseBrokerConfig({ ...base, publishRate: { perSecond: 50 } }, '/tmp').publishRate).toEqual({
      perSecond: 50,
      burst: 100,
    })
    expect(parseBrokerConfig({ ...base, publishRate: false }, '/tmp').publishRate).toBe(false)
    expect(() => parseBrokerConfig({ ...base, publishRate: { perSecond: 0 } }, '/tmp')).toThrow(
      /\$\.publishRate\.perSecond/,
    )
    expect(() => parseBrokerConfig({ ...base, publishRate: { perSecond: 5, brust: 9 } }, '/tmp')).toThrow(
      /\$\.publishRate\.brust/,
    )
    expect(() => parseBrokerConfig({ ...base, verifyWorkers: -1 }, '/tmp')).toThrow(/\$\.verifyWorkers/)
    expect(parseBrokerConfig({ ...base, verifyWorkers: 2 }, '/tmp').verifyWorkers).toBe(2)
  })
})
