// `npm run bench:connect -w @smqtt/broker-plugin [-- --quick] [-- --profile]`: what one connection
// costs the broker (issue 14), smqtt-broker against plain Aedes and Mosquitto in the same run.
//
// Setup: the real key server harness (in this process) with N + WARMUP principals, all active,
// signing with one shared key; a CONNECT password per principal made before any clock starts, so
// client-side signing is not measured. Every broker listens over TLS on loopback with the
// harness's server certificate; the Node ones in a child process (bench/_broker.ts), Mosquitto as
// its own process on an ephemeral port with a generated config.
//
// Rows: plain Aedes 1.x (no plugin, any CONNECT accepted, the SMQTT listener's TLS options);
// Aedes with attachSmqtt (plugin.handle on the same listener: the plugin alone); smqtt-broker
// (startBroker from a config file: plugin, pre-authentication gate, info-level logs, metrics);
// Mosquitto (/usr/sbin/mosquitto, TLS listener, anonymous).
//
// Per row: WARMUP connections opened and closed (JIT, allocator); then N connections opened with
// at most CONCURRENCY in flight (TCP, TLS handshake, CONNECT, until CONNACK), each a fresh TLS
// session; held idle; memory measured; closed.
// - broker CPU µs per connection: the broker process's CPU time (every thread) over the connect
//   phase ÷ N. Node: process.cpuUsage() in the child; Mosquitto: utime + stime of /proc/<pid>/stat;
// - connections/s: N ÷ the connect phase (the clients share the 2 cores: see the note printed);
// - memory per idle connection: (RSS with N idle − RSS before) ÷ N, after a full GC for Node,
//   and the V8 heap in use after GC, the same way.
// The clients are raw TLS sockets sending a hand-built MQTT 3.1.1 CONNECT (keep-alive 600 s, so
// nothing is sent while idle), which keeps the client side cheap.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TLSSocket, connect as tlsConnect } from 'node:tls'
import { createConnectPassword, exportIdentity, generateIdentity, type Identity } from '@smqtt/core'
import { remainingLength } from '@smqtt/test-kit/broker'
import { addPrincipals, fleetId, freePort, type Harness } from '@smqtt/test-kit/keyserver'
import type { BrokerConfigDocument } from '../src/config.js'
import { BrokerProcess, startBenchKeyServer, within } from './_broker-process.js'

const quick = process.argv.includes('--quick')
// --profile: each Node broker child writes a V8 CPU profile of its measured connect phase only
// (open in Chrome DevTools) into this folder, as <row>.cpuprofile.
const PROFILE_DIR = process.argv.includes('--profile') ? mkdtempSync(join(tmpdir(), 'smqtt-connect-prof-')) : undefined
const N = quick ? 500 : 2_000 // connections measured per row
const WARMUP = quick ? 200 : 500 // opened and closed before measuring
const CONCURRENCY = 50 // connections in flight (below the broker's 100 unauthenticated per address)
const CONNECT_TIMEOUT_MS = 10_000
const ROW_TIMEOUT_MS = 120_000
const MOSQUITTO = '/usr/sbin/mosquitto'
const ALL_ROWS = ['plain', 'plugin', 'server', 'mosquitto'] as const
type RowName = (typeof ALL_ROWS)[number]
/** `--rows=plain,server` narrows the run (e.g. to profile one broker). */
const rowsArgument = process.argv.find((a) => a.startsWith('--rows='))?.slice('--rows='.length)
const ROWS = ALL_ROWS.filter((r) => rowsArgument?.split(',').includes(r) ?? true)
const CLK_TCK_US = 10_000 // Linux USER_HZ = 100

interface Row {
  readonly name: RowName
  readonly cpuUsPerConnection: number
  readonly connectionsPerSecond: number
  readonly rssPerConnection: number
  /** NaN for Mosquitto. */
  readonly heapPerConnection: number
  /**
   * Outside the V8 heap (OpenSSL, libuv, Node's native wrappers): RSS growth minus V8 heap
   * growth. The raw RSS growth also holds the pages V8 reserved to grow its young generation
   * during the connect burst (megabytes, varying run to run); NaN for Mosquitto.
   */
  readonly nativePerConnection: number
  readonly tls: string
  readonly failed: number
  /** V8 heap in use after GC before the connections (NaN for Mosquitto): what each major GC walks. */
  readonly heapBefore: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** An MQTT string: 2-byte length, then UTF-8. */
const mqttString = (text: string) => {
  const bytes = Buffer.from(text, 'utf8')
  const length = Buffer.alloc(2)
  length.writeUInt16BE(bytes.length)
  return Buffer.concat([length, bytes])
}

/** An MQTT 3.1.1 CONNECT (clean session, keep-alive 600 s, username and password). */
function connectPacket(clientId: string, username: string, password: string): Buffer {
  const variable = Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x80 | 0x40 | 0x02, 600 >> 8, 600 & 0xff])])
  const body = Buffer.concat([variable, mqttString(clientId), mqttString(username), mqttString(password)])
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(body.length)]), body])
}

