// The attack catalogue of issue 12, key server part: abuse of the key server by an enrolled
// device or by anyone who can reach it, and a key group re-created after its removal. Real key
// server over HTTPS with its SQLite store (startHarness); the attackers are plain HTTPS clients,
// some bound to another loopback address (127.0.0.2, 127.0.0.3) so that "per address" is real.
// Each test asserts the refusal and its code, and what the honest parties still get.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Identity, signRequest } from '@smqtt/core'
import { openBundleOf } from '@smqtt/test-kit/broker'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { fillDiskUnderStore, mountSmallDisk } from '../faults/_full-disk.js'

let h: Harness
let thermostat: { identity: Identity; kid: number }
let app: { identity: Identity; kid: number }
let broker: { identity: Identity; kid: number }
let flooder: { identity: Identity; kid: number }

beforeAll(async () => {
  h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
  thermostat = await h.enroll('thermostat-1', ['thermostat'])
  app = await h.enroll('app-1', ['app'])
  broker = await h.enroll('broker-1', ['broker'])
  flooder = await h.enroll('thermostat-9', ['thermostat'])
}, 30_000)
afterAll(async () => {
  await h?.close()
})

interface Answer {
  readonly status: number
  readonly code: string | undefined
}

/** One HTTPS request to the key server from `localAddress` (another loopback address). */
function from(
  localAddress: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${h.url}${path}`,
      { method, headers, ca: h.caPem, localAddress, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode ?? 0, code: text ? JSON.parse(text).error?.code : undefined })
        })
      },
    )
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

const codeOf = (response: { body: unknown }) => (response.body as { error?: { code?: string } })?.error?.code
const auditSince = async (afterId: number) => h.keyServer.audit.list({ afterId, limit: 10_000 })
const lastAuditId = async () => (await auditSince(0)).at(-1)?.id ?? 0

/** How many answers of each status and code. */
function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const { status, code } of answers) counts[`${status} ${code}`] = (counts[`${status} ${code}`] ?? 0) + 1
  return counts
}

/** Runs `task` `count` times, `concurrency` at a time; returns the results in order. */
async function flood<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++
        results[i] = await task(i)
      }
    }),
  )
  return results
}

describe('abuse of the key server', () => {
  test('one device floods signed requests: others keep being served -> ERR_RATE_LIMITED for the flooder alone', async () => {
    const started = performance.now()
    const honest: number[] = []
    const flooding = flood(300, 12, async () => {
      const response = await h.device(flooder.identity, 'GET', '/v1/bundle')
      return [response.status, codeOf(response)] as const
    })
    // The other principals, a device and a broker, while the flood runs.
    let done = false
    void flooding.finally(() => {
      done = true
    })
    while (!done || honest.length < 10) {
      honest.push((await h.device(app.identity, 'GET', '/v1/bundle')).status)
      honest.push((await h.device(broker.identity, 'GET', '/v1/broker/snapshot')).status)
      honest.push((await h.device(app.identity, 'GET', '/v1/revocations')).status)
    }
    const answers = await flooding
    const seconds = (performance.now() - started) / 1000
    expect(honest.every((status) => status === 200)).toBe(true)
    const refused = answers.filter(([status]) => status === 429)
    expect(refused.length).toBeGreaterThan(0)
    expect(new Set(refused.map(([, code]) => code))).toEqual(new Set(['ERR_RATE_LIMITED']))
    const served = answers.filter(([status]) => status === 200).length
    expect(served + refused.length).toBe(answers.length)
    // Burst 50, then 5 per second (DEFAULT_SETTINGS), with a second's slack.
    expect(served).toBeLessThanOrEqual(50 + 5 * (seconds + 1))
  }, 30_000)

  test('replay a signed request stamped at the edge of its window, 120 s later: refused -> ERR_REQUEST_SIGNATURE_INVALID', async () => {
    const T = h.clock.now
    const path = '/v1/principal'
    // Stamped 60 s ahead: accepted now (the edge of the ±60 s window) ...
    const headers = signRequest(
      app.identity.id,
      app.identity,
      { method: 'GET', path, body: new Uint8Array() },
      { now: T + 60 },
    )
    expect((await h.request('GET', path, { headers })).status).toBe(200)
    try {
      // ... and its timestamp is still inside the window 120 s later, at the other edge.
      h.clock.now = T + 120
      const replayed = await h.request('GET', path, { headers })
      expect([replayed.status, codeOf(replayed)]).toEqual([401, 'ERR_REQUEST_SIGNATURE_INVALID'])
      expect((replayed.body as { error: { message: string } }).error.message).toMatch(/nonce already used/)
      h.clock.now = T + 121
      const stale = await h.request('GET', path, { headers })
      expect([stale.status, codeOf(stale)]).toEqual([401, 'ERR_REQUEST_SIGNATURE_INVALID'])
    } finally {
      h.clock.now = T
    }
  })

  test('flood failed admin logins with 12 KB URLs: bounded audit, 429 for the address, the admin elsewhere can still revoke', async () => {
    h.clock.now += 60 // a fresh minute
    const before = await lastAuditId()
    const query = `?junk=${'A'.repeat(12_000)}`
    const answers = await flood(100, 8, () =>
      from('127.0.0.2', 'GET', `/v1/admin/principals${query}`, { authorization: 'Bearer wrong' }),
    )
    expect(tally(answers)).toEqual({ '401 ERR_UNAUTHENTICATED': 30, '429 ERR_RATE_LIMITED': 70 })
    // The right token from the same address is refused too while it is over its limit (the
    // token may be guessable); from anywhere else the admin still acts, revocation included.
    expect((await from('127.0.0.2', 'GET', '/v1/admin/principals', { authorization: 'Bearer wrong' })).code).toBe(
      'ERR_RATE_LIMITED',
    )
    const victim = await h.enroll('thermostat-stolen', ['thermostat'])
    expect((await h.admin('POST', `/v1/admin/principals/${victim.identity.id}/revoke`)).status).toBe(200)

    const rows = (await auditSince(before)).filter((row) => row.action === 'auth.failed')
    expect(rows).toHaveLength(5) // one by one: the first 5 of the minute
    for (const row of rows) {
      expect(row.details).toMatchObject({ remoteAddress: '127.0.0.2', route: '/v1/admin/principals' })
      expect(JSON.stringify(row).length).toBeLessThan(1_000)
      expect(JSON.stringify(row)).not.toContain('junk')
    }
    // The minute ends: one row sums it up.
    h.clock.now += 60
    await h.keyServer.tick()
    const summaries = (await auditSince(before)).filter((row) => row.action === 'auth.failed.summary')
    expect(summaries.map((row) => [row.subject, row.details.failures, row.details.notAuditedOneByOne])).toEqual([
      ['127.0.0.2', 101, 96],
    ])
  }, 30_000)

  test('flood forged request signatures from one address: 429 after 30, devices elsewhere served', async () => {
    h.clock.now += 60
    const before = await lastAuditId()
    const forged = signRequest(
      thermostat.identity.id,
      app.identity, // the wrong key
      { method: 'GET', path: '/v1/bundle', body: new Uint8Array() },
      { now: h.clock.now },
    )
    const answers = await flood(60, 6, () => from('127.0.0.3', 'GET', '/v1/bundle', forged))
    expect(tally(answers)).toEqual({ '401 ERR_REQUEST_SIGNATURE_INVALID': 30, '429 ERR_RATE_LIMITED': 30 })
    expect((await h.device(thermostat.identity, 'GET', '/v1/bundle')).status).toBe(200) // from 127.0.0.1
    expect((await auditSince(before)).filter((row) => row.action === 'auth.failed')).toHaveLength(5)
  }, 30_000)
})

describe('attacks on key groups', () => {
  test('re-create a removed key group: its former reader holds no key of it -> fresh epoch, never a reused one', async () => {
    const formerReader = await openBundleOf(h, app)
    const old = formerReader.groups.find((g) => g.group === 1)?.epochs.at(-1)
    if (!old) throw new Error('app-1 holds no thermostat key')
    const withoutGroup1 = { ...SMART_HOME_POLICY, groups: SMART_HOME_POLICY.groups.filter((g) => g.id !== 1) }
    // Re-created without app-1 among its readers: the apps no longer read temperatures.
    const recreated = {
      ...SMART_HOME_POLICY,
      rules: SMART_HOME_POLICY.rules.map((rule) =>
        rule.roles.includes('app') && rule.actions.includes('subscribe')
          ? { ...rule, topics: rule.topics.filter((topic) => !topic.includes('thermostat')) }
          : rule,
      ),
    }
    const heldBy = async () => (await openBundleOf(h, thermostat)).groups.find((g) => g.group === 1)?.epochs ?? []
    const keysOf = (epochs: readonly { key: Uint8Array }[]) => epochs.map((e) => Buffer.from(e.key).toString('hex'))

    // Removed and re-created at once, then again after the old epochs were deleted.
    for (const pause of [0, 86_400]) {
      expect((await h.admin('PUT', '/v1/admin/policy', { policy: withoutGroup1 })).status).toBe(200)
      h.clock.now += pause
      await h.keyServer.tick() // deletes epochs past their grace period
      expect((await h.admin('PUT', '/v1/admin/policy', { policy: recreated })).status).toBe(200)
      const epochs = await heldBy()
      expect(epochs.length).toBeGreaterThan(0)
      expect(keysOf(epochs)).not.toContain(Buffer.from(old.key).toString('hex'))
      expect(Math.min(...epochs.map((e) => e.epoch))).toBeGreaterThan(old.epoch) // no number reused either
      expect((await openBundleOf(h, app)).groups.map((g) => g.group)).not.toContain(1)
    }
    // A group with another id on the same filter gets fresh keys too.
    const sameFilter = { ...recreated, groups: recreated.groups.map((g) => (g.id === 1 ? { ...g, id: 7 } : g)) }
    expect((await h.admin('PUT', '/v1/admin/policy', { policy: sameFilter })).status).toBe(200)
    const moved = (await openBundleOf(h, thermostat)).groups.find((g) => g.group === 7)?.epochs ?? []
    expect(moved.length).toBeGreaterThan(0)
    expect(keysOf(moved)).not.toContain(Buffer.from(old.key).toString('hex'))
  }, 30_000)
})

// The store that holds the audit log cannot grow (its disk is full): revocation fails loudly,
// 503 ERR_STORE_UNAVAILABLE, and changes nothing; once there is room again the same call revokes.
// (Chosen over revoking without an audit entry: the revocation itself is a write to the same
// store.) A real ENOSPC: the store on a 2 MiB tmpfs filled with ballast, as in
// test/faults/sqlite-full.test.ts; mounting needs root, without it the test is skipped.
describe('a full audit store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-attack-full-'))
  const mounted = mountSmallDisk(dir)
  let full: Harness | undefined
  afterAll(async () => {
    await full?.close({ keepFiles: true })
    if (mounted) spawnSync('umount', [dir], { stdio: 'ignore' })
    rmSync(dir, { recursive: true, force: true })
  })

  test.runIf(mounted)(
    'revoke while the audit store cannot grow: refused loudly -> 503 ERR_STORE_UNAVAILABLE, nothing half done; revoked once space is back',
    async () => {
      full = await startHarness({ dir })
      full.clock.now = Math.floor(Date.now() / 1000)
      expect((await full.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
      const stolen = await full.enroll('thermostat-1', ['thermostat'])
      const ballast = fillDiskUnderStore(dir)

      const refused = await full.admin('POST', '/v1/admin/principals/thermostat-1/revoke')
      expect([refused.status, codeOf(refused)]).toEqual([503, 'ERR_STORE_UNAVAILABLE'])
      expect((await full.keyServer.getPrincipal('thermostat-1')).status).toBe('active') // nothing half done
      expect((await full.device(stolen.identity, 'GET', '/v1/bundle')).status).toBe(200) // reads go on

      rmSync(ballast)
      expect((await full.admin('POST', '/v1/admin/principals/thermostat-1/revoke')).status).toBe(200)
      expect((await full.keyServer.getPrincipal('thermostat-1')).status).toBe('revoked')
      const revoked = await full.device(stolen.identity, 'GET', '/v1/bundle')
      expect([revoked.status, codeOf(revoked)]).toEqual([403, 'ERR_PRINCIPAL_REVOKED'])
    },
    30_000,
  )
})
