// `npm run bench -w @smqtt/client [-- --quick]`: end to end through Aedes WITH the SMQTT plugin
// (real key server, real TLS, CONNECT passwords), in full signature enforcement and in binding
// mode, and through Aedes without it; one secure publisher and one secure subscriber, 256 B
// payloads, QoS 0 and 1, beside plain mqtt.js through plain Aedes (same TLS, same machine) in the
// same run.
//
// Layout: three processes, so each side's CPU can be measured with process.cpuUsage(), which is
// per process: this one (key server + both brokers), a publisher child and a subscriber child
// (forked with the same tsx loader and `--conditions=smqtt-source`), driven over IPC.
//
// Per scenario:
//  - throughput: the publisher sends N messages as fast as it can (at most WINDOW unresolved
//    publishes: QoS 0 resolves once written, QoS 1 once PUBACKed); msgs/s = messages received by
//    the subscriber / time from its first to its last message; median of three runs.
//  - latency: the publisher sends at a paced 1,000 msgs/s; each payload carries the send time
//    (performance.timeOrigin + performance.now(), taken before sealing; both processes read the
//    same system clock), the subscriber takes the difference when `message` fires (after
//    verify + open): p50 / p99.
//  - CPU µs per message, each side: process.cpuUsage() (user + system) of that process over the
//    paced run divided by the messages: publisher from its first publish to its last resolved
//    one, subscriber from arming (just before the publisher starts) to its last message, broker
//    (this process) over the same span. Measured at the paced rate so each message is handled
//    on its own (no batching of reads/writes flattering the figure); idle event-loop wakeups are
//    included, which overstates slightly.
//  - verify + open alone: the subscriber times core's openEnvelope on a 256 B envelope (no
//    network, no MQTT), fastest of 7 batches, in the same process and backend; the ratio
//    compares the secured throughput with 1e6 / that. It also takes the CPU per call when called
//    once per ms (minus an empty paced loop), the fair yardstick for the paced subscriber's
//    "secured − plain" CPU per message, and times seal and verify the same way.
//  - the throughput target applies where the subscriber alone sets the pace: binding mode and no
//    plugin. Full verification is printed against its bound: three Ed25519 operations per message
//    (seal + broker verify + verify and open) sharing the machine's cores.
//  - yardsticks in the same run: the same envelope crypto done by hand around plain mqtt.js (no
//    wrapper: what the machine allows, and what "the wrapper adds no cost beyond crypto" is
//    measured against), and the secure subscriber without its verification worker thread.
//  - SMQTT_BENCH_CPU_PROF=<dir> writes V8 CPU profiles of the publisher and subscriber children there;
//    SMQTT_BENCH_ONLY=<text> runs only the paths whose name contains it.
import { type ChildProcess, fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { cpus } from 'node:os'
import { createServer, type Server } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { attachSmqtt } from '@smqtt/broker-plugin'
import {
  createEnvelopeSigner,
  cryptoBackend,
  EpochKey,
  exportIdentity,
  importIdentity,
  openEnvelope,
  ReplayWindow,
  sealEnvelope,
  verifyEnvelope,
} from '@smqtt/core'
import { enrollThrough } from '@smqtt/test-kit/client'
import { SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { measureTogether } from '../../core/bench/_timing.js'
import { memoryStorage, type SecureClient, secureConnectAsync } from '../src/index.js'

const quick = process.argv.includes('--quick')
const SIZE = 256
const TOPIC = 'home/hall/thermostat/thermostat-1/temp'
const FILTER = 'home/+/thermostat/#'
const WINDOW = 256
const THROUGHPUT_N = quick ? 3_000 : 20_000
const THROUGHPUT_RUNS = quick ? 1 : 3
const PACED_RATE = 1_000
const PACED_N = quick ? 2_000 : 5_000
const WARMUP_N = quick ? 500 : 2_000
/** The whole run stops (and fails) after this, whatever happens. */
const DEADLINE_MS = quick ? 120_000 : 400_000
/** A phase gives up waiting this long after the subscriber's last message. */
const IDLE_MS = 5_000

/** `crypto`: plain mqtt.js clients calling core's sealEnvelope / openEnvelope themselves. */
type Mode = 'secure' | 'plain' | 'crypto'
interface Setup {
  type: 'setup'
  mode: Mode
  qos: 0 | 1
  url: string
  ca: string
  keyServerUrl?: string
  /** The subscriber verifies on its event loop only (`verifyOnWorker: false`). */
  inline?: boolean
  enrollment?: { identity: unknown; kid: number; keyServerPublicKey: string }
}
interface Run {
  type: 'run'
  n: number
  /** msgs/s; 0 = as fast as possible. */
  rate: number
}
type Command = Setup | Run | { type: 'teardown' } | { type: 'openBench' } | { type: 'exit' }

interface OpenBench {
  type: 'openBench'
  /** Hot loop, fastest of 7 batches. */
  us: number
  /** The other two Ed25519 operations of a message, hot loop: the publisher's seal, the broker's verify. */
  sealUs: number
  verifyUs: number
  /** CPU per call when called once per ms, beside an empty paced loop. */
  pacedUs: number
  backend: string
}
interface PublishResult {
  type: 'published'
  sent: number
  elapsedMs: number
  cpuUs: number
}
interface ReceiveResult {
  type: 'received'
  count: number
  spanMs: number
  p50: number
  p99: number
  cpuUs: number
  rejected: number
}

const PLAIN = 'plain mqtt.js (Aedes)'
const FULL = 'SMQTT (Aedes + plugin)'
const BINDING = 'SMQTT (Aedes + plugin, binding mode)'
const NO_PLUGIN = 'SMQTT clients, Aedes without plugin'
const NO_PLUGIN_INLINE = 'SMQTT clients, Aedes without plugin, no verify worker'
const BY_HAND = 'plain mqtt.js + core seal/open by hand (Aedes)'

const clock = () => performance.timeOrigin + performance.now()
const cpuUs = (since: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(since)
  return d.user + d.system
}
const percentile = (sorted: number[], p: number) => sorted[Math.floor(p * (sorted.length - 1))] ?? Number.NaN
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url')

// ---- children -----------------------------------------------------------------------------------

interface Endpoint {
  publish(payload: Uint8Array): Promise<unknown>
  onMessage(listener: (payload: Uint8Array) => void): void
  subscribe(): Promise<unknown>
  end(): Promise<void>
  rejected(): number
}

/** One storage per child for the whole run, as a device keeps its own: a reconnecting publisher
 * with fresh storage would restart its sequence numbers and be refused as a replay. */
const storage = memoryStorage()

async function connectEndpoint(setup: Setup, role: string): Promise<Endpoint> {
  if (setup.mode === 'secure') {
    const e = setup.enrollment
    if (!e || !setup.keyServerUrl) throw new Error('secure setup without enrollment')
    const client: SecureClient = await secureConnectAsync(setup.url, {
      identity: importIdentity(e.identity),
      kid: e.kid,
      storage,
      keyServer: {
        url: setup.keyServerUrl,
        ca: setup.ca,
        keyServerPublicKey: Buffer.from(e.keyServerPublicKey, 'base64url'),
      },
      mqtt: { ca: setup.ca, reconnectPeriod: 0 },
      ...(setup.inline ? { verifyOnWorker: false } : {}),
    })
    let ending = false
    client.on('error', (err) => ending || console.error(`${role}:`, err.message))
    return {
      publish: (payload) => client.publishAsync(TOPIC, payload, { qos: setup.qos }),
      onMessage: (listener) => client.on('message', (_t, payload) => listener(payload)),
      subscribe: () => client.subscribeAsync(FILTER, { qos: setup.qos }),
      end: () => {
        ending = true // the broker may reset the socket after DISCONNECT
        return client.endAsync()
      },
      rejected: () => Object.values(client.stats.rejected).reduce((a, b) => a + (b ?? 0), 0),
    }
  }
  const client: MqttClient = await mqtt.connectAsync(setup.url, { ca: setup.ca, reconnectPeriod: 0 })
  // The secure wrapper sets TCP_NODELAY; do the same here so only SMQTT differs.
  ;(client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true)
  let ending = false
  client.on('error', (err) => ending || console.error(`${role}:`, err.message))
  const wire = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  const byHand = setup.mode === 'crypto'
  return {
    publish: (payload) => client.publishAsync(TOPIC, wire(byHand ? handSeal(payload) : payload), { qos: setup.qos }),
    onMessage: (listener) => client.on('message', (_t, payload) => listener(byHand ? handOpen(payload) : payload)),
    subscribe: () => client.subscribeAsync(FILTER, { qos: setup.qos }),
    end: () => {
      ending = true
      return client.endAsync()
    },
    rejected: () => 0,
  }
}

// The `crypto` path: the same envelope work as a secure client, done by hand around plain mqtt.js
// (one fixed bench key, a replay window, a sequence counter that only grows across phases).
const handKey = new EpochKey({ group: 1, epoch: 1, suite: 1, key: new Uint8Array(32).fill(9) })
const handSigner = createEnvelopeSigner({ kid: 1, seed: new Uint8Array(32).fill(8) })
const handKeys = { epochKey: () => handKey, writerKey: () => handSigner.publicKey }
const handReplay = new ReplayWindow()
let handSeq = 0
const handSeal = (payload: Uint8Array) =>
  sealEnvelope({ topic: TOPIC, payload, epochKey: handKey, signer: handSigner, seq: ++handSeq })
const handOpen = (envelope: Uint8Array) =>
  openEnvelope(envelope, TOPIC, { keys: handKeys, replay: handReplay, now: Math.floor(Date.now() / 1000) }).payload

function payloadAt(time: number): Uint8Array {
  const payload = new Uint8Array(SIZE).fill(0x5a)
  new DataView(payload.buffer).setFloat64(0, time)
  return payload
}

async function publisher(send: (m: unknown) => void, endpoint: Endpoint, { n, rate }: Run): Promise<void> {
  const start = clock()
  const cpu = process.cpuUsage()
  let inFlight = 0
  let sent = 0
  let failed: unknown
  let wake: (() => void) | undefined
  const settle = () => {
    inFlight--
    wake?.()
  }
  while (sent < n && failed === undefined) {
    if (rate > 0) {
      const due = start + (sent * 1000) / rate
      const wait = due - clock()
      // Sleep (never spin: spinning would bill the publisher a core); timers are 1 ms grained,
      // so a wakeup sends whatever has fallen due.
      if (wait > 0) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(wait))))
        continue
      }
    }
    if (inFlight >= WINDOW) {
      await new Promise<void>((resolve) => {
        wake = resolve
      })
      wake = undefined
      continue
    }
    inFlight++
    sent++
    endpoint.publish(payloadAt(clock())).then(settle, (err: unknown) => {
      failed = err
      settle()
    })
  }
  while (inFlight > 0)
    await new Promise<void>((resolve) => {
      wake = resolve
    })
  if (failed) throw failed
  const result: PublishResult = { type: 'published', sent, elapsedMs: clock() - start, cpuUs: cpuUs(cpu) }
  send(result)
}

