import {
  createConnectPassword,
  createConnectPasswordAsync,
  type Identity,
  type NonExtractableIdentity,
} from '@smqtt/core'
import mqtt, { type IClientOptions } from 'mqtt'
import { holdIdentity } from './_identity-lock.js'
import { type SecureClient, type SecureOptions, secure } from './secure.js'

/** Options of {@link secureConnectAsync}. */
export interface SecureConnectOptions extends SecureOptions {
  /** mqtt.js options (TLS `ca`, `cert`, `key`, keepalive, ...). */
  readonly mqtt?: IClientOptions
  /**
   * Log in with a CONNECT password that proves this principal's key (username = client id =
   * principal id), renewed before every reconnect since each one is valid for a minute only.
   * Default true; ignored when `mqtt.password` is set.
   */
  readonly connectPassword?: boolean
  /** Milliseconds to wait for the connection and the first keys (default 15 000). */
  readonly timeoutMs?: number
}

/**
 * `mqtt.connectAsync` and {@link secure} in one call: resolves once connected with keys loaded.
 *
 * @example
 * ```ts
 * const enrollment = await loadEnrollment(storage)
 * const client = await secureConnectAsync('mqtts://broker:8883', {
 *   ...enrollment, storage, keyserver: { url, ca, keyServerPublicKey: enrollment.keyServerPublicKey }, mqtt: { ca },
 * })
 * ```
 */
export async function secureConnectAsync(url: string, options: SecureConnectOptions): Promise<SecureClient> {
  // The identity's lock before the connection: a second running copy is refused before its
  // CONNECT can take the first one's broker session over (the client keeps a share of its own).
  const releaseConnecting = await holdIdentity(options.storage, options.identity.id)
  try {
    return await connectHoldingIdentity(url, options)
  } finally {
    await releaseConnecting()
  }
}

/** How often a password is made ahead for a WebCrypto identity: well within its ±60 s validity. */
const PASSWORD_RENEW_MS = 30_000

/**
 * CONNECT passwords, one per (re)connection. mqtt.js takes the password synchronously, right
 * after emitting 'reconnect': raw keys sign it then; a non-extractable WebCrypto key signs only
 * through a promise, so its next password is made ahead, after each use and every 30 s.
 */
async function connectPasswords(
  identity: Identity | NonExtractableIdentity,
  clientId: string,
): Promise<{ next(): string; stop(): void }> {
  if ('signingSeed' in identity) return { next: () => createConnectPassword(identity, clientId), stop: () => {} }
  const make = () => createConnectPasswordAsync(identity, clientId)
  let ready = await make()
  let renewing = false
  const renew = () => {
    if (renewing) return
    renewing = true
    make()
      .then(
        (password) => {
          ready = password
        },
        () => {}, // the one held stays until the next renewal
      )
      .finally(() => {
        renewing = false
      })
  }
  const timer = setInterval(renew, PASSWORD_RENEW_MS)
  ;(timer as { unref?: () => void }).unref?.()
  return {
    next() {
      const password = ready
      renew() // a nonce is accepted once: the next connection needs another
      return password
    },
    stop: () => clearInterval(timer),
  }
}

async function connectHoldingIdentity(url: string, options: SecureConnectOptions): Promise<SecureClient> {
  const { identity } = options
  const usePassword = options.connectPassword !== false && options.mqtt?.password === undefined
  const clientId = options.mqtt?.clientId ?? identity.id
  const passwords = usePassword ? await connectPasswords(identity, clientId) : undefined
  const mqttOptions: IClientOptions = {
    clientId: identity.id,
    ...(passwords ? { username: identity.id, password: passwords.next() } : {}),
    ...options.mqtt,
  }
  const mqttClient = mqtt.connect(url, mqttOptions)
  // mqtt.js builds CONNECT from its options right after emitting 'reconnect'.
  if (passwords) {
    mqttClient.on('reconnect', () => {
      mqttClient.options.password = passwords.next()
    })
    mqttClient.once('end', () => passwords.stop())
  }
  const client = secure(mqttClient, options)
  // The caller cannot listen for 'error' before we return; the rejection below reports it.
  const swallow = () => {}
  client.on('error', swallow)
  const timeoutMs = options.timeoutMs ?? 15_000
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    await Promise.race([
      Promise.all([
        client.ready,
        new Promise<void>((resolve, reject) => {
          if (mqttClient.connected) return resolve()
          mqttClient.once('connect', () => resolve())
          mqttClient.once('error', reject)
        }),
      ]),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not connected with keys within ${timeoutMs} ms`)), timeoutMs)
      }),
    ])
  } catch (err) {
    await client.endAsync(true).catch(() => {})
    throw err
  } finally {
    clearTimeout(timer)
    client.off('error', swallow)
  }
  return client
}
