// The parent's side of bench/_broker.ts: forks the broker child and asks it over IPC for its CPU
// time and memory (shared by broker.bench.ts and connect.bench.ts).
import { type ChildProcess, fork, type Serializable } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Identity } from '@smqtt/core'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import type { BrokerReply, BrokerStart } from './_broker.js'

/**
 * The real key server for a benchmark: on the wall clock (request signatures and passwords
 * carry it), the smart-home policy, and the broker's principal enrolled. `close()` stops both.
 */
export async function startBenchKeyServer(): Promise<{ h: Harness; broker: Identity; close(): Promise<void> }> {
  const h = await startHarness()
  const tick = () => {
    h.clock.now = Math.floor(Date.now() / 1000)
  }
  tick()
  const ticker = setInterval(tick, 200)
  const put = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  const { identity } = await h.enroll('broker-1', ['broker'])
  return {
    h,
    broker: identity,
    async close() {
      clearInterval(ticker)
      await h.close()
    },
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within<T>(promise: Promise<T>, what: string, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The broker child process and its IPC. */
export class BrokerProcess {
  readonly #child: ChildProcess
  readonly #waiting: ((reply: BrokerReply) => void)[] = []
  /** `profileDir`: the child writes a V8 CPU profile there (sampled every 100 µs) when it exits. */
  constructor(profileDir?: string) {
    this.#child = fork(fileURLToPath(new URL('./_broker.ts', import.meta.url)), [], {
      execArgv: [
        '--import',
        'tsx',
        '--conditions=smqtt-source',
        ...(profileDir ? ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profileDir}`] : []),
      ],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.#child.on('message', (reply: BrokerReply) => this.#waiting.shift()?.(reply))
  }
  get pid(): number | undefined {
    return this.#child.pid
  }
  #ask(message: unknown, what: string): Promise<BrokerReply> {
    const reply = new Promise<BrokerReply>((resolve) => this.#waiting.push(resolve))
    this.#child.send(message as Serializable)
    return within(reply, what, 30_000)
  }
  async start(options: BrokerStart): Promise<{ port: number; verifyWorkers: number }> {
    const reply = await this.#ask({ cmd: 'start', options }, 'the broker to listen')
    if (reply.type !== 'listening') throw new Error(`broker: ${reply.type === 'error' ? reply.message : reply.type}`)
    return reply
  }
  /** Broker CPU time (user + system, every thread) and event-loop busy time so far, µs. */
  async cpu(): Promise<{ process: number; eventLoop: number }> {
    const reply = await this.#ask({ cmd: 'cpu' }, 'the broker CPU time')
    if (reply.type !== 'cpu') throw new Error('unexpected reply')
    return { process: reply.user + reply.system, eventLoop: reply.eventLoop }
  }
  /** Resident set, V8 heap in use and reserved, after a full garbage collection in the broker, bytes. */
  async memory(): Promise<{ rss: number; heapUsed: number; heapTotal: number }> {
    const reply = await this.#ask({ cmd: 'memory' }, 'the broker memory')
    if (reply.type !== 'memory') throw new Error('unexpected reply')
    return reply
  }
  /** Starts a CPU profile of the broker's main thread; stop writes it to `file` (see _broker.ts). */
  async profile(action: 'start' | 'stop', file?: string): Promise<void> {
    const reply = await this.#ask({ cmd: 'profile', action, file }, 'the broker profiler')
    if (reply.type !== 'profiling') throw new Error(`profiler: ${reply.type === 'error' ? reply.message : reply.type}`)
  }
  stop(): Promise<void> {
    if (this.#child.exitCode !== null) return Promise.resolve()
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()))
    this.#child.kill('SIGTERM')
    return within(exited, 'the broker to exit', 10_000).catch(() => {
      this.#child.kill('SIGKILL')
    })
  }
}
