// A real deployment in one process for the tests (`@smqtt/test-kit/broker`): the real key server
// (HTTPS, SQLite, dev PKI), Aedes with the plugin behind a real TLS listener using the same dev
// PKI, and mqtt.js clients.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { type AddressInfo, connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type Server, connect as tlsConnect } from 'node:tls'
import {
  attachSmqtt,
  type BrokerConfigDocument,
  loadBrokerConfig,
  type RunningBroker,
  type SmqttPlugin,
  type SmqttPluginOptions,
  type StartBrokerOptions,
  startBroker,
} from '@smqtt/broker-plugin'
import {
  createConnectPassword,
  createEnrollmentRequest,
  createEnvelopeSigner,
  type EnvelopeSigner,
  EpochKey,
  exportIdentity,
  generateIdentity,
  type Identity,
  type OpenedKeyBundle,
  openKeyBundle,
  type SuiteId,
  sealEnvelope,
  topicMatches,
} from '@smqtt/core'
import { Aedes } from 'aedes'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { type Harness, SMART_HOME_POLICY, startHarness } from './keyserver-harness.js'

/**
 * The broker's documented CONNECT deadline (`connectLimits.connectTimeoutSeconds` in its README and
 * docs/operations.md). The plugin's own constant is internal; a test against the documented value
 * also catches a default changed without the docs.
 */
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10

/** SMART_HOME_POLICY plus a plaintext area, a topic outside every group, and admin/keyserver roles. */
export const TEST_POLICY = {
  ...SMART_HOME_POLICY,
  rules: [
    ...SMART_HOME_POLICY.rules,
    { effect: 'allow', actions: ['publish', 'subscribe'], topics: ['public/#'], roles: ['app', 'thermostat'] },
    { effect: 'allow', actions: ['publish'], topics: ['misc/#'], roles: ['thermostat'] },
  ],
  plaintext: ['public/#'],
}

/** The sender's key bundle, fetched from the key server with a signed request and opened. */
export async function openBundleOf(h: Harness, sender: Pick<Enrolled, 'identity'>): Promise<OpenedKeyBundle> {
  const response = await h.device(sender.identity, 'GET', '/v1/bundle')
  if (response.status !== 200) throw new Error(`bundle: ${response.text}`)
  return openKeyBundle((response.body as { bundle: unknown }).bundle, {
    keyServerPublicKey: h.keyServer.publicKey,
    recipient: sender.identity,
    now: h.clock.now,
  })
}

/** What `sender` seals `topic` with: the newest epoch key of the topic's group, and its signer. */
export function sealingKeys(
  bundle: OpenedKeyBundle,
  sender: Pick<Enrolled, 'identity' | 'kid'>,
  topic: string,
): { epochKey: EpochKey; signer: EnvelopeSigner } {
  const group = bundle.groups.find((g) => topicMatches(g.filter, topic))
  const epoch = group?.epochs.at(-1)
  if (!group || !epoch) throw new Error(`no key for ${topic}`)
  return {
    epochKey: new EpochKey({ group: group.group, epoch: epoch.epoch, suite: group.suite as SuiteId, key: epoch.key }),
    signer: createEnvelopeSigner({ kid: sender.kid, seed: sender.identity.signingSeed }),
  }
}

export interface Enrolled {
  readonly identity: Identity
  readonly kid: number
  readonly certificatePem?: string
  readonly keyPem?: string
}

export interface Deployment {
  readonly h: Harness
  readonly broker: Aedes
  readonly smqtt: SmqttPlugin
  readonly server: Server
  readonly url: string
  readonly ca: string
  /** Every line the plugin logged (audit entries have `audit: true`). */
  readonly logs: Record<string, unknown>[]
  /** mqtt.js over TLS; never reconnects; closed in teardown. */
  connect(options: IClientOptions): Promise<MqttClient>
  /** Connects as `enrolled` with a fresh CONNECT password. */
  connectAs(enrolled: Enrolled, options?: IClientOptions): Promise<MqttClient>
  enroll(id: string, roles: string[], options?: { certificate?: boolean }): Promise<Enrolled>
  /** A sealed envelope from `sender` for `topic` in the group's newest epoch. */
  seal(
    sender: Enrolled,
    topic: string,
    seq: number,
    options?: { payload?: string; sentAt?: number },
  ): Promise<Uint8Array>
  /** The latest signed snapshot straight from the key server. */
  freshSnapshot(): Promise<unknown>
  close(): Promise<void>
}

const BOUND = 5_000

