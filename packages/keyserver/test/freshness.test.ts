// GET /v1/freshness over real HTTPS: what a client polls to learn, from the key server itself,
// that its revocation list or key bundle changed (issue 12, item 2). 200 with the revocation
// list version and the caller's bundle tag, an ETag made of both, 304 while nothing changed;
// the tag moves with what the caller's bundle holds, and only with that.
import { type Identity, signRequest } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
})
afterEach(async () => {
  await h.close()
})

interface Freshness {
  readonly status: number
  readonly etag: string | undefined
  readonly revocations: number | undefined
  readonly bundle: string | undefined
  readonly text: string
  readonly code: string | undefined
}

/** A signed GET /v1/freshness, with If-None-Match when given. */
async function poll(identity: Identity, ifNoneMatch?: string): Promise<Freshness> {
  const headers = signRequest(
    identity.id,
    identity,
    { method: 'GET', path: '/v1/freshness', body: new Uint8Array(0) },
    { now: h.clock.now },
  )
  const response = await rawGet('/v1/freshness', {
    ...headers,
    ...(ifNoneMatch === undefined ? {} : { 'if-none-match': ifNoneMatch }),
  })
  const body = response.body as { revocations?: number; bundle?: string; error?: { code?: string } } | undefined
  return {
    status: response.status,
    etag: response.etag,
    revocations: body?.revocations,
    bundle: body?.bundle,
    text: response.text,
    code: body?.error?.code,
  }
}

/** h.request does not hand back headers: the same request, keeping the ETag. */
async function rawGet(
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; etag: string | undefined; body: unknown; text: string; cacheControl?: string }> {
  const { request } = await import('node:https')
  return new Promise((resolve, reject) => {
    const req = request(`${h.url}${path}`, { method: 'GET', headers, ca: h.caPem, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({
          status: res.statusCode ?? 0,
          etag: res.headers.etag,
          body: text ? JSON.parse(text) : undefined,
          text,
          ...(res.headers['cache-control'] ? { cacheControl: res.headers['cache-control'] } : {}),
        })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

const tagOfBundle = async (identity: Identity) => {
  const response = await h.device(identity, 'GET', '/v1/bundle')
  expect(response.status, response.text).toBe(200)
  return (response.body as { tag?: string }).tag
}

describe('GET /v1/freshness', () => {
  test('200 with the revocation list version, the bundle tag /v1/bundle also reports, and an ETag of both', async () => {
    const app = await h.enroll('app-1', ['app'])
    const first = await poll(app.identity)
    expect(first.status, first.text).toBe(200)
    expect(first.revocations).toBe(0)
    expect(first.bundle).toMatch(/^[A-Za-z0-9_-]{22}$/) // 16 bytes of SHA-256, base64url
    expect(first.etag).toBe(`"0.${first.bundle}"`)
    expect(await tagOfBundle(app.identity)).toBe(first.bundle)
    const again = await rawGet('/v1/freshness', signRequest(app.identity.id, app.identity, freshnessRequest(), now()))
    expect(again.cacheControl).toBe('private, no-cache')
  })

  test('304 with no body for the current ETag; 200 for another one', async () => {
    const app = await h.enroll('app-1', ['app'])
    const { etag } = await poll(app.identity)
    const unchanged = await poll(app.identity, etag)
    expect([unchanged.status, unchanged.text, unchanged.etag]).toEqual([304, '', etag])
    expect((await poll(app.identity, `"0.somethingelse", ${etag}`)).status).toBe(304) // a list of tags
    expect((await poll(app.identity, `W/${etag}`)).status).toBe(304)
    const other = await poll(app.identity, '"0.AAAAAAAAAAAAAAAAAAAAAA"')
    expect([other.status, other.etag]).toEqual([200, etag])
  })

  test('the tag changes when a group the caller holds is rotated, and only then', async () => {
    const thermostat = await h.enroll('thermostat-1', ['thermostat']) // group 1 only
    const app = await h.enroll('app-1', ['app']) // groups 1, 2 and 3
    const before = { thermostat: await poll(thermostat.identity), app: await poll(app.identity) }
    expect(before.thermostat.bundle).not.toBe(before.app.bundle)
    expect((await h.admin('POST', '/v1/admin/groups/2/rotate')).status).toBe(200)
    expect((await poll(thermostat.identity, before.thermostat.etag)).status).toBe(304)
    const app2 = await poll(app.identity, before.app.etag)
    expect(app2.status).toBe(200)
    expect(app2.bundle).not.toBe(before.app.bundle)
    expect(await tagOfBundle(app.identity)).toBe(app2.bundle)
    // A new writer in group 1 changes the bundle of everyone holding group 1's key.
    await h.enroll('thermostat-2', ['thermostat'])
    expect((await poll(thermostat.identity, before.thermostat.etag)).status).toBe(200)
  })

  test('a revocation changes the version and the tag of every member of the revoked principal’s groups', async () => {
    const thermostat = await h.enroll('thermostat-1', ['thermostat'])
    const app = await h.enroll('app-1', ['app'])
    const before = await poll(app.identity)
    expect((await h.admin('POST', '/v1/admin/principals/thermostat-1/revoke')).status).toBe(200)
    const after = await poll(app.identity, before.etag)
    expect(after.status).toBe(200)
    expect(after.revocations).toBe(1)
    expect(after.bundle).not.toBe(before.bundle) // group 1 re-keyed, the writer dropped
    expect(after.etag).toBe(`"1.${after.bundle}"`)
    // The revoked principal gets the refusal /v1/bundle gives it.
    const refused = await poll(thermostat.identity)
    expect([refused.status, refused.code]).toEqual([403, 'ERR_PRINCIPAL_REVOKED'])
    const bundle = await h.device(thermostat.identity, 'GET', '/v1/bundle')
    expect(bundle.status).toBe(403)
  })

  test('deleting an epoch past its grace period changes no tag (no fleet-wide refetch for it)', async () => {
    const lock = await h.enroll('lock-1', ['lock']) // groups 2 and 3, neither rotated on a schedule
    await h.keyServer.rotateGroup(2, { immediate: true, actor: 'test', reason: 'test' })
    const rotated = await poll(lock.identity)
    expect((await h.store.listEpochs(2)).map((e) => e.epoch)).toEqual([1, 2])
    h.clock.now += 3_600 // past the default grace period (300 s)
    await h.keyServer.tick()
    expect((await h.store.listEpochs(2)).map((e) => e.epoch)).toEqual([2])
    expect((await poll(lock.identity, rotated.etag)).status).toBe(304)
  })

  test('is in the OpenAPI description', async () => {
    const openapi = await h.request('GET', '/openapi.json')
    const paths = (openapi.body as { paths: Record<string, { get?: { responses?: object } }> }).paths
    expect(Object.keys(paths['/v1/freshness']?.get?.responses ?? {})).toEqual(expect.arrayContaining(['200', '304']))
  })
})

const freshnessRequest = () => ({ method: 'GET', path: '/v1/freshness', body: new Uint8Array(0) })
const now = () => ({ now: h.clock.now })
