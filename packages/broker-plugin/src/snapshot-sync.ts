// Keeps the plugin's snapshot current: pull over HTTPS at start and every `pullIntervalMs`, and
// push over MQTT (the key server publishes each new snapshot on BROKER_CONTROL_TOPIC, which the
// plugin subscribes to inside the broker). Hooks never wait for this: they read whatever snapshot
// was applied last, and when the key server is unreachable the plugin keeps enforcing it, logs
// the failure and reports the snapshot as stale.
//
// Pulls are conditional (issue 14): they name the tag the key server signed into the snapshot
// held (`If-None-Match`), and while that content is current the key server answers 304 with a
// signed notice naming the tag instead of the snapshot (17 MiB at 100,000 principals). A notice
// that verifies under the pinned key, names the content held and is newer than what vouched for
// it so far counts as a sync, as a new snapshot would; a 304 without one does not (TLS alone
// vouches for it), so the snapshot grows stale and the failure is counted.
//
// Deltas (issue 14): pulls say the broker takes deltas (`Smqtt-Accept-Delta: 1`). When the
// content held is one of the key server's last few and the change is small, the answer is a
// signed delta from it, applied to the index in place of the whole snapshot; one that does not
// apply (the content held moved meanwhile) or is refused is followed at once by a pull of the
// whole snapshot, so a delta can delay the snapshot by one round trip, never withhold it.
//
// On demand: a CONNECT naming a principal the snapshot does not know (a device that enrolled a
// moment ago) asks for one more pull. Those pulls are coalesced and spaced (at most one a second
// by default), so a flood of unknown client ids costs the key server one 304 a second at most.
//
// Notices (issue 14): past ~250 principals the key server pushes, instead of the snapshot, a
// signed notice of it (issuedAt and tag). A notice verified under the pinned key and newer than
// both the snapshot applied and every notice acted on starts one conditional pull, shared and
// spaced like the on-demand ones, retried with backoff (up to the pull period) while it fails;
// one naming the content held is a sync instead. A replayed or forged notice therefore starts
// nothing, and a genuine one at most one pull; what the pull brings is applied under the
// snapshot's own rules. A missed notice is healed by the next scheduled pull.
import type { IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import {
  BROKER_CONTROL_TOPIC,
  type Identity,
  isSmqttError,
  openBrokerSnapshotNotice,
  type SignedDocument,
  SNAPSHOT_ACCEPT_DELTA_HEADER,
  SNAPSHOT_NOTICE_HEADER,
  signRequest,
} from '@smqtt/core'
import type { Aedes, AedesPublishPacket } from 'aedes'
import type { Logger } from 'pino'

/** Where and as whom the broker pulls its snapshot. */
export interface BrokerKeyServerOptions {
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
export async function fetchBrokerSnapshot(connection: BrokerKeyServerOptions): Promise<SignedDocument> {
  const fetched = await fetchSnapshotIfChanged(connection, undefined, false)
  if (!('snapshot' in fetched)) throw new Error('key server answered 304 to an unconditional request')
  return fetched.snapshot
}

/**
 * {@link fetchBrokerSnapshot} with `If-None-Match: "tag"`: on 304, the notice the key server sent
 * with it (unverified, as parsed from its header; undefined without one); with `deltas`, maybe a
 * delta from the content `tag` (unverified).
 */
function fetchSnapshotIfChanged(
  connection: BrokerKeyServerOptions,
  tag: string | undefined,
  deltas: boolean,
): Promise<{ snapshot: SignedDocument } | { delta: unknown } | { unchanged: { notice: unknown } }> {
  const { identity } = connection
  const headers: Record<string, string> = {
    ...signRequest(identity.id, identity, { method: 'GET', path: SNAPSHOT_PATH, body: new Uint8Array() }),
    ...(tag === undefined ? {} : { 'if-none-match': `"${tag}"` }),
    ...(tag !== undefined && deltas ? { [SNAPSHOT_ACCEPT_DELTA_HEADER]: '1' } : {}),
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
          if (res.statusCode === 304 && tag !== undefined)
            return resolve({ unchanged: { notice: noticeOf(res.headers) } })
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode !== 200)
            return reject(new Error(`key server answered ${res.statusCode}: ${text.slice(0, 200)}`))
          try {
            const body = JSON.parse(text) as { snapshot?: SignedDocument; delta?: unknown }
            if (body.snapshot !== undefined) resolve({ snapshot: body.snapshot })
            else if (body.delta !== undefined && deltas) resolve({ delta: body.delta })
            else throw new Error('no snapshot in the response')
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

/** The notice in a 304's header, parsed but not verified; undefined when absent or not JSON. */
function noticeOf(headers: IncomingHttpHeaders): unknown {
  const value = headers[SNAPSHOT_NOTICE_HEADER]
  if (typeof value !== 'string') return undefined
  try {
    return JSON.parse(value)
  } catch {
    return undefined
  }
}

/** What the sync hands snapshots to; returns whether the snapshot was applied. */
export type SnapshotSink = (signed: unknown, source: 'pull' | 'push') => boolean | Promise<boolean>

/**
 * How a pull ended: a snapshot applied; the content held vouched current (304 with the key
 * server's signed notice); a snapshot fetched but not applied (not newer, or refused); or failed.
 */
export type OnDemandPullResult = 'applied' | 'current' | 'unchanged' | 'failed'

/** What the sync knows of the snapshot the plugin holds, and how it tells it a notice vouched for it. */
export interface HeldSnapshot {
  /** The pinned key-server key notices must verify under. */
  readonly keyServerPublicKey: Uint8Array
  /** The newest issuedAt the key server signed for the content held: its snapshot's, or a later notice's. */
  readonly issuedAt: () => number | undefined
  /** The tag the key server signed into the snapshot held (undefined: none held, or an untagged one). */
  readonly tag: () => string | undefined
  /** A verified notice named the content held at `issuedAt`: true when newer than `issuedAt()` (a sync). */
  readonly vouch: (issuedAt: number, source: 'pull' | 'push') => boolean
  /** Verifies a pulled delta and applies it to the content held; resolves once it is enforced. */
  readonly applyDelta: (signed: unknown) => Promise<DeltaOutcome>
  /** Clock, unix seconds. */
  readonly now: () => number
}

/**
 * How a pulled delta was taken: enforced; not for the content held (it moved meanwhile); or
 * refused (its signature, form, or an issuedAt no newer than the content held).
 */
export type DeltaOutcome = 'applied' | 'not-applicable' | 'refused'

/**
 * How a pushed notice was taken: it started a pull, vouched for the content held (a sync),
 * announced nothing new, or was refused.
 */
export type NoticeOutcome = 'pulling' | 'current' | 'not-newer' | 'too-old' | 'no-key-server' | 'refused'

/** A notice older than this is ignored (the scheduled pull covers it). */
const NOTICE_MAX_AGE_SECONDS = 300

/** A running sync. */
export interface SnapshotSync {
  /**
   * Pulls now; resolves true when the plugin then holds the key server's current content (a
   * snapshot applied, or the one held vouched current by a signed notice). Never rejects.
   */
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
  connection: BrokerKeyServerOptions | undefined,
  sink: SnapshotSink,
  logger: Logger,
  onPullFailure: () => void,
  onDemandPulled: (result: OnDemandPullResult) => void,
  held: HeldSnapshot,
): Promise<SnapshotSync> {
  let timer: NodeJS.Timeout | undefined
  let closed = false
  /** The pull running now, if any (scheduled, explicit or on demand). */
  let running: Promise<unknown> | undefined

  /** Opens a notice under the pinned key: undefined (logged) when it does not verify. */
  const openNotice = (signed: unknown, from: string): { issuedAt: number; tag: string } | undefined => {
    try {
      return openBrokerSnapshotNotice(signed, held.keyServerPublicKey)
    } catch (err) {
      if (!isSmqttError(err)) throw err
      logger.warn({ code: err.code, from }, 'snapshot notice refused')
      return undefined
    }
  }
  const isRecent = (notice: { issuedAt: number }) => notice.issuedAt >= held.now() - NOTICE_MAX_AGE_SECONDS

  const fetchAndApply = async (): Promise<OnDemandPullResult> => {
    if (!connection || closed) return 'failed'
    try {
      let fetched = await fetchSnapshotIfChanged(connection, held.tag(), true)
      if ('delta' in fetched) {
        if ((await held.applyDelta(fetched.delta)) === 'applied') return 'applied'
        fetched = await fetchSnapshotIfChanged(connection, held.tag(), false)
      }
      if ('delta' in fetched) throw new Error('key server answered a delta to a pull that takes none')
      if ('snapshot' in fetched) return (await sink(fetched.snapshot, 'pull')) ? 'applied' : 'unchanged'
      // 304: the content held is current, if the key server signed so, no earlier than what
      // vouched for it so far (the same second again is current, but no new sync).
      const notice = fetched.unchanged.notice === undefined ? undefined : openNotice(fetched.unchanged.notice, '304')
      if (notice === undefined || notice.tag !== held.tag() || !isRecent(notice))
        throw new Error('key server answered 304 without a recent signed notice for the snapshot held')
      if (!held.vouch(notice.issuedAt, 'pull') && notice.issuedAt !== held.issuedAt())
        throw new Error('key server answered 304 with a notice older than the one held')
      return 'current'
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
  const inSync = (result: OnDemandPullResult) => result === 'applied' || result === 'current'
  const pull = async (): Promise<boolean> => inSync(await track(fetchAndApply()))

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
      const result = await track(fetchAndApply())
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
      while (!closed && (held.issuedAt() ?? 0) < announced) {
        const result = await pullConditional()
        // Held is current, or a snapshot not applied (older, invalid): the notice is answered; the scheduled pull covers the rest.
        if (result === 'current' || result === 'unchanged') break
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
    const notice = openNotice(signed, 'push')
    if (notice === undefined) return 'refused'
    if (notice.issuedAt <= Math.max(announced, held.issuedAt() ?? 0)) return 'not-newer'
    if (!isRecent(notice)) return 'too-old'
    // The content held, signed current later than anything before: a sync, nothing to fetch.
    if (notice.tag === held.tag()) return held.vouch(notice.issuedAt, 'push') ? 'current' : 'not-newer'
    if (!connection) {
      logger.warn('a snapshot notice arrived but no key server is configured to pull from')
      return 'no-key-server'
    }
    announced = notice.issuedAt
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
