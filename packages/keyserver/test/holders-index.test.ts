// Issue 14: the push after a re-key finds the holders of the re-keyed groups through the
// directory's index (group → holders) instead of evaluating the policy for the whole fleet. A
// holder the index misses is a device left without its new key, so each way a principal's
// groups change is pinned here, in this process and in another one sharing the store, and the
// index is checked against the brute-force answer on random fleets and policies.
import { generateIdentity, type Policy, SmqttError } from '@smqtt/core'
import { addPrincipals, type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import fc from 'fast-check'
import { afterEach, expect, test } from 'vitest'
import { MasterKey } from '../src/master-key.js'
import { KeyServer } from '../src/service/key-server.js'
import { EMPTY_POLICY, PolicyState, principalContext } from '../src/service/policy-state.js'
import type { KeyStore, PrincipalRecord } from '../src/store/key-store.js'
import { openStore } from '../src/store/open-store.js'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

const ids = async (server: KeyServer, groups: readonly number[]) =>
  (await server.principalsHoldingKeys(groups)).map((p) => p.id)

/** The answer from first principles: every active principal's groups under the policy, readers first. */
async function bruteForce(store: KeyStore, policy: PolicyState, groups: readonly number[]): Promise<string[]> {
  const active = (await store.listPrincipals()).filter((p) => p.status === 'active')
  const holders = active.filter((p) => groups.some((g) => policy.keyedGroups(p).has(g)))
  const writes = (p: PrincipalRecord) =>
    policy.evaluator.groupsWrittenBy(principalContext(p)).some((g) => groups.includes(g.id))
  return [...holders.filter((p) => !writes(p)), ...holders.filter(writes)].map((p) => p.id)
}

test('an enrolled principal is a holder at once: a reader before the writers, a device of another group not at all', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await h.enroll('thermostat-a', ['thermostat'])
  expect(await ids(h.keyServer, [1])).toEqual(['thermostat-a']) // the directory is built
  await h.enroll('app-new', ['app'])
  await h.enroll('lock-new', ['lock'])
  expect(await ids(h.keyServer, [1])).toEqual(['app-new', 'thermostat-a'])
  expect(await ids(h.keyServer, [2])).toEqual(['lock-new', 'app-new']) // the lock reads its commands, the app writes them
})

test('a `%c` rule makes each device the holder of its own group and of no other', async () => {
  h = await startHarness()
  const perDevice = {
    version: 1,
    rules: [{ effect: 'allow', actions: ['publish', 'subscribe'], topics: ['dev/%c/#'], roles: ['device'] }],
    groups: [
      { id: 1, name: 'dev-a', filter: 'dev/dev-a/#' },
      { id: 2, name: 'dev-b', filter: 'dev/dev-b/#' },
    ],
    plaintext: [],
  }
  expect((await h.admin('PUT', '/v1/admin/policy', { policy: perDevice })).status).toBe(200)
  await h.enroll('dev-a', ['device'])
  await h.enroll('dev-b', ['device'])
  await h.enroll('dev-c', ['device'])
  expect(await ids(h.keyServer, [1])).toEqual(['dev-a'])
  expect(await ids(h.keyServer, [2])).toEqual(['dev-b'])
})

test('a policy change moves holders in and out of a group', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await h.enroll('app-a', ['app'])
  await h.enroll('lock-a', ['lock'])
  expect(await ids(h.keyServer, [1])).toEqual(['app-a'])
  const locksReadThermostats = {
    ...SMART_HOME_POLICY,
    rules: [
      ...SMART_HOME_POLICY.rules.filter((r) => !r.topics.includes('home/+/thermostat/#')),
      { effect: 'allow', actions: ['subscribe'], topics: ['home/+/thermostat/%c'], roles: ['lock'] },
    ],
  }
  expect((await h.admin('PUT', '/v1/admin/policy', { policy: locksReadThermostats })).status).toBe(200)
  expect(await ids(h.keyServer, [1])).toEqual(['lock-a'])
})

