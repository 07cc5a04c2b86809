// The broker under test, in a process of its own (forked by broker.bench.ts and connect.bench.ts)
// so its CPU time is separable from the clients': process.cpuUsage() here is the broker's alone.
// Plain Aedes, or Aedes with the SMQTT plugin in the given mode, behind a TLS listener with
// TCP_NODELAY; or (mode `server`) the whole smqtt-broker as `smqtt-broker start` runs it.
import { readFileSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:tls'
import { importIdentity } from '@smqtt/core'
import { type TlsProfile, tlsServerOptions } from '@smqtt/core/tls'
import { Aedes } from 'aedes'
import { pino } from 'pino'
import { heapAfterGc } from '../../../scripts/bench-scale/_heap.js'
import { verifyPoolOf } from '../src/attach.js'
import { loadBrokerConfig } from '../src/config.js'
import { attachSmqtt, type EnforcementMode } from '../src/index.js'
import { startBroker } from '../src/server.js'

export interface BrokerStart {
  /** `server`: startBroker(loadBrokerConfig(configFile)), logging to /dev/null; the rest is ignored. */
  readonly mode: 'plain' | EnforcementMode | 'server'
  readonly configFile?: string
  /** The listener's TLS hardening (`@smqtt/core/tls`); undefined: Node's defaults. */
  readonly tlsProfile?: TlsProfile
  readonly pkiDir: string
  readonly keyServerUrl: string
  readonly keyServerCa: string
  readonly keyServerPublicKey: string // base64url
  readonly identity: unknown // exportIdentity JSON of the broker's principal
  /** Signature verification worker threads; undefined: the plugin's default. */
  readonly verifyWorkers: number | undefined
}

export type BrokerReply =
  | { readonly type: 'listening'; readonly port: number; readonly verifyWorkers: number }
  /** CPU time of the whole process (every thread), and of the main thread alone (NaN off Linux), µs. */
  | { readonly type: 'cpu'; readonly user: number; readonly system: number; readonly eventLoop: number }
  /** After a full garbage collection: resident set, V8 heap in use and V8 heap reserved, bytes. */
  | { readonly type: 'memory'; readonly rss: number; readonly heapUsed: number; readonly heapTotal: number }
  | { readonly type: 'profiling'; readonly file: string | undefined }
  | { readonly type: 'error'; readonly message: string }

const send = (reply: BrokerReply) => process.send?.(reply)

/**
 * CPU time (user + system) of the main thread, the event loop, in µs: Linux's per-thread
 * counters (fields 14 and 15 of /proc/self/task/<pid>/stat, in clock ticks of 10 ms).
 * Unlike eventLoopUtilization, it does not count the time the OS gave the core to others.
 */
function mainThreadCpu(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10_000
  } catch {
    return Number.NaN
  }
}

async function start(options: BrokerStart) {
  if (options.mode === 'server') {
    if (options.configFile === undefined) throw new Error('mode server needs configFile')
    // The real broker's logging (info level, one line per accepted CONNECT), written to /dev/null.
    const running = await startBroker(loadBrokerConfig(options.configFile), {
      logDestination: pino.destination({ dest: '/dev/null', sync: true }),
    })
    if (running.plugin.state.snapshotIssuedAt === undefined) throw new Error('no snapshot from the key server')
    const port = Number(new URL(running.urls.mqtts).port)
    send({ type: 'listening', port, verifyWorkers: verifyPoolOf(running.plugin)?.workers.length ?? 0 })
    return
  }
  const broker = await Aedes.createBroker()
  let verifyWorkers = 0
  let handle = (socket: import('node:tls').TLSSocket) => {
    broker.handle(socket)
  }
  if (options.mode !== 'plain') {
    const plugin = await attachSmqtt(broker, {
      keyServerPublicKey: new Uint8Array(Buffer.from(options.keyServerPublicKey, 'base64url')),
      keyServer: {
        url: options.keyServerUrl,
        ca: options.keyServerCa,
        identity: importIdentity(options.identity),
        pullIntervalMs: 3_600_000, // one pull at start, none during the run
      },
      mode: options.mode,
      sampleRate: 0.05,
      ...(options.verifyWorkers === undefined ? {} : { verifyWorkers: options.verifyWorkers }),
      // The rate limit's bookkeeping runs, but never refuses the benchmark's single publisher.
      publishRate: { perSecond: 10_000_000, burst: 10_000_000 },
      logger: pino({ level: 'warn' }),
    })
    if (plugin.state.snapshotIssuedAt === undefined) throw new Error('no snapshot from the key server')
    verifyWorkers = verifyPoolOf(plugin)?.workers.length ?? 0
    handle = (socket) => {
      plugin.handle(socket)
    }
  }
  const server = createServer(
    {
      key: readFileSync(`${options.pkiDir}/server.key`),
      cert: readFileSync(`${options.pkiDir}/server.pem`),
      ...(options.tlsProfile ? tlsServerOptions(options.tlsProfile) : {}),
      ca: options.keyServerCa,
      requestCert: true,
      rejectUnauthorized: false,
    },
    (socket) => {
      socket.setNoDelay(true)
      handle(socket)
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  send({ type: 'listening', port: (server.address() as AddressInfo).port, verifyWorkers })
}

/**
 * A V8 CPU profile (sampled every 100 µs) of one phase only, e.g. the connects without the
 * start-up and the closes that `--cpu-prof` would take in too; written as `file` (.cpuprofile).
 */
let profiler: Session | undefined
async function profile(action: 'start' | 'stop', file: string | undefined): Promise<void> {
  if (action === 'start') {
    profiler = new Session()
    profiler.connect()
    await profiler.post('Profiler.enable')
    await profiler.post('Profiler.setSamplingInterval', { interval: 100 })
    await profiler.post('Profiler.start')
  } else if (profiler) {
    const { profile } = await profiler.post('Profiler.stop')
    profiler.disconnect()
    profiler = undefined
    if (file) writeFileSync(file, JSON.stringify(profile))
  }
  send({ type: 'profiling', file })
}

type BrokerCommand =
  | { cmd: 'start'; options: BrokerStart }
  | { cmd: 'cpu' }
  | { cmd: 'memory' }
  | { cmd: 'profile'; action: 'start' | 'stop'; file?: string }

process.on('message', (message: BrokerCommand) => {
  if (message.cmd === 'start')
    start(message.options).catch((err: Error) => {
      send({ type: 'error', message: err.message })
      process.exit(1)
    })
  else if (message.cmd === 'cpu') send({ type: 'cpu', ...process.cpuUsage(), eventLoop: mainThreadCpu() })
  else if (message.cmd === 'memory') {
    const heapUsed = heapAfterGc()
    const { rss, heapTotal } = process.memoryUsage()
    send({ type: 'memory', rss, heapUsed, heapTotal })
  } else if (message.cmd === 'profile')
    profile(message.action, message.file).catch((err: Error) => send({ type: 'error', message: err.message }))
})
// The parent going away ends the broker, whatever happens to the parent.
process.on('disconnect', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0)) // a normal exit (e.g. --cpu-prof writes its profile)
