// Deadlines and a per-address cap on the key server's listener (issue 19). Measured before: a TCP
// connection that never sent a ClientHello was closed after 120 s, an idle or slow-header one
// after ~74 s (Fastify's keepAliveTimeout 72 s), and no request or body had a deadline
// (slowhttptest held 5 connections for its whole 360 s run).
import type { Server as HttpServer } from 'node:http'
import type { Socket } from 'node:net'
import { addressKey } from '@smqtt/core/address-key'

/** Deadlines of the key server's connections, seconds. */
export interface KeyServerDeadlines {
  /** TCP accept to TLS established (Node `handshakeTimeout`). */
  readonly handshakeSeconds: number
  /** To receive a request's complete headers (Node `headersTimeout`). */
  readonly headersSeconds: number
  /** To receive a whole request, body included (Node `requestTimeout`); also the socket idle limit. */
  readonly requestSeconds: number
  /** An idle keep-alive connection between requests (Node `keepAliveTimeout`). */
  readonly keepAliveSeconds: number
}

export const DEFAULT_DEADLINES: KeyServerDeadlines = {
  handshakeSeconds: 10,
  headersSeconds: 10,
  requestSeconds: 30,
  keepAliveSeconds: 5,
}

/** Default connections one address may hold open before their first request completed. */
export const DEFAULT_MAX_PENDING_CONNECTIONS_PER_ADDRESS = 100

/** How often Node checks headersTimeout and requestTimeout (its default: every 30 s). */
const CHECK_INTERVAL_MS = 1_000

/** Fastify's own options for `deadlines`. */
export function fastifyDeadlineOptions(deadlines: KeyServerDeadlines) {
  return {
    // Socket idle limit: also cuts a client that stops reading its response.
    connectionTimeout: deadlines.requestSeconds * 1000,
    keepAliveTimeout: deadlines.keepAliveSeconds * 1000,
    requestTimeout: deadlines.requestSeconds * 1000,
  }
}

/** Options of Node's `https.createServer` / `http.createServer` for `deadlines`. */
export function serverDeadlineOptions(deadlines: KeyServerDeadlines) {
  return {
    handshakeTimeout: deadlines.handshakeSeconds * 1000,
    headersTimeout: Math.min(deadlines.headersSeconds, deadlines.requestSeconds) * 1000,
    requestTimeout: deadlines.requestSeconds * 1000,
    connectionsCheckingInterval: CHECK_INTERVAL_MS,
  }
}

interface Pending {
  readonly address: string
  readonly peer: string
  timer: NodeJS.Timeout | undefined
  done: boolean
}

const peerKey = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }) =>
  `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? '?'}`

/**
 * Guards `server` (Fastify's `app.server`): closes a connection whose TLS handshake failed or
 * timed out (`handshakeTimeout`: Node 20 reports it but does not close the socket), one that has not
 * sent its first request's headers `headersSeconds` after TLS is up, and closes at
 * accept a connection from an address that already holds `maxPendingPerAddress` connections
 * whose first request has not completed. `onRefused` is called for each one so closed.
 */
export function guardConnections(
  server: HttpServer,
  options: {
    readonly tls: boolean
    readonly deadlines: KeyServerDeadlines
    readonly maxPendingPerAddress: number
    readonly onRefused: (
      address: string,
      reason: 'pending-cap' | 'handshake-deadline' | 'first-request-deadline',
    ) => void
  },
): { readonly pending: () => number } {
  const byPeer = new Map<string, Pending>()
  const perAddress = new Map<string, number>()
  let count = 0
  const release = (entry: Pending) => {
    if (entry.done) return
    entry.done = true
    clearTimeout(entry.timer)
    count--
    if (byPeer.get(entry.peer) === entry) byPeer.delete(entry.peer)
    const held = (perAddress.get(entry.address) ?? 1) - 1
    if (held <= 0) perAddress.delete(entry.address)
    else perAddress.set(entry.address, held)
  }
  // Node checks headersTimeout only once a request has begun: a connection that never sends a
  // byte after TLS stayed open (measured past 30 s with headersTimeout 2 s and Fastify's
  // connectionTimeout, a socket idle timeout, at 4 s). So until its first
  // request's headers are in, a connection has `headersSeconds`, counted from TLS established.
  const awaitFirstRequest = (socket: Socket, entry: Pending) => {
    clearTimeout(entry.timer)
    entry.timer = setTimeout(() => {
      options.onRefused(entry.address, 'first-request-deadline')
      socket.destroy()
    }, options.deadlines.headersSeconds * 1000)
  }
  server.on('connection', (raw: Socket) => {
    // IPv6 counts by /64, as the failed-authentication limit does.
    const address = addressKey(raw.remoteAddress ?? 'unknown')
    const held = perAddress.get(address) ?? 0
    if (held >= options.maxPendingPerAddress) {
      raw.destroy()
      options.onRefused(address, 'pending-cap')
      return
    }
    perAddress.set(address, held + 1)
    count++
    const entry: Pending = { address, peer: peerKey(raw), timer: undefined, done: false }
    if (!options.tls) awaitFirstRequest(raw, entry)
    byPeer.set(entry.peer, entry)
    raw.once('close', () => release(entry))
  })
  if (options.tls) {
    server.on('secureConnection', (socket: Socket) => {
      const entry = byPeer.get(peerKey(socket))
      if (entry && !entry.done) awaitFirstRequest(socket, entry)
    })
    // Node 20 does not close a socket whose handshake failed or timed out (handshakeTimeout; measured
    // on the broker: still open past 200 s): close it here.
    server.on('tlsClientError', (err: Error, socket: { remoteAddress?: string; destroy(): void }) => {
      if (/timeout/i.test(err.message)) options.onRefused(socket.remoteAddress ?? 'unknown', 'handshake-deadline')
      socket.destroy()
    })
  }
  // The first request completed: the connection counts no longer against its address.
  server.on('request', (request: { socket: Socket }, response: { once(event: 'finish', f: () => void): void }) => {
    const entry = byPeer.get(peerKey(request.socket))
    if (!entry || entry.done) return
    clearTimeout(entry.timer) // from here Node's requestTimeout and keepAliveTimeout apply
    response.once('finish', () => release(entry))
  })
  return { pending: () => count }
}
