import {
  createEnrollmentRequest,
  generateIdentity,
  type Identity,
  openBrokerSnapshot,
  openKeyBundle,
  openPrincipalRecord,
  RevocationList,
} from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
})
afterEach(async () => {
  await h.close()
})

const keyServerKey = () => h.keyServer.publicKey
const errorCode = (response: { body: unknown }) => (response.body as { error?: { code?: string } }).error?.code

async function token(principalId: string, roles: string[], ttlSeconds?: number): Promise<string> {
  const response = await h.admin('POST', '/v1/admin/enrollment-tokens', {
    principalId,
    roles,
    ...(ttlSeconds ? { ttlSeconds } : {}),
  })
  expect(response.status).toBe(201)
  return (response.body as { token: string }).token
}

async function bundleOf(identity: Identity) {
  const response = await h.device(identity, 'GET', '/v1/bundle')
  expect(response.status, response.text).toBe(200)
  return openKeyBundle((response.body as { bundle: unknown }).bundle, {
    keyServerPublicKey: keyServerKey(),
    recipient: identity,
    now: h.clock.now,
  })
}

describe('enrollment', () => {
  test('happy path: signed record, kid, client certificate for the device TLS key', async () => {
    const identity = generateIdentity('thermostat-1')
    const { publicKey } = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])
    const spki = new Uint8Array(await crypto.subtle.exportKey('spki', publicKey))
    const body = createEnrollmentRequest(identity, await token('thermostat-1', ['thermostat']), { tlsPublicKey: spki })
    const response = await h.request('POST', '/v1/enroll', { body })
    expect(response.status, response.text).toBe(200)
    const result = response.body as {
      principal: unknown
      kid: number
      keyServerPublicKey: string
      certificatePem: string
    }
    expect(result.kid).toBe(1)
    expect(result.keyServerPublicKey).toBe(Buffer.from(keyServerKey()).toString('base64url'))
    const record = openPrincipalRecord(result.principal, keyServerKey())
    expect(record).toMatchObject({ id: 'thermostat-1', kid: 1, roles: ['thermostat'] })
    expect(result.certificatePem).toContain('BEGIN CERTIFICATE')
    const audit = await h.admin('GET', '/v1/admin/audit')
    expect((audit.body as { entries: { action: string; outcome: string }[] }).entries).toContainEqual(
      expect.objectContaining({ action: 'enroll', outcome: 'ok' }),
    )
  })

  test('a token works once', async () => {
    const t = await token('lock-1', ['lock'])
    expect(
      (await h.request('POST', '/v1/enroll', { body: createEnrollmentRequest(generateIdentity('lock-1'), t) })).status,
    ).toBe(200)
    const again = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(generateIdentity('lock-1'), t),
    })
    expect([again.status, errorCode(again)]).toEqual([401, 'ERR_ENROLLMENT_TOKEN_INVALID'])
  })

  test('expired, forged, other-id and wrong-role tokens are refused', async () => {
    const expiring = await token('a-1', ['app'], 60)
    h.clock.now += 60
    const expired = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(generateIdentity('a-1'), expiring),
    })
    expect([expired.status, errorCode(expired)]).toEqual([401, 'ERR_ENROLLMENT_TOKEN_INVALID'])

    const forged = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(generateIdentity('a-2'), 'not-a-real-token'),
    })
    expect([forged.status, errorCode(forged)]).toEqual([401, 'ERR_ENROLLMENT_TOKEN_INVALID'])

    const forB = await token('b-1', ['app'])
    const otherId = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(generateIdentity('mallory'), forB),
    })
    expect([otherId.status, errorCode(otherId)]).toEqual([401, 'ERR_ENROLLMENT_TOKEN_INVALID'])

    const forC = await token('c-1', ['app'])
    const wrongRoles = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(generateIdentity('c-1'), forC, { roles: ['app', 'admin'] }),
    })
    expect([wrongRoles.status, errorCode(wrongRoles)]).toEqual([401, 'ERR_ENROLLMENT_TOKEN_INVALID'])
    // Both tokens are burnt: the holder of a leaked token gets no second try.
    for (const [id, t] of [
      ['b-1', forB],
      ['c-1', forC],
    ] as const) {
      const retry = await h.request('POST', '/v1/enroll', { body: createEnrollmentRequest(generateIdentity(id), t) })
      expect([retry.status, errorCode(retry)]).toEqual([401, 'ERR_ENROLLMENT_TOKEN_INVALID'])
    }
    expect((await h.admin('GET', '/v1/admin/principals')).body).toEqual({ principals: [] })
  })

  test('proof of possession is required: a request for another key is refused and does not burn the token', async () => {
    const t = await token('d-1', ['app'])
    const mine = generateIdentity('d-1')
    const stolen = createEnrollmentRequest(generateIdentity('d-1'), t) // proof by another key
    const tampered = { ...createEnrollmentRequest(mine, t), identity: stolen.identity }
    const refused = await h.request('POST', '/v1/enroll', { body: tampered })
    expect([refused.status, errorCode(refused)]).toEqual([401, 'ERR_REQUEST_SIGNATURE_INVALID'])
    expect((await h.request('POST', '/v1/enroll', { body: createEnrollmentRequest(mine, t) })).status).toBe(200)
  })
})

