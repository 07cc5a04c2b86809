// How a wrapped mqtt.js client logs in to an SMQTT broker, for secure() and secureConnectAsync
// alike: a CONNECT password that proves this principal's Ed25519 key (username = client id =
// principal id; @smqtt/core connect-password.ts), a fresh one for every connection attempt,
// since each is valid for ±60 s and its nonce once; and the identity's lock held before the
// first CONNECT leaves.
//
// mqtt.js 5 builds the first CONNECT in its constructor (mqtt.connect → new MqttClient →
// connect(), all synchronous) and writes it to a stream whose TCP connection only starts on the
// next tick (TLS after that): when `secure(mqtt.connect(url, { ca, clientId }), …)` runs, a
// CONNECT without credentials is waiting in that stream's buffer. Destroying the stream in the
// same tick sends nothing, not even a TCP SYN, so the broker has no failed authentication to
// count against the address. The attempt is then started again, by mqtt.js's own reconnect(),
// once the lock is held and the first password made; every later attempt takes a fresh password
// on 'reconnect', which mqtt.js emits right before it builds the next CONNECT.
import {
  createConnectPassword,
  createConnectPasswordAsync,
  type Identity,
  type NonExtractableIdentity,
} from '@smqtt/core'
import type { MqttClient } from 'mqtt'
import { holdIdentity } from './_identity-lock.js'
import type { ClientStorage } from './storage.js'

/** What {@link manageLogin} needs from the secure client's options. */
export interface LoginOptions {
  readonly identity: Identity | NonExtractableIdentity
  readonly storage: ClientStorage
  /** false: never add a key-proof password (default true). */
  readonly connectPassword?: boolean | undefined
}

/** How often a password is made ahead for a WebCrypto identity: well within its ±60 s validity. */
const PASSWORD_RENEW_MS = 30_000

/** CONNECT passwords, one per connection attempt. */
interface ConnectPasswords {
  /** Settles once the first password exists (at once for raw keys). */
  readonly ready: Promise<void>
  /** A password for the attempt about to start; undefined only before `ready`. */
  next(): string | undefined
  stop(): void
}

/**
 * mqtt.js takes the password synchronously, right after emitting 'reconnect': raw keys sign it
 * then; a non-extractable WebCrypto key signs only through a promise, so its next password is
 * made ahead, after each use and every 30 s.
 */
function connectPasswords(identity: Identity | NonExtractableIdentity, clientId: string): ConnectPasswords {
  if ('signingSeed' in identity)
    return { ready: Promise.resolve(), next: () => createConnectPassword(identity, clientId), stop: () => {} }
  let held: string | undefined
  let renewing: Promise<void> | undefined
  const renew = () => {
    renewing ??= createConnectPasswordAsync(identity, clientId)
      .then(
        (password) => {
          held = password
        },
        () => {}, // the one held stays until the next renewal
      )
      .finally(() => {
        renewing = undefined
      })
    return renewing
  }
  const ready = renew()
  const timer = setInterval(renew, PASSWORD_RENEW_MS)
  ;(timer as { unref?: () => void }).unref?.()
  return {
    ready,
    next() {
      const password = held
      void renew() // a nonce is accepted once: the next attempt needs another
      return password
    },
    stop: () => clearInterval(timer),
  }
}

/** The parts of an mqtt.js stream (net/TLS socket, WebSocket duplex) looked at here. */
interface AttemptStream {
  readonly destroyed?: boolean
  /** net.Socket: true until its TCP connection is up (set synchronously by connect()). */
  readonly connecting?: boolean
  destroy(): void
}

/**
 * Takes over the login of `mqttClient` (call it in the tick mqtt.connect() returned in):
 *
 * - key-proof passwords, when the client has no username, password or client certificate of its
 *   own and is not connected yet: username = principal id, a fresh password for every attempt;
 * - the first attempt, if it is still in flight, is paused (its stream destroyed) and restarted
 *   once this process holds the identity's lock (and the first password exists): always when it
 *   carries no credentials (it would be refused), and when its TCP connection has not started
 *   yet (so the lock comes first at no cost). If the lock is refused (ERR_IDENTITY_IN_USE), the
 *   attempt is not restarted: the secure client ends it.
 *
 * A client already connected, or one given its own credentials over a connection under way, is
 * left as it is: that broker decides on the login it was given.
 */
export function manageLogin(mqttClient: MqttClient, options: LoginOptions): void {
  if (mqttClient.connected || mqttClient.disconnecting) return
  const mqttOptions = mqttClient.options
  const keyProof =
    options.connectPassword !== false &&
    mqttOptions.username === undefined &&
    mqttOptions.password === undefined &&
    mqttOptions.cert === undefined
  const passwords = keyProof
    ? connectPasswords(options.identity, mqttOptions.clientId ?? options.identity.id)
    : undefined
  let ended = false
  mqttClient.once('end', () => {
    ended = true
    passwords?.stop()
  })
  if (passwords) {
    mqttOptions.username = options.identity.id
    const first = passwords.next()
    if (first !== undefined)
      mqttOptions.password = first // manualConnect: its connect() takes this one
    else
      void passwords.ready.then(() => {
        const password = passwords.next()
        if (mqttOptions.password === undefined && password !== undefined) mqttOptions.password = password
      })
    mqttClient.on('reconnect', () => {
      const password = passwords.next()
      if (password !== undefined) mqttOptions.password = password
    })
  }

  const stream = mqttClient.stream as AttemptStream | undefined
  if (stream === undefined || stream.destroyed === true) return // manualConnect, or already between attempts
  if (!keyProof && stream.connecting !== true) return
  // No timer of mqtt.js's own while paused ('offline' and a reconnect racing ours): the restart
  // below is the next attempt.
  const reconnectPeriod = mqttOptions.reconnectPeriod ?? 1000 // mqtt.js's default, which it always sets
  mqttOptions.reconnectPeriod = 0
  const resume = Promise.all([holdIdentity(options.storage, options.identity.id), passwords?.ready])
  resume.catch(() => {}) // refused: the secure client reports it through `ready` and ends the client
  // mqtt.js handles the close of the destroyed stream first (its listener came first), then this.
  mqttClient.once('close', () => {
    resume.then(
      async ([release]) => {
        mqttOptions.reconnectPeriod = reconnectPeriod
        if (!ended && !mqttClient.disconnecting && !mqttClient.disconnected) {
          // With `servers`, mqtt.js moves to the next server on every attempt; the paused one
          // never reached its server, so the restart goes to the same one (the first, as the
          // caller listed them). mqtt.js keeps that position in `_reconnectCount`.
          const rotation = mqttClient as unknown as { _reconnectCount?: number }
          const position = rotation._reconnectCount ?? 0
          if (mqttOptions.servers?.length && position > 0) rotation._reconnectCount = position - 1
          mqttClient.reconnect({ incomingStore: mqttClient.incomingStore, outgoingStore: mqttClient.outgoingStore })
        }
        await release() // the secure client holds the lock too
      },
      () => {
        mqttOptions.reconnectPeriod = reconnectPeriod
      },
    )
  })
  stream.destroy()
}
