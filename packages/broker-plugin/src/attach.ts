// attachSmqtt: installs the SMQTT hooks on an Aedes broker, wrapping whatever hooks were set
// (ours run first; the previous hook runs only after ours allowed), keeps the snapshot in sync,
// and closes sessions the moment a snapshot says their principal is gone.
import type { Duplex } from 'node:stream'
import {
  type BrokerSnapshot,
  type BrokerSnapshotDelta,
  isSmqttError,
  openBrokerSnapshot,
  openBrokerSnapshotDelta,
  ReplayWindow,
  type ReplayWindowOptions,
  type SignedDocument,
  type TopicLimits,
} from '@smqtt/core'
import { SnapshotOpener } from '@smqtt/core/snapshot-opener'
import { defaultVerifyWorkers, VerifyPool } from '@smqtt/core/verify-pool'
import type { Aedes, Client } from 'aedes'
import type { Redis } from 'ioredis'
import { type Logger, pino } from 'pino'
import type { Registry } from 'prom-client'
import { createAuditor } from './audit.js'
import { createAuthenticateHook } from './authenticate.js'
import { createAuthorizeForwardHook } from './authorize-forward.js'
import { createAuthorizePublishHook } from './authorize-publish.js'
import { createAuthorizeSubscribeHook } from './authorize-subscribe.js'
import { ClusterLimits } from './cluster-limits.js'
import {
  type EnforcedSnapshot,
  enforceDeltaSteps,
  enforceInSlices,
  enforceSnapshotSteps,
  type SlicedBuild,
  sameSerial,
} from './enforced-snapshot.js'
import {
  ConnectGuard,
  type ConnectLimits,
  connectDeadlineMs,
  DEFAULT_MAX_PACKET_BYTES,
  guardPacketSize,
} from './limits.js'
import { type BrokerMetrics, createBrokerMetrics } from './metrics.js'
import type { EnforcementMode, LegacyUser, PluginContext } from './plugin-context.js'
import { DEFAULT_PUBLISH_RATE, type PublishRate, PublishRateLimiter } from './publish-rate.js'
import { addressOf, type Session, sessionOf, setConnectInfo } from './session.js'
import {
  type BrokerKeyServerOptions,
  type DeltaOutcome,
  type SnapshotSync,
  startSnapshotSync,
} from './snapshot-sync.js'

/**
 * How long applying a snapshot may hold the event loop at a time: a large one (a fleet of
 * 100,000) is indexed in slices of this many ms, the broker answering packets in between.
 */
const SNAPSHOT_SLICE_MS = 4
/** A signed snapshot payload above this (~1,400 principals) is opened on a worker thread. */
const OPEN_IN_WORKER_BYTES = 256 * 1024

/** What judging a snapshot reads of the newest one taken (a delta's carries only this). */
type SnapshotHead = Pick<BrokerSnapshot, 'issuedAt' | 'revocationListVersion' | 'tag'>

/** Where a snapshot came from: pulled from the key server, pushed over MQTT, or handed in by the application. */
export type SnapshotSource = 'pull' | 'push' | 'api'

/** The error Aedes 1.2 raises when CONNECT did not arrive within its connectTimeout. */
const AEDES_CONNECT_TIMEOUT = 'connect did not arrive in time'