test('a revoked or disabled principal is no holder, and the others stay', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  for (const id of ['app-a', 'app-b', 'app-c']) await h.enroll(id, ['app'])
  expect(await ids(h.keyServer, [1, 3])).toEqual(['app-a', 'app-b', 'app-c'])
  expect((await h.admin('POST', '/v1/admin/principals/app-b/revoke')).status).toBe(200)
  await h.keyServer.disablePrincipal('app-c', 'test')
  expect(await ids(h.keyServer, [1, 3])).toEqual(['app-a'])
})

test('another key server process on the same store sees every change to the holders at once', async () => {
  h = await startHarness()
  const harness = h
  await harness.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await harness.enroll('app-a', ['app'])
  const other = await KeyServer.open({
    store: harness.store,
    masterKey: harness.masterKey,
    now: () => harness.clock.now,
  })
  expect(await ids(other, [1])).toEqual(['app-a']) // its directory is built: from now on it follows the log

  // No clock moves below: a push right after a change must not wait out the directory's 2 s.
  await harness.enroll('thermostat-a', ['thermostat'])
  await addPrincipals(harness, 2, { prefix: 'app-tool-', roles: ['app'] }) // straight into the store, as a tool would
  expect(await ids(other, [1])).toEqual(['app-a', 'app-tool-0000000', 'app-tool-0000001', 'thermostat-a'])

  expect((await harness.admin('POST', '/v1/admin/principals/app-a/revoke')).status).toBe(200)
  expect(await ids(other, [1])).toEqual(['app-tool-0000000', 'app-tool-0000001', 'thermostat-a'])

  const noThermostatReaders = {
    ...SMART_HOME_POLICY,
    rules: SMART_HOME_POLICY.rules.filter((r) => !r.topics.includes('home/+/thermostat/#')),
  }
  expect((await harness.admin('PUT', '/v1/admin/policy', { policy: noThermostatReaders })).status).toBe(200)
  expect(await ids(other, [1])).toEqual(['thermostat-a'])
  expect(await ids(other, [1])).toEqual(await bruteForce(harness.store, other.policy, [1]))
})

test('more holders than are read one by one come from one read of the fleet, in the same order', async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await addPrincipals(h, 1_100, { prefix: 'thermostat-', roles: ['thermostat'] })
  await addPrincipals(h, 3, { prefix: 'app-', roles: ['app'] })
  await h.store.setPrincipalStatus('thermostat-0000005', 'revoked', h.clock.now)
  const found = await ids(h.keyServer, [1])
  expect(found).toHaveLength(1_102)
  expect(found).toEqual(await bruteForce(h.store, h.keyServer.policy, [1]))
})

// ---- property: the index equals the brute-force answer on random fleets ----------------------

// A group per device too (`dev/p1/#`): which one a `%c` or `%u` rule reaches depends on the principal.
const GROUP_FILTERS = ['home/h1/#', 'home/h2/#', 'office/+/door', 'shared/#', 'dev/p1/#', 'dev/p2/#'] as const
const RULE_TOPICS = [
  'home/h1/#',
  'home/h2/#',
  'home/+/%c/#',
  'home/h1/%c',
  'home/h2/%u/#',
  'office/%c/door',
  'office/+/door',
  'office/p1/door',
  'shared/%u',
  'shared/#',
  'home/h2/p2/#',
  'dev/%c/#',
  'dev/%u/cmd',
  'dev/+/cmd',
  '#',
] as const
const ROLES = ['app', 'device', 'support'] as const
const PRINCIPAL_IDS = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'] as const

