// Hardening the MQTT layer where Aedes 1.2 has no setting (packet size, connect flapping) or a
// lax default (30 s to send CONNECT).
//
// Measured on plain Aedes 1.2: it has no max packet size and buffered a declared 243 MiB packet
// from a client that had not even sent CONNECT. The guard reads each packet's fixed header (type
// byte + remaining-length varint) as the bytes are consumed and destroys the socket as soon as a
// packet declares more than `maxPacketBytes`, before the parser has buffered more than one chunk.

import type { Duplex } from 'node:stream'
import { addressKey } from '@smqtt/core/address-key'

/** Default largest MQTT packet (fixed header included): 256 KiB. */
export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024

/**
 * Watches the MQTT framing of `stream` and destroys it when a packet declares a remaining length
 * above `maxPacketBytes` (as soon as the length bytes read so far prove it) or a malformed length (a 5th length byte). Call it right AFTER
 * `broker.handle(stream)`: it observes the bytes Aedes reads (a `data` listener on a stream that
 * already has a `readable` listener does not switch it to flowing mode), adds no copy and no
 * stream hop, and sees every byte before the parser can buffer a second chunk.
 *
 * @example
 * ```ts
 * tls.createServer(tlsOptions, (socket) => {
 *   broker.handle(socket)
 *   guardPacketSize(socket, 256 * 1024, () => log.warn('oversize packet'))
 * })
 * ```
 */
export function guardPacketSize(
  stream: Duplex,
  maxPacketBytes: number = DEFAULT_MAX_PACKET_BYTES,
  onViolation?: (reason: 'oversize' | 'malformed-length', declaredAtLeast: number) => void,
): void {
  if (!Number.isSafeInteger(maxPacketBytes) || maxPacketBytes < 2) throw new RangeError('maxPacketBytes must be >= 2')
  let state: 'type' | 'length' | 'body' = 'type'
  let length = 0
  let multiplier = 1
  let lengthBytes = 0
  let skip = 0
  const violate = (reason: 'oversize' | 'malformed-length', declared: number) => {
    stream.off('data', onData)
    onViolation?.(reason, declared)
    stream.destroy()
  }
  const onData = (chunk: Buffer) => {
    let i = 0
    while (i < chunk.length) {
      if (state === 'body') {
        const step = Math.min(skip, chunk.length - i)
        skip -= step
        i += step
        if (skip === 0) state = 'type'
        continue
      }
      const byte = chunk[i++] as number
      if (state === 'type') {
        state = 'length'
        length = 0
        multiplier = 1
        lengthBytes = 0
        continue
      }
      length += (byte & 0x7f) * multiplier
      multiplier *= 128
      lengthBytes++
      if (1 + lengthBytes + length > maxPacketBytes) return violate('oversize', length)
      if (byte & 0x80) {
        if (lengthBytes === 4) return violate('malformed-length', length)
        continue
      }
      skip = length
      state = skip === 0 ? 'type' : 'body'
    }
  }
  stream.on('data', onData)
}

/** Default seconds a connection has to send CONNECT once TLS is up (Aedes' own default: 30). */
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10

/** The CONNECT deadline in ms: one value for Aedes' `connectTimeout` and the TLS handshake. */
export function connectDeadlineMs(limits: ConnectLimits | undefined): number {
  return (limits?.connectTimeoutSeconds ?? DEFAULT_CONNECT_TIMEOUT_SECONDS) * 1000
}

/** Limits of {@link ConnectGuard}, and the CONNECT deadline. */
export interface ConnectLimits {
  /**
   * Seconds a connection has from TCP accept to authenticated, through TLS, the HTTP upgrade
   * (wss) and its whole CONNECT packet (`startBroker`); then it is closed (slow-loris: never
   * sending CONNECT, or dripping it). Aedes alone counts it from the hand-over. Default 10.
   */
  readonly connectTimeoutSeconds?: number
  /**
   * Connections one address may hold between TCP accept and authentication, on all listeners
   * together (`startBroker`; default 100): the next one is closed at accept.
   */
  readonly maxUnauthenticatedPerAddress?: number
  /**
   * CONNECTs accepted per address per window (default 60), before authentication; one that
   * authenticates is given back, so this bounds the CONNECTs from one address that do not.
   */
  readonly perAddress?: number
  /**
   * Authenticated CONNECTs accepted per principal (= client id) per window: reconnect loops of one
   * device (default 20). Counted only once a CONNECT authenticated, so CONNECTs naming a device's
   * client id without its credentials cannot use up its budget.
   */
  readonly perClientId?: number
  /** Failed authentications per address per window before a ban (default 10). */
  readonly failuresBeforeBan?: number
  /** Window length, seconds (default 10). */
  readonly windowSeconds?: number
  /** Ban length, seconds (default 60). */
  readonly banSeconds?: number
}