/** CPU µs per call of `fn` run once per timer tick (~1,000/s), as the paced subscriber runs it. */
async function pacedCpu(fn: () => unknown, n: number): Promise<number> {
  const cpu = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1))
    fn()
  }
  return cpuUs(cpu) / n
}

async function openBench(): Promise<OpenBench> {
  const epochKey = new EpochKey({ group: 1, epoch: 7, suite: 1, key: cryptoBackend.randomBytes(32) })
  const signer = createEnvelopeSigner({ kid: 1000, seed: cryptoBackend.randomBytes(32) })
  const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
  const payload = new Uint8Array(SIZE).fill(7)
  const envelope = sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq: 1 })
  const now = Math.floor(Date.now() / 1000)
  const open = () => openEnvelope(envelope, TOPIC, { keys, now })
  const n = quick ? 500 : 2_000
  const batchMs = quick ? 100 : 300
  // Interleaved, fastest of seven batches each (other load only ever adds time); also warms the
  // JIT for the paced figure.
  const {
    seal: sealUs,
    verify: verifyUs,
    open: us,
  } = measureTogether(
    {
      seal: () => sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq: 1 }),
      verify: () => verifyEnvelope(envelope, TOPIC, { writerKey: keys.writerKey }),
      open,
    },
    batchMs,
  )
  // Paced: one call per wakeup, cold caches as in the paced run, minus the wakeup itself.
  const pacedUs = (await pacedCpu(open, n)) - (await pacedCpu(() => {}, n))
  return { type: 'openBench', us, sealUs, verifyUs, pacedUs, backend: cryptoBackend.name }
}

