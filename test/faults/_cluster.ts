// Real parts for the fault tests, each in a process of its own where a fault must kill it: the
// key server CLI on its SQLite file, `smqtt-broker` nodes, a private redis-server. Every wait is
// bounded; every process started here is killed by `stopAll()` even when a test fails.
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BrokerConfigDocument } from '@smqtt/broker-plugin'
import { type Enrollment, enroll, memoryStorage, type SecureClient, secureConnectAsync } from '@smqtt/client'
import { createConnectPasswordAsync, exportIdentity, type Identity } from '@smqtt/core'
import { initKeyServer } from '@smqtt/keyserver'
import { redisCommand } from '@smqtt/test-kit/broker'
import { freePort, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { afterAll, beforeAll } from 'vitest'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BOUND_MS = 20_000
/** A process start transpiles the sources (tsx): slow on a loaded 2-core machine. */
const PROCESS_START_MS = 60_000

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls until `check` holds; fails after `ms` naming what was awaited. */
export async function until(check: () => boolean | Promise<boolean>, what: string, ms = BOUND_MS): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(25)
  }
}

/** Waits until `check` holds or `ms` pass; says which (for counting what never came). */
export async function settled(check: () => boolean, ms: number): Promise<boolean> {
  return until(check, '', ms).then(
    () => true,
    () => false,
  )
}

/** One child process and everything it printed (stdout + stderr). */
export interface Proc {
  readonly child: ChildProcess
  output(): string
  /** The JSON lines it logged (pino). */
  lines(): Record<string, unknown>[]
  /** Resolves with the first logged line whose `msg` is `msg`. */
  logged(msg: string, ms?: number): Promise<Record<string, unknown>>
  readonly alive: boolean
  kill(signal?: NodeJS.Signals): Promise<void>
}

const running = new Set<Proc>()

function spawnProcess(command: string, args: string[]): Proc {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.on('error', (err) => {
    out += `${err.message}\n` // e.g. redis-server not installed: `logged` then reports it
  })
  child.stdout?.on('data', (chunk) => {
    out += chunk
  })
  child.stderr?.on('data', (chunk) => {
    out += chunk
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const lines = () =>
    out.split('\n').flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>]
      } catch {
        return []
      }
    })
  const proc: Proc = {
    child,
    output: () => out,
    lines,
    async logged(msg, ms = BOUND_MS) {
      await until(
        () => lines().some((l) => l.msg === msg) || child.exitCode !== null,
        `"${msg}" from ${args.join(' ')}`,
        ms,
      )
      const line = lines().find((l) => l.msg === msg)
      if (!line) throw new Error(`${args.join(' ')} exited (${child.exitCode}) before "${msg}":\n${out.slice(-2000)}`)
      return line
    },
    get alive() {
      return child.exitCode === null && child.signalCode === null
    },
    async kill(signal = 'SIGKILL') {
      running.delete(proc)
      if (proc.alive) child.kill(signal)
      await Promise.race([exited, sleep(10_000)])
    },
  }
  running.add(proc)
  return proc
}

/**
 * `<bin> start --config <configFile>`, one of this repository's programs run from source.
 * `node --import tsx` rather than the tsx binary: tsx runs the script in a child process of its
 * own, so a signal sent to the tsx wrapper would not reach the server.
 */
const startFromSource = (bin: string, configFile: string): Proc =>
  spawnProcess(process.execPath, ['--import', 'tsx', '--conditions=smqtt-source', bin, 'start', '--config', configFile])

/** Kills every process this module started and that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill()))
}

// ---- Redis --------------------------------------------------------------------------------------

/** One Redis command to the private redis-server on `port`, answered with the raw reply. */
const redisCommandOn = (port: number, ...args: string[]) => redisCommand(`redis://127.0.0.1:${port}`, ...args)

/** A private redis-server (never the shared one): it may be killed and restarted on its port. */
export interface PrivateRedis {
  readonly url: string
  readonly port: number
  /** Starts (or restarts) it on the same port, with whatever it saved in `dir`. */
  start(): Promise<void>
  /** Saves its data to `dir`, then exits, as an orderly restart does. */
  shutdown(): Promise<void>
}

async function privateRedis(dir: string): Promise<PrivateRedis> {
  const port = await freePort()
  let proc: Proc | undefined
  const ping = () =>
    redisCommandOn(port, 'PING').then(
      (reply) => reply.startsWith('+PONG'),
      () => false,
    )
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async start() {
      proc = spawnProcess('redis-server', [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ])
      await until(ping, `redis-server on port ${port}`)
    },
    async shutdown() {
      await redisCommandOn(port, 'SHUTDOWN', 'SAVE').catch(() => '')
      await until(() => !proc?.alive, 'redis-server to exit')
      await proc?.kill()
    },
  }
}

// ---- the key server -----------------------------------------------------------------------------

export interface HttpResponse {
  readonly status: number
  readonly body: unknown
}

