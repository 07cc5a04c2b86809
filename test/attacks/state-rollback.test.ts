// Attacks that roll state back with documents the key server really signed, replayed later.
// The broker relays every key bundle pushed on a client's control topic, so a compromised broker
// can record one and push it again after the client moved on (issue 12, "Also close these").
// Against the full real stack of test/attacks/_stack.ts.
import type { SecureClient } from '@smqtt/client'
import { waitUntil } from '@smqtt/test-kit/client'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type AttackStack, startAttackStack } from './_stack.js'

let s: AttackStack
beforeAll(async () => {
  s = await startAttackStack()
}, 60_000)
afterAll(async () => {
  await s?.close()
})

const epochsOf = (client: SecureClient) => client.keys.groups.flatMap((g) => g.epochs)

test('bundle re-push within the second: a broker re-pushes the bundle it recorded before a rotation; refused, no rollback', async () => {
  const member = await s.enroll('app-7', ['app'])
  const victim = (await s.secureClient(member)).client
  const keyServerErrors: Error[] = []
  victim.on('keyServerError', (err) => keyServerErrors.push(err))
  const group = victim.keys.groups[0]?.group as number

  // The key server's clock stands still: the recording, the rotation and the refresh all fall
  // within one second, as they may in a live deployment.
  const recorded = ((await s.h.device(member.identity, 'GET', '/v1/bundle')).body as { bundle: unknown }).bundle
  await s.h.keyServer.rotateGroup(group, { immediate: true, actor: 'test', reason: 'compromise drill' })
  await victim.refreshKeys()
  const held = { issuedAt: victim.keys.issuedAt, epochs: epochsOf(victim) }
  expect(victim.keys.groups.find((g) => g.group === group)?.epochs).toHaveLength(2) // the rotation's new epoch is held

  // The compromised broker publishes the recorded bundle itself (no client's ACL in the way).
  const { applied, ignored } = victim.stats.control
  s.broker.broker.publish(
    {
      cmd: 'publish',
      topic: `smqtt/control/principals/${member.identity.id}`,
      payload: Buffer.from(JSON.stringify({ type: 'bundle', bundle: recorded })),
      qos: 1,
      retain: false,
      dup: false,
    },
    () => {},
  )
  await waitUntil(
    () => victim.stats.control.applied + victim.stats.control.ignored > applied + ignored,
    'the re-push reaching the client',
  )
  expect({ issuedAt: victim.keys.issuedAt, epochs: epochsOf(victim) }).toEqual(held)
  expect(victim.stats.control.ignored).toBe(ignored + 1)

  // Fetching the bundle held again (the key server serves it from its cache) is nothing to do.
  await victim.refreshKeys()
  await victim.refreshKeys()
  expect(keyServerErrors).toEqual([])
  expect({ issuedAt: victim.keys.issuedAt, epochs: epochsOf(victim) }).toEqual(held)
}, 30_000)