interface Bucket {
  start: number
  count: number
}

const MAX_TRACKED = 100_000

/**
 * Per-address CONNECT rate limits (before authentication), per-principal ones (after it), and a
 * ban for addresses that keep failing authentication (fixed windows: cheap, and the bound is what
 * matters here, not smoothness).
 * Memory is bounded: when a map reaches 100,000 keys, expired entries are dropped, then the
 * oldest.
 *
 * @example
 * ```ts
 * const guard = new ConnectGuard({ perAddress: 30 })
 * if (!guard.admit(address, now)) refuse() // on CONNECT
 * if (!guard.admitPrincipal(principalId, now)) refuse() // once it authenticated
 * ```
 */
export class ConnectGuard {
  readonly #perAddress: number
  readonly #perClientId: number
  readonly #failuresBeforeBan: number
  readonly #window: number
  readonly #ban: number
  readonly #addresses = new Map<string, Bucket>()
  readonly #principals = new Map<string, Bucket>()
  readonly #failures = new Map<string, Bucket>()
  readonly #banned = new Map<string, number>()
  #sweptAt = Number.NEGATIVE_INFINITY

  constructor(limits: ConnectLimits = {}) {
    this.#perAddress = limits.perAddress ?? 60
    this.#perClientId = limits.perClientId ?? 20
    this.#failuresBeforeBan = limits.failuresBeforeBan ?? 10
    this.#window = limits.windowSeconds ?? 10
    this.#ban = limits.banSeconds ?? 60
  }

  /** Counts one CONNECT from `address`; false when it must be refused (over the limit, or banned). */
  admit(address: string, now: number): boolean {
    const key = addressKey(address)
    const until = this.#banned.get(key)
    if (until !== undefined) {
      if (now < until) return false
      this.#banned.delete(key)
    }
    return this.#count(this.#addresses, key, now) <= this.#perAddress
  }

  /**
   * Gives back the CONNECT `address` was charged by {@link ConnectGuard.admit}, once it authenticated: the
   * per-address budget bounds the work unauthenticated CONNECTs cost, so a whole site behind one
   * NAT address reconnecting after a broker restart is not held back by it (each device's own
   * reconnect loops are bounded per principal), while CONNECTs that fail keep counting.
   */
  refund(address: string, now: number): void {
    const bucket = this.#addresses.get(addressKey(address))
    if (bucket !== undefined && now - bucket.start < this.#window && bucket.count > 0) bucket.count--
  }

  /** Counts one authenticated CONNECT of `principalId`; false past its budget (a reconnect loop). */
  admitPrincipal(principalId: string, now: number): boolean {
    return this.#count(this.#principals, principalId, now) <= this.#perClientId
  }

  /** Records a failed authentication; bans the address once it fails too often. */
  failed(address: string, now: number): void {
    const key = addressKey(address)
    if (this.#count(this.#failures, key, now) < this.#failuresBeforeBan) return
    this.#failures.delete(key)
    if (this.#banned.size >= MAX_TRACKED) this.#banned.delete(this.#banned.keys().next().value as string)
    this.#banned.set(key, now + this.#ban)
  }

  /** Addresses, principals and bans held (live entries, and expired ones until the next sweep). */
  get tracked(): number {
    return this.#addresses.size + this.#principals.size + this.#failures.size + this.#banned.size
  }

  #count(map: Map<string, Bucket>, key: string, now: number): number {
    // Expired entries go once a window (issue 14: they went only once a map held 100,000, so each
    // principal that ever connected kept its bucket).
    if (now - this.#sweptAt >= this.#window) this.#sweep(now)
    let bucket = map.get(key)
    if (bucket === undefined || now - bucket.start >= this.#window) {
      if (bucket === undefined && map.size >= MAX_TRACKED) this.#prune(map, now)
      bucket = { start: now, count: 0 }
      map.set(key, bucket)
    }
    return ++bucket.count
  }

  #sweep(now: number): void {
    this.#sweptAt = now
    for (const map of [this.#addresses, this.#principals, this.#failures])
      for (const [key, bucket] of map) if (now - bucket.start >= this.#window) map.delete(key)
    for (const [key, until] of this.#banned) if (now >= until) this.#banned.delete(key)
  }

  #prune(map: Map<string, Bucket>, now: number): void {
    for (const [key, bucket] of map) if (now - bucket.start >= this.#window) map.delete(key)
    while (map.size >= MAX_TRACKED) map.delete(map.keys().next().value as string)
  }
}