/** A key server deployment on disk (`smqtt-keyserver init`), run as a child process. */
export interface KeyServerProcess {
  readonly url: string
  readonly dir: string
  readonly caPem: string
  readonly publicKey: string
  /** Starts `smqtt-keyserver start` on the deployment's fixed port and waits until it listens. */
  start(): Promise<Proc>
  admin(method: string, path: string, body?: unknown): Promise<HttpResponse>
  /** A fresh principal enrolled through @smqtt/client's enroll() with a one-time token. */
  enroll(id: string, roles: string[]): Promise<Enrollment<Identity>>
}

export async function keyServerProcess(dir: string): Promise<KeyServerProcess> {
  const port = await freePort()
  const { configFile, adminToken, keyServerPublicKey } = await initKeyServer(dir, {
    listen: { host: '127.0.0.1', port },
  })
  const url = `https://127.0.0.1:${port}`
  const caPem = readFileSync(join(dir, 'pki/ca.pem'), 'utf8')
  const admin: KeyServerProcess['admin'] = (method, path, body) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body)
      const headers = {
        authorization: `Bearer ${adminToken}`,
        ...(payload ? { 'content-type': 'application/json' } : {}),
      }
      const req = request(`${url}${path}`, { method, ca: caPem, headers, timeout: 10_000 }, (res) => {
        let text = ''
        res.on('data', (chunk) => {
          text += chunk
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }))
      })
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 10 s`)))
      req.on('error', reject)
      req.end(payload)
    })
  return {
    url,
    dir,
    caPem,
    publicKey: keyServerPublicKey,
    async start() {
      const proc = startFromSource('packages/keyserver/src/bin.ts', configFile)
      await proc.logged('key server listening', PROCESS_START_MS)
      return proc
    },
    admin,
    async enroll(id, roles) {
      const token = await admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
      if (token.status !== 201) throw new Error(`token for ${id}: ${JSON.stringify(token.body)}`)
      return enroll({
        keyServerUrl: url,
        ca: caPem,
        token: (token.body as { token: string }).token,
        id,
        storage: memoryStorage(),
        keyServerPublicKey: new Uint8Array(Buffer.from(keyServerPublicKey, 'base64url')),
      })
    },
  }
}

/** Installs the smart-home policy: thermostats publish, apps subscribe (brokers need no rule). */
export async function putSmartHomePolicy(ks: KeyServerProcess): Promise<void> {
  const put = await ks.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${JSON.stringify(put.body)}`)
}

// ---- brokers ------------------------------------------------------------------------------------

/**
 * Writes a broker config in `dir` using the key server's dev PKI, with a broker identity
 * enrolled once per `dir` (every node of a cluster runs as the same broker principal).
 */
export async function brokerConfig(
  ks: KeyServerProcess,
  dir: string,
  name: string,
  {
    pullIntervalSeconds = 30,
    ...extra
  }: Omit<Partial<BrokerConfigDocument>, 'keyServer'> & {
    pullIntervalSeconds?: number
  } = {},
): Promise<string> {
  const identityFile = join(dir, 'broker-identity.json')
  if (!existsSync(identityFile)) {
    const broker = await ks.enroll('broker-1', ['broker'])
    writeFileSync(identityFile, JSON.stringify(exportIdentity(broker.identity)), { mode: 0o600 })
  }
  const doc: BrokerConfigDocument = {
    listeners: { mqtts: { port: 0 } },
    tls: { certFile: `${ks.dir}/pki/server.pem`, keyFile: `${ks.dir}/pki/server.key`, caFile: `${ks.dir}/pki/ca.pem` },
    keyServer: {
      url: ks.url,
      publicKey: ks.publicKey,
      caFile: `${ks.dir}/pki/ca.pem`,
      identityFile,
      pullIntervalSeconds,
    },
    metrics: false,
    ...extra,
  }
  const file = join(dir, `${name}.json`)
  writeFileSync(file, JSON.stringify(doc, null, 2))
  return file
}

/** `smqtt-broker start` as a child process; resolves with its mqtts:// URL once it listens. */
async function brokerProcess(configFile: string): Promise<Proc & { readonly mqtts: string }> {
  const proc = startFromSource('packages/broker-plugin/src/bin.ts', configFile)
  const listening = await proc.logged('smqtt-broker listening', PROCESS_START_MS)
  return Object.assign(proc, { mqtts: String(listening.mqtts) })
}

// ---- clients and counting -----------------------------------------------------------------------

/** A connected @smqtt/client with keys loaded; `mqtt` options go to mqtt.js (servers, clean, ...). */
export async function secureClient(
  ks: Pick<KeyServerProcess, 'url' | 'caPem'>,
  enrollment: Enrollment,
  url: string,
  mqtt: IClientOptions = {},
): Promise<SecureClient> {
  const client = await secureConnectAsync(url, {
    identity: enrollment.identity,
    kid: enrollment.kid,
    storage: memoryStorage(),
    keyServer: { url: ks.url, ca: ks.caPem, keyServerPublicKey: enrollment.keyServerPublicKey },
    mqtt: { ca: ks.caPem, connectTimeout: 5_000, reconnectPeriod: 250, ...mqtt },
  })
  // Socket resets from a killed node and refused key fetches are the faults under test: mqtt.js
  // reconnects and the client keeps its keys, so both are only noted.
  client.on('error', () => {})
  client.on('keyServerError', () => {})
  return client
}

