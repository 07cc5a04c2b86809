// The broker under test, in a process of its own (forked by broker.bench.ts) so its CPU time is
// separable from the clients': process.cpuUsage() here is the broker's alone. Plain Aedes, or
// Aedes with the SMQTT plugin in the given mode, behind a TLS listener with TCP_NODELAY.
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:tls'
import { importIdentity } from '@smqtt/core'
import { Aedes } from 'aedes'
import { pino } from 'pino'
import { verifyPoolOf } from '../src/attach.js'
import { attachSmqtt, type EnforcementMode } from '../src/index.js'

export interface BrokerStart {
  readonly mode: 'plain' | EnforcementMode
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

process.on('message', (message: { cmd: 'start'; options: BrokerStart } | { cmd: 'cpu' }) => {
  if (message.cmd === 'start')
    start(message.options).catch((err: Error) => {
      send({ type: 'error', message: err.message })
      process.exit(1)
    })
  else if (message.cmd === 'cpu') send({ type: 'cpu', ...process.cpuUsage(), eventLoop: mainThreadCpu() })
})
// The parent going away ends the broker, whatever happens to the parent.
process.on('disconnect', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0)) // a normal exit (e.g. --cpu-prof writes its profile)
