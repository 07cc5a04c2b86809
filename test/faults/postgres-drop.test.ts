// Fault: the key server's PostgreSQL connections are terminated (pg_terminate_backend) while
// requests are running. Only this test's connections are touched: the key server's pool runs
// under an application_name of its own. The key server answers 503 ERR_STORE_UNAVAILABLE
// (never a 500, never a crash) while the pool reconnects, then serves again; what it stored
// before is intact, and an enrollment cut off mid-way (one transaction) left nothing behind and
// can be retried with the same token.
import { createEnrollmentRequest, generateIdentity } from '@smqtt/core'
import { type Harness, type Response, startHarness } from '@smqtt/test-kit/keyserver'
import pg from 'pg'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { report, sleep, until } from './_cluster.js'

const POSTGRES_URL = process.env.SMQTT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const RUN = `${process.pid}_${Date.now().toString(36)}`
const SCHEMA = `smqtt_faults_${RUN}`
const APPLICATION = `smqtt-faults-${RUN}`

let h: Harness
let operator: pg.Client

/** Terminates the key server's connections (and only them); resolves with how many. */
async function terminateKeyServerConnections(): Promise<number> {
  const { rows } = await operator.query<{ n: number }>(
    `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
     WHERE application_name = $1 AND pid <> pg_backend_pid()`,
    [APPLICATION],
  )
  return rows[0]?.n ?? 0
}

/** How many of the key server's queries wait for a lock right now. */
async function waitingOnLock(): Promise<number> {
  const { rows } = await operator.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
    [APPLICATION],
  )
  return rows[0]?.n ?? 0
}

/**
 * Holds `table` locked while `request` starts and blocks on it, then cuts the key server's
 * connections: the blocked query is cut off mid-flight, deterministically.
 */
async function cutWhileBlocked(table: string, request: () => Promise<Response>): Promise<Response> {
  await operator.query('BEGIN')
  await operator.query(`LOCK TABLE ${pg.escapeIdentifier(SCHEMA)}.${table} IN ACCESS EXCLUSIVE MODE`)
  const pending = request()
  try {
    await until(async () => (await waitingOnLock()) === 1, `a query blocked on ${table}`)
    expect(await terminateKeyServerConnections()).toBeGreaterThanOrEqual(1)
  } finally {
    await operator.query('ROLLBACK')
    await pending.catch(() => {})
  }
  return pending
}

async function newToken(id: string): Promise<string> {
  const response = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles: ['app'] })
  if (response.status !== 201) throw new Error(`token: ${response.text}`)
  return (response.body as { token: string }).token
}

const enrollWith = (id: string, token: string) =>
  h.request('POST', '/v1/enroll', { body: createEnrollmentRequest(generateIdentity(id), token) })

const unavailable = (r: Response) =>
  r.status === 503 && (r.body as { error?: { code?: string } }).error?.code === 'ERR_STORE_UNAVAILABLE'

const principalIds = async () =>
  ((await h.admin('GET', '/v1/admin/principals')).body as { principals: { id: string }[] }).principals.map((p) => p.id)

const auditEntries = async () =>
  ((await h.admin('GET', '/v1/admin/audit?limit=1000')).body as { entries: { id: number; action: string }[] }).entries

beforeAll(async () => {
  operator = new pg.Client({ connectionString: POSTGRES_URL, application_name: `${APPLICATION}-operator` })
  await operator.connect()
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('schema', SCHEMA)
  url.searchParams.set('application_name', APPLICATION)
  h = await startHarness({ storeUrl: url.toString() })
  h.clock.now = Math.floor(Date.now() / 1000)
})

afterAll(async () => {
  await h?.close()
  await operator?.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(SCHEMA)} CASCADE`).catch(() => {})
  await operator?.end()
})

test('connections terminated under load: 503 ERR_STORE_UNAVAILABLE, then service again, nothing lost', async () => {
  for (let i = 0; i < 5; i++) {
    const token = await newToken(`before-${i}`)
    expect((await enrollWith(`before-${i}`, token)).status).toBe(200)
  }
  const auditBefore = await auditEntries()
  const answers: Response[] = []

  // A read cut off mid-query.
  const read = await cutWhileBlocked('principals', () => h.admin('GET', '/v1/admin/principals'))
  answers.push(read)
  expect(unavailable(read)).toBe(true)

  // An enrollment cut off while reading its token: nothing happened, so it can be retried.
  const token = await newToken('cut-0')
  const cut = await cutWhileBlocked('enrollment_tokens', () => enrollWith('cut-0', token))
  answers.push(cut)
  expect(unavailable(cut)).toBe(true)
  expect((await enrollWith('cut-0', token)).status).toBe(200)

  // An enrollment cut off at its last step, the audit insert, after its token was redeemed and
  // its principal inserted: the transaction rolls back, so the same token works again.
  const midToken = await newToken('cut-1')
  const midCut = await cutWhileBlocked('audit', () => enrollWith('cut-1', midToken))
  answers.push(midCut)
  expect(unavailable(midCut)).toBe(true)
  expect(await principalIds()).not.toContain('cut-1')
  expect((await enrollWith('cut-1', midToken)).status).toBe(200)

  // Connections cut at random points of a mixed load: each answer is a success or a clear 503.
  let terminated = 0
  let loading = true
  const killer = (async () => {
    while (loading) {
      terminated += await terminateKeyServerConnections()
      await sleep(50)
    }
  })()
  const enrolled: string[] = []
  const load = Array.from({ length: 20 }, async (_, i) => {
    const id = `load-${i}`
    const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles: ['app'] })
    answers.push(token)
    if (token.status !== 201) return
    const enrollment = await enrollWith(id, (token.body as { token: string }).token)
    answers.push(enrollment, await h.admin('GET', '/v1/admin/audit?limit=5'))
    if (enrollment.status === 200) enrolled.push(id)
  })
  await Promise.all(load)
  loading = false
  await killer

  // Served again; what was stored is there.
  await until(async () => (await h.admin('GET', '/v1/admin/principals')).status === 200, 'the pool to reconnect')
  const ids = await principalIds()
  const auditAfter = await auditEntries()
  const enrollAudited = new Set(
    auditAfter.filter((e) => e.action === 'enroll').map((e) => (e as { subject?: string }).subject),
  )
  const statuses: Record<number, number> = {}
  for (const { status } of answers) statuses[status] = (statuses[status] ?? 0) + 1
  const expected = [...['0', '1', '2', '3', '4'].map((i) => `before-${i}`), 'cut-0', 'cut-1', ...enrolled]
  // Enrollment is one transaction: a principal (enrolled with a 200 or not) always has its audit entry.
  const withoutEnrollAudit = ids.filter((id) => /^(before|cut|load)-/.test(id) && !enrollAudited.has(id))
  report({
    fault: 'postgres-connections-terminated',
    sent: answers.length,
    received: answers.filter((r) => r.status < 300).length,
    lost: expected.filter((id) => !ids.includes(id)).length,
    duplicates: 0,
    terminated,
    statuses,
    principalsWithoutEnrollAudit: withoutEnrollAudit.length,
  })
  expect(withoutEnrollAudit).toEqual([])
  expect(answers.every((r) => r.status < 300 || unavailable(r))).toBe(true)
  expect(ids).toEqual(expect.arrayContaining(expected))
  for (const id of expected) expect(enrollAudited.has(id)).toBe(true)
  // The audit log only grew: every earlier entry is still there, unchanged.
  expect(auditAfter.slice(0, auditBefore.length)).toEqual(auditBefore)
}, 60_000)
