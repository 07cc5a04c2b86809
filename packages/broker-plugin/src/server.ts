// Assembles a running SMQTT broker from a config: Aedes with the plugin, the mqtts:// listener,
// the optional wss:// and (insecure, loudly) plain listeners, Prometheus /metrics, pino logs with
// a separate audit log, and a graceful close. The CLI's `start`, `npm start` and the tests use it.
// The key server's equivalent is packages/keyserver/src/server.ts.
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls'
import { type Identity, importIdentity, SmqttError } from '@smqtt/core'
import { boundedLog } from '@smqtt/core/bounded-log'
import { assertDeploymentFileMode } from '@smqtt/core/file-modes'
import { tlsServerOptions } from '@smqtt/core/tls'
import { Aedes } from 'aedes'
import { type DestinationStream, type Logger, pino } from 'pino'
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { attachSmqtt, type SmqttPlugin } from './attach.js'
import type { BrokerConfig, ListenAddress, LogLevel } from './config.js'
import { connectDeadlineMs } from './limits.js'
import { DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS, PreAuthGate } from './preauth.js'
import { createRedisBackends, createSharedLimitsConnection, type RedisBackends } from './redis.js'

/** How much later than the pre-authentication deadline Aedes' own CONNECT timeout falls. */
const BACKSTOP_SECONDS = 5

/** Options of {@link startBroker} that are not in the config file. */
export interface StartBrokerOptions {
  /** Overrides `logLevel` of the config (e.g. `npm start` keeps the console quiet). */
  readonly logLevel?: LogLevel
  /** Where the main log goes (default: stdout). Audit entries go to `auditLogFile` when set. */
  readonly logDestination?: DestinationStream
}

/** Where a running broker listens. */
export interface BrokerUrls {
  readonly mqtts: string
  readonly wss?: string
  readonly mqtt?: string
  /** `http://…/metrics` (Prometheus text format). */
  readonly metrics?: string
}

export interface RunningBroker {
  readonly urls: BrokerUrls
  readonly broker: Aedes
  readonly plugin: SmqttPlugin
  readonly logger: Logger
  /**
   * Graceful shutdown: stops accepting connections, closes every client and the broker, then
   * the metrics server, and flushes the logs. Idempotent.
   */
  close(): Promise<void>
}

/** Connections that never sent CONNECT are cut this long after close() started. */
const CLOSE_GRACE_MS = 1_000
/** How long startup waits for the shared-limits Redis connection (then it goes on, failing closed). */
const SHARED_LIMITS_READY_MS = 5_000

/**
 * Starts the broker described by `config` and listens. Reads the TLS files and the broker's
 * identity, pulls the first snapshot from the key server, then opens the listeners (so the
 * first CONNECT already meets a snapshot when the key server is up).
 *
 * @example
 * ```ts
 * const broker = await startBroker(loadBrokerConfig('./broker/config.json'))
 * console.log(broker.urls.mqtts)
 * process.once('SIGTERM', () => broker.close())
 * ```
 */
