// The infrastructure, all real and all on loopback with ephemeral ports: the key server (HTTPS,
// SQLite, development PKI, pushing over MQTT), Aedes over TLS with the SMQTT broker plugin, and
// a TCP wire tap in front of the broker that keeps a copy of every byte devices exchange with it.
import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https'
import { createServer as createTcpServer, type Socket, connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls'
import { attachSmqtt, type SmqttPlugin, type SmqttPluginOptions } from '@smqtt/broker-plugin'
import { enroll, memoryStorage } from '@smqtt/client'
import { tlsServerOptions } from '@smqtt/core/tls'
import {
  initKeyServer,
  type KeyServerConfig,
  loadKeyServerConfig,
  type RunningKeyServer,
  startKeyServer,
} from '@smqtt/keyserver'
import { Aedes } from 'aedes'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { pollUntil, waitUntil } from './_wait.js'
import { SMART_HOME_POLICY } from './policy.js'

/** The principal the key server pushes as (fixed by @smqtt/keyserver). */
const PUSH_PRINCIPAL = 'smqtt-keyserver'
const BROKER_PRINCIPAL = 'broker-1'

export interface AdminResponse {
  readonly status: number
  readonly body: unknown
}

/** What devices and the broker exchanged on the wire: raw TCP bytes, both directions. */
export interface WireTap {
  readonly url: string
  readonly captured: () => Buffer
}

/** One message as the raw subscriber inside the broker received it. */
export interface RoutedPayload {
  readonly topic: string
  readonly payload: Buffer
}

export interface Deployment {
  readonly keyServerUrl: string
  /** The deployment CA: the key server's and the broker's TLS certificates chain to it. */
  readonly ca: string
  /** The key server's Ed25519 key, handed to devices with their tokens and pinned by them. */
  readonly keyServerPublicKey: Uint8Array
  /** Where devices connect: through the wire tap, to the broker. */
  readonly brokerUrl: string
  /** MQTT over WebSocket over TLS (`wss://…/mqtt`), for browser apps; only with the `wss` option. */
  readonly wssUrl: string | undefined
  /** The dev PKI's server certificate and key (PEM), for an app server next to the deployment. */
  readonly serverTls: { readonly key: string; readonly cert: string }
  readonly broker: Aedes
  readonly plugin: SmqttPlugin
  readonly wire: WireTap
  /** Every payload a raw subscriber inside the broker got on `watch`: what a curious broker sees. */
  readonly routed: RoutedPayload[]
  /** Warnings and errors the key server and the broker logged (shown when something fails). */
  readonly logs: string[]
  /** The operator's API, with the admin token `init` created. */
  admin(method: string, path: string, body?: unknown): Promise<AdminResponse>
  close(): Promise<void>
}

type Logger = NonNullable<SmqttPluginOptions['logger']>

/**
 * A pino-shaped logger that keeps warnings and errors in `sink` and drops the rest, so the
 * scenario's own output stays readable. (The example depends on no logging library.)
 */
function quietLogger(sink: string[]): Logger {
  const noop = () => {}
  const keep = (level: string) => (first: unknown, second?: unknown) => {
    const message = typeof first === 'string' ? first : String(second ?? '')
    const fields = typeof first === 'object' && first !== null ? JSON.stringify(first) : ''
    sink.push(`${level}: ${message} ${fields}`.trim())
  }
  const logger: Record<string, unknown> = {
    level: 'warn',
    fatal: keep('fatal'),
    error: keep('error'),
    warn: keep('warn'),
    info: noop,
    debug: noop,
    trace: noop,
    silent: noop,
    child: () => logger,
    isLevelEnabled: (level: string) => ['warn', 'error', 'fatal'].includes(level),
  }
  return logger as unknown as Logger
}

/** A plain TCP relay to `port` that records every byte in both directions. */
async function startWireTap(port: number): Promise<WireTap & { close(): Promise<void> }> {
  const chunks: Buffer[] = []
  const sockets = new Set<Socket>()
  const server = createTcpServer((downstream) => {
    const upstream = tcpConnect(port, '127.0.0.1')
    for (const [from, to] of [
      [downstream, upstream],
      [upstream, downstream],
    ] as const) {
      sockets.add(from)
      from.on('data', (chunk: Buffer) => {
        chunks.push(Buffer.from(chunk))
        to.write(chunk)
      })
      from.on('end', () => to.end())
      from.on('error', () => to.destroy())
      from.on('close', () => {
        sockets.delete(from)
        to.destroy()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('wire tap has no address')
  return {
    url: `mqtts://127.0.0.1:${address.port}`,
    captured: () => Buffer.concat(chunks),
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function adminClient(url: string, ca: string, token: string): Deployment['admin'] {
  return (method, path, body) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body)
      const headers: Record<string, string> = { authorization: `Bearer ${token}` }
      if (payload !== undefined) headers['content-type'] = 'application/json'
      const req = httpsRequest(`${url}${path}`, { method, headers, ca, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined })
        })
        res.on('error', reject)
      })
      req.on('timeout', () => req.destroy(new Error(`admin ${method} ${path} timed out`)))
      req.on('error', reject)
      req.end(payload)
    })
}

/** What differs between deployments; every field defaults to the smart home's. */
export interface DeploymentOptions {
  /** The policy document the operator sets (`PUT /v1/admin/policy`). */
  readonly policy?: object
  /** The filter of the raw subscriber inside the broker (see {@link Deployment.routed}). */
  readonly watch?: string
  /** Key server settings that override the defaults `init` writes. */
  readonly keyServer?: Partial<Pick<KeyServerConfig, 'rotationLeadSeconds' | 'defaultGraceSeconds'>>
  /** Also listen for MQTT over WebSocket over TLS (browser apps). */
  readonly wss?: boolean
  /** Origins of browser apps the key server answers (CORS); default none. */
  readonly corsOrigins?: readonly string[]
}

/** Starts everything in `dir` (a fresh temporary folder) and sets the policy. */
export async function startDeployment(dir: string, options: DeploymentOptions = {}): Promise<Deployment> {
  const { policy = SMART_HOME_POLICY, watch = 'home/#' } = options
  const logs: string[] = []
  const logger = quietLogger(logs)
  const cleanups: (() => Promise<void>)[] = []
  const close = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
  }
  try {
    // 1. A key server deployment, as `smqtt-keyserver init` makes it: master key, admin token,
    //    development PKI, SQLite store.
    const keyServerDir = join(dir, 'keyserver')
    const created = await initKeyServer(keyServerDir, { listen: { host: '127.0.0.1', port: 0 } })
    const config = {
      ...loadKeyServerConfig(created.configFile),
      ...options.keyServer,
      ...(options.corsOrigins ? { cors: { origins: options.corsOrigins } } : {}),
    }
    const serverTls = { key: readFileSync(config.tls.keyFile, 'utf8'), cert: readFileSync(config.tls.certFile, 'utf8') }
    const ca = readFileSync(config.tls.caFile, 'utf8')
    const keyServerPublicKey = new Uint8Array(Buffer.from(created.keyServerPublicKey, 'base64url'))

    // 2. The broker's TLS port first, so the key server can be told where to push. Connections
    //    that arrive before the plugin holds its first snapshot wait for it (TLS sockets buffer).
    let plugin: SmqttPlugin | undefined
    const waiting: TLSSocket[] = []
    const sockets = new Set<TLSSocket>()
    // The SMQTT listeners' TLS options (@smqtt/core/tls), profile `modern`: TLS 1.3 only.
    const tls: TlsServer = createTlsServer({ ...serverTls, ...tlsServerOptions('modern') }, (socket) => {
      socket.setNoDelay(true)
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      if (plugin) plugin.handle(socket)
      else waiting.push(socket)
    })
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => tls.close(() => resolve()))
    })
    const tlsAddress = tls.address()
    if (!tlsAddress || typeof tlsAddress === 'string') throw new Error('broker has no address')
    const directBrokerUrl = `mqtts://127.0.0.1:${tlsAddress.port}`

    // 3. The key server, pushing bundles and broker snapshots over MQTT.
    const keyServer: RunningKeyServer = await startKeyServer(
      { ...config, push: { brokerUrl: directBrokerUrl, caFile: config.tls.caFile } },
      { logger },
    )
    cleanups.push(() => keyServer.close())
    const admin = adminClient(keyServer.url, ca, created.adminToken)
    const policySet = await admin('PUT', '/v1/admin/policy', { policy })
    if (policySet.status !== 200) throw new Error(`policy refused: ${JSON.stringify(policySet.body)}`)

    // 4. The broker is a principal too (role broker): it signs its snapshot pulls. Enrolled like
    //    any device, with a one-time token. The push principal must exist before the first
    //    snapshot, or the key server's own CONNECT would be refused.
    await pollUntil(
      async () => {
        const list = await admin('GET', '/v1/admin/principals')
        return ((list.body as { principals?: { id: string }[] }).principals ?? []).some((p) => p.id === PUSH_PRINCIPAL)
      },
      10_000,
      'the key server to create its push principal',
    )
    const token = await admin('POST', '/v1/admin/enrollment-tokens', {
      principalId: BROKER_PRINCIPAL,
      roles: ['broker'],
    })
    if (token.status !== 201) throw new Error(`broker token refused: ${JSON.stringify(token.body)}`)
    const brokerEnrollment = await enroll({
      keyServerUrl: keyServer.url,
      ca,
      token: (token.body as { token: string }).token,
      id: BROKER_PRINCIPAL,
      storage: memoryStorage(),
      keyServerPublicKey,
    })

    // 5. Aedes with the SMQTT plugin: pulls its first signed snapshot, then follows pushes.
    const broker = await Aedes.createBroker()
    cleanups.push(() => new Promise<void>((resolve) => broker.close(() => resolve())))
    const ready = new Set<string>()
    broker.on('clientReady', (client) => ready.add(client.id))
    broker.on('clientDisconnect', (client) => ready.delete(client.id))
    // A raw subscriber inside the broker, past the plugin's ACL: what a curious broker, or
    // anyone who breaks into it, gets to read.
    const routed: RoutedPayload[] = []
    await new Promise<void>((resolve) =>
      broker.subscribe(
        watch,
        (packet, done) => {
          routed.push({ topic: packet.topic, payload: Buffer.from(packet.payload) })
          done()
        },
        resolve,
      ),
    )
    const attached = await attachSmqtt(broker, {
      keyServerPublicKey,
      keyServer: { url: keyServer.url, ca, identity: brokerEnrollment.identity },
      logger,
    })
    cleanups.push(() => attached.close())
    if (!attached.snapshot) throw new Error(`the broker plugin could not pull its first snapshot:\n${logs.join('\n')}`)
    plugin = attached
    for (const socket of waiting.splice(0)) attached.handle(socket)
    await waitUntil(() => ready.has(PUSH_PRINCIPAL), 10_000, 'the key server push connection')

    // 6. Devices reach the broker through the wire tap.
    const wire = await startWireTap(tlsAddress.port)
    cleanups.push(() => wire.close())

    // 7. Browser apps: MQTT over WebSocket over TLS. No client-certificate request (Chromium
    //    cancels a WebSocket whose handshake asks for one); they log in with a CONNECT password.
    let wssUrl: string | undefined
    if (options.wss) {
      const https = createHttpsServer({ ...serverTls, ...tlsServerOptions('modern') })
      const webSockets = new WebSocketServer({ server: https, path: '/mqtt' })
      webSockets.on('connection', (socket, request) => {
        const stream = createWebSocketStream(socket)
        stream.on('error', () => {})
        // The plugin rate-limits per peer address, which it reads from the connection.
        Object.defineProperty(stream, 'remoteAddress', { value: request.socket.remoteAddress })
        attached.handle(stream)
      })
      await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
      cleanups.push(async () => {
        for (const client of webSockets.clients) client.terminate()
        https.closeAllConnections()
        await new Promise<void>((resolve) => https.close(() => resolve()))
      })
      const address = https.address()
      if (!address || typeof address === 'string') throw new Error('wss listener has no address')
      wssUrl = `wss://127.0.0.1:${address.port}/mqtt`
    }

    return {
      keyServerUrl: keyServer.url,
      ca,
      keyServerPublicKey,
      brokerUrl: wire.url,
      wssUrl,
      serverTls,
      broker,
      plugin: attached,
      wire,
      routed,
      logs,
      admin,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}
