// `npm run bench -w @smqtt/keyserver`: bundle fetches over real HTTPS on SQLite and PostgreSQL,
// the cost of re-keying a group of 1,000 readers after a revocation, and what the clients'
// freshness poll (GET /v1/freshness, issue 12) costs: polls/s served, bytes per poll, and the
// load of 10,000 clients at the default interval. `--freshness` runs only the last.
// Targets (issue 3): >= 1,000 bundle fetches/s on SQLite on this 2-core machine; re-key <= 2 s.
import { spawn } from 'node:child_process'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { exportIdentity } from '@smqtt/core'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'

const quick = process.argv.includes('--quick')
const PRINCIPALS = quick ? 50 : 500
const REPEATED_REQUESTS = quick ? 1000 : 5000
const CONCURRENCY = 16
const READERS = quick ? 100 : 1000
// A schema of its own, so the bench neither meets nor leaves state in the shared database.
const POSTGRES_BASE = process.env.SMQTT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const BENCH_SCHEMA = `smqtt_bench_${process.pid}`

const HOMES = PRINCIPALS / 10

/** A fleet as deployed: one key group per home, ten devices each reading and writing their home. */
const FLEET_POLICY = {
  version: 1,
  rules: [
    ...Array.from({ length: HOMES }, (_, h) => ({
      effect: 'allow',
      actions: ['subscribe', 'publish'],
      topics: [`home/${h}/#`],
      roles: [`home-${h}`],
    })),
    { effect: 'allow', actions: ['subscribe'], topics: ['home/#'], roles: ['reader'] },
  ],
  groups: Array.from({ length: HOMES }, (_, h) => ({ id: h + 1, name: `home-${h}`, filter: `home/${h}/#` })),
  plaintext: [],
}