export async function startBroker(config: BrokerConfig, options: StartBrokerOptions = {}): Promise<RunningBroker> {
  const tlsFiles = {
    cert: readConfigFile(config.tls.certFile, '$.tls.certFile'),
    key: readConfigFile(config.tls.keyFile, '$.tls.keyFile', 'secret'),
    ca: readConfigFile(config.tls.caFile, '$.tls.caFile'),
  }
  const keyServerCa = readConfigFile(config.keyServer.caFile, '$.keyServer.caFile')
  const identity = readIdentity(config.keyServer.identityFile)
  const logging = createLogging(config, options)
  const { logger } = logging

  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // Scale-out: with `redis`, the bus and the persistence are shared with the other nodes.
  const redis: RedisBackends | undefined = config.redis ? createRedisBackends(config.redis) : undefined
  redis?.onError((err) => logger.error({ err: err.message }, 'Redis (shared by the broker nodes) failed'))
  // And the nonces, CONNECT budgets, bans and PUBLISH rates (cluster-limits.ts).
  const sharedLimits = config.redis ? createSharedLimitsConnection(config.redis) : undefined
  sharedLimits?.on('error', (err: Error) =>
    logger.error({ err: err.message }, 'Redis (shared limits of the broker nodes) failed'),
  )
  const broker = await Aedes.createBroker(redis ? { mq: redis.mq, persistence: redis.persistence } : {})
  // It queues nothing: until it is ready, password CONNECTs would be refused.
  if (sharedLimits && sharedLimits.status !== 'ready')
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SHARED_LIMITS_READY_MS)
      sharedLimits.once('ready', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  const closeBroker = async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    await redis?.destroyPersistence()
    sharedLimits?.disconnect()
  }
  new Gauge({
    name: 'smqtt_broker_connected_clients',
    help: 'MQTT clients connected (after CONNECT) to this broker node.',
    registers: [registry],
    collect() {
      this.set(broker.connectedClients)
    },
  })
  broker.on('clientError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'client error'))
  broker.on('connectionError', (_client, err) => logger.debug({ err: err.message }, 'connection error'))

  let plugin: SmqttPlugin
  try {
    plugin = await attachSmqtt(broker, {
      keyServerPublicKey: config.keyServer.publicKey,
      keyServer: {
        url: config.keyServer.url,
        ca: keyServerCa,
        identity,
        pullIntervalMs: config.keyServer.pullIntervalSeconds * 1000,
      },
      mode: config.mode,
      sampleRate: config.sampleRate,
      banSeconds: config.banSeconds,
      verifyWorkers: config.verifyWorkers,
      publishRate: config.publishRate,
      maxPacketBytes: config.maxPacketBytes,
      topicLimits: config.topicLimits,
      // The pre-authentication gate below owns the deadline from accept; Aedes' own CONNECT
      // timeout (counted from hand-over) stays as a backstop that never fires first, so one
      // slow connection is closed, and audited, once.
      connectLimits: {
        ...config.connectLimits,
        connectTimeoutSeconds: connectDeadlineMs(config.connectLimits) / 1000 + BACKSTOP_SECONDS,
      },
      legacyUsers: config.legacyUsers,
      ...(redis ? { busReady: redis.busReady } : {}),
      ...(sharedLimits ? { sharedLimits } : {}),
      logger,
      registry,
    })
  } catch (err) {
    await closeBroker()
    await logging.close()
    throw err
  }

  // Every socket of every listener, so close() can cut those that never sent CONNECT.
  const sockets = new Set<Socket>()
  const track = (socket: Socket) => {
    // Without TCP_NODELAY, Nagle + delayed ACK hold small MQTT packets back: measured on
    // loopback at 5k msgs/s, p50 latency ~35 ms without it, ~0.3 ms with it.
    socket.setNoDelay(true)
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }
  // One deadline from TCP accept to authenticated on every listener (preauth.ts), and a cap on the
  // connections one address holds before it authenticated.
  const deadlineMs = connectDeadlineMs(config.connectLimits)
  const preAuthClosed = new Counter({
    name: 'smqtt_broker_preauth_closed_total',
    help: 'Connections closed before authentication: over the per-address cap at accept, or at the deadline.',
    labelNames: ['listener', 'reason'] as const,
    registers: [registry],
  })
  new Gauge({
    name: 'smqtt_broker_unauthenticated_connections',
    help: 'Connections accepted and not yet authenticated (all listeners).',
    registers: [registry],
    collect() {
      this.set(gate.pending)
    },
  })
  const auditLog = logger.child({ audit: true })
  const maxPerAddress = config.connectLimits.maxUnauthenticatedPerAddress ?? DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
  const logRefusal = boundedLog(
    (address: string, listener: string) =>
      auditLog.warn(
        { event: 'connection-refused', reason: 'unauthenticated-cap', address, listener, max: maxPerAddress },
        'connection closed at accept: too many unauthenticated connections from this address',
      ),
    (count) =>
      auditLog.warn(
        { event: 'refusals-suppressed', reason: 'unauthenticated-cap', count },
        `${count} more connections closed at accept (unauthenticated-cap)`,
      ),
  )
  const gate = new PreAuthGate({
    deadlineMs,
    maxPerAddress,
    onRefused(address, listener) {
      preAuthClosed.inc({ listener, reason: 'unauthenticated-cap' })
      logRefusal(address, listener)
    },
    onDeadline(address, listener, stage) {
      preAuthClosed.inc({ listener, reason: 'deadline' })
      // Before TLS is up it is a failed handshake, as Node's own handshakeTimeout reports it.
      if (stage === 'tls')
        logger.debug({ err: 'TLS handshake timeout (deadline)', address, listener }, 'TLS handshake failed')
      else
        auditLog.warn(
          { event: 'connect-timeout', address, listener, stage, seconds: deadlineMs / 1000 },
          'connection closed: not authenticated in time',
        )
    },
  })
  broker.on('client', (client) => gate.authenticated(client.conn))
  const tlsOptions: TlsOptions = {
    ...tlsFiles,
    // Versions, suites, groups, client order, no renegotiation: the same on every SMQTT listener.
    ...tlsServerOptions(config.tls.profile),
    // Slow-loris below MQTT: a connection that does not finish TLS is cut at the CONNECT deadline
    // (Node's default is 120 s, and see the tlsClientError handlers below).
    handshakeTimeout: connectDeadlineMs(config.connectLimits),
    // Mutual TLS is optional: requestCert without rejectUnauthorized lets a client without a
    // certificate log in with a password; a presented certificate that TLS did not verify is
    // refused by the plugin (no fallback to a password).
    requestCert: true,
    rejectUnauthorized: false,
  }
  const servers: { name: string; server: NetServer }[] = []
  const urls: { -readonly [K in keyof BrokerUrls]: BrokerUrls[K] } = { mqtts: '' }
  let wsServer: WebSocketServer | undefined
  let metricsServer: HttpServer | undefined

  try {
    const mqtts = createTlsServer(tlsOptions, (socket) => {
      track(socket)
      gate.handedOver(socket, socket)
      plugin.handle(socket)
    })
    // Node (20) does not close the socket on a handshake timeout: measured, a TCP connection that
    // never sent a ClientHello stayed open past 200 s. Both listeners close it here.
    const closeFailedHandshake =
      (listener: string) => (err: Error, socket: { remoteAddress?: string; destroy(): void }) => {
        logger.debug({ err: err.message, address: socket.remoteAddress, listener }, 'TLS handshake failed')
        socket.destroy()
      }
    mqtts.on('tlsClientError', closeFailedHandshake('mqtts'))
    mqtts.on('connection', (raw: Socket) => gate.accept(raw, 'mqtts'))
    servers.push({ name: 'mqtts', server: mqtts })
    urls.mqtts = `mqtts://${await listen(mqtts, config.listeners.mqtts)}`

    const wss = config.listeners.wss
    if (wss) {
      // Without client certificates, no `ca` either. A cert file holding the leaf and its
      // intermediate (the deployment PKI's) goes out as it is; but for a leaf alone, Node sends every
      // certificate of the `ca` store that chains it, so the self-signed root would go out too.
      const { ca: _verifyOnly, ...serverOnly } = tlsOptions
      const wssTls = wss.clientCertificates
        ? { ...tlsOptions, requestCert: true }
        : { ...serverOnly, requestCert: false }
      const https = createHttpsServer(wssTls, (_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', connection: 'close' })
        res.end(`MQTT over WebSocket: connect a WebSocket to ${wss.path}\n`)
      })
      https.on('secureConnection', (socket: TLSSocket) => {
        track(socket)
        gate.secured(socket) // the HTTP upgrade is next: still under the same deadline
      })
      https.on('tlsClientError', closeFailedHandshake('wss'))
      https.on('connection', (raw: Socket) => gate.accept(raw, 'wss'))
      wsServer = new WebSocketServer({
        server: https,
        path: wss.path,
        // One WebSocket message larger than the largest MQTT packet is refused before it is buffered.
        maxPayload: config.maxPacketBytes,
        handleProtocols: (protocols) =>
          protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false,
      })
      wsServer.on('connection', (ws, request) => {
        const socket = request.socket as TLSSocket
        const stream = createWebSocketStream(ws)
        stream.on('error', () => {}) // Aedes reports errors of its connection; a late one must not crash us
        // The plugin reads the peer address (rate limits, bans) and the client certificate
        // (mutual TLS) from the connection: give the WebSocket stream those of its TLS socket.
        Object.defineProperties(stream, {
          remoteAddress: { value: socket.remoteAddress },
          authorized: { get: () => socket.authorized },
          getPeerCertificate: { value: (detailed?: boolean) => socket.getPeerCertificate(detailed === true) },
        })
        gate.handedOver(socket, stream)
        plugin.handle(stream as Duplex)
      })
      wsServer.on('error', (err) => logger.error({ err }, 'WebSocket server error'))
      servers.push({ name: 'wss', server: https })
      urls.wss = `wss://${await listen(https, wss)}${wss.path}`
    }

    if (config.listeners.mqtt) {
      const plain = createNetServer((socket) => {
        track(socket)
        if (!gate.accept(socket, 'mqtt', 'connect')) return
        gate.handedOver(socket, socket)
        plugin.handle(socket)
      })
      servers.push({ name: 'mqtt', server: plain })
      urls.mqtt = `mqtt://${await listen(plain, config.listeners.mqtt)}`
      logger.warn(
        { url: urls.mqtt },
        'INSECURE: plain MQTT listener without TLS (insecurePlainListener): passwords, CONNECT proofs and topics travel in clear; mutual TLS is impossible on it',
      )
    }

    if (config.metrics) {
      const server = createHttpServer((req, res) => {
        const path = (req.url ?? '').split('?')[0]
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405, { allow: 'GET' }).end()
        } else if (path === '/metrics') {
          registry.metrics().then(
            (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
            (err: unknown) => {
              logger.error({ err }, 'metrics collection failed')
              res.writeHead(500).end()
            },
          )
        } else if (path === '/health') {
          const state = plugin.state
          res
            .writeHead(state.snapshotIssuedAt === undefined ? 503 : 200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ status: state.snapshotIssuedAt === undefined ? 'no-snapshot' : 'ok', ...state }))
        } else res.writeHead(404).end()
      })
      metricsServer = server
      servers.push({ name: 'metrics', server })
      urls.metrics = `http://${await listen(server, config.metrics)}/metrics`
      if (!isLoopback(config.metrics.host))
        logger.warn({ url: urls.metrics }, 'metrics are served over plain HTTP without authentication beyond loopback')
    }
  } catch (err) {
    for (const { server } of servers) server.close()
    for (const socket of sockets) socket.destroy()
    await plugin.close()
    await closeBroker()
    await logging.close()
    throw err
  }

  logger.info(
    { ...urls, mode: config.mode, redis: config.redis !== undefined, snapshot: plugin.state.snapshotIssuedAt ?? null },
    'smqtt-broker listening',
  )
  if (plugin.state.snapshotIssuedAt === undefined)
    logger.warn(
      { keyServer: config.keyServer.url },
      'no snapshot from the key server yet: every CONNECT is refused until one arrives',
    )

  let closing: Promise<void> | undefined
  return {
    urls,
    broker,
    plugin,
    logger,
    close() {
      closing ??= (async () => {
        logger.info('shutting down: no new connections, closing clients')
        // 1. Stop accepting (the servers' callbacks run once their last connection is gone).
        const stopped = servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())))
        wsServer?.close()
        metricsServer?.closeIdleConnections()
        // 2. Stop syncing, close every MQTT client and the broker.
        await plugin.close()
        await closeBroker()
        // 3. Whatever is left (connections that never sent CONNECT, idle HTTPS): ended, then cut.
        gate.close()
        for (const socket of sockets) socket.end()
        const cut = setTimeout(() => {
          for (const socket of sockets) socket.destroy()
          metricsServer?.closeAllConnections()
        }, CLOSE_GRACE_MS)
        await Promise.all(stopped)
        clearTimeout(cut)
        logger.info('smqtt-broker stopped')
        await logging.close()
      })()
      return closing
    },
  }
}