async function child(role: 'pub' | 'sub'): Promise<void> {
  const send = (m: unknown) => process.send?.(m)
  let endpoint: Endpoint | undefined
  let onPayload: ((payload: Uint8Array) => void) | undefined
  process.on('message', async (command: Command) => {
    try {
      if (command.type === 'setup') {
        endpoint = await connectEndpoint(command, role)
        if (role === 'sub') {
          endpoint.onMessage((payload) => onPayload?.(payload))
          await endpoint.subscribe()
        }
        send({ type: 'ready' })
      } else if (command.type === 'run' && endpoint) {
        if (role === 'pub') await publisher(send, endpoint, command)
        else {
          const latencies: number[] = []
          const cpu = process.cpuUsage()
          const rejectedBefore = endpoint.rejected()
          let first = 0
          let last = 0
          let idle: NodeJS.Timeout | undefined
          const finish = () => {
            clearTimeout(idle)
            onPayload = undefined
            const sorted = latencies.sort((a, b) => a - b)
            const result: ReceiveResult = {
              type: 'received',
              count: latencies.length,
              spanMs: last - first,
              p50: percentile(sorted, 0.5),
              p99: percentile(sorted, 0.99),
              cpuUs: cpuUs(cpu),
              rejected: (endpoint?.rejected() ?? 0) - rejectedBefore,
            }
            send(result)
          }
          const armIdle = () => {
            clearTimeout(idle)
            idle = setTimeout(finish, IDLE_MS)
          }
          onPayload = (payload) => {
            const at = clock()
            if (first === 0) first = at
            last = at
            latencies.push(at - new DataView(payload.buffer, payload.byteOffset).getFloat64(0))
            if (latencies.length >= command.n) finish()
            else if (latencies.length % 256 === 0) armIdle()
          }
          armIdle()
          send({ type: 'armed' })
        }
      } else if (command.type === 'openBench') send(await openBench())
      else if (command.type === 'teardown') {
        await endpoint?.end()
        endpoint = undefined
        send({ type: 'down' })
      } else if (command.type === 'exit') process.exit(0)
    } catch (err) {
      console.error(`${role}:`, err)
      process.exit(1)
    }
  })
  process.on('disconnect', () => process.exit(0))
  send({ type: 'alive' })
}