const ruleArb = fc.record({
  effect: fc.constantFrom('allow', 'allow', 'allow', 'deny'),
  actions: fc.subarray(['publish', 'subscribe'] as const, { minLength: 1 }),
  topics: fc.subarray([...RULE_TOPICS], { minLength: 1, maxLength: 3 }),
  roles: fc.subarray([...ROLES], { minLength: 1, maxLength: 2 }),
})
const policyArb = fc.array(ruleArb, { minLength: 2, maxLength: 8 }).map(
  (rules): Policy => ({
    version: 1,
    rules,
    groups: GROUP_FILTERS.map((filter, i) => ({ id: i + 1, name: `g${i + 1}`, filter })),
    plaintext: [],
  }),
)
const principalArb = fc.record({
  id: fc.constantFrom(...PRINCIPAL_IDS),
  roles: fc.subarray([...ROLES], { minLength: 1, maxLength: 2 }),
  username: fc.option(fc.constantFrom('u1', 'p2'), { nil: undefined }),
})
const stepArb = fc.oneof(
  { arbitrary: principalArb.map((p) => ({ kind: 'enroll' as const, ...p })), weight: 5 },
  fc.record({ kind: fc.constant('revoke' as const), index: fc.nat(20) }),
  fc.record({ kind: fc.constant('disable' as const), index: fc.nat(20) }),
  policyArb.map((policy) => ({ kind: 'policy' as const, policy })),
  fc.record({ kind: fc.constant('ask' as const), groups: fc.subarray([1, 2, 3, 4, 5, 6], { minLength: 1 }) }),
)

test('principalsHoldingKeys equals the brute-force answer on random fleets, policies and changes, in either process', async () => {
  const identity = generateIdentity('property-fleet')
  await fc.assert(
    fc.asyncProperty(policyArb, fc.array(stepArb, { minLength: 1, maxLength: 20 }), async (initial, steps) => {
      const store = await openStore('sqlite::memory:')
      let clock = 1_790_000_000
      const masterKey = MasterKey.generate()
      const options = { store, masterKey, now: () => clock }
      try {
        const [first, second] = [await KeyServer.open(options), await KeyServer.open(options)]
        const servers = [first, second] as const
        // The truth: the policy in the store, whichever process wrote it.
        const storedPolicy = async () => {
          const stored = await store.getPolicy()
          return stored ? PolicyState.fromDocument(stored.version, stored.document) : new PolicyState(0, EMPTY_POLICY)
        }
        const setPolicy = async (server: KeyServer, policy: Policy) => {
          await server.reloadPolicy() // the other process may have changed it
          try {
            await server.setPolicy(policy, 'test')
          } catch (err) {
            // A policy the parser refuses (e.g. a substitution where none may be) changes nothing.
            if (!(err instanceof SmqttError) || err.code !== 'ERR_POLICY_INVALID') throw err
          }
        }
        await setPolicy(first, initial)
        const created: string[] = []
        for (const [n, step] of steps.entries()) {
          const server = servers[n % 2] as KeyServer // changes and questions alternate between processes
          clock += 1
          if (step.kind === 'enroll') {
            const id = created.includes(step.id) ? `${step.id}-${n}` : step.id
            await store.createPrincipal({
              id,
              roles: step.roles,
              username: step.username,
              signingKey: identity.signingKey,
              agreementKey: identity.agreementKey,
              kem: 'x25519',
              createdAt: clock,
              certificateSerial: undefined,
            })
            created.push(id)
          } else if (step.kind === 'revoke' || step.kind === 'disable') {
            const id = created[step.index % Math.max(1, created.length)]
            if (id === undefined) continue
            const principal = await store.getPrincipal(id)
            if (principal?.status !== 'active') continue
            if (step.kind === 'revoke') await server.revokePrincipal(id, 'test')
            else await server.disablePrincipal(id, 'test')
          } else if (step.kind === 'policy') await setPolicy(server, step.policy)
          else
            expect(await ids(server, step.groups)).toEqual(await bruteForce(store, await storedPolicy(), step.groups))
        }
        for (const server of servers)
          for (const groups of [[1, 2, 3, 4, 5, 6], [1], [2], [3], [4], [5], [6]])
            expect(await ids(server, groups)).toEqual(await bruteForce(store, await storedPolicy(), groups))
      } finally {
        await store.close()
      }
    }),
    { numRuns: 100 },
  )
}, 120_000)
