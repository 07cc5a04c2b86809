// The real `smqtt-broker` CLI as a child process (with the real key server over HTTPS in this
// process), fed hostile MQTT over TLS: each input on its own connection, and after every batch a
// check that the process is up, printed nothing on stderr, still serves a legitimate secure
// client end to end, and how much memory it holds. Used by mqtt-wire.test.ts (short, CI) and
// mqtt-wire.fuzz.ts (long).
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { type ClientStorage, memoryStorage, type SecureClient, secureConnectAsync } from '@smqtt/client'
import { createConnectPassword, exportIdentity, type Identity } from '@smqtt/core'
import { brokerConfigFor, TEST_POLICY, within } from '@smqtt/test-kit/broker'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { memoryTable } from './_campaign.js'
import { connectPacket, type HostileInput } from './_mqtt-packets.js'

/** How one input ended. */
export type Outcome = 'closed' | 'connack-refused' | 'open' | 'tls-failed'

export interface Principal {
  readonly identity: Identity
  readonly kid: number
}

export interface BrokerProcess {
  readonly h: Harness
  readonly url: string
  /** One principal per concurrent worker, for the inputs sent after an authenticated CONNECT. */
  readonly devices: readonly Principal[]
  /** Audit events the broker logged (`event reason`, e.g. `refused bad-credentials`), counted. */
  readonly events: Map<string, number>
  /** What the process wrote on stderr since it started listening. */
  stderr(): string
  /** The exit code or signal if the process ended. */
  exited(): string | undefined
  /** Resident set size and V8 heap in use, from its /metrics. */
  memory(): Promise<{ rss: number; heapUsed: number }>
  /** A thermostat seals a reading, an app receives and opens it: fresh secure clients each time. */
  roundTrip(): Promise<void>
  close(): Promise<void>
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** Starts the key server and `smqtt-broker start` with rate limits lifted (the fuzz must reach the parser). */
export async function startBrokerProcess(workers: number): Promise<BrokerProcess> {
  const h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-wire-fuzz-'))
  let child: ChildProcess | undefined
  try {
    const put = await h.admin('PUT', '/v1/admin/policy', { policy: TEST_POLICY })
    if (put.status !== 200) throw new Error(`policy: ${put.text}`)
    const broker = await h.enroll('broker-1', ['broker'])
    const devices: Principal[] = []
    for (let i = 0; i < workers; i++) devices.push(await h.enroll(`fuzz-${i}`, ['thermostat']))
    const sender = await h.enroll('thermostat-1', ['thermostat'])
    const reader = await h.enroll('app-1', ['app'])
    writeFileSync(join(dir, 'identity.json'), JSON.stringify(exportIdentity(broker.identity)), { mode: 0o600 })
    const config = brokerConfigFor(h, {
      listeners: { mqtts: { host: '127.0.0.1', port: 0 } },
      keyServer: { identityFile: 'identity.json' },
      metrics: { host: '127.0.0.1', port: 0 },
      connectLimits: { perAddress: 1_000_000, perClientId: 1_000_000, failuresBeforeBan: 1_000_000 },
      logLevel: 'info',
    })
    writeFileSync(join(dir, 'broker.json'), JSON.stringify(config))

    const spawned = spawn(
      join(ROOT, 'node_modules/.bin/tsx'),
      ['--conditions=smqtt-source', 'packages/broker-plugin/src/bin.ts', 'start', '--config', join(dir, 'broker.json')],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    child = spawned
    const events = new Map<string, number>()
    let listening: { mqtts: string; metrics: string } | undefined
    let stderr = ''
    let exit: string | undefined
    let partial = ''
    spawned.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        if (!line) continue
        const entry = JSON.parse(line) as Record<string, unknown>
        if (entry.msg === 'smqtt-broker listening') listening = entry as unknown as typeof listening
        if (typeof entry.event === 'string') {
          const key = [entry.event, entry.hook, entry.reason].filter((part) => typeof part === 'string').join(' ')
          events.set(key, (events.get(key) ?? 0) + 1)
        }
      }
    })
    spawned.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    spawned.once('exit', (code, signal) => {
      exit = String(code ?? signal)
    })
    await within(
      (async () => {
        while (!listening && exit === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
      })(),
      'the broker process to listen',
      30_000,
    )
    if (!listening) throw new Error(`the broker exited (${exit}): ${stderr}`)
    const { mqtts, metrics } = listening
    const url = mqtts

    // One storage per principal for the whole run: the sender's sequence numbers must keep
    // growing across its connections, or the broker refuses its publishes as replays.
    const storages = new Map([sender, reader].map((who) => [who.identity.id, memoryStorage()]))
    const secureClient = (who: Principal): Promise<SecureClient> =>
      secureConnectAsync(url, {
        ...who,
        keyServer: { url: h.url, ca: h.caPem, keyServerPublicKey: h.keyServer.publicKey },
        storage: storages.get(who.identity.id) as ClientStorage,
        mqtt: { ca: h.caPem, reconnectPeriod: 0, connectTimeout: 10_000 },
        timeoutMs: 20_000,
      })
    let round = 0
    const roundTrip = async () => {
      const app = await secureClient(reader)
      try {
        const thermostat = await secureClient(sender)
        try {
          const text = `21.${++round}`
          const received = new Promise<string>((resolve) =>
            app.on('message', (_topic, payload) => resolve(new TextDecoder().decode(payload))),
          )
          await app.subscribeAsync('home/+/thermostat/#', { qos: 1 })
          await thermostat.publishAsync('home/h1/thermostat/thermostat-1/temp', text, { qos: 1 })
          const got = await within(received, 'the round trip message', 15_000)
          if (got !== text) throw new Error(`round trip: expected ${text}, got ${got}`)
        } finally {
          await thermostat.endAsync(true)
        }
      } finally {
        await app.endAsync(true)
      }
    }

    return {
      h,
      url,
      devices,
      events,
      stderr: () => stderr,
      exited: () => exit,
      async memory() {
        const text = await httpGet(metrics)
        const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN)
        return { rss: read('process_resident_memory_bytes'), heapUsed: read('nodejs_heap_size_used_bytes') }
      },
      // A publish refused or lost would leave publishAsync pending forever: bound the whole trip.
      roundTrip: () => within(roundTrip(), 'a secure round trip', 60_000),
      async close() {
        if (exit === undefined) {
          const gone = new Promise((resolve) => spawned.once('exit', resolve))
          spawned.kill('SIGTERM')
          await within(gone, 'the broker process to exit', 10_000).catch(() => spawned.kill('SIGKILL'))
        }
        await h.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    child?.kill('SIGKILL')
    await h.close()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 10_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk
      })
      res.on('end', () => resolve(body))
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)))
    req.on('error', reject)
    req.end()
  })
}

