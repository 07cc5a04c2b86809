// Keeps the plugin's snapshot current: pull over HTTPS at start and every `pullIntervalMs`, and
// push over MQTT (the key server publishes each new snapshot on BROKER_CONTROL_TOPIC, which the
// plugin subscribes to inside the broker). Hooks never wait for this: they read whatever snapshot
// was applied last, and when the key server is unreachable the plugin keeps enforcing it, logs
// the failure and reports the snapshot as stale.
//
// On demand: a CONNECT naming a principal the snapshot does not know (a device that enrolled a
// moment ago) asks for one more pull. Those pulls are coalesced and spaced (at most one a second
// by default), and conditional: the key server answers 304 while the snapshot's content is the
// one held, so a flood of unknown client ids costs it one 304 a second at most. The scheduled
// pulls stay unconditional: a 304 is vouched for by TLS only, not by the key server's signature,
// so it does not count as a sync for the snapshot's age.
//
// Notices (issue 14): past ~250 principals the key server pushes, instead of the snapshot, a
// signed notice of it (issuedAt and ETag). A notice verified under the pinned key and newer than
// both the snapshot applied and every notice acted on starts one conditional pull, shared and
// spaced like the on-demand ones, retried with backoff (up to the pull period) while it fails.
// A replayed or forged notice therefore starts nothing, and a genuine one at most one pull; what
// the pull brings is applied under the snapshot's own rules. A missed notice is healed by the
// next scheduled pull.
import { request as httpsRequest } from 'node:https'
import {
  BROKER_CONTROL_TOPIC,
  type Identity,
  isSmqttError,
  openBrokerSnapshotNotice,
  type SignedDocument,
  signRequest,
} from '@smqtt/core'
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
  /**
   * Pulls on demand for CONNECTs naming a principal the snapshot does not know: at most one per
   * `intervalMs` (default 1,000), each such CONNECT waiting at most `waitMs` (default 5,000, and
   * never past its connection's close at the pre-authentication deadline). `false`: none (pulls
   * on pushed notices still happen, spaced by the default interval).
   */
  readonly onDemandPull?: { readonly intervalMs?: number; readonly waitMs?: number } | false
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
export async function fetchBrokerSnapshot(connection: KeyServerConnection): Promise<SignedDocument> {
  const fetched = await fetchSnapshotIfChanged(connection, undefined)
  if (fetched === 'not-modified') throw new Error('key server answered 304 to an unconditional request')
  return fetched.snapshot
}

