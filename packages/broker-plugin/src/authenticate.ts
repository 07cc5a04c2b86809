// CONNECT authentication, three ways, all ending in one rule: the MQTT client id must equal the
// authenticated principal's id, so no principal can take over another's session.
//   1. mutual TLS: the certificate TLS verified names the principal (URI SAN) and must be the one
//      the key server issued last (serial in the snapshot), so a re-enrolled device's old
//      certificate is refused;
//   2. a CONNECT password proving possession of the principal's Ed25519 key (no shared secret on
//      the broker), each nonce accepted once;
//   3. legacy username/password, checked against a memory-hard scrypt hash.
// This is the one place the broker plugin uses node:crypto: scrypt is a memory-hard KDF for
// legacy passwords, which @smqtt/core (payload crypto only) does not need.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import {
  isConnectPassword,
  principalIdFromUris,
  SmqttError,
  type SmqttErrorCode,
  type SnapshotPrincipal,
  verifyConnectPassword,
} from '@smqtt/core'
import type { AuthenticateError, Client } from 'aedes'
import type { RefusalReason } from './audit.js'
import { sameSerial } from './enforced-snapshot.js'
import { isBanned, type PluginContext } from './plugin-context.js'
import { type AuthenticationMethod, addressOf, connectInfoOf, setSession } from './session.js'

type AuthenticateDone = (error: AuthenticateError | null, success: boolean | null) => void
type AuthenticateHook = (
  client: Client,
  username: string | undefined,
  password: Buffer | undefined,
  done: AuthenticateDone,
) => void

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
const IDENTIFIER_REJECTED = 2
const SERVER_UNAVAILABLE = 3
const BAD_CREDENTIALS = 4
const NOT_AUTHORIZED = 5

const REFUSALS: Record<string, { returnCode: number; code: SmqttErrorCode; countsAsFailure: boolean }> = {
  'no-snapshot': { returnCode: SERVER_UNAVAILABLE, code: 'ERR_UNAUTHENTICATED', countsAsFailure: false },
  'empty-client-id': { returnCode: IDENTIFIER_REJECTED, code: 'ERR_UNAUTHENTICATED', countsAsFailure: true },
  'client-id-mismatch': { returnCode: IDENTIFIER_REJECTED, code: 'ERR_FORBIDDEN', countsAsFailure: true },
  'bad-credentials': { returnCode: BAD_CREDENTIALS, code: 'ERR_UNAUTHENTICATED', countsAsFailure: true },
  'replayed-password': { returnCode: BAD_CREDENTIALS, code: 'ERR_UNAUTHENTICATED', countsAsFailure: true },
  // Unknown principals answer like a wrong password: CONNECT must not reveal who exists.
  'unknown-principal': { returnCode: BAD_CREDENTIALS, code: 'ERR_UNAUTHENTICATED', countsAsFailure: true },
  'principal-inactive': { returnCode: NOT_AUTHORIZED, code: 'ERR_PRINCIPAL_REVOKED', countsAsFailure: true },
  'certificate-mismatch': { returnCode: NOT_AUTHORIZED, code: 'ERR_UNAUTHENTICATED', countsAsFailure: true },
  // An authenticated device reconnecting in a loop: "try later", and no ban of its address.
  'rate-limited': { returnCode: SERVER_UNAVAILABLE, code: 'ERR_FORBIDDEN', countsAsFailure: false },
  // Scale-out: the cluster's shared nonces (Redis) cannot be checked: fail closed (see below).
  'bus-unavailable': { returnCode: SERVER_UNAVAILABLE, code: 'ERR_UNAUTHENTICATED', countsAsFailure: false },
}

/** How far a CONNECT password's timestamp may be from the broker's clock, either way (seconds). */
export const CONNECT_PASSWORD_SKEW_SECONDS = 60

/**
 * Scale-out: how much longer than its password's acceptance a nonce is kept in Redis (seconds),
 * for nodes whose clocks run behind the one that stored it: each node accepts a password until
 * `timestamp + skew` by its own clock.
 */
export const NODE_CLOCK_MARGIN_SECONDS = 60

/**
 * Remembers one-time nonces (CONNECT passwords) for as long as their password is acceptable: one
 * stamped `timestamp` passes while `now <= timestamp + skew`, so its nonce is kept until then
 * inclusive. (Kept "twice the window from first use" with an exclusive end, a password used at
 * the window's near edge was accepted again at its far edge.) Bounded: when full of live nonces
 * it refuses new ones (fails closed) rather than forgetting one, which would open a replay.
 */
export class NonceCache {
  readonly #seen = new Map<string, number>()
  #sweptAt = Number.NEGATIVE_INFINITY
  constructor(readonly maxEntries = 100_000) {}

  /** Nonces held (live ones, and expired ones until the next sweep). */
  get size(): number {
    return this.#seen.size
  }