/** How long to wait for the close an input must cause, and for one it may cause. */
export interface Waits {
  readonly mustCloseMs: number
  readonly settleMs: number
}

/**
 * Sends one input on a new TLS connection (after an accepted CONNECT as `device` if the input
 * says so) and reports how the connection ended. Rejects if the authenticated CONNECT is not
 * accepted: that is the harness failing, not an outcome.
 */
export function send(url: string, ca: string, input: HostileInput, device: Principal, waits: Waits): Promise<Outcome> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0)
    let secured = false
    let sessionOpen = !input.afterConnect
    const socket = tlsConnect({ host: hostname, port: Number(port), ca, servername: 'localhost' })
    const end = (outcome: Outcome | Error) => {
      clearTimeout(timer)
      socket.destroy()
      if (outcome instanceof Error) reject(outcome)
      else resolve(outcome)
    }
    const refusedLogin = () => new Error(`no CONNACK 0 for ${device.identity.id}: ${received.toString('hex')}`)
    let timer = setTimeout(() => end('tls-failed'), waits.mustCloseMs)
    const sendInput = () => {
      sessionOpen = true
      socket.write(input.bytes)
      timer = setTimeout(() => end('open'), input.mustClose ? waits.mustCloseMs : waits.settleMs)
    }
    socket.once('secureConnect', () => {
      secured = true
      clearTimeout(timer)
      if (!input.afterConnect) return sendInput()
      const id = device.identity.id
      socket.write(connectPacket({ clientId: id, username: id, password: createConnectPassword(device.identity, id) }))
      timer = setTimeout(() => end(refusedLogin()), waits.mustCloseMs)
    })
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (sessionOpen || received.length < 4) return
      clearTimeout(timer)
      if (received[0] !== 0x20 || received[3] !== 0) return end(refusedLogin())
      received = received.subarray(4)
      sendInput()
    })
    socket.on('error', () => {}) // a reset after the server closed is a close
    socket.once('close', () => {
      if (!secured) return end('tls-failed')
      if (!sessionOpen) return end(refusedLogin())
      end(received[0] === 0x20 && received.length >= 4 && received[3] !== 0 ? 'connack-refused' : 'closed')
    })
  })
}