describe('key bundles follow the ACL', () => {
  test('each principal gets keys only for the groups it may read or write, with the right writers', async () => {
    expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
    const thermostat = await h.enroll('thermostat-1', ['thermostat'])
    const app = await h.enroll('app-1', ['app'])
    const lock = await h.enroll('lock-1', ['lock'])
    const outsider = await h.enroll('guest-1', ['guest'])

    const groupsOf = async (identity: Identity) => (await bundleOf(identity)).groups.map((g) => g.group).sort()
    expect(await groupsOf(thermostat.identity)).toEqual([1])
    expect(await groupsOf(app.identity)).toEqual([1, 2, 3])
    expect(await groupsOf(lock.identity)).toEqual([2, 3])
    expect(await groupsOf(outsider.identity)).toEqual([])

    const appBundle = await bundleOf(app.identity)
    const thermostats = appBundle.groups.find((g) => g.group === 1)
    expect([...(thermostats?.writers.keys() ?? [])]).toEqual([thermostat.kid])
    const commands = appBundle.groups.find((g) => g.group === 2)
    expect([...(commands?.writers.keys() ?? [])]).toEqual([app.kid])
    // Everyone in a group holds the same epoch key.
    const lockCommands = (await bundleOf(lock.identity)).groups.find((g) => g.group === 2)
    expect(lockCommands?.epochs[0]?.key).toEqual(commands?.epochs[0]?.key)
  })

  test('a revoked principal gets nothing and no epoch created after its revocation', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    const app = await h.enroll('app-1', ['app'])
    const other = await h.enroll('app-2', ['app'])
    const before = await bundleOf(app.identity)
    const epochsBefore = new Set(before.groups.flatMap((g) => g.epochs.map((e) => `${g.group}:${e.epoch}`)))

    const revoked = await h.admin('POST', '/v1/admin/principals/app-1/revoke')
    expect(revoked.status, revoked.text).toBe(200)
    const list = new RevocationList()
    list.accept((revoked.body as { revocations: unknown }).revocations, { keyServerPublicKey: keyServerKey() })
    expect(list.isRevokedPrincipal('app-1')).toBe(true)

    const refused = await h.device(app.identity, 'GET', '/v1/bundle')
    expect([refused.status, errorCode(refused)]).toEqual([403, 'ERR_PRINCIPAL_REVOKED'])
    // Every group app-1 could read has a new epoch, active now, that app-1 never received.
    const after = await bundleOf(other.identity)
    for (const group of [1, 3]) {
      const fresh = after.groups
        .find((g) => g.group === group)
        ?.epochs.filter((e) => !epochsBefore.has(`${group}:${e.epoch}`))
      expect(fresh?.length).toBe(1)
      expect(fresh?.[0]?.activatesAt).toBe(h.clock.now)
    }
    const revocations = await h.device(other.identity, 'GET', '/v1/revocations')
    expect(revocations.status).toBe(200)
  })

  test("revoking a writer-only device re-keys the groups it wrote (its epoch key opens the other writers' traffic)", async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    await h.enroll('thermostat-1', ['thermostat']) // writes group 1, reads nothing
    const revoked = await h.admin('POST', '/v1/admin/principals/thermostat-1/revoke')
    expect(revoked.status, revoked.text).toBe(200)
    const epochs = await h.store.listEpochs(1)
    expect(epochs.map((e) => e.epoch)).toEqual([1, 2])
    expect(epochs[1]?.activatesAt).toBe(h.clock.now)
    expect((await h.store.listEpochs(2)).map((e) => e.epoch)).toEqual([1]) // groups it never held are left alone
  })
})