const CONNACK_ACCEPTED = Buffer.from([0x20, 0x02, 0x00, 0x00])

/** Opens TLS, sends `packet`, resolves with the socket once CONNACK (accepted) arrived. */
function openConnection(port: number, ca: string, packet: Buffer): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' })
    socket.setNoDelay(true)
    let received = Buffer.alloc(0)
    const fail = (err: Error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    const timer = setTimeout(() => fail(new Error('no CONNACK in time')), CONNECT_TIMEOUT_MS)
    socket.once('secureConnect', () => socket.write(packet))
    socket.on('error', fail)
    socket.once('close', () => fail(new Error('closed before CONNACK')))
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (received.length < 4) return
      socket.off('data', onData)
      socket.removeAllListeners('close')
      clearTimeout(timer)
      if (!received.subarray(0, 4).equals(CONNACK_ACCEPTED))
        return fail(new Error(`CONNACK ${received.subarray(0, 4).toString('hex')}`))
      resolve(socket)
    }
    socket.on('data', onData)
  })
}

/** Opens one connection per packet, at most CONCURRENCY at a time; the failures are counted. */
async function openAll(port: number, ca: string, packets: Buffer[], sockets: TLSSocket[]): Promise<number> {
  let next = 0
  let failed = 0
  const worker = async () => {
    while (next < packets.length) {
      const packet = packets[next++] as Buffer
      try {
        const socket = await openConnection(port, ca, packet)
        socket.on('error', () => {})
        sockets.push(socket)
      } catch (err) {
        if (failed++ === 0) process.stderr.write(`\n  first failure: ${(err as Error).message}\n`)
      }
    }
  }
  await within(Promise.all(Array.from({ length: CONCURRENCY }, worker)), 'the connections', ROW_TIMEOUT_MS)
  return failed
}

async function closeAll(sockets: TLSSocket[]): Promise<void> {
  await Promise.all(
    sockets.splice(0).map(
      (socket) =>
        new Promise<void>((resolve) => {
          socket.once('close', () => resolve())
          socket.destroy()
        }),
    ),
  )
}

/** A broker under test, as the row loop sees it. */
interface Target {
  readonly port: number
  cpuUs(): Promise<number>
  memory(): Promise<{ rss: number; heapUsed: number; heapTotal: number }>
  /** --profile: a CPU profile of the phase between start and stop (Node rows). */
  profile?(action: 'start' | 'stop'): Promise<void>
  stop(): Promise<void>
}

async function nodeTarget(name: 'plain' | 'plugin' | 'server', h: Harness, brokerIdentity: Identity, dir: string) {
  const child = new BrokerProcess()
  const keyServerPublicKey = Buffer.from(h.keyServer.publicKey).toString('base64url')
  let configFile: string | undefined
  if (name === 'server') {
    const identityFile = join(dir, 'broker-identity.json')
    writeFileSync(identityFile, JSON.stringify(exportIdentity(brokerIdentity)), { mode: 0o600 })
    const config: BrokerConfigDocument = {
      listeners: { mqtts: { host: '127.0.0.1', port: 0 } },
      tls: { certFile: `${h.dir}/pki/server.pem`, keyFile: `${h.dir}/pki/server.key`, caFile: `${h.dir}/pki/ca.pem` },
      keyServer: { url: h.url, publicKey: keyServerPublicKey, identityFile, pullIntervalSeconds: 3600 },
      metrics: { host: '127.0.0.1', port: 0 },
    }
    configFile = join(dir, 'broker.json')
    writeFileSync(configFile, JSON.stringify(config))
  }
  const { port } = await child.start({
    mode: name === 'plain' ? 'plain' : name === 'plugin' ? 'full' : 'server',
    ...(configFile ? { configFile } : {}),
    tlsProfile: 'intermediate',
    verifyWorkers: undefined,
    pkiDir: `${h.dir}/pki`,
    keyServerUrl: h.url,
    keyServerCa: h.caPem,
    keyServerPublicKey,
    identity: exportIdentity(brokerIdentity),
  })
  return {
    port,
    cpuUs: async () => (await child.cpu()).process,
    memory: () => child.memory(),
    profile: (action: 'start' | 'stop') =>
      child.profile(action, PROFILE_DIR ? join(PROFILE_DIR, `${name}.cpuprofile`) : undefined),
    stop: () => child.stop(),
  } satisfies Target
}