/** Rejects after `ms` with a message naming what was awaited. */
export function within<T>(promise: Promise<T>, what: string, ms = BOUND): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Resolves when the client's connection closes. */
export function closed(client: MqttClient, ms = BOUND): Promise<void> {
  if (!client.connected) return Promise.resolve()
  return within(new Promise<void>((resolve) => client.once('close', () => resolve())), 'the connection to close', ms)
}

/** Resolves with the client once its CONNACK accepted it; rejects on a refusal, an error or a close first. */
export function connected(client: MqttClient, what = 'CONNACK', ms = BOUND): Promise<MqttClient> {
  return within(
    new Promise<MqttClient>((resolve, reject) => {
      client.once('connect', () => resolve(client))
      client.once('error', reject)
      client.once('close', () => reject(new Error('closed before CONNACK')))
    }),
    what,
    ms,
  )
}

/** Collects messages of one client. */
export function inbox(client: MqttClient): { topic: string; payload: Buffer }[] {
  const received: { topic: string; payload: Buffer }[] = []
  client.on('message', (topic, payload) => received.push({ topic, payload }))
  return received
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until `received` (an {@link inbox}) holds a message, and returns the first. */
export async function firstMessage(
  received: readonly { topic: string; payload: Buffer }[],
  what: string,
  ms = BOUND,
): Promise<{ topic: string; payload: Buffer }> {
  await within(
    (async () => {
      while (received.length === 0) await sleep(10)
    })(),
    what,
    ms,
  )
  return received[0] as { topic: string; payload: Buffer }
}

/** A CONNECT packet (MQTT 3.1.1) built by hand, for what mqtt.js refuses to send. */
export function rawConnect(clientId: string, clean: boolean, username: string, password: string): Buffer {
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8')
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
  }
  const body = Buffer.concat([
    str('MQTT'),
    Buffer.from([4, 0xc0 | (clean ? 0x02 : 0), 0, 60]),
    str(clientId),
    str(username),
    str(password),
  ])
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(body.length)]), body])
}

/** MQTT's variable-length integer. */
export function remainingLength(n: number): number[] {
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return out
}

/** Opens a raw TLS connection, writes `bytes`, and returns what came back until the socket closed. */
export function rawExchange(
  url: string,
  ca: string,
  bytes: Buffer,
  ms = BOUND,
): Promise<{ received: Buffer; closed: boolean }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = tlsConnect({ host: hostname, port: Number(port), ca, servername: 'localhost' }, () =>
      socket.write(bytes),
    )
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ received: Buffer.concat(chunks), closed: false })
    }, ms)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ received: Buffer.concat(chunks), closed: true })
    })
  })
}