describe('rotation', () => {
  test('scheduled rotation hands out the next epoch before it activates; the old one lives through the grace period', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY }) // group 1: every 3600 s, grace 120 s
    const app = await h.enroll('app-1', ['app'])
    const t0 = h.clock.now
    const epochsOfGroup1 = async () => (await bundleOf(app.identity)).groups.find((g) => g.group === 1)?.epochs ?? []

    h.clock.now = t0 + 3600 - 31
    await h.keyServer.tick()
    expect((await epochsOfGroup1()).map((e) => e.epoch)).toEqual([1])

    h.clock.now = t0 + 3600 - 30 // lead time: 30 s
    await h.keyServer.tick()
    const scheduled = await epochsOfGroup1()
    expect(scheduled.map((e) => [e.epoch, e.activatesAt])).toEqual([
      [1, t0],
      [2, t0 + 3600],
    ])
    expect(scheduled[0]?.retiresAt).toBe(t0 + 3600 + 120)

    h.clock.now = t0 + 3600 + 121
    await h.keyServer.tick()
    expect((await epochsOfGroup1()).map((e) => e.epoch)).toEqual([2])
  })

  test('another key server process sharing the store: its rotation reaches our bundles within 2 s', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    const app = await h.enroll('app-1', ['app'])
    const epochsOf2 = async () =>
      (await bundleOf(app.identity)).groups.find((g) => g.group === 2)?.epochs.map((e) => e.epoch)
    expect(await epochsOf2()).toEqual([1])
    const { KeyServer } = await import('../src/service/key-server.js')
    const other = await KeyServer.open({ store: h.store, masterKey: h.masterKey, now: () => h.clock.now })
    await other.rotateGroup(2, { immediate: true, actor: 'test', reason: 'other process' })
    expect(await epochsOf2()).toEqual([1]) // our cached view, less than 2 s old
    h.clock.now += 2
    expect(await epochsOf2()).toEqual([1, 2])
  })

  test('concurrent rotations of one group never produce two epochs with the same number', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    const results = await Promise.all(Array.from({ length: 8 }, () => h.admin('POST', '/v1/admin/groups/2/rotate')))
    const epochs = results.map((r) => (r.body as { epoch: number }).epoch).sort((a, b) => a - b)
    expect(epochs).toEqual([2, 3, 4, 5, 6, 7, 8, 9])
  })

  test('removing a reader from the policy re-keys the group at once', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    await h.enroll('lock-1', ['lock'])
    const narrower = { ...SMART_HOME_POLICY, rules: SMART_HOME_POLICY.rules.filter((r) => !r.roles.includes('lock')) }
    const response = await h.admin('PUT', '/v1/admin/policy', { policy: narrower, expectedVersion: 1 })
    expect(response.status, response.text).toBe(200)
    const epochs = await h.store.listEpochs(2)
    expect(epochs.map((e) => e.epoch)).toEqual([1, 2])
    expect(epochs[1]?.activatesAt).toBe(h.clock.now)
  })

  test('removing a writer from the policy re-keys its group at once', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    await h.enroll('thermostat-1', ['thermostat'])
    const noThermostats = {
      ...SMART_HOME_POLICY,
      rules: SMART_HOME_POLICY.rules.filter((r) => !r.roles.includes('thermostat')),
    }
    const response = await h.admin('PUT', '/v1/admin/policy', { policy: noThermostats, expectedVersion: 1 })
    expect(response.status, response.text).toBe(200)
    expect((await h.store.listEpochs(1)).map((e) => e.epoch)).toEqual([1, 2])
    expect((await h.store.listEpochs(3)).map((e) => e.epoch)).toEqual([1])
  })
})

