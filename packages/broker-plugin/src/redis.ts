// Scale-out: the Aedes message bus (`mqemitter-redis`) and persistence (`aedes-persistence-redis`:
// subscriptions, retained messages, offline QoS 1/2 queues, wills) of every broker node of one
// deployment live in one Redis. A PUBLISH on any node reaches the subscribers on every node, and
// so does the key server's snapshot push on the broker control topic: each node's plugin applies
// it and closes its own sessions of a revoked principal.
//
// Every Redis key gets the configured prefix (ioredis `keyPrefix`) and so does every pub/sub
// channel (MQEmitterRedisPrefix): pub/sub ignores the database number, the prefix does not.
//
// Redis pub/sub keeps nothing: a message published while a node's subscriptions are not live is
// gone, yet Aedes has already sent its PUBACK. So the plugin refuses QoS 1/2 publishes unless
// `busReady()` holds (see authorize-publish.ts and docs/reliability.md, Faults).
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import { SHARED_COMMAND_TIMEOUT_MS } from './cluster-limits.js'
import type { RedisConfig } from './config.js'

/** What `Aedes.createBroker` takes, plus how to release the persistence (Aedes closes only `mq`). */
export interface RedisBackends {
  readonly mq: unknown
  // Aedes 1.x calls the persistence promise-style (no callbacks); so do we.
  readonly persistence: { destroy(): Promise<void> }
  /** Closes the persistence's Redis connection; call after `broker.close()` (which closes `mq`). */
  destroyPersistence(): Promise<void>
  /**
   * Reports the Redis connections' errors (bus and persistence). mqemitter-redis re-emits them as 'error' on an
   * emitter of its own: without a listener, a Redis outage would throw and end the process.
   * (ioredis reconnects by itself; meanwhile QoS 0 between nodes may be lost, QoS 1/2 is refused: {@link busReady}.)
   */
  onError(listener: (err: Error) => void): void
  /** True while a QoS 1/2 message can be routed to the other nodes: see {@link watchBusReadiness}. */
  busReady(): boolean
}

/** The part of an ioredis connection {@link watchBusReadiness} uses. */
export interface RedisConnection {
  readonly status: string
  on(event: 'ready' | 'close', listener: () => void): unknown
  ping(): Promise<unknown>
}

/**
 * ioredis retries a lost connection after min(50 ms × attempt, this): every node of a deployment
 * is back within this long of Redis (default 2,000 ms; shorter so the gate reopens sooner).
 */
export const REDIS_RETRY_CAP_MS = 1_000
/**
 * How long a node keeps refusing QoS 1/2 after its own connections are back: the other nodes
 * reconnect up to {@link REDIS_RETRY_CAP_MS} later, and what reaches Redis before their
 * subscriptions are live is gone. Without it, test/faults/redis-restart.test.ts lost its whole
 * QoS 0 burst in 1 of 2 runs: node A's queued publishes reached Redis before node B re-subscribed.
 */
export const BUS_SETTLE_MS = 2 * REDIS_RETRY_CAP_MS

type EmitterFactory = new (prefix: string, options: Record<string, unknown>) => unknown
type PersistenceFactory = (options: Record<string, unknown>) => RedisBackends['persistence']

const require = createRequire(import.meta.url)

/** ioredis connection options of a `redis://` / `rediss://` URL. */
export function redisOptions(url: string): Record<string, unknown> {
  const parsed = new URL(url)
  const db = parsed.pathname.replace(/^\//, '')
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port ? Number(parsed.port) : 6379,
    ...(db ? { db: Number(db) } : {}),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  }
}

/**
 * The connection of the cluster-wide limits (cluster-limits.ts): the deployment's key prefix.
 * While Redis is away a command waits for it (as Aedes' persistence makes a CONNECT wait anyway)
 * for at most {@link SHARED_COMMAND_TIMEOUT_MS}, then fails: a password CONNECT is then dropped.
 */
export function createSharedLimitsConnection(config: RedisConfig): Redis {
  return new Redis({
    ...redisOptions(config.url),
    keyPrefix: config.prefix,
    commandTimeout: SHARED_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt: number) => Math.min(attempt * 50, REDIS_RETRY_CAP_MS),
  })
}

