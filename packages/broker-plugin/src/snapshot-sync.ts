// Keeps the plugin's snapshot current: pull over HTTPS at start and every `pullIntervalMs`, and
// push over MQTT (the key server publishes each new snapshot on BROKER_CONTROL_TOPIC, which the
// plugin subscribes to inside the broker). Hooks never wait for this: they read whatever snapshot
// was applied last, and when the key server is unreachable the plugin keeps enforcing it, logs
// the failure and reports the snapshot as stale.
import { request as httpsRequest } from 'node:https'
import { BROKER_CONTROL_TOPIC, type Identity, type SignedDocument, signRequest } from '@smqtt/core'
import type { Aedes, AedesPublishPacket } from 'aedes'
import type { Logger } from 'pino'

/** Where and as whom the broker pulls its snapshot. */
export interface KeyServerConnection {
  /** Base URL, e.g. `https://keys.example:9443`. */
  readonly url: string
  /** CA certificate(s) the key server's TLS certificate must chain to. */
  readonly ca?: string | Buffer
  /** The broker's own principal (role `broker`): signs each request. */
  readonly identity: Pick<Identity, 'id' | 'signingSeed' | 'signingKey'>
  /** Pull period, default 30,000 ms. */
  readonly pullIntervalMs?: number
  /** Per-request timeout, default 10,000 ms. */
  readonly timeoutMs?: number
}

const SNAPSHOT_PATH = '/v1/broker/snapshot'
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

/**
 * Fetches the signed snapshot once (signed request as the broker's principal). Does not verify
 * it: the caller opens it under the pinned key-server key.
 *
 * @example
 * ```ts
 * const signed = await fetchBrokerSnapshot({ url, ca, identity: brokerIdentity })
 * handle.applySnapshot(signed, 'pull')
 * ```
 */
export function fetchBrokerSnapshot(connection: KeyServerConnection): Promise<SignedDocument> {
  const { identity } = connection
  const headers = signRequest(identity.id, identity, { method: 'GET', path: SNAPSHOT_PATH, body: new Uint8Array() })
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(SNAPSHOT_PATH, connection.url),
      {
        method: 'GET',
        headers,
        ...(connection.ca ? { ca: connection.ca } : {}),
        timeout: connection.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('snapshot response too large'))
          else chunks.push(chunk)
        })
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode !== 200)
            return reject(new Error(`key server answered ${res.statusCode}: ${text.slice(0, 200)}`))
          try {
            const body = JSON.parse(text) as { snapshot?: SignedDocument }
            if (body.snapshot === undefined) throw new Error('no snapshot in the response')
            resolve(body.snapshot)
          } catch (err) {
            reject(err)
          }
        })
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error('snapshot request timed out')))
    req.on('error', reject)
    req.end()
  })
}

/** What the sync hands snapshots to; returns whether the snapshot was applied. */
export type SnapshotSink = (signed: unknown, source: 'pull' | 'push') => boolean

/** A running sync. */
export interface SnapshotSync {
  /** Pulls now; resolves true when a snapshot was fetched and applied (never rejects). */
  pull(): Promise<boolean>
  close(): Promise<void>
}

/**
 * Starts the pull timer (if `connection` is given) and the push subscription. The first pull
 * runs at once; the returned promise resolves after it, whether it succeeded or not.
 *
 * @example
 * ```ts
 * const sync = await startSnapshotSync(broker, { url, ca, identity }, (signed, source) => apply(signed, source), log)
 * ```
 */
export async function startSnapshotSync(
  broker: Aedes,
  connection: KeyServerConnection | undefined,
  sink: SnapshotSink,
  logger: Logger,
  onPullFailure: () => void,
): Promise<SnapshotSync> {
  let timer: NodeJS.Timeout | undefined
  let closed = false

  const pull = async (): Promise<boolean> => {
    if (!connection || closed) return false
    try {
      return sink(await fetchBrokerSnapshot(connection), 'pull')
    } catch (err) {
      onPullFailure()
      logger.warn({ err, keyServer: connection.url }, 'snapshot pull failed; enforcing the last snapshot')
      return false
    }
  }

  // Push: the key server (role keyserver, checked by authorizePublish) publishes here.
  const deliver = (packet: AedesPublishPacket, done: () => void) => {
    try {
      const message = JSON.parse(Buffer.from(packet.payload).toString('utf8')) as { type?: unknown; snapshot?: unknown }
      if (message.type === 'snapshot') sink(message.snapshot, 'push')
    } catch (err) {
      logger.warn({ err }, 'unreadable message on the broker control topic')
    }
    done()
  }
  await new Promise<void>((resolve) => broker.subscribe(BROKER_CONTROL_TOPIC, deliver, resolve))

  await pull()
  if (connection) {
    const schedule = () => {
      timer = setTimeout(() => {
        void pull().finally(() => {
          if (!closed) schedule()
        })
      }, connection.pullIntervalMs ?? 30_000)
      timer.unref()
    }
    schedule()
  }

  return {
    pull,
    async close() {
      closed = true
      if (timer) clearTimeout(timer)
      await new Promise<void>((resolve) => broker.unsubscribe(BROKER_CONTROL_TOPIC, deliver, resolve))
    },
  }
}