async function mosquittoTarget(h: Harness, dir: string): Promise<Target> {
  const port = await freePort()
  const configFile = join(dir, 'mosquitto.conf')
  writeFileSync(
    configFile,
    [
      'per_listener_settings false',
      'allow_anonymous true',
      'persistence false',
      'log_dest none',
      'user root', // started by this process's user: no privilege drop, the key stays readable
      `listener ${port} 127.0.0.1`,
      `certfile ${h.dir}/pki/server.pem`,
      `keyfile ${h.dir}/pki/server.key`,
      '',
    ].join('\n'),
  )
  const child = spawn(MOSQUITTO, ['-c', configFile], { stdio: ['ignore', 'ignore', 'inherit'] })
  const pid = child.pid
  if (pid === undefined) throw new Error('mosquitto did not start')
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // Wait until it accepts (bounded).
  const deadline = Date.now() + 10_000
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const probe = tlsConnect({ host: '127.0.0.1', port, ca: h.caPem, servername: 'localhost' }, () => {
        probe.destroy()
        resolve(true)
      })
      probe.once('error', () => resolve(false))
    })
    if (up) break
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('mosquitto did not listen')
    await sleep(100)
  }
  const stat = () => readFileSync(`/proc/${pid}/stat`, 'utf8')
  return {
    port,
    async cpuUs() {
      const fields = stat()
        .slice(stat().lastIndexOf(')') + 2)
        .split(' ')
      return (Number(fields[11]) + Number(fields[12])) * CLK_TCK_US
    },
    async memory() {
      const rssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
      return { rss: rssKiB * 1024, heapUsed: Number.NaN, heapTotal: Number.NaN }
    },
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await within(exited, 'mosquitto to exit', 10_000).catch(() => child.kill('SIGKILL'))
    },
  }
}

async function runRow(
  name: RowName,
  h: Harness,
  brokerIdentity: Identity,
  dir: string,
  warmupPackets: Buffer[],
  packets: Buffer[],
): Promise<Row> {
  const target = name === 'mosquitto' ? await mosquittoTarget(h, dir) : await nodeTarget(name, h, brokerIdentity, dir)
  const sockets: TLSSocket[] = []
  try {
    const warmupFailed = await openAll(target.port, h.caPem, warmupPackets, sockets)
    if (warmupFailed > 0) throw new Error(`${name}: ${warmupFailed} warm-up connections failed`)
    await closeAll(sockets)
    await sleep(500) // the broker sees the closes
    const before = await target.memory()
    if (PROFILE_DIR) await target.profile?.('start')
    const cpuBefore = await target.cpuUs()
    const started = performance.now()
    const failed = await openAll(target.port, h.caPem, packets, sockets)
    const ms = performance.now() - started
    const cpuAfter = await target.cpuUs()
    if (PROFILE_DIR) await target.profile?.('stop')
    const first = sockets[0]
    const group = first?.getEphemeralKeyInfo()
    const tls = first
      ? `${first.getProtocol()} ${first.getCipher().name} ${group && 'name' in group ? group.name : ''}`
      : ''
    await sleep(1_000) // held idle
    const after = await target.memory()
    const opened = Math.max(1, sockets.length)
    return {
      name,
      cpuUsPerConnection: (cpuAfter - cpuBefore) / opened,
      connectionsPerSecond: (sockets.length / ms) * 1000,
      rssPerConnection: (after.rss - before.rss) / opened,
      heapPerConnection: (after.heapUsed - before.heapUsed) / opened,
      nativePerConnection: (after.rss - before.rss - (after.heapTotal - before.heapTotal)) / opened,
      tls: tls.trim(),
      failed,
      heapBefore: before.heapUsed,
    }
  } finally {
    await closeAll(sockets)
    await target.stop()
  }
}

/** Active principals `${prefix}0000000…` signing with `identity`'s key, straight into the store; their ids. */
async function addSigningPrincipals(h: Harness, identity: Identity, prefix: string, count: number): Promise<string[]> {
  await addPrincipals(h, count, { prefix, keys: () => identity })
  return Array.from({ length: count }, (_, i) => fleetId(prefix, i))
}