  /** True the first time `nonce` is offered; it is then refused while `now <= acceptedUntil`. */
  useOnce(nonce: string, acceptedUntil: number, now: number): boolean {
    const until = this.#seen.get(nonce)
    if (until !== undefined && until >= now) return false
    // Expired nonces go once a skew window (issue 14: dropped only when the cache was full, each
    // connection's nonce stayed in memory for as long as it lived, up to 100,000 of them).
    if (this.#seen.size >= this.maxEntries || now - this.#sweptAt >= CONNECT_PASSWORD_SKEW_SECONDS) {
      this.#sweptAt = now
      for (const [key, last] of this.#seen) if (last < now) this.#seen.delete(key)
      if (this.#seen.size >= this.maxEntries) return false
    }
    this.#seen.set(nonce, acceptedUntil)
    return true
  }
}

const SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const
const HASH_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/

function scryptAsync(password: string, salt: Buffer, length: number, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  )
}

/**
 * Hashes a legacy password with scrypt (N = 2^15, r = 8, p = 1: 32 MiB, memory-hard) for the
 * `legacyUsers` option.
 *
 * @example
 * ```ts
 * const hash = await hashLegacyPassword('correct horse battery staple')
 * attachSmqtt(broker, { ..., legacyUsers: [{ username: 'old-sensor', principal: 'sensor-7', hash }] })
 * ```
 */
export async function hashLegacyPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await scryptAsync(password, salt, 32, SCRYPT.N, SCRYPT.r, SCRYPT.p)
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

/** Checks a password against a {@link hashLegacyPassword} hash; false for a malformed hash. */
export async function verifyLegacyPassword(password: string, hash: string): Promise<boolean> {
  const match = HASH_FORMAT.exec(hash)
  if (!match) return false
  const [, n, r, p, salt, expected] = match as unknown as [string, string, string, string, string, string]
  const N = Number(n)
  // Refuse parameters that would let a config file make every CONNECT cost seconds or gigabytes.
  if (N < 2 ** 14 || N > 2 ** 20 || (N & (N - 1)) !== 0 || Number(r) > 32 || Number(p) > 16) return false
  const want = Buffer.from(expected, 'base64url')
  try {
    const got = await scryptAsync(password, Buffer.from(salt, 'base64url'), want.length, N, Number(r), Number(p))
    return got.length === want.length && timingSafeEqual(got, want)
  } catch {
    return false
  }
}

/**
 * The verified client certificate, if TLS verified one (its URI subject alternative names and
 * serial, as Node's TLS already parsed them); `unverified` if one was presented but not verified.
 */
function peerCertificate(client: Client): { uris: string[]; serialNumber: string } | 'unverified' | undefined {
  const socket = client.conn as Partial<TLSSocket>
  if (typeof socket.getPeerCertificate !== 'function') return undefined
  const certificate = socket.getPeerCertificate(false)
  if (!certificate || Object.keys(certificate).length === 0 || !certificate.raw) return undefined
  if (socket.authorized !== true) return 'unverified'
  // Node lists the names as "URI:…, DNS:…"; our URIs are percent-encoded, so ", " never occurs inside one.
  const uris = (certificate.subjectaltname ?? '')
    .split(', ')
    .filter((name) => name.startsWith('URI:'))
    .map((name) => name.slice(4))
  return { uris, serialNumber: certificate.serialNumber }
}

/**
 * The Aedes `authenticate` hook. The snapshot is in memory; a legacy password costs a
 * (memory-hard, asynchronous) hash, and a principal the snapshot does not know waits for one
 * on-demand pull (bounded, shared by every such CONNECT, at most one a second: a device that
 * enrolled a moment ago logs in at its first try).
 */
export function createAuthenticateHook(context: PluginContext, previous: AuthenticateHook): AuthenticateHook {
  const nonces = new NonceCache()
  return (client, username, password, done) => {
    const address = addressOf(client)
    const clientId = connectInfoOf(client)?.clientId ?? client.id
    const refuse = (reason: RefusalReason, principal?: string, detail?: string) => {
      const refusal = REFUSALS[reason] ?? (REFUSALS['bad-credentials'] as NonNullable<(typeof REFUSALS)[string]>)
      context.audit.refused('connect', reason, { principal, clientId, address, detail })
      if (refusal.countsAsFailure) {
        context.guard.failed(address, context.now())
        context.shared?.failed(address)
      }
      const error = new SmqttError(refusal.code, `CONNECT refused: ${reason}`) as SmqttError & { returnCode: number }
      error.returnCode = refusal.returnCode
      done(error as unknown as AuthenticateError, null)
    }
    // Checks common to every method, once the principal is authenticated.
    const accept = (principalId: string, method: AuthenticationMethod, certificateSerial?: string) => {
      const principal = context.snapshot()?.principals.get(principalId)
      if (!principal) return refuse('unknown-principal', principalId)
      if (principal.status !== 'active' || isBanned(context, principalId))
        return refuse('principal-inactive', principalId, principal.status)
      if (clientId !== principalId) return refuse('client-id-mismatch', principalId)
      // Counted only now: CONNECTs that merely name a device's client id cannot use up its budget.
      if (!context.guard.admitPrincipal(principalId, context.now())) return refuse('rate-limited', principalId)
      const admitted = () => {
        // Authenticated: its address's pre-authentication budget is given back (limits.ts).
        context.guard.refund(address, context.now())
        context.shared?.refundAddress(address)
        setSession(client, { principalId, method, ...(certificateSerial ? { certificateSerial } : {}) })
        context.metrics.connects.inc({ method })
        context.audit.log.info({ event: 'authenticated', principal: principalId, method, address }, 'CONNECT accepted')
        previous(client, username, password, done)
      }
      if (!context.shared) return admitted()
      // Scale-out: the principal's cluster-wide budget and ban (a bad signature seen by any node).
      context.shared.admitPrincipal(principalId).then((verdict) => {
        if (verdict === 'banned') return refuse('principal-inactive', principalId, 'banned (cluster-wide)')
        if (verdict === 'over-budget') return refuse('rate-limited', principalId, 'per-principal budget (cluster-wide)')
        admitted()
      })
    }

    // The principal from the snapshot; one the snapshot does not know waits for a newer snapshot
    // (context.awaitNewerSnapshot), then is looked up again. Still unknown: `unknown-principal`.
    const lookUp = (principalId: string, then: (principal: SnapshotPrincipal) => void) => {
      const known = context.snapshot()?.principals.get(principalId)
      if (known) return then(known)
      if (!context.awaitNewerSnapshot) return refuse('unknown-principal', principalId)
      context.awaitNewerSnapshot(client).then(() => {
        const learned = context.snapshot()?.principals.get(principalId)
        if (!learned) return refuse('unknown-principal', principalId, 'not in the snapshot after an on-demand pull')
        then(learned)
      })
    }

    const enforced = context.snapshot()
    if (!enforced) return refuse('no-snapshot')
    if (clientId === '') return refuse('empty-client-id')

    const certificate = peerCertificate(client)
    if (certificate === 'unverified')
      return refuse('certificate-mismatch', undefined, 'certificate not verified by TLS')
    if (certificate) {
      const principalId = principalIdFromUris(certificate.uris)
      if (principalId === undefined) return refuse('certificate-mismatch', undefined, 'no principal id in certificate')
      return lookUp(principalId, (principal) => {
        if (
          principal.certificateSerial === undefined ||
          !sameSerial(principal.certificateSerial, certificate.serialNumber)
        )
          return refuse('certificate-mismatch', principalId, 'not the certificate issued last')
        if (username !== undefined && username !== principalId) return refuse('client-id-mismatch', principalId)
        accept(principalId, 'certificate', certificate.serialNumber)
      })
    }

    if (username === undefined || password === undefined) return refuse('bad-credentials', username)
    const secret = password.toString('utf8')
    if (isConnectPassword(secret)) {
      // The proof signs the client id, so a username/client-id mix cannot pass it (checked before
      // the principal is looked up: such a CONNECT is not worth a pull, and its answer does not
      // depend on whether the principal exists).
      if (clientId !== username) return refuse('client-id-mismatch', username)
      return lookUp(username, (principal) => {
        const now = context.now()
        let nonce: string
        try {
          nonce = verifyConnectPassword(secret, {
            clientId,
            signingKey: principal.signingKey,
            now,
            maxSkewSeconds: CONNECT_PASSWORD_SKEW_SECONDS,
          })
        } catch {
          return refuse('bad-credentials', username)
        }
        // Verified, so the format holds: "smqtt1.<timestamp>.<nonce>.<signature>".
        const acceptedUntil = Number(secret.split('.')[1]) + CONNECT_PASSWORD_SKEW_SECONDS
        if (!nonces.useOnce(nonce, acceptedUntil, now)) return refuse('replayed-password', username)
        if (!context.shared) return accept(username, 'connect-password')
        // Scale-out: a nonce seen by any node is refused by every node. Redis not answering fails closed.
        const keepMs = (acceptedUntil + 1 + NODE_CLOCK_MARGIN_SECONDS - now) * 1000
        context.shared.useNonce(nonce, keepMs).then(
          (first) => (first ? accept(username, 'connect-password') : refuse('replayed-password', username)),
          (err: Error) => {
            // Dropped without CONNACK, like a CONNECT over its address budget: a CONNACK refusal
            // ends mqtt.js clients for good (no `reconnectOnConnackError`), and this is transient.
            ;(client.conn as { destroy?: () => void }).destroy?.()
            refuse('bus-unavailable', username, `CONNECT-password nonces are shared through Redis: ${err.message}`)
          },
        )
      })
    }

    const legacy = context.legacyUsers.get(username)
    if (!legacy) return refuse('bad-credentials', username)
    verifyLegacyPassword(secret, legacy.hash).then(
      (ok) => (ok ? accept(legacy.principal, 'legacy-password') : refuse('bad-credentials', username)),
      () => refuse('bad-credentials', username),
    )
  }
}
