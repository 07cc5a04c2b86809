// Issue 13, "the first hour": what a newcomer does first, against the real stack (key server over
// HTTPS, the broker as `npm start` assembles it, no push, pulls an hour apart).
//   1. The README's headline snippet, as written: secure() wraps a plain mqtt.connect() that has
//      no username or password, and logs in to an SMQTT broker (before: CONNACK 4, `bad-credentials`).
//   2. enroll() and connect at once: the broker learns the new principal on its first CONNECT
//      (before: CONNACK 4, `unknown-principal`, until the next pull up to 30 s later; with push,
//      until the push of the new snapshot, which the CONNECT beat).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { enroll, fileStorage, loadEnrollment, type MessageInfo, secure } from '@smqtt/client'
import { KEYSERVER_ROLE, PUSH_PRINCIPAL_ID, startMqttPush } from '@smqtt/keyserver'
import { within } from '@smqtt/test-kit/broker'
import { waitUntil } from '@smqtt/test-kit/client'
import mqtt from 'mqtt'
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest'
import { type AttackStack, type Recorder, startAttackStack } from './attacks/_stack.js'

let s: AttackStack
let subscriber: Recorder
let dir: string

beforeAll(async () => {
  s = await startAttackStack({}, { pullIntervalSeconds: 3_600 })
  dir = mkdtempSync(join(tmpdir(), 'smqtt-first-hour-'))
  subscriber = await s.secureClient(await s.enroll('app-1', ['app']))
  await subscriber.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })
}, 60_000)
afterAll(async () => {
  await s?.close()
  rmSync(dir, { recursive: true, force: true })
})
beforeEach(() => {
  s.takeAudit()
})

/** What an operator hands a device: a one-time enrollment token. */
async function operatorToken(id: string, roles: string[]): Promise<string> {
  const response = await s.h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  if (response.status !== 201) throw new Error(`token: ${response.text}`)
  return (response.body as { token: string }).token
}

/** Rejects with the first 'error' the client emits (a refused CONNECT), so a test fails with the reason. */
const firstError = (client: { once(event: 'error', f: (err: Error) => void): unknown }) =>
  new Promise<never>((_, reject) => client.once('error', reject))

const refusedConnects = () => s.takeAudit().filter((entry) => entry.event === 'refused' && entry.hook === 'connect')

test("the README's headline snippet logs in to an SMQTT broker as written (mqtt.connect with ca and clientId only)", async () => {
  const keyServerUrl = s.h.url
  const ca = s.ca
  const token = await operatorToken('thermostat-1', ['thermostat'])
  const storage = fileStorage(join(dir, 'state'))
  const me = (await loadEnrollment(storage)) ?? (await enroll({ keyServerUrl, ca, token, id: 'thermostat-1', storage }))
  await s.syncBroker() // this test is about the login alone; the next one connects before any sync
  s.takeAudit()

  // The README's lines, the broker's URL aside.
  const client = secure(mqtt.connect(s.url, { ca, clientId: me.identity.id }), {
    ...me,
    storage,
    keyServer: { url: keyServerUrl, ca, keyServerPublicKey: me.keyServerPublicKey },
  })
  const received: [string, Uint8Array, MessageInfo][] = []
  client.on('message', (topic, payload, info) => received.push([topic, payload, info]))
  const errors: Error[] = []
  client.on('error', (err) => errors.push(err))
  try {
    await within(
      Promise.race([
        client.publishAsync('home/hall/thermostat/thermostat-1/temp', '21.5', { qos: 1 }),
        firstError(client),
      ]),
      'PUBACK of the snippet',
      15_000,
    )
    await waitUntil(
      () => subscriber.messages.some((m) => m.topic === 'home/hall/thermostat/thermostat-1/temp' && m.text === '21.5'),
      'the subscriber to receive 21.5',
      10_000,
    )
    expect(errors).toEqual([])
    expect(client.connected).toBe(true)
    expect(refusedConnects()).toEqual([])
    // It logged in with a key-proof CONNECT password, the one login such a client can have.
    expect(
      s
        .logs()
        .some((l) => l.event === 'authenticated' && l.principal === 'thermostat-1' && l.method === 'connect-password'),
    ).toBe(true)
  } finally {
    await client.endAsync(true)
  }
})

/** enroll() and, in the same breath, the README's secure(mqtt.connect(…)): resolves once the first CONNECT is accepted. */
async function enrollAndConnectAtOnce(id: string): Promise<void> {
  const keyServerUrl = s.h.url
  const ca = s.ca
  const storage = fileStorage(join(dir, id))
  const me = await enroll({ keyServerUrl, ca, token: await operatorToken(id, ['thermostat']), id, storage })
  const mqttClient = mqtt.connect(s.url, { ca, clientId: me.identity.id, reconnectPeriod: 0 })
  const client = secure(mqttClient, {
    ...me,
    storage,
    keyServer: { url: keyServerUrl, ca, keyServerPublicKey: me.keyServerPublicKey },
  })
  const errors: Error[] = []
  client.on('error', (err) => errors.push(err))
  try {
    await within(
      Promise.race([
        new Promise<void>((resolve) => (client.connected ? resolve() : client.once('connect', () => resolve()))),
        firstError(client),
      ]),
      'the first CONNECT accepted',
      10_000,
    )
    await within(client.publishAsync(`home/hall/thermostat/${id}/temp`, '19.0', { qos: 1 }), 'PUBACK', 10_000)
    expect(errors).toEqual([])
    expect(refusedConnects()).toEqual([])
  } finally {
    await client.endAsync(true)
  }
}

test('enroll() then connect at once: accepted at the first CONNECT, with no push and the next pull an hour away', async () => {
  const before = await s.broker.plugin.metrics.onDemandPulls.get()
  const applied = (metric: typeof before) => metric.values.find((v) => v.labels.result === 'applied')?.value ?? 0
  await enrollAndConnectAtOnce('thermostat-2')
  // The broker's snapshot predated thermostat-2: it learned it by an on-demand pull.
  expect(applied(await s.broker.plugin.metrics.onDemandPulls.get())).toBe(applied(before) + 1)
})

test('enroll() then connect at once, with push configured: accepted at the first CONNECT', async () => {
  // The key server pushes each new snapshot through the broker, as its push principal (made
  // and synced first, so only the device is new to the broker).
  await s.h.keyServer.servicePrincipal(PUSH_PRINCIPAL_ID, [KEYSERVER_ROLE])
  await s.syncBroker()
  const push = await startMqttPush(s.h.keyServer, { brokerUrl: s.url, mqttOptions: { ca: s.ca } })
  try {
    s.takeAudit()
    await enrollAndConnectAtOnce('thermostat-3')
  } finally {
    await push.close()
  }
})