/** Options of {@link attachSmqtt}. */
export interface SmqttPluginOptions {
  /** The key server's Ed25519 public key, pinned: snapshots must verify under it. */
  readonly keyServerPublicKey: Uint8Array
  /** Where to pull snapshots from; without it, snapshots come by push or {@link SmqttPlugin.applySnapshot}. */
  readonly keyServer?: BrokerKeyServerOptions
  /** Signature enforcement: `full` (default), `sampled`, or `binding` (sender binding only). */
  readonly mode?: EnforcementMode
  /**
   * Worker threads verifying envelope signatures (`full`, and the sampled ones in `sampled`);
   * 0 verifies on the event loop. Default: 1 when the machine has 2 or more cores, else 0.
   */
  readonly verifyWorkers?: number
  /** Per-principal PUBLISH token bucket (default 1,000/s, burst 2,000); `false`: unlimited. */
  readonly publishRate?: PublishRate | false
  /** Fraction of envelopes verified in `sampled` mode (default 0.05). */
  readonly sampleRate?: number
  /** How long a principal caught with a bad signature in `sampled` mode is banned (default 300 s). */
  readonly banSeconds?: number
  /** The broker's per-sender sequence window and freshness (defaults: window 32, max age 300 s, skew 60 s). */
  readonly replay?: ReplayWindowOptions
  /** A sender may use an epoch this many seconds before it activates (clock skew; default 60). */
  readonly epochSkewSeconds?: number
  readonly legacyUsers?: readonly LegacyUser[]
  /** Topic length and depth limits (default: 65,535 bytes, 32 levels). */
  readonly topicLimits?: TopicLimits
  /** Largest MQTT packet accepted by {@link SmqttPlugin.handle} (default 256 KiB). */
  readonly maxPacketBytes?: number
  readonly connectLimits?: ConnectLimits
  /** The snapshot counts as stale after this many seconds without a sync (default 3 pull periods, 90 s). */
  readonly staleAfterSeconds?: number
  /** pino logger; audit entries go to its child `{ audit: true }`. */
  readonly logger?: Logger
  /**
   * Scale-out: false while a QoS 1/2 message cannot reach the other nodes (their shared bus is
   * down); such publishes are refused without PUBACK. `startBroker` passes the Redis bus state.
   */
  readonly busReady?: () => boolean
  /**
   * Scale-out: a Redis connection (with the deployment's key prefix, no offline queue) through
   * which the nodes share CONNECT-password nonces, CONNECT budgets, bans and PUBLISH rates, so
   * that N nodes give no more than one (see cluster-limits.ts). `startBroker` passes one with `redis`.
   * Its owner closes it, after the plugin.
   */
  readonly sharedLimits?: Redis
  /** Prometheus registry for the plugin's metrics (default: a registry of its own). */
  readonly registry?: Registry
  /** Clock, unix seconds (tests). */
  readonly now?: () => number
  /** Random source in [0, 1) for sampling (tests). */
  readonly random?: () => number
}

/** What the plugin reports about itself. */
export interface SmqttPluginState {
  /** issuedAt of the snapshot being enforced, or undefined before the first. */
  readonly snapshotIssuedAt: number | undefined
  /**
   * Seconds since the newest snapshot applied arrived (pull, push or API); an older one, or the
   * same one again, does not count. -1 before the first.
   */
  readonly snapshotAge: number
  /** True with no snapshot, or when the last one is older than staleAfterSeconds. */
  readonly stale: boolean
  /** Live authenticated sessions. */
  readonly sessions: number
}

/** The attached plugin. */
export interface SmqttPlugin {
  /**
   * Verifies and applies a signed snapshot if newer than the current one; true when accepted.
   * A small snapshot is enforced before this returns. A large one (signed payload over 256 KiB)
   * is opened on a worker thread and indexed in slices of a few milliseconds while the current
   * one stays enforced, then swapped in whole: for it, true means taken, and a refusal (bad
   * signature, older) is counted and logged when it is judged (see
   * {@link SmqttPlugin.snapshotSettled}).
   */
  applySnapshot(signed: unknown, source?: SnapshotSource): boolean
  /**
   * Verifies a signed snapshot delta (what the key server answers a pull from a recent content)
   * and applies it to the content enforced; resolves true once it is enforced, false when it is
   * refused (signature, form, not newer) or made for other content. The plugin's own pulls take
   * deltas by themselves; this is for an application that carries them another way.
   */
  applySnapshotDelta(signed: unknown): Promise<boolean>
  /** Resolves once the newest accepted snapshot is enforced (at once when none is being indexed). */
  snapshotSettled(): Promise<void>
  /** Pulls a snapshot from the key server now (never rejects). */
  pull(): Promise<boolean>
  /** Hands a connection to Aedes behind the packet-size guard: use instead of `broker.handle`. */
  handle(stream: Duplex): Client
  readonly state: SmqttPluginState
  readonly metrics: BrokerMetrics
  /** The snapshot being enforced. */
  readonly snapshot: BrokerSnapshot | undefined
  /** Stops syncing and restores the hooks that were installed before. */
  close(): Promise<void>
}

