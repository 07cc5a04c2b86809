// Hostile HTTPS requests against the real key server (startHarness: HTTPS, SQLite): a fixed-seed
// sample of test/fuzz/_http-requests.ts over every route. The long run is
// `test/fuzz/keyserver-http.fuzz.ts`.
import { createEnrollmentRequest, generateIdentity } from '@smqtt/core'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import fc from 'fast-check'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { FUZZ_DEVICE, FUZZ_SETTINGS, hostileRequest, ROUTES, runCampaign, type Target } from './_http-requests.js'

const SEED = 20261125
const CONCURRENCY = 6

let h: Harness
let target: Target
beforeAll(async () => {
  h = await startHarness({ settings: FUZZ_SETTINGS })
  // The real time: signed requests are checked against it, and the nonce cache expires by it.
  h.clock.now = Math.floor(Date.now() / 1000)
  const { identity } = await h.enroll(FUZZ_DEVICE, ['thermostat'])
  target = { h, device: identity }
}, 60_000)
afterAll(async () => {
  await h?.close()
})

test('400 hostile requests over HTTPS: typed 4xx or authorized 2xx, never a 5xx or a hang; the store and server stay sound', async () => {
  const principalsBefore = await h.store.listPrincipals()
  const batches = [0, 1, 2, 3].map((i) => fc.sample(hostileRequest, { numRuns: 100, seed: SEED + i }))
  const report = await runCampaign(target, batches, { concurrency: CONCURRENCY })

  expect(report.requests).toBe(400)
  expect(report.problems).toEqual([])
  expect(report.healthChecks).toBe(4)
  // Every route was aimed at, and the refusals came with several distinct codes.
  for (const route of ROUTES) expect(report.byRoute.has(`${route.method} ${route.template}`)).toBe(true)
  const codes = new Set([...report.byRoute.values()].flatMap((stats) => [...stats.codes]))
  for (const code of ['ERR_REQUEST_INVALID', 'ERR_UNAUTHENTICATED', 'ERR_REQUEST_SIGNATURE_INVALID', 'ERR_NOT_FOUND'])
    expect(codes).toContain(code)
  // `__proto__` and `constructor.prototype` payloads reached the parser and polluted nothing.
  expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined()

  // No principal was created, changed or removed by the hostile requests.
  expect(await h.store.listPrincipals()).toEqual(principalsBefore)
  // A legitimate enrollment and bundle fetch still work.
  const identity = generateIdentity('after-fuzz')
  const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'after-fuzz', roles: ['app'] })
  expect(token.status).toBe(201)
  const enrolled = await h.request('POST', '/v1/enroll', {
    body: createEnrollmentRequest(identity, (token.body as { token: string }).token),
  })
  expect(enrolled.status).toBe(200)
  const bundle = await h.device(identity, 'GET', '/v1/bundle')
  expect(bundle.status).toBe(200)
  expect((bundle.body as { bundle: { signature: string } }).bundle.signature).toMatch(/^[A-Za-z0-9_-]+$/)
  expect((await h.device(target.device, 'GET', '/v1/bundle')).status).toBe(200)
  expect((await h.store.listPrincipals()).map((p) => p.id).sort()).toEqual(
    [...principalsBefore.map((p) => p.id), 'after-fuzz'].sort(),
  )

  // Bounded memory: 400 requests (some with bodies near the limit) must not leave tens of MiB behind.
  const [first, last] = [report.memory[0], report.memory.at(-1)]
  expect((last?.heapUsed ?? Number.NaN) - (first?.heapUsed ?? Number.NaN)).toBeLessThan(50 * 1024 * 1024)
}, 120_000)
