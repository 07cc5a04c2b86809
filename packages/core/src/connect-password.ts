// The MQTT CONNECT password that proves possession of a principal's key: the broker stores no
// shared secret, a password is bound to one client id, expires within a minute, and carries a
// one-time nonce the broker remembers, so a captured CONNECT cannot be replayed.
//
//   password = "smqtt1." timestamp "." nonce "." signature      (username = principal id)
//   signature = Ed25519(context "mqtt-connect", clientId "\n" timestamp "\n" nonce)
import { defaultBackend } from '#crypto-backend'
import { fromBase64Url, toBase64Url, utf8 } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import {
  type AsyncSigningKey,
  type SigningKeyPair,
  signWithContext,
  signWithContextAsync,
  verifyWithContext,
} from './crypto/signature.js'
import { SmqttError } from './errors.js'

const CONTEXT = 'mqtt-connect'
const PREFIX = 'smqtt1.'
const FORMAT = /^smqtt1\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{86})$/

const signed = (clientId: string, timestamp: number, nonce: string) => utf8(`${clientId}\n${timestamp}\n${nonce}`)

/**
 * Makes a CONNECT password for `clientId` (which must equal the principal id on SMQTT brokers).
 *
 * @example
 * ```ts
 * mqtt.connect(url, { clientId: identity.id, username: identity.id, password: createConnectPassword(identity, identity.id) })
 * ```
 */
export function createConnectPassword(
  keys: SigningKeyPair,
  clientId: string,
  options: { now?: number; backend?: CryptoBackend } = {},
): string {
  const backend = options.backend ?? defaultBackend
  const { timestamp, nonce, message } = passwordToSign(clientId, options.now, backend)
  return password(timestamp, nonce, signWithContext(keys, CONTEXT, message, backend))
}

/**
 * {@link createConnectPassword} for either kind of key, e.g. a non-extractable WebCrypto
 * identity (whose signature takes a promise).
 *
 * @example
 * ```ts
 * const password = await createConnectPasswordAsync(identity, identity.id)
 * ```
 */
export async function createConnectPasswordAsync(
  keys: SigningKeyPair | AsyncSigningKey,
  clientId: string,
  options: { now?: number; backend?: CryptoBackend } = {},
): Promise<string> {
  const backend = options.backend ?? defaultBackend
  const { timestamp, nonce, message } = passwordToSign(clientId, options.now, backend)
  return password(timestamp, nonce, await signWithContextAsync(keys, CONTEXT, message, backend))
}

function passwordToSign(clientId: string, now: number | undefined, backend: CryptoBackend) {
  const timestamp = now ?? Math.floor(Date.now() / 1000)
  const nonce = toBase64Url(backend.randomBytes(16))
  return { timestamp, nonce, message: signed(clientId, timestamp, nonce) }
}

const password = (timestamp: number, nonce: string, signature: Uint8Array) =>
  `${PREFIX}${timestamp}.${nonce}.${toBase64Url(signature)}`

/** True when `password` has the shape of a CONNECT password (so a broker can tell it from a legacy one). */
export function isConnectPassword(password: string): boolean {
  return password.startsWith(PREFIX)
}

/**
 * Checks a CONNECT password against the principal's key and the CONNECT's client id. Returns
 * the nonce, which the caller must accept only once (remember it for 2 × maxSkewSeconds).
 * Throws ERR_UNAUTHENTICATED on any problem, always with the same message.
 *
 * @example
 * ```ts
 * const nonce = verifyConnectPassword(password, { clientId, signingKey: principal.signingKey })
 * if (!nonces.useOnce(nonce)) refuse()
 * ```
 */
export function verifyConnectPassword(
  password: string,
  options: { clientId: string; signingKey: Uint8Array; now?: number; maxSkewSeconds?: number; backend?: CryptoBackend },
): string {
  const refuse = () => new SmqttError('ERR_UNAUTHENTICATED', 'CONNECT password does not prove the principal key')
  const match = FORMAT.exec(password)
  if (!match) throw refuse()
  const [, timestampText, nonce, signatureText] = match as unknown as [string, string, string, string]
  const timestamp = Number(timestampText)
  const now = options.now ?? Math.floor(Date.now() / 1000)
  if (Math.abs(now - timestamp) > (options.maxSkewSeconds ?? 60)) throw refuse()
  const signature = fromBase64Url(signatureText)
  if (!signature || fromBase64Url(nonce)?.length !== 16) throw refuse()
  const ok = verifyWithContext(
    options.signingKey,
    CONTEXT,
    signed(options.clientId, timestamp, nonce),
    signature,
    options.backend ?? defaultBackend,
  )
  if (!ok) throw refuse()
  return nonce
}