// ---- main ---------------------------------------------------------------------------------------

/** A forked child with request/answer over IPC. */
function spawn(role: 'pub' | 'sub') {
  const proc: ChildProcess = fork(fileURLToPath(import.meta.url), [`--role=${role}`, ...(quick ? ['--quick'] : [])], {
    // SMQTT_BENCH_CPU_PROF=<dir>: V8 CPU profiles of both children (<dir>/pub, <dir>/sub), to see where their time goes.
    execArgv: [
      ...process.execArgv,
      ...(process.env.SMQTT_BENCH_CPU_PROF
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SMQTT_BENCH_CPU_PROF}/${role}`]
        : []),
    ],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const waiting: { type: string; resolve: (m: never) => void; reject: (e: Error) => void }[] = []
  proc.on('message', (m: { type: string }) => {
    const i = waiting.findIndex((w) => w.type === m.type)
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(m as never)
  })
  proc.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${role} exited (${code}) while waiting for ${w.type}`))
  })
  return {
    proc,
    next<T>(type: string): Promise<T> {
      return new Promise<T>((resolve, reject) => waiting.push({ type, resolve: resolve as (m: never) => void, reject }))
    },
    send(command: Command) {
      proc.send(command)
    },
  }
}

interface Row {
  name: string
  /** Flat-out phase: each process's CPU time over the subscriber's first-to-last span (100 = one core). */
  busy: { pub: number; sub: number; broker: number }
  qos: 0 | 1
  rate: number
  p50: number
  p99: number
  pubCpu: number
  subCpu: number
  brokerCpu: number
  lost: number
  rejected: number
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    console.error(`bench: gave up after ${DEADLINE_MS / 1000} s`)
    process.exit(2)
  }, DEADLINE_MS)
  deadline.unref()

  // Key server, with the clock on real time.
  const h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  const tick = setInterval(() => {
    h.clock.now = Math.floor(Date.now() / 1000)
  }, 1_000)
  tick.unref()
  const put = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  const enrollAs = async (id: string, roles: string[]) => {
    const e = await enrollThrough(h, id, roles)
    return { identity: exportIdentity(e.identity), kid: e.kid, keyServerPublicKey: b64(e.keyServerPublicKey) }
  }
  const thermostat = await enrollAs('thermostat-1', ['thermostat'])
  const app = await enrollAs('app-1', ['app'])

  // Aedes with the plugin (as the broker-plugin's test fixture), in full and in binding mode, and
  // plain Aedes: same PKI and TLS.
  const pki = `${h.dir}/pki`
  const tls = { key: readFileSync(`${pki}/server.key`), cert: readFileSync(`${pki}/server.pem`) }
  const smqttBrokerFor = async (id: string, mode: 'full' | 'binding') => {
    const principal = await h.enroll(id, ['broker'])
    const broker = await Aedes.createBroker()
    const plugin = await attachSmqtt(broker, {
      keyServerPublicKey: h.keyServer.publicKey,
      keyServer: { url: h.url, ca: h.caPem, identity: principal.identity, pullIntervalMs: 60_000 },
      logger: pino({ level: 'silent' }),
      mode,
      publishRate: false, // the flat-out phase exceeds the default per-device limit on purpose
    })
    const server = createServer({ ...tls, ca: h.caPem, requestCert: true, rejectUnauthorized: false }, (socket) => {
      socket.setNoDelay(true)
      plugin.handle(socket)
    })
    const url = await listen(server)
    const close = async () => {
      await plugin.close()
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
    return { url, close }
  }
  const full = await smqttBrokerFor('broker-1', 'full')
  const binding = await smqttBrokerFor('broker-2', 'binding')
  const plainBroker = await Aedes.createBroker()
  const plainServer = createServer(tls, (socket) => {
    socket.setNoDelay(true)
    plainBroker.handle(socket)
  })
  const plainUrl = await listen(plainServer)

  const pub = spawn('pub')
  const sub = spawn('sub')
  await Promise.all([pub.next('alive'), sub.next('alive')])

  sub.send({ type: 'openBench' })
  const open = await sub.next<OpenBench>('openBench')

  const rows: Row[] = []
  // Full verification puts a third Ed25519 operation per message on the broker, which a 2-core
  // machine cannot fit beside the other two at the target rate (see the bound in the report);
  // binding mode and no plugin are where the subscriber alone sets the pace.
  const paths = [
    { name: PLAIN, mode: 'plain', url: plainUrl },
    // The same crypto without the wrapper: what "the wrapper adds no cost beyond crypto" is measured against.
    { name: BY_HAND, mode: 'crypto', url: plainUrl },
    { name: FULL, mode: 'secure', url: full.url },
    { name: BINDING, mode: 'secure', url: binding.url },
    { name: NO_PLUGIN, mode: 'secure', url: plainUrl },
    // What the verification worker gains, in the same run.
    { name: NO_PLUGIN_INLINE, mode: 'secure', url: plainUrl, inline: true },
  ] as const
  // SMQTT_BENCH_ONLY=<text>: only the paths whose name contains it (with a profile: one path's picture).
  const only = process.env.SMQTT_BENCH_ONLY
  for (const path of paths.filter((p) => only === undefined || p.name.includes(only)))
    for (const qos of [0, 1] as const) {
      const { name, mode, url } = path
      const setup: Setup =
        mode === 'secure'
          ? { type: 'setup', mode, qos, url, ca: h.caPem, keyServerUrl: h.url, inline: 'inline' in path }
          : { type: 'setup', mode, qos, url, ca: h.caPem }
      sub.send({ ...setup, ...(mode === 'secure' ? { enrollment: app } : {}) })
      await sub.next('ready')
      pub.send({ ...setup, ...(mode === 'secure' ? { enrollment: thermostat } : {}) })
      await pub.next('ready')

      const phase = async (n: number, rate: number) => {
        console.error(`bench: ${name} QoS ${qos}: ${n} msgs ${rate ? `at ${rate} msgs/s` : 'flat out'}`)
        sub.send({ type: 'run', n, rate })
        await sub.next('armed')
        const brokerCpu = process.cpuUsage()
        const received = sub.next<ReceiveResult>('received')
        pub.send({ type: 'run', n, rate })
        const published = await pub.next<PublishResult>('published')
        const got = await received
        return { published, got, brokerCpuUs: cpuUs(brokerCpu) }
      }
      await phase(WARMUP_N, 0)
      // Flat out three times, the median run counts: one run of a few seconds on a shared 2-core
      // machine swings by ±20 %.
      const runs: Awaited<ReturnType<typeof phase>>[] = []
      for (let i = 0; i < THROUGHPUT_RUNS; i++) runs.push(await phase(THROUGHPUT_N, 0))
      const rateOf = (run: (typeof runs)[number]) => (run.got.count - 1) / run.got.spanMs
      const max = runs.sort((a, b) => rateOf(a) - rateOf(b))[Math.floor(THROUGHPUT_RUNS / 2)] as (typeof runs)[number]
      const paced = await phase(PACED_N, PACED_RATE)
      rows.push({
        name,
        qos,
        rate: ((max.got.count - 1) * 1000) / max.got.spanMs,
        p50: paced.got.p50,
        p99: paced.got.p99,
        pubCpu: paced.published.cpuUs / paced.published.sent,
        subCpu: paced.got.cpuUs / Math.max(1, paced.got.count),
        brokerCpu: paced.brokerCpuUs / Math.max(1, paced.got.count),
        lost: [...runs, paced].reduce((sum, run) => sum + run.published.sent - run.got.count, 0),
        rejected: [...runs, paced].reduce((sum, run) => sum + run.got.rejected, 0),
        busy: {
          pub: (100 * max.published.cpuUs) / (max.got.spanMs * 1000),
          sub: (100 * max.got.cpuUs) / (max.got.spanMs * 1000),
          broker: (100 * max.brokerCpuUs) / (max.got.spanMs * 1000),
        },
      })
      sub.send({ type: 'teardown' })
      pub.send({ type: 'teardown' })
      await Promise.all([sub.next('down'), pub.next('down')])
    }

  pub.send({ type: 'exit' })
  sub.send({ type: 'exit' })
  await full.close()
  await binding.close()
  await new Promise<void>((resolve) => plainBroker.close(() => resolve()))
  await new Promise<void>((resolve) => plainServer.close(() => resolve()))
  await h.close()

  // ---- report -----------------------------------------------------------------------------------
  const openRate = 1e6 / open.us
  const f = (x: number, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
  console.log(
    `\n@smqtt/client bench${quick ? ' (--quick)' : ''}: ${SIZE} B payloads, TLS on loopback, backend ${open.backend}, ` +
      `Node ${process.version}, ${cpus().length} CPUs`,
  )
  console.log(
    `throughput: median of ${THROUGHPUT_RUNS} × ${f(THROUGHPUT_N)} msgs, window ${WINDOW}; latency + CPU: ${f(PACED_N)} msgs paced at ${f(PACED_RATE)} msgs/s\n`,
  )
  console.log(
    '| path | QoS | msgs/s | p50 ms @1k/s | p99 ms @1k/s | pub CPU µs/msg | sub CPU µs/msg | broker CPU µs/msg | lost | rejected |',
  )
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of rows)
    console.log(
      `| ${r.name} | ${r.qos} | ${f(r.rate)} | ${f(r.p50, 3)} | ${f(r.p99, 3)} | ${f(r.pubCpu, 1)} | ${f(r.subCpu, 1)} | ${f(r.brokerCpu, 1)} | ${r.lost} | ${r.rejected} |`,
    )
  console.log(
    "\nflat-out phase, CPU used over the subscriber's first-to-last message (100 % = one core; the busiest is the bottleneck):\n",
  )
  console.log('| path | QoS | publisher | subscriber | broker (+ idle key server) |')
  console.log('|---|---|---:|---:|---:|')
  for (const r of rows)
    console.log(`| ${r.name} | ${r.qos} | ${f(r.busy.pub)} % | ${f(r.busy.sub)} % | ${f(r.busy.broker)} % |`)
  console.log(
    `\nsubscriber verify + open alone (openEnvelope, ${SIZE} B): ${f(open.us, 1)} µs in a hot loop = ${f(openRate)} msgs/s; ` +
      `${f(open.pacedUs, 1)} µs CPU per call when paced at ~1,000/s (cold caches)\n`,
  )
  // Full verification runs three Ed25519 operations per message, one per process (publisher
  // seals, broker verifies, subscriber verifies + opens): however the cores share them, their sum
  // caps the rate, before any TLS or MQTT work.
  const cores = cpus().length
  const cryptoUs = open.sealUs + open.verifyUs + open.us
  const fullBound = Math.min((cores * 1e6) / cryptoUs, 1e6 / Math.max(open.sealUs, open.verifyUs, open.us))
  console.log(
    `full verification at the broker: seal ${f(open.sealUs, 1)} µs (publisher) + verify ${f(open.verifyUs, 1)} µs (broker) ` +
      `+ verify+open ${f(open.us, 1)} µs (subscriber) = ${f(cryptoUs, 1)} µs of crypto per message; on ${cores} cores ` +
      `at most ${f(fullBound)} msgs/s = ${f(fullBound / openRate, 2)} × the verify+open rate, so the 0.90 × target ` +
      `applies to binding mode and to SMQTT clients without the plugin, where the subscriber alone sets the pace\n`,
  )
  console.log('| target | QoS | measured | target | met |')
  console.log('|---|---|---:|---:|---|')
  let ok = true
  const row = (name: string, qos: 0 | 1) => rows.find((r) => r.qos === qos && r.name === name)
  for (const qos of [0, 1] as const) {
    const p = row(PLAIN, qos)
    const s = row(FULL, qos)
    if (!s || !p) continue
    for (const name of [BINDING, NO_PLUGIN]) {
      const r = row(name, qos)
      if (!r) continue
      const ratio = r.rate / openRate
      ok &&= ratio >= 0.9
      console.log(
        `| ${name}: msgs/s ÷ verify+open rate | ${qos} | ${f(ratio, 2)} × | ≥ 0.90 × | ${ratio >= 0.9 ? 'yes' : 'NO'} |`,
      )
    }
    // The same machine, the same three processes, the same crypto done by hand around plain
    // mqtt.js: what the wrapper itself costs, whatever the cores allow.
    const hand = row(BY_HAND, qos)
    if (hand)
      console.log(
        `| (info) ${BY_HAND}: msgs/s ÷ verify+open rate (what this machine allows without the wrapper) | ${qos} | ${f(hand.rate / openRate, 2)} × | | |`,
      )
    for (const name of [NO_PLUGIN, NO_PLUGIN_INLINE]) {
      const r = row(name, qos)
      if (!r || !hand) continue
      console.log(
        `| (info) ${name}: msgs/s ÷ the same crypto by hand on plain mqtt.js | ${qos} | ${f(r.rate / hand.rate, 2)} × | | |`,
      )
    }
    const extra = s.p50 - p.p50
    ok &&= extra <= 0.5
    console.log(
      `| p50 secured − plain @1k/s | ${qos} | ${f(extra, 3)} ms | ≤ 0.500 ms | ${extra <= 0.5 ? 'yes' : 'NO'} |`,
    )
    // Not targets, but what explains them: full verification against its crypto bound, the
    // transport's own ceiling, the machine's ceiling (every process's CPU per message flat out,
    // worker threads included, shared by the cores), the subscriber's single-thread ceiling
    // without the worker (verify + open plus what plain mqtt.js spends per message flat out),
    // and what the wrapper costs the subscriber beyond plain mqtt.js next to verify + open alone.
    console.log(
      `| (info) ${FULL}: msgs/s ÷ verify+open rate | ${qos} | ${f(s.rate / openRate, 2)} × | ≤ ${f(fullBound / openRate, 2)} × (${cores}-core crypto bound) | |`,
    )
    console.log(`| (info) secured ÷ plain msgs/s | ${qos} | ${f(s.rate / p.rate, 2)} × | | |`)
    for (const name of [BINDING, NO_PLUGIN]) {
      const r = row(name, qos)
      if (!r) continue
      const totalUs = ((r.busy.pub + r.busy.sub + r.busy.broker) / 100) * (1e6 / r.rate)
      console.log(
        `| (info) ${name}: machine bound, all processes ${f(totalUs, 1)} µs CPU/msg on ${cores} cores | ${qos} | ` +
          `≤ ${f((cores * 1e6) / totalUs / openRate, 2)} × | | |`,
      )
    }
    const inline = row(NO_PLUGIN_INLINE, qos)
    const worker = row(NO_PLUGIN, qos)
    if (inline && worker)
      console.log(
        `| (info) verify worker: ${NO_PLUGIN} msgs/s ÷ the same without it | ${qos} | ${f(worker.rate / inline.rate, 2)} × | | |`,
      )
    const plainSubUs = (p.busy.sub / 100) * (1e6 / p.rate)
    console.log(
      `| (info) one-thread subscriber bound: verify+open + plain mqtt.js receive (${f(plainSubUs, 1)} µs/msg) | ${qos} | ` +
        `≤ ${f(open.us / (open.us + plainSubUs), 2)} × | | |`,
    )
    console.log(
      `| (info) sub CPU/msg secured − plain | ${qos} | ${f(s.subCpu - p.subCpu, 1)} µs | (verify+open alone, paced: ${f(open.pacedUs, 1)} µs) | |`,
    )
  }
  for (const r of rows) ok &&= r.lost === 0 && r.rejected === 0
  console.log(`\n${ok ? 'all targets met' : 'some targets NOT met (see above)'}`)
  clearTimeout(deadline)
}

const role = process.argv.find((a) => a.startsWith('--role='))?.slice(7)
if (role === 'pub' || role === 'sub') void child(role)
else
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err)
      process.exit(1)
    },
  )
