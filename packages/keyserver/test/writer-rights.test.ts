// Key bundles list, for each writer of a group, the topics it may publish there: the policy's
// publish rules with `%c`/`%u` substituted for that writer, so subscribers can refuse a writer's
// honestly signed message on another writer's topic.
import { type Identity, openKeyBundle } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { ROAMING_THERMOSTAT_POLICY } from './_harness.js'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
})
afterEach(() => h.close())

async function writersSeenBy(identity: Identity, group: number) {
  const response = await h.device(identity, 'GET', '/v1/bundle')
  expect(response.status, response.text).toBe(200)
  const bundle = openKeyBundle((response.body as { bundle: unknown }).bundle, {
    keyServerPublicKey: h.keyServer.publicKey,
    recipient: identity,
    now: h.clock.now,
  })
  const writers = bundle.groups.find((g) => g.group === group)?.writers ?? new Map()
  return Object.fromEntries([...writers.values()].map((w) => [w.principal, w.publish]))
}

describe("key bundles carry each writer's own publish rights", () => {
  test('each writer of a group is listed with its concrete filters', async () => {
    expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
    await h.enroll('thermostat-1', ['thermostat'])
    await h.enroll('thermostat-2', ['thermostat'])
    const app = await h.enroll('app-1', ['app'])

    expect(await writersSeenBy(app.identity, 1)).toEqual({
      'thermostat-1': { allow: ['home/+/thermostat/thermostat-1/#'], deny: [] },
      'thermostat-2': { allow: ['home/+/thermostat/thermostat-2/#'], deny: [] },
    })
    expect(await writersSeenBy(app.identity, 2)).toEqual({ 'app-1': { allow: ['home/+/lock/+/cmd'], deny: [] } })
  })

  test('a policy change updates the rights in the next bundle', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    await h.enroll('thermostat-1', ['thermostat'])
    const app = await h.enroll('app-1', ['app'])
    expect(await writersSeenBy(app.identity, 1)).toEqual({
      'thermostat-1': { allow: ['home/+/thermostat/thermostat-1/#'], deny: [] },
    })

    // Thermostats now write in the hall only, and never their firmware topic.
    const hallOnly = {
      ...SMART_HOME_POLICY,
      rules: [
        ...SMART_HOME_POLICY.rules.map((r) =>
          r.roles.includes('thermostat') ? { ...r, topics: ['home/hall/thermostat/%c/#'] } : r,
        ),
        { effect: 'deny', actions: ['publish'], topics: ['home/+/thermostat/%c/firmware'], roles: ['thermostat'] },
      ],
    }
    const response = await h.admin('PUT', '/v1/admin/policy', { policy: hallOnly, expectedVersion: 1 })
    expect(response.status, response.text).toBe(200)
    expect(await writersSeenBy(app.identity, 1)).toEqual({
      'thermostat-1': {
        allow: ['home/hall/thermostat/thermostat-1/#'],
        deny: ['home/+/thermostat/thermostat-1/firmware'],
      },
    })
  })
  test('a writer with more filters than a bundle carries is left out of its group, loudly; the group keeps working', async () => {
    expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
    await h.enroll('thermostat-1', ['thermostat'])
    await h.enroll('roamer-1', ['roaming-thermostat'])
    const response = await h.admin('PUT', '/v1/admin/policy', { policy: ROAMING_THERMOSTAT_POLICY, expectedVersion: 1 })
    expect(response.status, response.text).toBe(200)
    expect((response.body as { warnings: string[] }).warnings).toContainEqual(
      expect.stringContaining(
        "roamer-1's publish rights in group 1 cannot go in a key bundle (has more than 32 filters)",
      ),
    )
    const app = await h.enroll('app-1', ['app'])
    expect(Object.keys(await writersSeenBy(app.identity, 1))).toEqual(['thermostat-1'])
  })
})
