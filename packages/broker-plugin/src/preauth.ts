// One deadline from TCP accept to authenticated, and a cap on the connections one address holds
// before it authenticates, on every listener of startBroker (mqtts, wss, plain).
//
// Measured before (issue 19): on wss the HTTP stage between TLS and the WebSocket upgrade escaped
// the CONNECT deadline (1,000 sockets still open after 20 s, 0 on mqtts), and on mqtts the TLS
// handshake and the CONNECT each had the deadline, one after the other (up to twice it in all).
// The timer here starts at accept and is cleared only once the MQTT client authenticated.

import type { Socket } from 'node:net'
import { addressKey } from '@smqtt/core/address-key'

/** Default connections one address may hold between TCP accept and authentication. */
export const DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS = 100

/** How far a connection got when its deadline fell. */
export type PreAuthStage = 'tls' | 'upgrade' | 'connect'

export interface PreAuthGateOptions {
  /** Milliseconds from accept to authenticated. */
  readonly deadlineMs: number
  /** Unauthenticated connections per address; the next one is closed at accept. */
  readonly maxPerAddress: number
  /** A connection refused at accept (over the cap). */
  readonly onRefused: (address: string, listener: string) => void
  /** A connection closed at the deadline. */
  readonly onDeadline: (address: string, listener: string, stage: PreAuthStage) => void
}

interface Pending {
  readonly address: string
  readonly listener: string
  readonly raw: Socket
  readonly peer: string
  readonly timer: NodeJS.Timeout
  /** Releases the entry when a socket closes first; removed from them once released. */
  readonly onClose: () => void
  stage: PreAuthStage
  /** The socket handed over (the TLS one on mqtts), when not `raw` itself. */
  socket: Socket | undefined
  stream: { destroy(): void } | undefined
  done: boolean
}

const peerKey = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }) =>
  `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? '?'}`

/**
 * Tracks every connection from accept until its MQTT client authenticated (or it closed).
 *
 * @example
 * ```ts
 * const gate = new PreAuthGate({ deadlineMs: 10_000, maxPerAddress: 100, onRefused, onDeadline })
 * tlsServer.on('connection', (raw) => gate.accept(raw, 'mqtts'))
 * // in the secureConnection callback: gate.handedOver(tlsSocket, tlsSocket); broker.handle(tlsSocket)
 * broker.on('client', (client) => gate.authenticated(client.conn))
 * ```
 */
export class PreAuthGate {
  readonly #options: PreAuthGateOptions
  /** By `address|port` of the TCP peer: how the TLS socket finds the raw one it wraps. */
  readonly #byPeer = new Map<string, Pending>()
  readonly #byStream = new WeakMap<object, Pending>()
  readonly #perAddress = new Map<string, number>()
  #count = 0

  constructor(options: PreAuthGateOptions) {
    this.#options = options
  }

  /** Connections accepted and not yet authenticated (nor closed). */
  get pending(): number {
    return this.#count
  }

  /** At TCP accept: counts the connection and starts its deadline; false (closed) past the cap. */
  accept(raw: Socket, listener: string, stage: PreAuthStage = 'tls'): boolean {
    const address = addressKey(raw.remoteAddress ?? 'unknown')
    const held = this.#perAddress.get(address) ?? 0
    if (held >= this.#options.maxPerAddress) {
      raw.destroy()
      this.#options.onRefused(address, listener)
      return false
    }
    this.#perAddress.set(address, held + 1)
    this.#count++
    const entry: Pending = {
      address,
      listener,
      raw,
      peer: peerKey(raw),
      onClose: () => this.#release(entry),
      stage,
      socket: undefined,
      stream: undefined,
      done: false,
      timer: setTimeout(() => {
        if (entry.done) return
        this.#release(entry)
        this.#options.onDeadline(address, listener, entry.stage)
        entry.stream?.destroy()
        raw.destroy()
      }, this.#options.deadlineMs),
    }
    this.#byPeer.set(entry.peer, entry)
    raw.once('close', entry.onClose)
    return true
  }

  /** TLS is up on a listener that speaks HTTP first (wss): the upgrade is next. */
  secured(socket: Socket): void {
    const entry = this.#byPeer.get(peerKey(socket))
    if (entry) entry.stage = 'upgrade'
  }

  /** The connection was handed to the broker as `stream` (the socket or its WebSocket stream). */
  handedOver(socket: Socket, stream: { destroy(): void }): void {
    const entry = this.#byPeer.get(peerKey(socket))
    if (!entry) return
    entry.stage = 'connect'
    entry.stream = stream
    this.#byStream.set(stream, entry)
    if (socket !== entry.raw) {
      entry.socket = socket
      socket.once('close', entry.onClose)
    }
  }

  /** Its MQTT client authenticated: the deadline and the per-address count no longer apply. */
  authenticated(stream: object): void {
    const entry = this.#byStream.get(stream)
    if (entry) this.#release(entry)
  }

  /** Stops every deadline (shutdown). */
  close(): void {
    for (const entry of [...this.#byPeer.values()]) this.#release(entry)
  }

  // Forgets the connection entirely: an authenticated connection lives on for hours, and its
  // close listeners and WeakMap entry kept the entry, its cleared timer and closures alive
  // (~0.8 KiB of heap per idle connection, measured by bench/connect.bench.ts).
  #release(entry: Pending): void {
    if (entry.done) return
    entry.done = true
    clearTimeout(entry.timer)
    entry.raw.off('close', entry.onClose)
    entry.socket?.off('close', entry.onClose)
    if (entry.stream) this.#byStream.delete(entry.stream)
    this.#count--
    if (this.#byPeer.get(entry.peer) === entry) this.#byPeer.delete(entry.peer)
    const held = (this.#perAddress.get(entry.address) ?? 1) - 1
    if (held <= 0) this.#perAddress.delete(entry.address)
    else this.#perAddress.set(entry.address, held)
  }
}
