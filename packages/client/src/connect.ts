import mqtt, { type IClientOptions } from 'mqtt'
import { holdIdentity } from './_identity-lock.js'
import { type SecureClient, type SecureOptions, secure } from './secure.js'

/** Options of {@link secureConnectAsync}. */
export interface SecureConnectOptions extends SecureOptions {
  /** mqtt.js options (TLS `ca`, `cert`, `key`, keepalive, ...). */
  readonly mqtt?: IClientOptions
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
 *   ...enrollment, storage, keyServer: { url, ca, keyServerPublicKey: enrollment.keyServerPublicKey }, mqtt: { ca },
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

async function connectHoldingIdentity(url: string, options: SecureConnectOptions): Promise<SecureClient> {
  // secure() logs in (key-proof passwords, see _connect-login.ts): the one path for both.
  const mqttClient = mqtt.connect(url, { clientId: options.identity.id, ...options.mqtt })
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
