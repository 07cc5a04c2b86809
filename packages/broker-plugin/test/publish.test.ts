import {
  closed,
  type Deployment,
  type Enrolled,
  firstMessage,
  inbox,
  startDeployment,
  within,
} from '@smqtt/test-kit/broker'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'

let d: Deployment
let thermostat: Enrolled
let app: Enrolled
beforeEach(async () => {
  d = await startDeployment()
  thermostat = await d.enroll('thermostat-1', ['thermostat'])
  app = await d.enroll('app-1', ['app'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
})
afterEach(async () => {
  await d.close()
})

const TOPIC = 'home/hall/thermostat/thermostat-1/temp'
const auditReasons = () => d.logs.filter((l) => l.audit && l.event === 'refused').map((l) => l.reason)

/** Publishes QoS 1 and reports what the client saw: 'acked' or 'closed' (MQTT 3.1.1 has no PUBACK error). */
async function publishOutcome(client: import('mqtt').MqttClient, topic: string, payload: Uint8Array | string) {
  const acked = client.publishAsync(topic, Buffer.from(payload), { qos: 1 }).then(() => 'acked' as const)
  const gone = closed(client).then(() => 'closed' as const)
  return within(Promise.race([acked, gone]), `outcome of PUBLISH ${topic}`)
}

describe('publish', () => {
  test('happy path: a sealed envelope goes from publisher to subscriber through the plugin', async () => {
    const subscriber = await d.connectAs(app)
    const received = inbox(subscriber)
    const granted = await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    expect(granted[0]?.qos).toBe(1)
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 1)
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('acked')
    const delivered = await firstMessage(received, 'delivery')
    expect(delivered.topic).toBe(TOPIC)
    expect(new Uint8Array(delivered.payload)).toEqual(envelope)
  })

  test('plaintext on a plaintext topic needs only the ACL', async () => {
    const publisher = await d.connectAs(thermostat)
    expect(await publishOutcome(publisher, 'public/announcements', 'hi')).toBe('acked')
  })

  test.each([
    ['outside the ACL', 'home/hall/thermostat/thermostat-2/temp', 'envelope', 'acl-denied'],
    ['plaintext on an encrypted topic', TOPIC, 'plain', 'not-an-envelope'],
    ['a topic outside every group and not plaintext', 'misc/x', 'plain', 'no-group'],
    ['a control topic', 'smqtt/control/brokers', 'plain', 'control-topic'],
    ['a $SYS topic', '$SYS/broker/x', 'plain', 'reserved-topic'],
  ])('refused (connection closed under 3.1.1): %s', async (_, topic, kind, reason) => {
    const publisher = await d.connectAs(thermostat)
    const payload = kind === 'envelope' ? await d.seal(thermostat, TOPIC, 1) : 'plain text'
    expect(await publishOutcome(publisher, topic, payload)).toBe('closed')
    expect(auditReasons()).toContain(reason)
  })
})

describe('envelope enforcement', () => {
  test('an envelope naming another sender is refused', async () => {
    const publisher = await d.connectAs(thermostat)
    const forged = await d.seal(app, TOPIC, 1) // app reads group 1, so it holds the key, but is not this session
    expect(await publishOutcome(publisher, TOPIC, forged)).toBe('closed')
    expect(auditReasons()).toEqual(['wrong-sender'])
  })

  test('a bad signature is refused', async () => {
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 1)
    envelope[envelope.length - 1] = (envelope[envelope.length - 1] as number) ^ 1
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('closed')
    expect(auditReasons()).toEqual(['signature-invalid'])
    expect(await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_refusals_total')).toContain(
      'hook="publish",reason="signature-invalid"} 1',
    )
  })

  test('an unknown epoch is refused', async () => {
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 1)
    envelope[3] = 99 // epoch varint (group 1 and kid fit one byte each)
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('closed')
    expect(auditReasons()).toEqual(['unknown-epoch'])
  })

  test('a retired epoch is refused once a new snapshot retires it', async () => {
    const publisher = await d.connectAs(thermostat)
    const old = await d.seal(thermostat, TOPIC, 1)
    await d.h.keyServer.rotateGroup(1, { immediate: true, actor: 'test', reason: 'test' })
    d.h.clock.now += 3600 // past the grace period of the old epoch
    expect(d.smqtt.applySnapshot(await d.freshSnapshot())).toBe(true)
    expect(await publishOutcome(publisher, TOPIC, old)).toBe('closed')
    expect(auditReasons()).toEqual(['unknown-epoch'])
  })

  test('a replayed sequence number is refused; a stale send time too', async () => {
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 5)
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('acked')
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('closed')
    const again = await d.connectAs(thermostat)
    const stale = await d.seal(thermostat, TOPIC, 6, { sentAt: Math.floor(Date.now() / 1000) - 3600 })
    expect(await publishOutcome(again, TOPIC, stale)).toBe('closed')
    expect(auditReasons()).toEqual(['replay', 'stale'])
  })

  test('reordering within the window is accepted once', async () => {
    const publisher = await d.connectAs(thermostat)
    expect(await publishOutcome(publisher, TOPIC, await d.seal(thermostat, TOPIC, 10))).toBe('acked')
    expect(await publishOutcome(publisher, TOPIC, await d.seal(thermostat, TOPIC, 8))).toBe('acked')
    expect(await publishOutcome(publisher, TOPIC, await d.seal(thermostat, TOPIC, 8))).toBe('closed')
  })
})

describe('enforcement modes', () => {
  test('sampled: a bad signature disconnects and bans the principal', async () => {
    await d.close()
    d = await startDeployment({ mode: 'sampled', sampleRate: 0.5, random: () => 0, banSeconds: 60 })
    thermostat = await d.enroll('thermostat-1', ['thermostat'])
    d.smqtt.applySnapshot(await d.freshSnapshot())
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 1)
    envelope[envelope.length - 1] = (envelope[envelope.length - 1] as number) ^ 1
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('closed')
    await expect(d.connectAs(thermostat)).rejects.toMatchObject({ code: 5 })
    expect(auditReasons()).toEqual(['signature-invalid', 'principal-inactive'])
  })

  test('binding: the sender must be the session principal, the signature is not checked', async () => {
    await d.close()
    d = await startDeployment({ mode: 'binding' })
    thermostat = await d.enroll('thermostat-1', ['thermostat'])
    app = await d.enroll('app-1', ['app'])
    d.smqtt.applySnapshot(await d.freshSnapshot())
    const publisher = await d.connectAs(thermostat)
    const envelope = await d.seal(thermostat, TOPIC, 1)
    envelope[envelope.length - 1] = (envelope[envelope.length - 1] as number) ^ 1
    expect(await publishOutcome(publisher, TOPIC, envelope)).toBe('acked') // subscribers will refuse it
    expect(await publishOutcome(publisher, TOPIC, await d.seal(app, TOPIC, 2))).toBe('closed')
    expect(auditReasons()).toEqual(['wrong-sender'])
  })
})