export async function p256Pems(): Promise<{ spki: Uint8Array; keyPem: string }> {
  const { publicKey, privateKey } = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])
  const spki = new Uint8Array(await crypto.subtle.exportKey('spki', publicKey))
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', privateKey)).toString('base64')
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join('\n')}\n-----END PRIVATE KEY-----\n`
  return { spki, keyPem }
}

/**
 * An mqtt.js client logging in as `who` with a CONNECT password, over mqtts to `url` (a node of
 * the dev PKI: server name localhost), with no reconnects; `options` adds to or overrides that.
 */
export function passwordClient(
  url: string,
  ca: string,
  who: Pick<Enrolled, 'identity'>,
  options: IClientOptions = {},
): MqttClient {
  const id = who.identity.id
  return mqtt.connect(url, {
    ca,
    servername: 'localhost',
    clientId: id,
    username: id,
    password: createConnectPassword(who.identity, id),
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ...options,
  })
}

/** The key server of a broker test: on the wall clock (the broker checks times against it), with TEST_POLICY. */
export async function startTestKeyServer(): Promise<Harness> {
  const h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  const put = await h.admin('PUT', '/v1/admin/policy', { policy: TEST_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  return h
}

/** The broker's identity file that {@link brokerFolder} writes, relative to that folder. */
export const BROKER_IDENTITY_FILE = 'broker-identity.json'

/**
 * A fresh folder for broker config files (named from `prefix`), holding the identity of the broker
 * principal `broker-1`, enrolled with `h` (every node of a cluster may run as that one principal).
 */
export async function brokerFolder(h: Harness, prefix: string): Promise<string> {
  const broker = await h.enroll('broker-1', ['broker'])
  const dir = mkdtempSync(join(tmpdir(), prefix))
  writeFileSync(join(dir, BROKER_IDENTITY_FILE), JSON.stringify(exportIdentity(broker.identity)), { mode: 0o600 })
  return dir
}

/**
 * A broker config for the key server of `h`: TLS with its dev PKI, its URL and public key; `config`
 * gives the rest, and its `keyServer` part adds to those two.
 */
export function brokerConfigFor(
  h: Harness,
  config: Omit<BrokerConfigDocument, 'keyServer'> & { keyServer?: Partial<BrokerConfigDocument['keyServer']> },
): BrokerConfigDocument {
  return {
    tls: { certFile: `${h.dir}/pki/server.pem`, keyFile: `${h.dir}/pki/server.key`, caFile: `${h.dir}/pki/ca.pem` },
    ...config,
    keyServer: { url: h.url, publicKey: Buffer.from(h.keyServer.publicKey).toString('base64url'), ...config.keyServer },
  }
}

export async function startDeployment(
  options: Partial<SmqttPluginOptions> = {},
  beforeAttach: (broker: Aedes) => void = () => {},
): Promise<Deployment> {
  const h = await startTestKeyServer()
  const clients = new Set<MqttClient>()
  const logs: Record<string, unknown>[] = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) })

  const enroll: Deployment['enroll'] = async (id, roles, opts = {}) => {
    const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
    if (token.status !== 201) throw new Error(`token: ${token.text}`)
    const identity = generateIdentity(id)
    const tls = opts.certificate ? await p256Pems() : undefined
    const response = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(identity, (token.body as { token: string }).token, {
        ...(tls ? { tlsPublicKey: tls.spki } : {}),
      }),
    })
    if (response.status !== 200) throw new Error(`enroll: ${response.text}`)
    const body = response.body as { kid: number; certificatePem?: string }
    return {
      identity,
      kid: body.kid,
      ...(body.certificatePem ? { certificatePem: body.certificatePem } : {}),
      ...(tls ? { keyPem: tls.keyPem } : {}),
    }
  }

  const brokerPrincipal = await enroll('broker-1', ['broker'])
  const broker = await Aedes.createBroker()
  beforeAttach(broker)
  const smqtt = await attachSmqtt(broker, {
    keyServerPublicKey: h.keyServer.publicKey,
    keyServer: { url: h.url, ca: h.caPem, identity: brokerPrincipal.identity, pullIntervalMs: 60_000 },
    logger,
    ...options,
  })
  const pki = `${h.dir}/pki`
  const server = createServer(
    {
      key: readFileSync(`${pki}/server.key`),
      cert: readFileSync(`${pki}/server.pem`),
      ca: h.caPem,
      requestCert: true,
      rejectUnauthorized: false, // the plugin decides: no certificate falls back to a password
    },
    (socket) => {
      socket.setNoDelay(true)
      smqtt.handle(socket)
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`

  const connect: Deployment['connect'] = async (opts) => {
    const client = mqtt.connect(url, { ca: h.caPem, reconnectPeriod: 0, connectTimeout: BOUND, ...opts })
    clients.add(client)
    return connected(client)
  }

  const bundles = new Map<string, Awaited<ReturnType<typeof openKeyBundle>>>()
  return {
    h,
    broker,
    smqtt,
    server,
    url,
    ca: h.caPem,
    logs,
    connect,
    connectAs: (enrolled, opts = {}) =>
      connect({
        clientId: enrolled.identity.id,
        username: enrolled.identity.id,
        password: createConnectPassword(enrolled.identity, enrolled.identity.id),
        ...opts,
      }),
    enroll,
    async seal(sender, topic, seq, options = {}) {
      let bundle = bundles.get(sender.identity.id)
      if (!bundle) {
        bundle = await openBundleOf(h, sender)
        bundles.set(sender.identity.id, bundle)
      }
      const { epochKey, signer } = sealingKeys(bundle, sender, topic)
      return sealEnvelope({
        topic,
        payload: new TextEncoder().encode(options.payload ?? 'hello'),
        epochKey,
        signer,
        seq,
        ...(options.sentAt === undefined ? {} : { sentAt: options.sentAt }),
      })
    },
    freshSnapshot: () => h.keyServer.brokerSnapshot(),
    async close() {
      for (const client of clients) client.end(true)
      await smqtt.close()
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await h.close()
    },
  }
}

/**
 * One node of a cluster, started as `smqtt-broker` starts it (a config file in `dir`, mqtts on a
 * free port) against the key server of `h`, sharing `redis` with the other nodes; `extra` adds
 * to its config. The node's identity file must be `dir/broker-identity.json` (see {@link brokerFolder}).
 */