describe('bad input gets a clear, typed refusal and the server keeps serving', () => {
  test.each([
    [
      'malformed JSON',
      { rawBody: '{"token": ', headers: { 'content-type': 'application/json' } },
      400,
      'ERR_REQUEST_INVALID',
    ],
    ['unknown field', { body: { token: 't', identity: {}, proof: 'x', extra: 1 } }, 400, 'ERR_REQUEST_INVALID'],
    ['wrong type', { body: { token: 5, identity: {}, proof: 'x' } }, 400, 'ERR_REQUEST_INVALID'],
    [
      'wrong content type',
      { rawBody: 'token=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      415,
      'ERR_UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'oversized body',
      { rawBody: JSON.stringify({ token: 'x'.repeat(70_000) }), headers: { 'content-type': 'application/json' } },
      413,
      'ERR_PAYLOAD_TOO_LARGE',
    ],
    [
      'bad identity key',
      {
        body: {
          token: 't',
          proof: 'AA',
          identity: {
            type: 'smqtt.public-identity',
            v: 1,
            id: 'x',
            kem: 'x25519',
            signingKey: 'AA',
            agreementKey: 'AA',
          },
        },
      },
      400,
      'ERR_IDENTITY_MALFORMED',
    ],
  ])('%s', async (_name, options, status, code) => {
    const response = await h.request('POST', '/v1/enroll', options)
    expect([response.status, errorCode(response)]).toEqual([status, code])
    expect((await h.request('GET', '/v1/health')).status).toBe(200)
  })

  test('an invalid policy names the problem', async () => {
    const response = await h.admin('PUT', '/v1/admin/policy', {
      policy: { ...SMART_HOME_POLICY, groups: [{ id: 1, name: 'x', filter: 'a/#/b' }] },
    })
    expect([response.status, errorCode(response)]).toEqual([400, 'ERR_POLICY_INVALID'])
    expect((response.body as { error: { message: string } }).error.message).toMatch(/groups\[0\]/)
  })

  test('unknown routes are 404 with a code', async () => {
    const response = await h.request('GET', '/v1/nothing')
    expect([response.status, errorCode(response)]).toEqual([404, 'ERR_NOT_FOUND'])
  })

  test('paths the router itself refuses get a typed code too (found by the HTTP fuzzer)', async () => {
    const badEncoding = await h.admin('GET', '/v1/admin/principals/%c0%af')
    expect([badEncoding.status, errorCode(badEncoding)]).toEqual([400, 'ERR_REQUEST_INVALID'])
    const longParameter = await h.admin('GET', `/v1/admin/principals/${'a'.repeat(1_000)}`)
    expect(longParameter.status).toBeGreaterThanOrEqual(400)
    expect(longParameter.status).toBeLessThan(500)
    expect(errorCode(longParameter)).toBe('ERR_REQUEST_INVALID')
  })
})

describe('authentication', () => {
  test('admin routes need the admin token; failures are audited', async () => {
    expect((await h.request('GET', '/v1/admin/principals')).status).toBe(401)
    const wrong = await h.request('GET', '/v1/admin/principals', { headers: { authorization: 'Bearer nope' } })
    expect([wrong.status, errorCode(wrong)]).toEqual([401, 'ERR_UNAUTHENTICATED'])
    expect((await h.request('GET', '/metrics')).status).toBe(401)
    const audit = (await h.admin('GET', '/v1/admin/audit')).body as { entries: { action: string }[] }
    expect(audit.entries.filter((e) => e.action === 'auth.failed').length).toBe(3)
  })

  test('device requests: unsigned, unknown principal, replayed and stale requests are refused', async () => {
    const app = await h.enroll('app-1', ['app'])
    expect(errorCode(await h.request('GET', '/v1/bundle'))).toBe('ERR_REQUEST_SIGNATURE_INVALID')
    expect(errorCode(await h.device(generateIdentity('ghost'), 'GET', '/v1/bundle'))).toBe('ERR_UNAUTHENTICATED')
    // The same signed request twice: the nonce is spent.
    const { signRequest } = await import('@smqtt/core')
    const headers = signRequest(
      'app-1',
      app.identity,
      { method: 'GET', path: '/v1/bundle', body: new Uint8Array() },
      { now: h.clock.now },
    )
    expect((await h.request('GET', '/v1/bundle', { headers })).status).toBe(200)
    expect(errorCode(await h.request('GET', '/v1/bundle', { headers }))).toBe('ERR_REQUEST_SIGNATURE_INVALID')
    h.clock.now += 600
    expect(errorCode(await h.request('GET', '/v1/bundle', { headers }))).toBe('ERR_REQUEST_SIGNATURE_INVALID')
  })
})

describe('broker snapshot', () => {
  test('brokers get the signed policy, directory and live epochs; nobody else does', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    const broker = await h.enroll('broker-1', ['broker'])
    const app = await h.enroll('app-1', ['app'])
    await h.admin('POST', '/v1/admin/principals/app-1/revoke')
    const response = await h.device(broker.identity, 'GET', '/v1/broker/snapshot')
    expect(response.status, response.text).toBe(200)
    const snapshot = openBrokerSnapshot((response.body as { snapshot: unknown }).snapshot, keyServerKey())
    expect(snapshot.policy.groups.map((g) => g.id)).toEqual([1, 2, 3])
    expect(snapshot.principals.map((p) => [p.id, p.kid, p.status])).toEqual([
      ['broker-1', broker.kid, 'active'],
      ['app-1', app.kid, 'revoked'],
    ])
    expect(snapshot.revocationListVersion).toBe(1)
    expect(snapshot.epochs.filter((e) => e.group === 1).map((e) => e.epoch)).toEqual([1, 2]) // re-keyed on revocation
    const other = await h.enroll('app-2', ['app'])
    const refused = await h.device(other.identity, 'GET', '/v1/broker/snapshot')
    expect([refused.status, errorCode(refused)]).toEqual([403, 'ERR_FORBIDDEN'])
  })

  test('a changed snapshot is stamped after the last one, also within one second; an unchanged one is the same bytes', async () => {
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    const issuedAt = (signed: unknown) => openBrokerSnapshot(signed, keyServerKey()).issuedAt
    const first = await h.keyServer.brokerSnapshot()
    expect(await h.keyServer.brokerSnapshot()).toEqual(first) // the clock stands still here
    await h.enroll('app-1', ['app'])
    const changed = await h.keyServer.brokerSnapshot()
    expect(issuedAt(changed)).toBe(issuedAt(first) + 1)
    expect(await h.keyServer.brokerSnapshot()).toEqual(changed)
  })
})

describe('service', () => {
  test('OpenAPI description and metrics are served', async () => {
    const openapi = await h.request('GET', '/openapi.json')
    expect(openapi.status).toBe(200)
    expect(Object.keys((openapi.body as { paths: object }).paths)).toEqual(
      expect.arrayContaining(['/v1/enroll', '/v1/bundle', '/v1/admin/policy']),
    )
    const metrics = await h.admin('GET', '/metrics')
    expect(metrics.text).toContain('smqtt_keyserver_requests_total')
  })

  test('all state survives a restart', async () => {
    const dir = h.dir
    await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
    const app = await h.enroll('app-1', ['app'])
    const key = h.keyServer.publicKey
    const before = await bundleOf(app.identity)
    const masterKey = h.masterKey
    await h.close({ keepFiles: true })
    h = await startHarness({ dir, masterKey })
    expect(h.keyServer.publicKey).toEqual(key)
    const after = await bundleOf(app.identity)
    expect(after.groups.map((g) => g.epochs.map((e) => e.key))).toEqual(
      before.groups.map((g) => g.epochs.map((e) => e.key)),
    )
  })
})