/** The worst case: every device writes into one group, so every bundle lists every writer. */
const ONE_GROUP_POLICY = {
  version: 1,
  rules: [
    { effect: 'allow', actions: ['subscribe', 'publish'], topics: ['home/%c/#'], roles: ['device'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/#'], roles: ['reader'] },
  ],
  groups: [{ id: 1, name: 'home', filter: 'home/#' }],
  plaintext: [],
}

interface LoadResult {
  rps: number
  p50: number
  p99: number
  failures: number
  seconds: number
  /** HTTP request and response, heads and bodies, without TLS. */
  httpBytesPerRequest: number
}

interface LoadOptions {
  readonly path?: string
  readonly conditional?: boolean
  readonly keepAlive?: boolean
}

async function enrollMany(h: Harness, count: number, role: string | ((i: number) => string)) {
  const out = []
  for (let i = 0; i < count; i++) {
    const name = typeof role === 'string' ? role : role(i)
    out.push(await h.enroll(`${typeof role === 'string' ? role : 'device'}-${i}`, [name]))
  }
  return out
}

/** Runs the load generator in its own process, so it does not share the server's event loop. */
function load(h: Harness, identities: unknown[], requests: number, options: LoadOptions = {}): Promise<LoadResult> {
  const script = fileURLToPath(new URL('./_load.ts', import.meta.url))
  const tsx = fileURLToPath(new URL('../../../node_modules/.bin/tsx', import.meta.url))
  return new Promise((resolve, reject) => {
    const child = spawn(tsx, ['--conditions=smqtt-source', script], { stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
    })
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load generator exited ${code}`)),
    )
    child.stdin.end(
      JSON.stringify({ url: h.url, ca: h.caPem, identities, requests, concurrency: CONCURRENCY, ...options }),
    )
  })
}

async function bundleBench(label: string, layout: 'fleet' | 'one group', storeUrl?: string) {
  const h = await startHarness(storeUrl ? { storeUrl } : {})
  // The server's clock follows real time while the load runs (request signatures carry it).
  h.clock.now = Math.floor(Date.now() / 1000)
  const ticker = setInterval(() => {
    h.clock.now = Math.floor(Date.now() / 1000)
  }, 200)
  try {
    await h.admin('PUT', '/v1/admin/policy', { policy: layout === 'fleet' ? FLEET_POLICY : ONE_GROUP_POLICY })
    const enrolled = await enrollMany(h, PRINCIPALS, layout === 'fleet' ? (i) => `home-${i % HOMES}` : 'device')
    const identities = enrolled.map((d) => exportIdentity(d.identity))
    const first = await h.store.getPrincipal(enrolled[0]?.identity.id ?? '')
    const bundleBytes = first ? JSON.stringify(await h.keyServer.bundleFor(first)).length : 0
    // Cold: every principal fetches once, as after a broker restart: every bundle is built and sealed.
    const cold = await load(h, identities, identities.length)
    // Repeated: the same principals fetch again; bundles built since the last change are reused.
    const repeated = await load(h, identities, REPEATED_REQUESTS)
    return { label: `${label}, ${layout}`, bundleBytes, cold, repeated }
  } finally {
    clearInterval(ticker)
    await h.close()
  }
}

async function rekeyBench() {
  const h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  try {
    await h.admin('PUT', '/v1/admin/policy', { policy: ONE_GROUP_POLICY })
    const readers = await enrollMany(h, READERS, 'reader')
    const started = performance.now()
    await h.keyServer.revokePrincipal('reader-0', 'bench') // records, publishes the list, rotates group 1
    const revokedAt = performance.now()
    for (const principal of await h.keyServer.principalsHoldingKeys([1])) await h.keyServer.bundleFor(principal)
    const done = performance.now()
    return {
      readers: readers.length - 1,
      revokeMs: revokedAt - started,
      bundlesMs: done - revokedAt,
      totalMs: done - started,
    }
  } finally {
    await h.close()
  }
}

// ---- freshness poll ----------------------------------------------------------------------------

const FRESHNESS_PRINCIPALS = quick ? 200 : 2000
const FRESHNESS_REQUESTS = quick ? 2000 : 20_000
const FRESHNESS_NEW_CONNECTION_REQUESTS = quick ? 500 : 4000
/** The fleet and the client's default poll interval (SecureOptions.freshnessIntervalSeconds). */
const FLEET = 10_000
const INTERVAL_SECONDS = 30
/** Each wait is 80 to 100 % of the interval: 90 % on average. */
const POLLS_PER_SECOND = FLEET / (INTERVAL_SECONDS * 0.9)

interface FreshnessRun {
  readonly label: string
  readonly result: LoadResult
  /** TCP payload both ways at the server's sockets: TLS records and handshakes included, TCP/IP headers not. */
  readonly wireBytesPerRequest: number
}

/**
 * Polls of GET /v1/freshness over real HTTPS on SQLite, each principal sending its current
 * ETag (the 304 path every poll takes while nothing changed), by distinct principals (each
 * within its request-rate quota), plus the unconditional 200 for comparison.
 */
async function freshnessBench(): Promise<FreshnessRun[]> {
  const h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  const ticker = setInterval(() => {
    h.clock.now = Math.floor(Date.now() / 1000)
  }, 200)
  // Every TCP connection the server accepts, to read the bytes that crossed it (TLS included).
  const sockets = new Set<Socket>()
  h.app.server.on('connection', (socket: Socket) => sockets.add(socket))
  const measured = async (label: string, run: () => Promise<LoadResult>): Promise<FreshnessRun> => {
    sockets.clear()
    const result = await run()
    let bytes = 0
    for (const socket of sockets) bytes += socket.bytesRead + socket.bytesWritten
    return { label, result, wireBytesPerRequest: bytes / (result.rps * result.seconds + result.failures) }
  }
  try {
    await h.admin('PUT', '/v1/admin/policy', { policy: FLEET_POLICY })
    const enrolled = await enrollMany(h, FRESHNESS_PRINCIPALS, (i) => `home-${i % HOMES}`)
    const identities = enrolled.map((d) => exportIdentity(d.identity))
    const path = '/v1/freshness'
    await load(h, identities, FRESHNESS_REQUESTS / 4, { path, conditional: true }) // warm-up, not reported
    return [
      await measured('304, kept-alive connections', () =>
        load(h, identities, FRESHNESS_REQUESTS, { path, conditional: true }),
      ),
      await measured('304, a new TLS connection per poll (session resumed)', () =>
        load(h, identities, FRESHNESS_NEW_CONNECTION_REQUESTS, { path, conditional: true, keepAlive: false }),
      ),
      await measured('200 (no If-None-Match), kept-alive', () => load(h, identities, FRESHNESS_REQUESTS, { path })),
    ]
  } finally {
    clearInterval(ticker)
    await h.close()
  }
}

function printFreshness(runs: FreshnessRun[]): void {
  console.log(
    `\nFreshness polls (GET /v1/freshness) over HTTPS on SQLite: ${FRESHNESS_PRINCIPALS} principals, ${CONCURRENCY} concurrent, load generator in a separate process\n`,
  )
  console.log(
    '| poll | requests | req/s | p50 ms | p99 ms | failures | HTTP B/poll | wire B/poll (TLS incl.) |\n|---|---|---|---|---|---|---|---|',
  )
  for (const { label, result: r, wireBytesPerRequest } of runs)
    console.log(
      `| ${label} | ${Math.round(r.rps * r.seconds + r.failures)} | ${Math.round(r.rps)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.failures} | ${Math.round(r.httpBytesPerRequest)} | ${Math.round(wireBytesPerRequest)} |`,
    )
  console.log(
    `\nCost of the bound for ${FLEET.toLocaleString('en')} clients polling every ${INTERVAL_SECONDS} s (waits of 80-100 %: ${POLLS_PER_SECOND.toFixed(0)} polls/s), nothing changing:\n`,
  )
  console.log(
    '| poll | requests/s | HTTP bytes/s | wire bytes/s (TLS incl.) | capacity (req/s) | capacity ratio |\n|---|---|---|---|---|---|',
  )
  for (const { label, result: r, wireBytesPerRequest } of runs.slice(0, 2))
    console.log(
      `| ${label} | ${POLLS_PER_SECOND.toFixed(0)} | ${kib(POLLS_PER_SECOND * r.httpBytesPerRequest)} | ${kib(POLLS_PER_SECOND * wireBytesPerRequest)} | ${Math.round(r.rps)} | ${(r.rps / POLLS_PER_SECOND).toFixed(1)}x |`,
    )
  console.log(
    '\n(wire bytes: TCP payload at the server, TLS records and handshakes included; TCP/IP headers and ACKs not)',
  )
}

const kib = (bytesPerSecond: number) => `${(bytesPerSecond / 1024).toFixed(1)} KiB/s`

async function dropBenchSchema(): Promise<void> {
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: POSTGRES_BASE })
  await client.connect()
  await client.query(`DROP SCHEMA IF EXISTS ${BENCH_SCHEMA} CASCADE`)
  await client.end()
}

if (process.argv.includes('--freshness')) {
  printFreshness(await freshnessBench())
  console.log(`\nNode ${process.version}, ${new Date().toISOString()}`)
  process.exit(0)
}

const results = [
  await bundleBench('SQLite', 'fleet'),
  await bundleBench('PostgreSQL', 'fleet', `${POSTGRES_BASE}?schema=${BENCH_SCHEMA}`)
    .catch((err: Error) => ({ label: 'PostgreSQL', error: err.message }))
    .finally(() => dropBenchSchema().catch(() => {})),
  await bundleBench('SQLite', 'one group'),
]
console.log(
  `Bundle fetches over HTTPS: ${PRINCIPALS} principals, ${CONCURRENCY} concurrent, load generator in a separate process\n`,
)
console.log(
  `fleet: ${HOMES} homes of 10 devices, one key group each; one group: all ${PRINCIPALS} devices write one group, so every bundle lists every writer\n`,
)
console.log('| store, layout | bundle | fetches | req/s | p50 ms | p99 ms | failures |\n|---|---|---|---|---|---|---|')
const row = (label: string, bytes: number, kind: string, r: LoadResult) =>
  `| ${label} | ${(bytes / 1024).toFixed(1)} KiB | ${kind} | ${Math.round(r.rps)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.failures} |`
for (const r of results) {
  if ('error' in r) console.log(`| ${r.label} | not run: ${r.error} | | | | | |`)
  else {
    console.log(row(r.label, r.bundleBytes, `cold, ${PRINCIPALS} distinct`, r.cold))
    console.log(row(r.label, r.bundleBytes, `repeated, ${REPEATED_REQUESTS}`, r.repeated))
  }
}
const rekey = await rekeyBench()
console.log(
  `\nRe-key after a revocation, group of ${rekey.readers} readers: revoke + rotate ${rekey.revokeMs.toFixed(0)} ms, new bundles for every reader ${rekey.bundlesMs.toFixed(0)} ms, total ${rekey.totalMs.toFixed(0)} ms (target ≤ 2,000 ms)`,
)
printFreshness(await freshnessBench())
console.log(`\nNode ${process.version}, ${new Date().toISOString()}`)
