// The attack catalogue, issue 19 (deadlines): slow-loris against every listener before
// authentication, and one address holding many unauthenticated connections. Real key server
// and broker over loopback; the deadlines are configured short (2 s) to keep the file fast,
// except the key server's TLS handshake, checked at its 10 s default.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { type BrokerConfigDocument, parseBrokerConfig, type RunningBroker, startBroker } from '@smqtt/broker-plugin'
import { createConnectPassword, exportIdentity, type Identity, sha256 } from '@smqtt/core'
import { buildApp } from '@smqtt/keyserver'
import { connected, sleep, TEST_POLICY } from '@smqtt/test-kit/broker'
import { ADMIN_TOKEN, type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import type { FastifyInstance } from 'fastify'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const DEADLINE_S = 2
const CAP = 5

let h: Harness
let dir: string
let short: RunningBroker // deadline 2 s, no cap to speak of
let capped: RunningBroker // cap 5 per address
let app: FastifyInstance // the key server's app with short deadlines
let appPort: number
const logs: Record<string, unknown>[] = []

beforeAll(async () => {
  h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  dir = mkdtempSync(join(tmpdir(), 'smqtt-deadlines-'))
  const put = await h.admin('PUT', '/v1/admin/policy', { policy: TEST_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  const brokerPrincipal = await h.enroll('broker-1', ['broker'])
  writeFileSync(join(dir, 'broker-identity.json'), JSON.stringify(exportIdentity(brokerPrincipal.identity)), {
    mode: 0o600,
  })
  const document = (connectLimits: BrokerConfigDocument['connectLimits']): BrokerConfigDocument => ({
    listeners: { mqtts: { host: '127.0.0.1', port: 0 }, wss: { host: '127.0.0.1', port: 0, path: '/mqtt' } },
    tls: { certFile: `${h.dir}/pki/server.pem`, keyFile: `${h.dir}/pki/server.key`, caFile: `${h.dir}/pki/ca.pem` },
    keyServer: {
      url: h.url,
      publicKey: Buffer.from(h.keyServer.publicKey).toString('base64url'),
      identityFile: 'broker-identity.json',
    },
    metrics: false,
    connectLimits: { perAddress: 10_000, perClientId: 10_000, failuresBeforeBan: 10_000, ...connectLimits },
    logLevel: 'debug',
  })
  const logDestination = { write: (line: string) => void logs.push(JSON.parse(line)) }
  short = await startBroker(parseBrokerConfig(document({ connectTimeoutSeconds: DEADLINE_S }), dir), {
    logDestination,
  })
  capped = await startBroker(parseBrokerConfig(document({ maxUnauthenticatedPerAddress: CAP }), dir), {
    logDestination,
  })
  app = await buildApp({
    keyServer: h.keyServer,
    adminTokenHash: sha256(new TextEncoder().encode(ADMIN_TOKEN)),
    tls: {
      key: readFileSync(`${h.dir}/pki/server.key`, 'utf8'),
      cert: readFileSync(`${h.dir}/pki/server.pem`, 'utf8'),
    },
    deadlines: { handshakeSeconds: DEADLINE_S, headersSeconds: DEADLINE_S, requestSeconds: 2 * DEADLINE_S },
    maxPendingConnectionsPerAddress: CAP,
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  appPort = typeof address === 'object' && address ? address.port : 0
}, 60_000)

afterAll(async () => {
  await Promise.all([short?.close(), capped?.close(), app?.close()])
  await h?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

interface Peer {
  readonly socket: Socket
  /** Seconds from connect to the server closing it (rejects after `bound` s). */
  readonly closed: Promise<number>
}

/**
 * A peer that connects (TCP, or TLS unless `tcpOnly`) and then sends `bytes` one chunk every
 * `everyMs`; `closed` resolves when the server closed it, with the seconds it stayed open.
 */
function peer(
  port: number,
  options: { tcpOnly?: boolean; chunks?: readonly string[]; everyMs?: number; bound?: number } = {},
): Peer {
  const started = Date.now()
  const socket = options.tcpOnly
    ? netConnect({ host: '127.0.0.1', port })
    : tlsConnect({ host: '127.0.0.1', port, ca: h.caPem, servername: 'localhost' })
  const chunks = [...(options.chunks ?? [])]
  const drip = setInterval(() => {
    const next = chunks.shift()
    if (next !== undefined && socket.writable) socket.write(next)
  }, options.everyMs ?? 250)
  socket.on('error', () => {})
  socket.resume() // what the server answers is read and dropped, so its close is seen
  const closed = new Promise<number>((resolve, reject) => {
    const bound = setTimeout(
      () => {
        socket.destroy()
        reject(new Error(`still open after ${options.bound ?? 20} s`))
      },
      (options.bound ?? 20) * 1000,
    )
    socket.once('close', () => {
      clearInterval(drip)
      clearTimeout(bound)
      resolve((Date.now() - started) / 1000)
    })
  })
  return { socket, closed }
}

const portOf = (url: string) => Number(new URL(url).port)

/** GET /v1/health over TLS on `port`; resolves with the raw response. */
function fetchHealth(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: h.caPem, servername: 'localhost' }, () =>
      socket.write('GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
    )
    let text = ''
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8')
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
  })
}

/** Upgrade request headers, to be dripped one line at a time. */
const upgradeLines = (path: string) => [
  `GET ${path} HTTP/1.1\r\n`,
  'Host: localhost\r\n',
  'Upgrade: websocket\r\n',
  'Connection: Upgrade\r\n',
  'Sec-WebSocket-Version: 13\r\n',
  'Sec-WebSocket-Protocol: mqtt\r\n',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
  ...Array.from({ length: 100 }, (_, i) => `X-Slow-${i}: 1\r\n`),
  '\r\n',
]

describe('broker: one deadline from accept to authenticated, on mqtts and wss', () => {
  test('slow-loris over wss: a socket that never finishes the HTTP upgrade, or upgrades and never sends CONNECT, is closed at the deadline', async () => {
    const port = portOf(short.urls.wss as string)
    const silent = peer(port) // TLS, then nothing
    const dripped = peer(port, { chunks: upgradeLines('/mqtt') }) // the upgrade, a header every 250 ms
    const upgraded = peer(port, { chunks: [upgradeLines('/mqtt').join('')] }) // upgrades, then no CONNECT
    const tcp = peer(port, { tcpOnly: true, chunks: ['\x16', '\x03', '\x01'], everyMs: 500 }) // a ClientHello dripped
    const seconds = await Promise.all([silent.closed, dripped.closed, upgraded.closed, tcp.closed])
    for (const s of seconds) {
      expect(s).toBeGreaterThanOrEqual(DEADLINE_S - 0.5)
      expect(s).toBeLessThan(DEADLINE_S + 3)
    }
    expect(logs).toContainEqual(
      expect.objectContaining({ audit: true, event: 'connect-timeout', listener: 'wss', seconds: DEADLINE_S }),
    )
  }, 30_000)

  test('slow-loris over mqtts: a ClientHello dripped byte by byte is cut at the deadline', async () => {
    const port = portOf(short.urls.mqtts)
    const hello = Array.from({ length: 40 }, (_, i) => String.fromCharCode([0x16, 0x03, 0x01, 0x00, 0xff][i] ?? 0))
    const tcp = peer(port, { tcpOnly: true, chunks: hello, everyMs: 200 })
    const s = await tcp.closed
    expect(s).toBeGreaterThanOrEqual(DEADLINE_S - 0.5)
    expect(s).toBeLessThan(DEADLINE_S + 3)
  }, 30_000)

  test('one address cannot hold more than N unauthenticated connections (mqtts and wss)', async () => {
    for (const url of [capped.urls.mqtts, capped.urls.wss as string]) {
      const held = Array.from({ length: CAP }, () => peer(portOf(url), { tcpOnly: true, bound: 15 }))
      await new Promise((resolve) => setTimeout(resolve, 300))
      const over = peer(portOf(url), { tcpOnly: true, bound: 5 })
      expect(await over.closed).toBeLessThan(1) // refused at accept
      for (const p of held) expect(p.socket.destroyed).toBe(false)
      for (const p of held) p.socket.destroy()
      await Promise.all(held.map((p) => p.closed))
      // Once they are gone, the address may connect again.
      await new Promise((resolve) => setTimeout(resolve, 100))
      const again = peer(portOf(url), { tcpOnly: true, bound: 15 })
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(again.socket.destroyed).toBe(false)
      again.socket.destroy()
    }
    expect(logs).toContainEqual(
      expect.objectContaining({
        audit: true,
        event: 'connection-refused',
        reason: 'unauthenticated-cap',
        address: '127.0.0.1',
        max: CAP,
      }),
    )
  }, 30_000)
})

describe('broker: authenticated clients are not affected', () => {
  const clients: MqttClient[] = []
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)))
  })
  const login = (url: string, identity: Identity) => {
    const client = mqtt.connect(url, {
      ca: h.caPem,
      wsOptions: { ca: h.caPem },
      clientId: identity.id,
      username: identity.id,
      password: createConnectPassword(identity, identity.id),
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    })
    clients.push(client)
    client.on('error', () => {})
    return connected(client, `CONNACK of ${identity.id}`, 10_000)
  }

  test('an authenticated client outlives the deadline (mqtts and wss), and does not count against the cap', async () => {
    const ids = Array.from({ length: CAP + 2 }, (_, i) => `thermostat-${i + 1}`)
    const identities: Identity[] = []
    for (const id of ids) identities.push((await h.enroll(id, ['thermostat'])).identity)
    h.clock.now = Math.floor(Date.now() / 1000)
    expect(await short.plugin.pull()).toBe(true)
    expect(await capped.plugin.pull()).toBe(true)
    const [a, b] = identities as [Identity, Identity]
    const overMqtts = await login(short.urls.mqtts, a)
    const overWss = await login(short.urls.wss as string, b)
    await sleep((DEADLINE_S + 1) * 1000)
    expect(overMqtts.connected).toBe(true)
    expect(overWss.connected).toBe(true)
    // More authenticated clients from one address than the cap (one after the other): every one is in.
    const many: MqttClient[] = []
    for (const identity of identities) many.push(await login(capped.urls.mqtts, identity))
    expect(many.every((client) => client.connected)).toBe(true)
  }, 30_000)
})

