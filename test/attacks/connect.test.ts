// The attack catalogue of issue 7, part 3: CONNECT floods and flapping, on a deployment of its
// own with small limits: the key server over HTTPS, Aedes
// with the plugin behind TLS (`@smqtt/test-kit/broker`), raw TLS attackers. Each
// asserts the refusal and its audit entry.
import { createConnectPassword } from '@smqtt/core'
import { type Deployment, type Enrolled, rawExchange, sleep, startDeployment, within } from '@smqtt/test-kit/broker'
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest'
import { connectPacket } from '../fuzz/_mqtt-packets.js'

const LIMITS = { perAddress: 20, perClientId: 5, failuresBeforeBan: 1_000, windowSeconds: 5 }

let d: Deployment
let thermostat: Enrolled
let seen = 0
beforeAll(async () => {
  d = await startDeployment({ connectLimits: LIMITS })
  thermostat = await d.enroll('thermostat-1', ['thermostat'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
}, 60_000)
afterAll(async () => {
  await d?.close()
})
beforeEach(() => {
  seen = d.logs.length
})

/** Refusals audited during the current test. */
const refusals = () => d.logs.slice(seen).filter((line) => line.audit === true && line.event === 'refused')

const passwordConnect = (clientId: string) =>
  connectPacket({ clientId, username: clientId, password: createConnectPassword(thermostat.identity, clientId) })
const CONNACK_ACCEPTED = '20020000'

/** Waits until a new window of the rate limits has started. */
const nextWindow = () => sleep(LIMITS.windowSeconds * 1000 + 200)

test('connect flapping: one authenticated device reconnecting in a loop is cut off after perClientId CONNECTs -> rate-limited', async () => {
  await nextWindow()
  const answers: string[] = []
  for (let i = 0; i < LIMITS.perClientId + 3; i++) {
    const { received } = await rawExchange(d.url, d.ca, passwordConnect('thermostat-1'), 300)
    answers.push(received.subarray(0, 4).toString('hex'))
  }
  expect(answers).toEqual([
    ...Array(LIMITS.perClientId).fill(CONNACK_ACCEPTED),
    ...Array(3).fill('20020003'), // CONNACK 3, server unavailable: try later
  ])
  expect(refusals().map((r) => [r.reason, r.clientId])).toEqual(Array(3).fill(['rate-limited', 'thermostat-1']))
}, 30_000)

test('connect flood: more than perAddress CONNECTs from one address in a window are dropped -> rate-limited', async () => {
  await nextWindow()
  const answers: string[] = []
  for (let i = 0; i < LIMITS.perAddress + 5; i++) {
    const { received } = await rawExchange(d.url, d.ca, connectPacket({ clientId: `flood-${i}` }), 2_000)
    answers.push(received.subarray(0, 4).toString('hex'))
  }
  // Within one window: the first perAddress get an answer (no credentials: CONNACK 4), the rest none.
  const answered = answers.filter((a) => a === '20020004').length
  expect(answered).toBeLessThanOrEqual(LIMITS.perAddress)
  expect(answers.slice(answered)).toEqual(Array(answers.length - answered).fill(''))
  const reasons = refusals().map((r) => r.reason)
  expect(reasons.filter((r) => r === 'bad-credentials')).toHaveLength(answered)
  expect(reasons.filter((r) => r === 'rate-limited')).toHaveLength(answers.length - answered)
  expect(answers.length - answered).toBeGreaterThanOrEqual(5)
  // Legitimate clients from that address wait for the next window, then get in.
  await expect(within(d.connectAs(thermostat), 'CONNECT in the flooded window')).rejects.toThrow()
  await nextWindow()
  expect((await d.connectAs(thermostat)).connected).toBe(true)
}, 60_000)