/** A plain mqtt.js login as `enrollment` (CONNECT password); rejects with the refusal. */
export async function connectAs(
  ks: Pick<KeyServerProcess, 'caPem'>,
  enrollment: Enrollment,
  url: string,
): Promise<MqttClient> {
  const id = enrollment.identity.id
  const password = await createConnectPasswordAsync(enrollment.identity, id)
  const client = mqtt.connect(url, { ca: ks.caPem, clientId: id, username: id, password, reconnectPeriod: 0 })
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
      client.once('close', () => reject(new Error(`${id}: closed before CONNACK`)))
    })
    return client
  } catch (err) {
    client.end(true)
    throw err
  }
}

/** Counts what a subscriber received of the numbered messages `0 … n-1` (payload = the number). */
export function tally(client: SecureClient): { seen: Map<number, number>; deliveries: () => number } {
  const seen = new Map<number, number>()
  let deliveries = 0
  client.on('message', (_topic, payload) => {
    deliveries++
    const n = Number(new TextDecoder().decode(payload))
    seen.set(n, (seen.get(n) ?? 0) + 1)
  })
  return { seen, deliveries: () => deliveries }
}

/**
 * The app's persistent session on `subscriberUrl`, subscribed to every thermostat (what it receives
 * is tallied), and the thermostat publishing on `publisherUrl`; both closed after the tests.
 */
export async function subscriberAndPublisher(
  run: ReturnType<typeof useCluster>,
  subscriberUrl: string,
  publisherUrl: string,
  subscriberOptions: IClientOptions = {},
) {
  const { cluster, clients } = run
  const subscriber = await secureClient(cluster.ks, cluster.app, subscriberUrl, { clean: false, ...subscriberOptions })
  const publisher = await secureClient(cluster.ks, cluster.thermostat, publisherUrl)
  clients.push(subscriber, publisher)
  const received = tally(subscriber)
  await subscriber.subscribeAsync('home/+/thermostat/#', { qos: 1 })
  return { subscriber, publisher, ...received }
}

/** One line per fault for docs/reliability.md: what was sent, what arrived, what was lost. */
export interface FaultReport {
  readonly fault: string
  readonly sent: number
  readonly received: number
  readonly lost: number
  readonly duplicates: number
  readonly [detail: string]: unknown
}

export function report(line: FaultReport): FaultReport {
  console.log(JSON.stringify(line))
  return line
}

// ---- two broker nodes over a private Redis ------------------------------------------------------

export const THERMOSTAT_TOPIC = 'home/hall/thermostat/thermostat-1/temp'

/** A key server, a private Redis and two `smqtt-broker` nodes sharing it, plus two principals. */
export interface Cluster {
  readonly ks: KeyServerProcess
  readonly redis: PrivateRedis
  readonly nodes: readonly [Proc & { readonly mqtts: string }, Proc & { readonly mqtts: string }]
  readonly thermostat: Enrollment
  readonly app: Enrollment
}

export async function startCluster(dir: string): Promise<Cluster> {
  const redis = await privateRedis(dir)
  await redis.start()
  const ks = await keyServerProcess(join(dir, 'keyserver'))
  await ks.start()
  await putSmartHomePolicy(ks)
  const thermostat = await ks.enroll('thermostat-1', ['thermostat'])
  const app = await ks.enroll('app-1', ['app'])
  const redisConfig = { redis: { url: redis.url, prefix: 'faults:' } }
  const [a, b] = [
    await brokerConfig(ks, dir, 'node-a', redisConfig),
    await brokerConfig(ks, dir, 'node-b', redisConfig),
  ]
  const nodes = (await Promise.all([brokerProcess(a), brokerProcess(b)])) as Cluster['nodes']
  return { ks, redis, nodes, thermostat, app }
}

/**
 * Registers a test file's hooks around one cluster: before all, a fresh temporary directory (named
 * from `prefix`) and startCluster(); after all, the secure clients pushed onto `clients` ended,
 * every process stopped and the directory removed, even when a test failed.
 */
export function useCluster(prefix: string): { readonly cluster: Cluster; readonly clients: SecureClient[] } {
  let dir: string | undefined
  let cluster: Cluster | undefined
  const clients: SecureClient[] = []
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix))
    cluster = await startCluster(dir)
  }, 150_000)
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})))
    await stopAll()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })
  return {
    clients,
    get cluster() {
      if (!cluster) throw new Error('the cluster starts in beforeAll')
      return cluster
    },
  }
}

/** mqtt.js `servers`: reconnects go to the next node in the list. */
export function serversOf(...urls: string[]): NonNullable<IClientOptions['servers']> {
  return urls.map((url) => {
    const { hostname, port } = new URL(url)
    return { host: hostname, port: Number(port), protocol: 'mqtts' as const }
  })
}
