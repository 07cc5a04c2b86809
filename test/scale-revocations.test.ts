// Issue 14, cliff 1, reduced for CI: 20,000 lifetime revocations. The signed revocation list
// listed every principal ever revoked (~60 B each): past about 15,000 it outgrew the 1 MiB a
// client accepts and `GET /v1/revocations` answered 500, so no new client could get keys. Now the
// list carries a watermark and lists only the revocations a bundle still in use may need (one day
// by default); the broker snapshot lists revoked principals for the same window. Against the real
// stack (key server over HTTPS, the SMQTT broker, secure clients): a new client is served, the
// broker applies its snapshot, and a subscriber receives.
import { RevocationList } from '@smqtt/core'
import { within } from '@smqtt/test-kit/broker'
import { addRevokedFleet } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type AttackStack, deliveredTo, startAttackStack } from './attacks/_stack.js'

const REVOKED = 20_000
const SPAN_SECONDS = 2 * 365 * 86_400 // two years of revocations: ~27 of them in the last day

let s: AttackStack
beforeAll(async () => {
  s = await startAttackStack()
  s.followRealTime() // request signatures, epochs and revocations carry the wall clock
  // Straight into the store (revoking 20,000 devices through the service would take minutes).
  await addRevokedFleet(s.h, REVOKED, SPAN_SECONDS, 'revoked-device-')
  // One revocation through the service publishes a list built from all of them.
  await s.enroll('thermostat-stolen', ['thermostat'])
  expect((await s.h.admin('POST', '/v1/admin/principals/thermostat-stolen/revoke')).status).toBe(200)
  await s.syncBroker()
}, 180_000)
afterAll(async () => {
  await s?.close()
})

test('20,000 lifetime revocations: a new client gets a small list, the broker its snapshot, a subscriber receives', async () => {
  const app = await s.enroll('app-1', ['app'])
  const response = await s.h.device(app.identity, 'GET', '/v1/revocations')
  expect(response.status).toBe(200) // before: 500, the list over the 1 MiB a client accepts
  expect(response.text.length).toBeLessThan(64 * 1024)
  const list = new RevocationList()
  expect(
    list.accept((response.body as { revocations: unknown }).revocations, {
      keyServerPublicKey: s.h.keyServer.publicKey,
    }),
  ).toBe(true)
  // The recent revocations are listed (the last day's, the one just made among them); the old ones are not.
  const listed = list.entries.map((e) => e.principal)
  expect(listed).toContain('thermostat-stolen')
  expect(listed.length).toBeGreaterThan(1)
  expect(listed.length).toBeLessThan(100)
  expect(list.prunedBefore).toBeGreaterThan(0)

  // The broker's snapshot does not grow with lifetime revocations either.
  expect(JSON.stringify(await s.h.keyServer.brokerSnapshot()).length).toBeLessThan(64 * 1024)

  const subscriber = await s.secureClient(app)
  await subscriber.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  const device = await s.enroll('thermostat-new', ['thermostat'])
  await s.syncBroker()
  const publisher = await s.secureClient(device)
  await within(publisher.client.publishAsync('home/hall/thermostat/thermostat-new/temp', '21.5', { qos: 1 }), 'PUBACK')
  await deliveredTo(subscriber, 1)
  expect(subscriber.messages).toEqual([{ topic: 'home/hall/thermostat/thermostat-new/temp', text: '21.5' }])
  expect(subscriber.errors).toEqual([])
}, 60_000)
