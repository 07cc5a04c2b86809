// Push delivery over MQTT: after a change, every affected principal finds its new key bundle
// on its own control topic, and every broker plugin a new snapshot on the brokers' topic.
// Messages are retained (a device coming online gets its latest bundle at once) and QoS 1.
// Bundles are sealed per member and everything is signed, so even a plain broker that does
// not restrict the control topics leaks nothing; the SMQTT plugin restricts them anyway.
// Pull over HTTPS stays the bootstrap and the fallback.
//
// A broker snapshot grows ~190 bytes per principal and MQTT brokers refuse packets over 256 KiB
// (issue 14), so the snapshot itself is pushed only while it stays well under that
// (`maxInlineSnapshotBytes`); past it, brokers get a signed notice of a few hundred bytes (the
// new snapshot's issuedAt and ETag) and pull the snapshot over HTTPS.
import { BROKER_CONTROL_TOPIC, createConnectPassword, principalControlTopic } from '@smqtt/core'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import type { KeyServer } from './key-server.js'

/** The principal the key server publishes as; brokers let only role `keyserver` publish on control topics. */
export const PUSH_PRINCIPAL_ID = 'smqtt-keyserver'
export const KEYSERVER_ROLE = 'keyserver'
/** See {@link MqttPushOptions.maxInlineSnapshotBytes}. */
export const DEFAULT_MAX_INLINE_SNAPSHOT_BYTES = 64 * 1024

export interface MqttPushOptions {
  /** e.g. `mqtts://127.0.0.1:8883`. */
  readonly brokerUrl: string
  /** TLS and other mqtt.js options (ca, cert, key, rejectUnauthorized …). */
  readonly mqttOptions?: IClientOptions
  /** Changes within this window are sent together (default 100 ms). */
  readonly coalesceMs?: number
  /**
   * Largest signed snapshot pushed whole (default 64 KiB, a quarter of the usual 256 KiB packet
   * limit, ~250 principals); a larger one is announced by a signed notice for brokers to pull.
   */
  readonly maxInlineSnapshotBytes?: number
  readonly logger?: Logger
}

export interface MqttPush {
  /** Resolves once every change noticed so far has been published. */
  flush(): Promise<void>
  close(): Promise<void>
  readonly stats: { bundles: number; snapshots: number; notices: number; failures: number }
}

/**
 * Connects to the broker as the key server's push principal and publishes on every change.
 *
 * @example
 * ```ts
 * const push = await startMqttPush(keyServer, { brokerUrl: 'mqtts://127.0.0.1:8883', mqttOptions: { ca } })
 * ```
 */
export async function startMqttPush(keyServer: KeyServer, options: MqttPushOptions): Promise<MqttPush> {
  const { identity } = await keyServer.servicePrincipal(PUSH_PRINCIPAL_ID, [KEYSERVER_ROLE])
  const client: MqttClient = await mqtt.connectAsync(options.brokerUrl, {
    ...options.mqttOptions,
    clientId: PUSH_PRINCIPAL_ID,
    username: PUSH_PRINCIPAL_ID,
    // A fresh proof of possession on every (re)connect.
    password: createConnectPassword(identity, PUSH_PRINCIPAL_ID),
    reconnectPeriod: 2000,
  })
  client.on('reconnect', () => {
    client.options.password = createConnectPassword(identity, PUSH_PRINCIPAL_ID)
  })
  client.on('error', (err) => options.logger?.warn({ err }, 'push connection error'))

  const stats = { bundles: 0, snapshots: 0, notices: 0, failures: 0 }
  // Groups re-keyed since the last send: their holders are looked at (everyone after an
  // enrollment or a policy change), and get a new bundle if its tag moved since the last one
  // pushed to them. So an enrollment reaches the few whose bundles list the newcomer, not the
  // fleet: at 100,000 principals a push to all costs the key server ~25 s of sealing and signing.
  const rekeyedGroups = new Set<number>()
  const pushedTags = new Map<string, string>()
  let everyone = false
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()

  const publish = async (topic: string, body: unknown) => {
    await client.publishAsync(topic, JSON.stringify(body), { qos: 1, retain: true })
  }

  const send = async () => {
    timer = undefined
    const groups = everyone ? undefined : [...rekeyedGroups]
    everyone = false
    rekeyedGroups.clear()
    try {
      const pushed = await keyServer.brokerSnapshotPush(
        options.maxInlineSnapshotBytes ?? DEFAULT_MAX_INLINE_SNAPSHOT_BYTES,
      )
      if ('snapshot' in pushed) {
        await publish(BROKER_CONTROL_TOPIC, { type: 'snapshot', snapshot: pushed.snapshot })
        stats.snapshots++
      } else {
        await publish(BROKER_CONTROL_TOPIC, { type: 'snapshot-notice', notice: pushed.notice })
        stats.notices++
      }
      // Readers of re-keyed groups come before their writers (see principalsHoldingKeys).
      const principals = groups?.length === 0 ? [] : await keyServer.principalsHoldingKeys(groups)
      for (const principal of principals) {
        // The tag before the bundle, as bundleWithTag takes them: a change in between is sent next time.
        const { bundle: tag } = await keyServer.freshnessFor(principal)
        if (pushedTags.get(principal.id) === tag) continue
        const bundle = await keyServer.bundleFor(principal)
        await publish(principalControlTopic(principal.id), { type: 'bundle', bundle })
        pushedTags.set(principal.id, tag)
        stats.bundles++
      }
      if (!groups) {
        // Everyone was looked at: forget those no longer active (revoked, disabled, deleted).
        const active = new Set(principals.map((p) => p.id))
        for (const id of pushedTags.keys()) if (!active.has(id)) pushedTags.delete(id)
      }
    } catch (err) {
      stats.failures++
      options.logger?.error({ err }, 'push failed; clients will pull instead')
    }
  }

  const schedule = () => {
    if (timer) return
    timer = setTimeout(() => {
      running = running.then(send)
    }, options.coalesceMs ?? 100)
  }

  const unsubscribe = keyServer.onChange((change) => {
    if (change.kind === 'epochs') {
      for (const group of change.groups) rekeyedGroups.add(group)
      schedule()
    } else {
      everyone = everyone || change.kind === 'policy' // a policy change can change anyone's groups
      schedule()
    }
  })

  // Changes made while no connection was up were not sent: after every (re)connect, send it all.
  const resync = () => {
    everyone = true
    pushedTags.clear() // the broker may have lost its retained messages too
    schedule()
  }
  client.on('connect', resync)
  resync()

  return {
    stats,
    async flush() {
      // Wait past the coalescing window, then for the publishing chain to drain.
      await new Promise((resolve) => setTimeout(resolve, (options.coalesceMs ?? 100) + 20))
      await running
    },
    async close() {
      unsubscribe()
      if (timer) clearTimeout(timer)
      await running
      await client.endAsync()
    },
  }
}