/** A file the config names, refused when more open than its kind allows (`@smqtt/core/file-modes`). */
function readConfigFile(file: string, at: string, kind: 'secret' | 'config' = 'config'): Buffer {
  assertDeploymentFileMode(file, kind, { label: `config ${at}:` })
  try {
    return readFileSync(file)
  } catch (cause) {
    throw new SmqttError('ERR_CONFIG_INVALID', `config ${at}: cannot read ${file}`, { cause })
  }
}

/** The broker's identity file: core `exportIdentity` JSON, readable by its owner only. */
function readIdentity(file: string): Identity {
  const at = '$.keyServer.identityFile'
  const text = readConfigFile(file, at, 'secret').toString('utf8')
  try {
    return importIdentity(JSON.parse(text))
  } catch (cause) {
    throw new SmqttError('ERR_CONFIG_INVALID', `config ${at}: ${file} is not an exported SMQTT identity`, { cause })
  }
}

/**
 * The main logger (JSON lines to stdout) and, with `auditLogFile`, a second destination for the
 * plugin's audit child logger (`audit: true`): each line is routed by that binding, so every
 * logger the plugin derives from the audit child lands in the audit file too.
 */
function createLogging(config: BrokerConfig, options: StartBrokerOptions): { logger: Logger; close(): Promise<void> } {
  const main = options.logDestination ?? pino.destination(1)
  const level = options.logLevel ?? config.logLevel
  if (!config.auditLogFile) return { logger: pino({ name: 'smqtt-broker', level }, main), close: async () => {} }
  const audit = pino.destination({ dest: config.auditLogFile, mkdir: true, sync: false, mode: 0o600 })
  // JSON escapes quotes inside strings, so `"audit":true` can only be the binding itself.
  const router: DestinationStream = {
    write: (line: string) => (line.includes('"audit":true') ? audit : main).write(line),
  }
  return {
    logger: pino({ name: 'smqtt-broker', level }, router),
    close: () =>
      new Promise<void>((resolve) => {
        audit.once('close', () => resolve())
        audit.once('error', () => resolve())
        audit.end()
      }),
  }
}

/** Listens and returns `host:port` as it goes into a URL (the port actually bound). */
function listen(server: NetServer, address: ListenAddress): Promise<string> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err)
    server.once('error', onError)
    server.listen(address.port, address.host, () => {
      server.off('error', onError)
      const bound = server.address()
      const port = typeof bound === 'object' && bound ? bound.port : address.port
      resolve(`${address.host.includes(':') ? `[${address.host}]` : address.host}:${port}`)
    })
  })
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}
