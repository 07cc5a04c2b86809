// What the key server tells the operator about a policy: warnings only about real problems, one
// principal's rights with the rules behind them, and the policy format as a JSON Schema.
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { ROAMING_THERMOSTAT_POLICY } from './_harness.js'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
})
afterEach(() => h.close())

describe('policy warnings', () => {
  test('issue 13: with 14 principals, only the one whose rights a bundle cannot carry is warned about', async () => {
    expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
    for (let i = 1; i <= 8; i++) await h.enroll(`thermostat-${i}`, ['thermostat'])
    for (let i = 1; i <= 5; i++) await h.enroll(`app-${i}`, ['app'])
    await h.enroll('roamer-1', ['roaming-thermostat'])
    // Before the fix: a "cannot go in a key bundle (allows no topic)" line for every principal
    // and every group it does not write (37 lines here), hiding the real one.
    const response = await h.admin('PUT', '/v1/admin/policy', { policy: ROAMING_THERMOSTAT_POLICY, expectedVersion: 1 })
    expect(response.status, response.text).toBe(200)
    expect((response.body as { warnings: string[] }).warnings).toEqual([
      "roamer-1's publish rights in group 1 cannot go in a key bundle (has more than 32 filters): left out of the group's writers until the policy is fixed",
    ])
  })

  test('a publish right no group or plaintext filter reaches, and a group no rule reaches, are warned about', async () => {
    const response = await h.admin('PUT', '/v1/admin/policy', {
      policy: {
        version: 1,
        rules: [{ effect: 'allow', actions: ['publish'], topics: ['sensors/%c/temp'], roles: ['sensor'] }],
        groups: [{ id: 9, name: 'lights', filter: 'lights/#' }],
        plaintext: [],
      },
    })
    expect((response.body as { warnings: string[] }).warnings).toEqual([
      'rules[0].topics[0] "sensors/%c/temp" allows publishing where no key group and no plaintext filter reaches: the broker refuses every publish there (add a key group or a plaintext filter)',
      'key group 9 "lights" (lights/#): no allow rule reaches it, so nobody reads or writes it',
    ])
  })
})

describe('GET /v1/admin/principals/:id/explain', () => {
  test("lists the principal's rights with the rules that grant and cut them, its key groups and plaintext topics", async () => {
    const policy = {
      ...SMART_HOME_POLICY,
      rules: [
        ...SMART_HOME_POLICY.rules,
        { effect: 'deny', actions: ['subscribe'], topics: ['home/garage/#'], principals: ['app-1'] },
        { effect: 'allow', actions: ['publish', 'subscribe'], topics: ['status/%c'] },
      ],
      plaintext: ['status/#'],
    }
    expect((await h.admin('PUT', '/v1/admin/policy', { policy })).status).toBe(200)
    await h.enroll('app-1', ['app'])
    const response = await h.admin('GET', '/v1/admin/principals/app-1/explain')
    expect(response.status, response.text).toBe(200)
    expect(response.body).toEqual({
      status: 'active',
      policyVersion: 1,
      principal: { id: 'app-1', roles: ['app'] },
      publish: {
        allow: [
          { rule: 2, pattern: 'home/+/lock/+/cmd', filter: 'home/+/lock/+/cmd', via: 'role app', cutBy: [] },
          { rule: 6, pattern: 'status/%c', filter: 'status/app-1', via: 'everyone', cutBy: [] },
        ],
        deny: [],
        deniedOutright: false,
      },
      subscribe: {
        allow: [
          {
            rule: 1,
            pattern: 'home/+/thermostat/#',
            filter: 'home/+/thermostat/#',
            via: 'role app',
            cutBy: [{ rule: 5, pattern: 'home/garage/#', filter: 'home/garage/#', via: 'principal app-1' }],
          },
          {
            rule: 1,
            pattern: 'home/+/lock/+/state',
            filter: 'home/+/lock/+/state',
            via: 'role app',
            cutBy: [{ rule: 5, pattern: 'home/garage/#', filter: 'home/garage/#', via: 'principal app-1' }],
          },
          { rule: 6, pattern: 'status/%c', filter: 'status/app-1', via: 'everyone', cutBy: [] },
        ],
        deny: [{ rule: 5, pattern: 'home/garage/#', filter: 'home/garage/#', via: 'principal app-1' }],
        deniedOutright: false,
      },
      groups: [
        {
          id: 1,
          name: 'thermostats',
          filter: 'home/+/thermostat/#',
          reads: true,
          writes: false,
          readsVia: ['rules[1]'],
          writesVia: [],
          publishRights: null,
        },
        {
          id: 2,
          name: 'lock-commands',
          filter: 'home/+/lock/+/cmd',
          reads: false,
          writes: true,
          readsVia: [],
          writesVia: ['rules[2]'],
          publishRights: { allow: ['home/+/lock/+/cmd'], deny: [] },
        },
        {
          id: 3,
          name: 'lock-states',
          filter: 'home/+/lock/+/state',
          reads: true,
          writes: false,
          readsVia: ['rules[1]'],
          writesVia: [],
          publishRights: null,
        },
      ],
      plaintext: [{ filter: 'status/#', publish: true, subscribe: true }],
      warnings: [
        'principal "app-1" reads key group "thermostats" (home/+/thermostat/#) but may not subscribe to all of it (partly-denied): it will receive keys for topics it cannot read',
        'principal "app-1" reads key group "lock-states" (home/+/lock/+/state) but may not subscribe to all of it (partly-denied): it will receive keys for topics it cannot read',
      ],
    })
    expect((await h.admin('GET', '/v1/admin/principals/nobody/explain')).status).toBe(404)
    expect((await h.request('GET', '/v1/admin/principals/app-1/explain')).status).toBe(401)
  })

  test('the policy JSON Schema is served for editors', async () => {
    const response = await h.request('GET', '/policy.schema.json')
    expect(response.status).toBe(200)
    expect(response.body).toMatchObject({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      required: ['version', 'rules', 'groups', 'plaintext'],
    })
  })
})