export interface MemorySample {
  readonly inputs: number
  readonly rss: number
  readonly heapUsed: number
}

/** Counts per kind and outcome, and what a run proved. */
export interface CampaignReport {
  readonly inputs: number
  readonly byKind: Map<string, Map<Outcome, number>>
  /** Inputs that must close but stayed open (kind: count). */
  readonly notClosed: Map<string, number>
  /** The broker's memory before the first input and after each batch. */
  readonly memory: readonly MemorySample[]
  readonly roundTrips: number
  readonly seconds: number
}

/**
 * Sends every batch through `concurrency` workers (worker i authenticates as devices[i]); after
 * each batch asserts the process is up with a clean stderr, and a secure round trip works.
 */
export async function runCampaign(
  broker: BrokerProcess,
  batches: Iterable<readonly HostileInput[]>,
  options: Waits & { readonly concurrency: number; readonly onBatch?: (done: number) => void },
): Promise<CampaignReport> {
  const started = Date.now()
  const byKind = new Map<string, Map<Outcome, number>>()
  const notClosed = new Map<string, number>()
  let inputs = 0
  let roundTrips = 0
  await broker.roundTrip() // warm up before measuring memory
  const memory: MemorySample[] = [{ inputs: 0, ...(await broker.memory()) }]
  for (const batch of batches) {
    let next = 0
    const worker = async (device: Principal) => {
      while (next < batch.length) {
        const input = batch[next++] as HostileInput
        const outcome = await send(broker.url, broker.h.caPem, input, device, options)
        const counts = byKind.get(input.kind) ?? new Map<Outcome, number>()
        counts.set(outcome, (counts.get(outcome) ?? 0) + 1)
        byKind.set(input.kind, counts)
        if (input.mustClose && (outcome === 'open' || outcome === 'tls-failed'))
          notClosed.set(input.kind, (notClosed.get(input.kind) ?? 0) + 1)
      }
    }
    await Promise.all(broker.devices.slice(0, options.concurrency).map(worker))
    inputs += batch.length
    assertHealthy(broker)
    await broker.roundTrip()
    roundTrips++
    memory.push({ inputs, ...(await broker.memory()) })
    options.onBatch?.(inputs)
  }
  assertHealthy(broker)
  return {
    inputs,
    byKind,
    notClosed,
    memory,
    roundTrips,
    seconds: (Date.now() - started) / 1000,
  }
}

function assertHealthy(broker: BrokerProcess): void {
  const exit = broker.exited()
  if (exit !== undefined) throw new Error(`the broker process exited (${exit}): ${broker.stderr()}`)
  if (broker.stderr() !== '') throw new Error(`the broker process wrote on stderr: ${broker.stderr()}`)
}

/** The report as markdown tables (inputs by kind and outcome, broker memory, duration). */
export function markdownReport(report: CampaignReport, broker: BrokerProcess): string {
  const rows = [...report.byKind].sort(([a], [b]) => a.localeCompare(b))
  const total = (outcome: Outcome) => rows.reduce((sum, [, counts]) => sum + (counts.get(outcome) ?? 0), 0)
  const lines = [
    '| input kind | inputs | closed | CONNACK refusal | still open (waiting for more) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map(([kind, counts]) => {
      const n = [...counts.values()].reduce((a, b) => a + b, 0)
      return `| ${kind} | ${n} | ${counts.get('closed') ?? 0} | ${counts.get('connack-refused') ?? 0} | ${counts.get('open') ?? 0} |`
    }),
    `| **all** | **${report.inputs}** | **${total('closed')}** | **${total('connack-refused')}** | **${total('open')}** |`,
    '',
    `TLS handshakes failed: ${total('tls-failed')}. Inputs that must close but did not: ${
      report.notClosed.size === 0 ? 'none' : [...report.notClosed].map(([k, n]) => `${k} (${n})`).join(', ')
    }.`,
    '',
    ...memoryTable('| inputs sent | broker RSS | V8 heap used |', report.memory, (m) => m.inputs),
    '',
    `Secure round trips after each batch: ${report.roundTrips}, all delivered. Process still up, nothing on stderr. Duration ${report.seconds.toFixed(0)} s.`,
    '',
    '| audit events logged by the broker | count |',
    '| --- | ---: |',
    ...[...broker.events].sort(([a], [b]) => a.localeCompare(b)).map(([event, n]) => `| ${event} | ${n} |`),
  ]
  return lines.join('\n')
}
