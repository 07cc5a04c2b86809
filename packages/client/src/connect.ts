import { createConnectPassword } from '@smqtt/core'
import mqtt, { type IClientOptions } from 'mqtt'
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
  const { identity } = options
  const usePassword = options.connectPassword !== false && options.mqtt?.password === undefined
  const mqttOptions: IClientOptions = {
    clientId: identity.id,
    ...(usePassword ? { username: identity.id, password: createConnectPassword(identity, identity.id) } : {}),
    ...options.mqtt,
  }
  const mqttClient = mqtt.connect(url, mqttOptions)
  // mqtt.js builds CONNECT from its options right after emitting 'reconnect'.
  if (usePassword)
    mqttClient.on('reconnect', () => {
      mqttClient.options.password = createConnectPassword(identity, mqttClient.options.clientId ?? identity.id)
    })
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