export async function startClusterNode(
  h: Harness,
  dir: string,
  name: string,
  redis: { url: string; prefix: string },
  extra: Partial<BrokerConfigDocument> = {},
  logging: StartBrokerOptions = { logLevel: 'silent', logDestination: pino.destination(1) },
): Promise<RunningBroker> {
  const doc = brokerConfigFor(h, {
    listeners: { mqtts: { port: 0 } },
    keyServer: {
      identityFile: BROKER_IDENTITY_FILE,
      pullIntervalSeconds: 3600, // only the first pull: what follows arrives by push through Redis
    },
    metrics: false,
    redis,
    ...extra,
  })
  const file = `${dir}/${name}.json`
  writeFileSync(file, JSON.stringify(doc))
  return startBroker(loadBrokerConfig(file), logging)
}

/** A Redis server and the key prefix of one test run on it. */
export interface TestRedis {
  readonly url: string
  readonly prefix: string
}

/**
 * The Redis a test run uses (SMQTT_TEST_REDIS_URL, default the local one), with a key prefix of
 * the run's own (`name`, process, time), so runs never see each other's keys.
 */
export const testRedis = (name: string): TestRedis => ({
  url: process.env.SMQTT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  prefix: `smqtt-test-${name}-${process.pid}-${Date.now().toString(36)}:`,
})

/** One Redis command over RESP to the server at `url`; resolves with the raw reply (one line). */
export function redisCommand(url: string, ...args: string[]): Promise<string> {
  const { hostname, port } = new URL(url)
  const command = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: hostname, port: Number(port || 6379) }, () => socket.write(command))
    let reply = ''
    const timer = setTimeout(() => socket.destroy(new Error(`no Redis reply within ${BOUND} ms`)), BOUND)
    socket.on('data', (chunk) => {
      reply += chunk
      if (reply.endsWith('\r\n')) socket.end()
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(reply)
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** Runs `lua` on the keys of a test run (`ARGV[1]`: those under `redis.prefix`); resolves with its integer reply. */
async function evalOnRunKeys(redis: TestRedis, lua: string): Promise<number> {
  const reply = await redisCommand(redis.url, 'EVAL', lua, '0', `${redis.prefix}*`)
  if (!reply.startsWith(':')) throw new Error(`redis: ${reply.trim()}`)
  return Number(reply.slice(1, -2))
}

/** How many keys of a test run (those under `redis.prefix`) Redis holds. */
export const countRedisKeys = (redis: TestRedis): Promise<number> =>
  evalOnRunKeys(redis, "return #redis.call('KEYS', ARGV[1])")

/** Deletes the keys of a test run (those under `redis.prefix`); resolves with how many. */
export const deleteRedisKeys = (redis: TestRedis): Promise<number> =>
  evalOnRunKeys(
    redis,
    "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n",
  )

/**
 * Closes what a cluster test opened, in order: its clients, its nodes, the key server; then removes
 * its folder and its Redis keys (a failure there is ignored: the next run uses another prefix).
 */
export async function closeClusterTest(opened: {
  clients: Iterable<MqttClient>
  nodes: readonly (RunningBroker | undefined)[]
  h: Harness | undefined
  dir: string | undefined
  redis: TestRedis
}): Promise<void> {
  for (const client of opened.clients) client.end(true)
  for (const node of opened.nodes) await node?.close()
  await opened.h?.close()
  if (opened.dir) rmSync(opened.dir, { recursive: true, force: true })
  await deleteRedisKeys(opened.redis).catch(() => {})
}

/** A broker and its plugin with no key server to pull from, and how to close both. */
export interface BareBroker {
  readonly broker: Aedes
  readonly plugin: SmqttPlugin
  close(): Promise<void>
}

/**
 * A broker with the plugin and no key server: snapshots and deltas are handed in
 * (`applySnapshot`, `applySnapshotDelta`), envelope signatures checked on its event loop, logs
 * silent. For tests and benches of what the plugin does with what it is given.
 */
export async function startBareBroker(
  keyServerPublicKey: Uint8Array,
  options: Partial<SmqttPluginOptions> = {},
): Promise<BareBroker> {
  const broker = await Aedes.createBroker()
  const plugin = await attachSmqtt(broker, {
    keyServerPublicKey,
    logger: pino({ level: 'silent' }),
    verifyWorkers: 0,
    ...options,
  })
  return {
    broker,
    plugin,
    async close() {
      await plugin.close()
      await new Promise<void>((resolve) => broker.close(() => resolve()))
    },
  }
}