/**
 * Attaches SMQTT enforcement to an Aedes broker and pulls the first snapshot. Until a snapshot
 * is applied every CONNECT is refused (deny by default).
 *
 * @example
 * ```ts
 * const broker = await Aedes.createBroker()
 * const smqtt = await attachSmqtt(broker, {
 *   keyServerPublicKey,
 *   keyServer: { url: 'https://keys.example:9443', ca, identity: brokerIdentity },
 * })
 * tls.createServer({ key, cert, ca, requestCert: true, rejectUnauthorized: false }, smqtt.handle).listen(8883)
 * ```
 */
export async function attachSmqtt(broker: Aedes, options: SmqttPluginOptions): Promise<SmqttPlugin> {
  const now = options.now ?? (() => Math.floor(Date.now() / 1000))
  const logger = options.logger ?? pino({ name: 'smqtt-broker' })
  const log = logger.child({ component: 'smqtt-broker-plugin' })
  const staleAfter = options.staleAfterSeconds ?? (3 * (options.keyServer?.pullIntervalMs ?? 30_000)) / 1000
  let enforced: EnforcedSnapshot | undefined
  /** The signed payload of `enforced`, to tell the same snapshot from another one of its second. */
  let enforcedPayload: string | undefined
  let lastSyncAt: number | undefined
  /** A newer snapshot accepted and being indexed in slices; `enforced` stays in force until it is done. */
  let pending: { snapshot: SnapshotHead; payload: string; build: SlicedBuild } | undefined
  const snapshotSettled = async (): Promise<void> => {
    while (pending || openingCount > 0) {
      await openings
      if (pending) await pending.build.done.catch(() => undefined)
    }
  }
  const ageSeconds = () => (lastSyncAt === undefined ? -1 : Math.max(0, now() - lastSyncAt))
  const isStale = () => lastSyncAt === undefined || ageSeconds() > staleAfter
  const metrics = createBrokerMetrics(() => ({ ageSeconds: ageSeconds(), stale: isStale() }), options.registry)
  const audit = createAuditor(logger, metrics, now)
  const sessions = new Map<string, Set<Client>>()

  const closeSession: PluginContext['closeSession'] = (client, reason) => {
    metrics.sessionsClosed.inc({ reason })
    audit.log.warn({ event: 'session-closed', principal: sessionOf(client)?.principalId, reason }, 'session closed')
    client.close()
  }

  const mode = options.mode ?? 'full'
  const verifyWorkers = options.verifyWorkers ?? defaultVerifyWorkers()
  const verifyPool =
    mode !== 'binding' && verifyWorkers > 0
      ? new VerifyPool({
          workers: verifyWorkers,
          onFailure: (reason, refused, error) => {
            metrics.verifyWorkerFailures.inc({ reason })
            audit.log.error(
              { event: 'verify-worker-failed', reason, refused, err: error?.message },
              'signature verification worker replaced; its pending publishes were refused',
            )
          },
        })
      : undefined
  const publishRate = options.publishRate ?? DEFAULT_PUBLISH_RATE
  const publishLimiter = publishRate === false ? undefined : new PublishRateLimiter(publishRate)
  const shared =
    options.sharedLimits === undefined
      ? undefined
      : new ClusterLimits(options.sharedLimits, {
          connectLimits: options.connectLimits,
          ...(publishLimiter && publishRate ? { publish: { limiter: publishLimiter, rate: publishRate } } : {}),
          onError: (operation, err) =>
            log.warn(
              { operation, err: err.message },
              'Redis (shared limits) did not answer: this node falls back to its own limits; password CONNECTs are refused',
            ),
        })

  // Set once the sync has started (below); CONNECTs come only after attachSmqtt resolved.
  let sync: SnapshotSync | undefined
  const onDemand = options.keyServer?.onDemandPull
  const onDemandWaitMs = (onDemand === false ? undefined : onDemand?.waitMs) ?? 5_000
  const context: PluginContext = {
    snapshot: () => enforced,
    snapshotBeingIndexed: () => (pending || openingCount > 0 ? snapshotSettled() : undefined),
    awaitNewerSnapshot:
      options.keyServer === undefined || onDemand === false
        ? undefined
        : (client) =>
            boundedWait((sync?.pullOnDemand() ?? Promise.resolve(false)).then(snapshotSettled), onDemandWaitMs, client),
    now,
    random: options.random ?? Math.random,
    log,
    audit,
    metrics,
    guard: new ConnectGuard(options.connectLimits),
    shared,
    replay: new ReplayWindow({ windowSize: 32, maxAgeSeconds: 300, maxFutureSkewSeconds: 60, ...options.replay }),
    publishRate: publishLimiter,
    busReady: options.busReady,
    verifyPool,
    mode,
    sampleRate: options.sampleRate ?? 0.05,
    banSeconds: options.banSeconds ?? 300,
    epochSkewSeconds: options.epochSkewSeconds ?? 60,
    topicLimits: { maxBytes: 65_535, maxLevels: 32, ...options.topicLimits },
    legacyUsers: new Map((options.legacyUsers ?? []).map((u) => [u.username, u])),
    banned: new Map(),
    closeSession,
  }

  /**
   * Closes every live session the snapshot no longer allows (revoked, disabled, removed,
   * re-certified): of every principal, or of those named (a delta's).
   */
  const enforceOnSessions = (changed?: readonly string[]) => {
    const affected = changed === undefined ? sessions.keys() : changed.filter((id) => sessions.has(id))
    for (const principalId of affected) {
      const principal = enforced?.principals.get(principalId)
      for (const client of sessions.get(principalId) ?? []) {
        const session = sessionOf(client) as Session
        if (principal?.status !== 'active') closeSession(client, 'revoked')
        else if (
          session.certificateSerial !== undefined &&
          (principal.certificateSerial === undefined ||
            !sameSerial(principal.certificateSerial, session.certificateSerial))
        )
          closeSession(client, 'certificate-replaced')
      }
    }
  }

  // Revocation is final, so the principal's persistent session goes too: without this, Aedes
  // queues every QoS 1/2 message matching its stored subscriptions for a client that can never
  // come back (found by the soak). Once per principal and process; idempotent across nodes.
  const forgotten = new Set<string>()
  // Aedes 1.2's types do not declare the instance's persistence; it is promise-style.
  const { persistence } = broker as unknown as {
    persistence: { cleanSubscriptions(client: { id: string }): Promise<unknown> }
  }
  const forgetRevokedSessions = (changed?: readonly string[]) => {
    const principals = enforced?.principals
    const candidates = changed === undefined ? principals?.values() : changed.map((id) => principals?.get(id))
    for (const principal of candidates ?? []) {
      if (principal?.status !== 'revoked' || forgotten.has(principal.id)) continue
      forgotten.add(principal.id)
      persistence.cleanSubscriptions({ id: principal.id }).then(
        () => log.info({ principal: principal.id }, 'revoked principal: persistent session removed'),
        (err: Error) => log.warn({ principal: principal.id, err: err.message }, 'could not remove a revoked session'),
      )
    }
  }

  const refuseSnapshot = (err: unknown, source: SnapshotSource) => {
    metrics.snapshotErrors.inc({ source })
    audit.log.error(
      { event: 'snapshot-refused', source, code: isSmqttError(err) ? err.code : 'unknown' },
      'snapshot refused',
    )
  }

  // A large snapshot is opened on a worker thread (its signature, decoding and checks take
  // ~0.7 s of one core at 100,000 principals); until it is, applySnapshot has answered true
  // ("taken") and snapshotSettled waits for it, and a refusal is counted and logged as any other.
  // Snapshots are judged in the order they were taken.
  const opener = new SnapshotOpener(options.keyServerPublicKey)
  let openings: Promise<unknown> = Promise.resolve()
  let openingCount = 0
  const openInWorker = (signed: unknown, source: SnapshotSource): Promise<boolean> => {
    openingCount++
    const opened = opener.open(signed)
    opened.catch(() => undefined) // judged in turn below, after the ones taken before it
    const verdict = openings
      .then(() => opened)
      .then(
        (snapshot) => judgeSnapshot(snapshot, (signed as SignedDocument).payload, source),
        (err: unknown) => {
          refuseSnapshot(err, source)
          return false
        },
      )
      .finally(() => openingCount--)
    openings = verdict
    return verdict
  }

  /** The verdict on a signed snapshot: at once for a small one, once opened for a large one. */
  const takeSnapshot = (signed: unknown, source: SnapshotSource): boolean | Promise<boolean> => {
    const payload = (signed as Partial<SignedDocument> | undefined)?.payload
    if (typeof payload === 'string' && payload.length > OPEN_IN_WORKER_BYTES) return openInWorker(signed, source)
    let snapshot: BrokerSnapshot
    try {
      snapshot = openBrokerSnapshot(signed, options.keyServerPublicKey)
    } catch (err) {
      refuseSnapshot(err, source)
      if (!isSmqttError(err)) throw err
      return false
    }
    return judgeSnapshot(snapshot, (signed as SignedDocument).payload, source)
  }

  const applySnapshot: SmqttPlugin['applySnapshot'] = (signed, source = 'api') => {
    const verdict = takeSnapshot(signed, source)
    return typeof verdict === 'boolean' ? verdict : true
  }

  /** The newest snapshot accepted, which may still be being indexed. */
  const newest = () => pending?.snapshot ?? enforced?.snapshot
  /** The newest issuedAt the key server signed for the newest content accepted: its snapshot's, or a later notice's. */
  let vouchedAt: number | undefined
  const heldIssuedAt = () => {
    const held = newest()
    return held && Math.max(held.issuedAt, vouchedAt ?? 0)
  }
  /**
   * The key server signed, at `issuedAt`, that the newest content accepted is still current:
   * counted unless older than what vouched for it so far, and a sync when newer (the age counts
   * from its arrival, as for a new snapshot). Nothing to index. True when it was a sync.
   */
  const vouch = (issuedAt: number, source: SnapshotSource): boolean => {
    const held = heldIssuedAt()
    if (held === undefined || issuedAt < held) return false
    metrics.snapshotsVouched.inc({ source })
    if (issuedAt === held) return false
    vouchedAt = issuedAt
    if (!pending) lastSyncAt = now() // else when the content being indexed is swapped in
    return true
  }

  /** A verified snapshot, enforced if newer than the newest accepted; true when accepted. */
  const judgeSnapshot = (snapshot: BrokerSnapshot, payload: string, source: SnapshotSource): boolean => {
    const current = newest()
    const currentAt = heldIssuedAt() ?? 0
    const currentPayload = pending ? pending.payload : enforcedPayload
    // The content held, signed again (its tag names it): at most a fresher vouch, nothing to index.
    if (
      current &&
      snapshot.tag !== undefined &&
      snapshot.tag === current.tag &&
      snapshot.issuedAt >= current.issuedAt
    ) {
      vouch(snapshot.issuedAt, source)
      return true
    }
    // Newest wins; within one second the revocation list version breaks the tie, so a replayed
    // older snapshot cannot undo a revocation, and another snapshot of the same second and list
    // is a replay (the key server stamps a changed one a second later): only the same one passes.
    if (
      current &&
      (snapshot.issuedAt < currentAt ||
        (snapshot.issuedAt === currentAt &&
          (snapshot.revocationListVersion < current.revocationListVersion ||
            (snapshot.revocationListVersion === current.revocationListVersion && payload !== currentPayload))))
    ) {
      metrics.snapshotErrors.inc({ source })
      log.info({ source, issuedAt: snapshot.issuedAt, current: current.issuedAt }, 'older snapshot ignored')
      return false
    }
    // Only a newer snapshot is a sync: the age counts from its arrival, so one replayed on the
    // bus (older, or the same again) cannot hide that the key server has not been heard from.
    const newer =
      !current || snapshot.issuedAt > currentAt || snapshot.revocationListVersion > current.revocationListVersion
    // The same snapshot as the one being indexed: it will be enforced when that is done.
    if (pending && payload === pending.payload) return true
    enforceNext(snapshot, payload, source, newer, enforceSnapshotSteps(snapshot))
    return true
  }

  /**
   * A verified delta from the key server (pulled): applied when its base is the content enforced
   * and it is newer than anything that vouched for that content. Waits for what is being opened
   * or indexed first, so its base is judged against the newest content taken.
   */
  const applyDelta = async (signed: unknown, source: SnapshotSource): Promise<DeltaOutcome> => {
    await snapshotSettled()
    let delta: BrokerSnapshotDelta
    try {
      delta = openBrokerSnapshotDelta(signed, options.keyServerPublicKey)
    } catch (err) {
      if (!isSmqttError(err)) throw err
      refuseSnapshot(err, source)
      metrics.snapshotDeltas.inc({ outcome: 'refused' })
      return 'refused'
    }
    const base = enforced
    if (pending || openingCount > 0 || base === undefined || base.snapshot.tag !== delta.baseTag) {
      metrics.snapshotDeltas.inc({ outcome: 'not-applicable' })
      log.info(
        { base: delta.baseTag, held: base?.snapshot.tag },
        'snapshot delta for other content: pulling the snapshot',
      )
      return 'not-applicable'
    }
    // The key server stamps changed content after everything it signed for the content before,
    // so an older delta (replayed, or overtaken) is refused like an older snapshot.
    if (delta.issuedAt <= (heldIssuedAt() ?? 0)) {
      metrics.snapshotDeltas.inc({ outcome: 'refused' })
      metrics.snapshotErrors.inc({ source })
      log.info({ source, issuedAt: delta.issuedAt, current: heldIssuedAt() }, 'older snapshot delta ignored')
      return 'refused'
    }
    const changed = [...delta.principals.map((p) => p.id), ...delta.removedPrincipals]
    const head = {
      issuedAt: delta.issuedAt,
      revocationListVersion: delta.revocationListVersion,
      tag: delta.tag,
    }
    enforceNext(head, (signed as SignedDocument).payload, source, true, enforceDeltaSteps(base, delta), changed)
    metrics.snapshotDeltas.inc({ outcome: 'applied' })
    await snapshotSettled()
    return 'applied'
  }

  /**
   * Indexes the content `head` names (a snapshot, or a delta on the one enforced) in slices and
   * then enforces it, replacing whatever was being indexed. `changed`: the principals a delta
   * touched (sessions of others need no look).
   */
  const enforceNext = (
    head: SnapshotHead,
    payload: string,
    source: SnapshotSource,
    newer: boolean,
    steps: Generator<undefined, EnforcedSnapshot>,
    changed?: readonly string[],
  ) => {
    pending?.build.cancel()
    pending = undefined
    vouchedAt = undefined // vouched for the content this one replaces
    const swapIn = (built: EnforcedSnapshot) => {
      enforced = built
      enforcedPayload = payload
      if (newer) lastSyncAt = now()
      metrics.snapshotsApplied.inc({ source })
      log.info({ source, issuedAt: head.issuedAt, principals: built.principals.size }, 'snapshot applied')
      enforceOnSessions(changed)
      forgetRevokedSessions(changed)
    }
    const build = enforceInSlices(steps, SNAPSHOT_SLICE_MS)
    if ('enforced' in build) return swapIn(build.enforced)
    const mine = { snapshot: head, payload, build }
    pending = mine
    build.done.then(
      (built) => {
        if (pending !== mine || built === undefined) return // cancelled: a newer one is on its way
        pending = undefined
        swapIn(built)
      },
      (err: Error) => {
        // openBrokerSnapshot validated the policy already; this is a bug, not an attack.
        if (pending === mine) {
          pending = undefined
          vouchedAt = undefined // vouched for the content that failed, not for the one enforced
        }
        metrics.snapshotErrors.inc({ source })
        audit.log.error({ event: 'snapshot-refused', source, err: err.message }, 'snapshot could not be indexed')
      },
    )
  }

  // Wrap the hooks that are there (Aedes has one slot per hook).
  const previous = {
    preConnect: broker.preConnect,
    authenticate: broker.authenticate,
    authorizePublish: broker.authorizePublish,
    authorizeSubscribe: broker.authorizeSubscribe,
    authorizeForward: broker.authorizeForward,
  }
  broker.preConnect = (client, packet, callback) => {
    const clientId = packet.clientId ?? ''
    setConnectInfo(client, { clientId, clean: packet.clean !== false })
    const address = addressOf(client)
    // Per address only: the client id is unauthenticated here (see authenticate.ts for the per-principal limit).
    if (!context.guard.admit(address, now())) {
      audit.refused('connect', 'rate-limited', { clientId, address })
      return callback(new Error('CONNECT refused: rate-limited'), false)
    }
    if (!shared) return previous.preConnect.call(broker, client, packet, callback)
    // Then the cluster-wide budget and ban (one Redis round trip).
    shared.admitAddress(address).then((verdict) => {
      if (verdict === 'ok') return previous.preConnect.call(broker, client, packet, callback)
      const detail = verdict === 'banned' ? 'address banned (cluster-wide)' : 'per-address budget (cluster-wide)'
      audit.refused('connect', 'rate-limited', { clientId, address, detail })
      callback(new Error('CONNECT refused: rate-limited'), false)
    })
  }
  // Slow-loris: Aedes closes a connection whose CONNECT has not arrived `connectTimeout` ms after
  // it was handed over (a property its types do not declare); the plugin sets it and audits it.
  const aedesTimeout = broker as unknown as { connectTimeout: number }
  const previousConnectTimeout = aedesTimeout.connectTimeout
  aedesTimeout.connectTimeout = connectDeadlineMs(options.connectLimits)
  // Aedes destroys the socket before it reports the timeout: the peer address is read at hand-over.
  const peerAddresses = new WeakMap<Client, string>()
  const onConnectionError = (client: Client, err: Error) => {
    if (err.message === AEDES_CONNECT_TIMEOUT)
      audit.log.warn(
        { event: 'connect-timeout', address: peerAddresses.get(client), seconds: aedesTimeout.connectTimeout / 1000 },
        'connection closed: no CONNECT in time',
      )
  }
  broker.on('connectionError', onConnectionError)
  broker.authenticate = createAuthenticateHook(context, (c, u, p, done) =>
    previous.authenticate.call(broker, c, u, p, done),
  )
  broker.authorizePublish = createAuthorizePublishHook(context, (c, p, cb) =>
    previous.authorizePublish.call(broker, c, p, cb),
  )
  broker.authorizeSubscribe = createAuthorizeSubscribeHook(context, (c, s, cb) =>
    previous.authorizeSubscribe.call(broker, c, s, cb),
  )
  // Aedes' type allows void (= do not forward); normalise it to null.
  broker.authorizeForward = createAuthorizeForwardHook(
    context,
    (c, p) => previous.authorizeForward.call(broker, c, p) || null,
  )

  const onReady = (client: Client) => {
    const session = sessionOf(client)
    if (!session) return
    const set = sessions.get(session.principalId) ?? new Set()
    set.add(client)
    sessions.set(session.principalId, set)
    // A snapshot may have revoked the principal between its CONNECT and now.
    const principal = enforced?.principals.get(session.principalId)
    if (principal?.status !== 'active') closeSession(client, 'revoked')
  }
  const onGone = (client: Client) => {
    const session = sessionOf(client)
    if (!session) return
    const set = sessions.get(session.principalId)
    set?.delete(client)
    if (set?.size === 0) sessions.delete(session.principalId)
    // Its PUBLISH count reaches Redis now, before it can reconnect to another node.
    void shared?.flush(session.principalId)
  }
  broker.on('client', onReady) // registered, before CONNACK
  broker.on('clientDisconnect', onGone)
  // Closing the broker ends the worker threads and the audit timer even without plugin.close().
  const onClosed = () => {
    shared?.close()
    void verifyPool?.close()
    void opener.close()
    audit.close()
  }
  broker.once('closed', onClosed)

  sync = await startSnapshotSync(
    broker,
    options.keyServer,
    // A pull counts as applied once the snapshot is judged and enforced: the first one before
    // the broker starts, and a chase after a notice stops when it holds what was announced.
    async (signed, source) => {
      const accepted = await takeSnapshot(signed, source)
      if (accepted) await snapshotSettled()
      return accepted
    },
    log,
    () => metrics.snapshotErrors.inc({ source: 'pull' }),
    (result) => metrics.onDemandPulls.inc({ result }),
    {
      keyServerPublicKey: options.keyServerPublicKey,
      issuedAt: heldIssuedAt,
      tag: () => newest()?.tag,
      vouch,
      applyDelta: (signed) => applyDelta(signed, 'pull'),
      now,
    },
  )
  const started = sync

  const maxPacketBytes = options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES
  const plugin: SmqttPlugin = {
    applySnapshot,
    applySnapshotDelta: async (signed) => (await applyDelta(signed, 'api')) === 'applied',
    snapshotSettled,
    pull: () => started.pull(),
    handle(stream) {
      const client = broker.handle(stream)
      peerAddresses.set(client, addressOf(client))
      guardPacketSize(stream, maxPacketBytes, (reason, declaredAtLeast) => {
        const address = (stream as { remoteAddress?: string }).remoteAddress
        audit.log.warn(
          { event: 'packet-refused', reason, declaredAtLeast, address, max: maxPacketBytes },
          'socket destroyed',
        )
      })
      return client
    },
    get state() {
      let count = 0
      for (const set of sessions.values()) count += set.size
      return {
        // While a newer one is indexed, vouches are for it, not for the one enforced.
        snapshotIssuedAt: pending ? enforced?.snapshot.issuedAt : heldIssuedAt(),
        snapshotAge: ageSeconds(),
        stale: isStale(),
        sessions: count,
      }
    },
    get snapshot() {
      return enforced?.snapshot
    },
    metrics,
    async close() {
      pending?.build.cancel()
      pending = undefined
      await started.close()
      await verifyPool?.close()
      await opener.close()
      shared?.close()
      audit.close()
      broker.off('closed', onClosed)
      broker.off('client', onReady)
      broker.off('clientDisconnect', onGone)
      broker.off('connectionError', onConnectionError)
      aedesTimeout.connectTimeout = previousConnectTimeout
      Object.assign(broker, previous)
    },
  }
  if (verifyPool) verifyPools.set(plugin, verifyPool)
  return plugin
}

/**
 * Waits for `pulling`, at most `ms`, and no longer than `client`'s connection stays open (the
 * pre-authentication deadline closes it): never rejects.
 */
function boundedWait(pulling: Promise<unknown>, ms: number, client: Client): Promise<void> {
  const conn = client.conn as { once?(event: 'close', f: () => void): void; off?(event: 'close', f: () => void): void }
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      conn.off?.('close', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    timer.unref()
    conn.once?.('close', done)
    pulling.then(done, done)
  })
}

const verifyPools = new WeakMap<SmqttPlugin, VerifyPool>()

/** The plugin's verification pool, if it has one (tests and benchmarks; not exported by the package). */
export function verifyPoolOf(plugin: SmqttPlugin): VerifyPool | undefined {
  return verifyPools.get(plugin)
}
