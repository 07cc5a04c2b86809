// Push over a third-party broker (the Mosquitto on 127.0.0.1:1883): bundles and snapshots
// arrive on the control topics, signed and sealed, and open only for their recipient.
import { BROKER_CONTROL_TOPIC, openBrokerSnapshot, openKeyBundle, principalControlTopic } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import mqtt, { type MqttClient } from 'mqtt'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { type MqttPush, startMqttPush } from '../src/service/mqtt-push.js'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'
let h: Harness
let push: MqttPush
let observer: MqttClient
const retainedTopics = new Set<string>()

beforeEach(async () => {
  h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  push = await startMqttPush(h.keyServer, { brokerUrl: MOSQUITTO, coalesceMs: 20 })
  observer = await mqtt.connectAsync(MOSQUITTO, { connectTimeout: 5000, reconnectPeriod: 0 })
})

afterEach(async () => {
  await push.close()
  for (const topic of retainedTopics) await observer.publishAsync(topic, '', { retain: true, qos: 1 }) // leave no retained state behind
  await observer.endAsync()
  await h.close()
})

/** Resolves with the first message on `topic` that `accept` parses; bounded by a timeout. */
function next<T>(topic: string, accept: (body: unknown) => T | undefined, timeoutMs = 5000): Promise<T> {
  retainedTopics.add(topic)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`nothing acceptable on ${topic} within ${timeoutMs} ms`)),
      timeoutMs,
    )
    const onMessage = (received: string, payload: Buffer) => {
      if (received !== topic || payload.length === 0) return
      try {
        const value = accept(JSON.parse(payload.toString('utf8')))
        if (value === undefined) return
        clearTimeout(timer)
        observer.off('message', onMessage)
        resolve(value)
      } catch {
        // a message of an earlier run, signed by another key server: not ours
      }
    }
    observer.on('message', onMessage)
    observer.subscribe(topic, { qos: 1 })
  })
}

test('a rotation pushes a new bundle to every member, and a snapshot to brokers', async () => {
  const suffix = Math.random().toString(36).slice(2, 8)
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const app = await h.enroll(`app-${suffix}`, ['app'])
  await push.flush()

  const bundleWithEpoch2 = next(principalControlTopic(app.identity.id), (body) => {
    const { bundle } = body as { bundle: unknown }
    const opened = openKeyBundle(bundle, {
      keyServerPublicKey: h.keyServer.publicKey,
      recipient: app.identity,
      now: h.clock.now,
    })
    return opened.groups.find((g) => g.group === 2)?.epochs.some((e) => e.epoch === 2) ? opened : undefined
  })
  const snapshot = next(BROKER_CONTROL_TOPIC, (body) => {
    const opened = openBrokerSnapshot((body as { snapshot: unknown }).snapshot, h.keyServer.publicKey)
    return opened.epochs.some((e) => e.group === 2 && e.epoch === 2) ? opened : undefined
  })
  await h.keyServer.rotateGroup(2, { immediate: true, actor: 'test', reason: 'test' })
  await push.flush()

  const opened = await bundleWithEpoch2
  expect(opened.principal).toBe(app.identity.id)
  expect((await snapshot).principals.map((p) => p.id)).toContain(app.identity.id)
  expect(push.stats.failures).toBe(0)
})

test('a revoked principal receives nothing new; brokers learn of the revocation', async () => {
  const suffix = Math.random().toString(36).slice(2, 8)
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await h.enroll(`app-${suffix}`, ['app'])
  await push.flush()
  const bundlesBefore = push.stats.bundles
  const revokedSeen = next(BROKER_CONTROL_TOPIC, (body) => {
    const opened = openBrokerSnapshot((body as { snapshot: unknown }).snapshot, h.keyServer.publicKey)
    return opened.principals.find((p) => p.id === `app-${suffix}`)?.status === 'revoked' ? opened : undefined
  })
  await h.keyServer.revokePrincipal(`app-${suffix}`, 'test')
  await push.flush()
  expect((await revokedSeen).revocationListVersion).toBe(1)
  // Only the push principal itself holds no keys, and app was the only member: no bundle went out.
  expect(push.stats.bundles).toBe(bundlesBefore)
})

test('an enrollment pushes new bundles only to the principals whose bundles list the newcomer, not to the fleet', async () => {
  const suffix = Math.random().toString(36).slice(2, 8)
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const apps = [await h.enroll(`app-a-${suffix}`, ['app']), await h.enroll(`app-b-${suffix}`, ['app'])]
  await h.enroll(`lock-a-${suffix}`, ['lock'])
  await h.enroll(`lock-b-${suffix}`, ['lock'])
  await push.flush()
  const bundlesBefore = push.stats.bundles

  // A thermostat writes group 1: the apps read it (their bundles list its writers); the locks hold none of its keys.
  const appsHearOfIt = apps.map((app) =>
    next(principalControlTopic(app.identity.id), (body) => {
      const opened = openKeyBundle((body as { bundle: unknown }).bundle, {
        keyServerPublicKey: h.keyServer.publicKey,
        recipient: app.identity,
        now: h.clock.now,
      })
      const writers = opened.groups.find((g) => g.group === 1)?.writers
      return [...(writers?.values() ?? [])].some((w) => w.principal === `thermostat-${suffix}`) ? opened : undefined
    }),
  )
  await h.enroll(`thermostat-${suffix}`, ['thermostat'])
  await push.flush()
  await Promise.all(appsHearOfIt)
  expect(push.stats.bundles - bundlesBefore).toBe(3) // the newcomer's own bundle and the two apps'
  expect(push.stats.failures).toBe(0)
})