const loadBefore = loadavg()[0] ?? 0
const keyServer = await startBenchKeyServer()
const { h } = keyServer
const dir = mkdtempSync(join(tmpdir(), 'smqtt-connect-bench-'))
const rows: Row[] = []
try {
  const fleetKey = generateIdentity('connect-bench-fleet')
  // One principal per connection, in every row: each row's broker is fresh (its own nonce cache).
  const warmupIds = await addSigningPrincipals(h, fleetKey, 'warm-', WARMUP)
  const ids = await addSigningPrincipals(h, fleetKey, 'dev-', N)
  for (const name of ROWS) {
    process.stderr.write(`${name}… `)
    // Made per row, right before it (a password is accepted within 60 s of its timestamp).
    const packetsOf = (list: string[]) => list.map((id) => connectPacket(id, id, createConnectPassword(fleetKey, id)))
    const warmupPackets = packetsOf(warmupIds)
    const packets = packetsOf(ids)
    rows.push(await runRow(name, h, keyServer.broker, dir, warmupPackets, packets))
  }
  process.stderr.write('\n')
} finally {
  await keyServer.close()
  rmSync(dir, { recursive: true, force: true })
}

const label: Record<RowName, string> = {
  plain: 'plain Aedes 1.x (no plugin)',
  plugin: 'Aedes + attachSmqtt (plugin only)',
  server: 'smqtt-broker (startBroker)',
  mosquitto: 'Mosquitto 2.0',
}
const f = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a')
const kib = (bytes: number) => f(bytes / 1024, 1)
const plain = rows.find((r) => r.name === 'plain')
const mosquitto = rows.find((r) => r.name === 'mosquitto')
console.log(
  `\nBroker cost per connection: TLS on loopback (same server certificate, ECDSA P-256), ${N} connections per row, ` +
    `${CONCURRENCY} in flight, each a full TLS handshake + MQTT 3.1.1 CONNECT with a CONNECT password ` +
    `(one principal each), then held idle${quick ? ' (--quick)' : ''}; ${WARMUP} warm-up connections before.\n` +
    'CPU: the broker process only (all threads; Node: process.cpuUsage(), Mosquitto: /proc/<pid>/stat in 10 ms ticks). ' +
    'Memory: (with N idle − before) ÷ N, after a full GC for Node.\n' +
    `${cpus().length} cores; load average (1 min) before ${loadBefore.toFixed(2)}, after ${(loadavg()[0] ?? 0).toFixed(2)}` +
    (loadBefore > 1 ? ' — other processes were busy: connections/s is disturbed' : '') +
    `\nnegotiated: ${rows.map((r) => `${r.name} ${r.tls}`).join('; ')}` +
    `\nV8 heap in use before the connections (after GC): ${rows
      .filter((r) => Number.isFinite(r.heapBefore))
      .map((r) => `${r.name} ${f(r.heapBefore / 2 ** 20, 1)} MiB`)
      .join(', ')}\n`,
)
console.log(
  '| broker | CPU µs/conn | ÷ plain Aedes | ÷ Mosquitto | conn/s | RSS KiB/idle conn | V8 heap KiB/idle conn | native KiB/idle conn | heap + native ÷ Mosquitto RSS |\n|---|---|---|---|---|---|---|---|---|',
)
for (const r of rows)
  console.log(
    `| ${label[r.name]}${r.failed ? ` (${r.failed} failed)` : ''} | ${f(r.cpuUsPerConnection)} | ` +
      `${plain ? f(r.cpuUsPerConnection / plain.cpuUsPerConnection, 2) : 'n/a'} | ` +
      `${mosquitto ? f(r.cpuUsPerConnection / mosquitto.cpuUsPerConnection, 2) : 'n/a'} | ${f(r.connectionsPerSecond)} | ` +
      `${kib(r.rssPerConnection)} | ${kib(r.heapPerConnection)} | ${kib(r.nativePerConnection)} | ` +
      `${mosquitto ? f((r.name === 'mosquitto' ? r.rssPerConnection : r.heapPerConnection + r.nativePerConnection) / mosquitto.rssPerConnection, 2) : 'n/a'} |`,
  )
console.log(
  '\n- conn/s: the clients (raw TLS sockets in this process) share the cores with the broker; CPU µs/conn is the broker-side cost.\n' +
    '- RSS KiB/idle conn (Node) also holds the young-generation pages V8 reserved during the burst (varies run to run); ' +
    'heap + native (RSS growth minus V8 heap growth, plus the heap in use) is what the connections themselves hold.',
)
if (PROFILE_DIR) console.log(`\nbroker CPU profiles (one per Node row, in run order): ${PROFILE_DIR}`)