/** {@link fetchBrokerSnapshot} with `If-None-Match: etag`: `not-modified` when the key server answers 304. */
function fetchSnapshotIfChanged(
  connection: KeyServerConnection,
  etag: string | undefined,
): Promise<{ snapshot: SignedDocument; etag: string | undefined } | 'not-modified'> {
  const { identity } = connection
  const headers: Record<string, string> = {
    ...signRequest(identity.id, identity, { method: 'GET', path: SNAPSHOT_PATH, body: new Uint8Array() }),
    ...(etag === undefined ? {} : { 'if-none-match': etag }),
  }
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
          if (res.statusCode === 304 && etag !== undefined) return resolve('not-modified')
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode !== 200)
            return reject(new Error(`key server answered ${res.statusCode}: ${text.slice(0, 200)}`))
          try {
            const body = JSON.parse(text) as { snapshot?: SignedDocument }
            if (body.snapshot === undefined) throw new Error('no snapshot in the response')
            const tag = res.headers.etag
            resolve({ snapshot: body.snapshot, etag: typeof tag === 'string' ? tag : undefined })
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
export type SnapshotSink = (signed: unknown, source: 'pull' | 'push') => boolean | Promise<boolean>

/** How an on-demand pull ended: a newer snapshot applied, the same content (304), or failed. */
export type OnDemandPullResult = 'applied' | 'unchanged' | 'failed'

/** What the sync needs to act on pushed notices. */
export interface NoticeCheck {
  /** The pinned key-server key notices must verify under. */
  readonly keyServerPublicKey: Uint8Array
  /** The issuedAt of the snapshot being enforced (undefined before the first). */
  readonly appliedIssuedAt: () => number | undefined
  /** Clock, unix seconds. */
  readonly now: () => number
}

/** How a pushed notice was taken: it started a pull, announced nothing new, or was refused. */
export type NoticeOutcome = 'pulling' | 'not-newer' | 'too-old' | 'no-key-server' | 'refused'

/** A notice older than this is ignored (the scheduled pull covers it). */
const NOTICE_MAX_AGE_SECONDS = 300

/** A running sync. */
export interface SnapshotSync {
  /** Pulls now; resolves true when a snapshot was fetched and applied (never rejects). */
  pull(): Promise<boolean>
  /**
   * Resolves once a conditional pull that started after this call has ended (true when it
   * applied a snapshot); callers share pulls, which start at most one per `onDemandPull.intervalMs`.
   * Resolves false at once without a key server or with `onDemandPull: false`. Never rejects.
   */
  pullOnDemand(): Promise<boolean>
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
  onDemandPulled: (result: OnDemandPullResult) => void = () => {},
  notices?: NoticeCheck,
): Promise<SnapshotSync> {
  let timer: NodeJS.Timeout | undefined
  let closed = false
  /** The ETag of the last snapshot fetched: what an on-demand pull asks to be told has changed. */
  let lastEtag: string | undefined
  /** The pull running now, if any (scheduled, explicit or on demand). */
  let running: Promise<unknown> | undefined

  const fetchAndApply = async (conditional: boolean): Promise<OnDemandPullResult> => {
    if (!connection || closed) return 'failed'
    try {
      const fetched = await fetchSnapshotIfChanged(connection, conditional ? lastEtag : undefined)
      if (fetched === 'not-modified') return 'unchanged'
      lastEtag = fetched.etag
      return (await sink(fetched.snapshot, 'pull')) ? 'applied' : 'unchanged'
    } catch (err) {
      onPullFailure()
      logger.warn({ err, keyServer: connection.url }, 'snapshot pull failed; enforcing the last snapshot')
      return 'failed'
    }
  }
  const track = <T>(pulling: Promise<T>): Promise<T> => {
    running = pulling
    void pulling.finally(() => {
      if (running === pulling) running = undefined
    })
    return pulling
  }
  const pull = async (): Promise<boolean> => (await track(fetchAndApply(false))) === 'applied'

  const onDemand = connection?.onDemandPull === false ? undefined : (connection?.onDemandPull ?? {})
  const intervalMs = onDemand?.intervalMs ?? 1_000
  const pullIntervalMs = connection?.pullIntervalMs ?? 30_000
  let lastConditionalAt = Number.NEGATIVE_INFINITY
  /** The next conditional pull, not started yet: every caller until it starts shares it. */
  let next: Promise<OnDemandPullResult> | undefined
  const pullConditional = (): Promise<OnDemandPullResult> => {
    if (!connection || closed) return Promise.resolve('failed')
    next ??= (async () => {
      // Always yields first, so `next` is set before it is cleared below.
      await delay(lastConditionalAt + intervalMs - Date.now())
      // A pull already running may have started before the caller's principal existed.
      await running?.catch(() => {})
      next = undefined // callers from now on need a pull that starts after them
      if (closed) return 'failed'
      lastConditionalAt = Date.now()
      const result = await track(fetchAndApply(true))
      onDemandPulled(result)
      return result
    })()
    return next
  }
  const pullOnDemand = async (): Promise<boolean> =>
    !connection || !onDemand || closed ? false : (await pullConditional()) === 'applied'

  /** The newest issuedAt a verified notice announced: what the chase below pulls until it holds. */
  let announced = 0
  let chasing = false
  const chase = async () => {
    chasing = true
    let backoffMs = intervalMs
    try {
      while (!closed && (notices?.appliedIssuedAt() ?? 0) < announced) {
        const result = await pullConditional()
        // 304, or a snapshot not applied (older, invalid): the notice is answered; the scheduled pull covers the rest.
        if (result === 'unchanged') break
        if (result === 'failed') {
          await delay(backoffMs)
          backoffMs = Math.min(backoffMs * 2, pullIntervalMs)
        }
      }
    } finally {
      chasing = false
    }
  }
  const onNotice = (signed: unknown): NoticeOutcome => {
    if (!notices) return 'refused'
    let notice: { issuedAt: number; tag: string }
    try {
      notice = openBrokerSnapshotNotice(signed, notices.keyServerPublicKey)
    } catch (err) {
      if (!isSmqttError(err)) throw err
      logger.warn({ code: err.code }, 'snapshot notice refused')
      return 'refused'
    }
    if (notice.issuedAt <= Math.max(announced, notices.appliedIssuedAt() ?? 0)) return 'not-newer'
    if (notice.issuedAt < notices.now() - NOTICE_MAX_AGE_SECONDS) return 'too-old'
    if (!connection) {
      logger.warn('a snapshot notice arrived but no key server is configured to pull from')
      return 'no-key-server'
    }
    announced = notice.issuedAt
    if (notice.tag === lastEtag) return 'not-newer' // held already (the pull that fetched it was stamped earlier)
    if (!chasing) void chase()
    return 'pulling'
  }

  // Push: the key server (role keyserver, checked by authorizePublish) publishes here.
  const deliver = (packet: AedesPublishPacket, done: () => void) => {
    try {
      const message = JSON.parse(Buffer.from(packet.payload).toString('utf8')) as {
        type?: unknown
        snapshot?: unknown
        notice?: unknown
      }
      if (message.type === 'snapshot')
        Promise.resolve(sink(message.snapshot, 'push')).catch((err: unknown) =>
          logger.warn({ err }, 'a snapshot from the broker control topic could not be applied'),
        )
      else if (message.type === 'snapshot-notice') {
        const outcome = onNotice(message.notice)
        logger.info({ event: 'snapshot-notice', outcome }, 'snapshot notice')
      }
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
      }, pullIntervalMs)
      timer.unref()
    }
    schedule()
  }

  return {
    pull,
    pullOnDemand,
    async close() {
      closed = true
      if (timer) clearTimeout(timer)
      await new Promise<void>((resolve) => broker.unsubscribe(BROKER_CONTROL_TOPIC, deliver, resolve))
    },
  }
}

/** Resolves after `ms` (at once, but still on a later turn, for `ms` <= 0); never holds the process open. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0) return void setImmediate(resolve)
    setTimeout(resolve, ms).unref()
  })
}