/** Creates the Redis-backed bus and persistence for `Aedes.createBroker({ mq, persistence })`. */
export function createRedisBackends(config: RedisConfig): RedisBackends {
  const { MQEmitterRedisPrefix } = require('mqemitter-redis') as { MQEmitterRedisPrefix: EmitterFactory }
  const persistenceOf = require('aedes-persistence-redis') as PersistenceFactory
  // Commands wait for Redis to come back rather than fail after ioredis' 20 reconnect attempts
  // (about 10 s): Aedes turns such a failure into a dropped client connection, or, once seen in
  // test/faults/redis-restart.test.ts, an unhandled 'error' that ended the process.
  const connection = {
    ...redisOptions(config.url),
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => Math.min(attempt * 50, REDIS_RETRY_CAP_MS),
  }
  // The bus connections are ours (mqemitter-redis' documented `pubConn` / `subConn`) so that their
  // state can gate publishes; autopipelining as mqemitter-redis sets it on its own connections.
  const pubConn = new Redis({ ...connection, enableAutoPipelining: true })
  const subConn = new Redis({ ...connection, enableAutoPipelining: true })
  const mq = new MQEmitterRedisPrefix(config.prefix, { pubConn, subConn }) as { state: NodeJS.EventEmitter }
  // The persistence's connection is ours so that its errors have a listener: otherwise ioredis
  // prints "Unhandled error event" for every failed reconnect during an outage.
  const persistenceConnection = new Redis({ ...connection, keyPrefix: config.prefix })
  const persistence = persistenceOf({ conn: persistenceConnection })
  const busReady = watchBusReadiness({ pub: pubConn, sub: subConn, store: persistenceConnection })
  return {
    mq,
    persistence,
    // Promise-style: with a callback the wrapper would wait for a 'ready' event that Aedes 1.x,
    // which awaits setup() itself, never causes.
    destroyPersistence: () => persistence.destroy(),
    onError: (listener) => {
      mq.state.on('error', listener)
      persistenceConnection.on('error', listener)
    },
    busReady,
  }
}

/**
 * Follows a node's Redis connections; the returned function is true once all three are 'ready',
 * the subscriber's subscriptions are live again and {@link BUS_SETTLE_MS} have passed since.
 *
 * The resubscribe barrier: ioredis emits 'ready' and only then re-sends the SUBSCRIBE commands of
 * the lost connection (`autoResubscribe`). A PING sent on the next tick queues behind them on
 * the same connection, so its reply means Redis has taken every subscription of this node.
 *
 * @example
 * ```ts
 * const busReady = watchBusReadiness({ pub, sub, store }, { settleMs: 0 })
 * if (!busReady()) refuse()
 * ```
 */
export function watchBusReadiness(
  connections: { readonly pub: RedisConnection; readonly sub: RedisConnection; readonly store: RedisConnection },
  { settleMs = BUS_SETTLE_MS, now = () => performance.now() }: { settleMs?: number; now?: () => number } = {},
): () => boolean {
  const { pub, sub, store } = connections
  /** When the subscriptions were seen live (ms, `now()`); undefined while they are not. */
  let liveSince: number | undefined
  /** Bumped on every loss, so a PING answered for an older connection counts for nothing. */
  let generation = 0
  const barrier = () => {
    const mine = generation
    process.nextTick(() =>
      sub.ping().then(
        () => {
          // The first connection joins a bus that is already running: nothing to settle.
          if (mine === generation && sub.status === 'ready') liveSince = mine === 0 ? -Infinity : now()
        },
        () => {}, // the connection went again: its 'close' already reset the state
      ),
    )
  }
  sub.on('ready', barrier)
  sub.on('close', () => {
    generation++
    liveSince = undefined
  })
  return () =>
    liveSince !== undefined &&
    pub.status === 'ready' &&
    store.status === 'ready' &&
    (liveSince === -Infinity || now() - liveSince >= settleMs)
}