describe('key server: handshake, header and request deadlines, and a cap per address', () => {
  test('key server: a TCP connection that sends no ClientHello is closed within the deadline (10 s default)', async () => {
    const defaults = peer(portOf(h.url), { tcpOnly: true, bound: 20 }) // the harness: default deadlines
    const configured = peer(appPort, { tcpOnly: true })
    const [s10, s2] = await Promise.all([defaults.closed, configured.closed])
    expect(s10).toBeGreaterThanOrEqual(9)
    expect(s10).toBeLessThan(13)
    expect(s2).toBeLessThan(DEADLINE_S + 2)
  }, 30_000)

  test('key server: headers dripped slowly are cut at headersTimeout, a body dripped slowly at requestTimeout', async () => {
    const headers = peer(appPort, {
      chunks: ['GET /v1/health HTTP/1.1\r\n', ...Array.from({ length: 100 }, (_, i) => `X-Slow-${i}: 1\r\n`)],
      everyMs: 250,
    })
    const body = peer(appPort, {
      chunks: [
        'POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
        ...Array.from({ length: 1000 }, () => ' '),
      ],
      everyMs: 100,
    })
    const idle = peer(appPort) // TLS, then never a request
    const [sh, sb, si] = await Promise.all([headers.closed, body.closed, idle.closed])
    expect(sh).toBeGreaterThanOrEqual(DEADLINE_S - 0.5)
    expect(sh).toBeLessThan(DEADLINE_S + 2.5) // headers: 2 s (Node checks every second)
    expect(sb).toBeGreaterThanOrEqual(2 * DEADLINE_S - 0.5)
    expect(sb).toBeLessThan(2 * DEADLINE_S + 2.5) // the whole request: 4 s, although bytes kept coming
    expect(si).toBeLessThan(DEADLINE_S + 2.5) // no first request after TLS: the headers deadline
    // A request that completes in time is answered.
    const ok = await fetchHealth(appPort)
    expect(ok).toMatch(/^HTTP\/1.1 200/)
  }, 30_000)

  test('key server: one address cannot hold more than N connections that have not completed a request', async () => {
    const held = Array.from({ length: CAP }, () => peer(appPort, { tcpOnly: true, bound: 15 }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    const over = peer(appPort, { tcpOnly: true, bound: 5 })
    expect(await over.closed).toBeLessThan(1)
    for (const p of held) expect(p.socket.destroyed).toBe(false)
    for (const p of held) p.socket.destroy()
    await Promise.all(held.map((p) => p.closed))
  }, 30_000)
})
