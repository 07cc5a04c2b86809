// Scale-out: the Aedes message bus (`mqemitter-redis`) and persistence (`aedes-persistence-redis`:
// subscriptions, retained messages, offline QoS 1/2 queues, wills) of every broker node of one
// deployment live in one Redis. A PUBLISH on any node reaches the subscribers on every node, and
// so does the key server's snapshot push on the broker control topic: each node's plugin applies
// it and closes its own sessions of a revoked principal.
//
// Every Redis key gets the configured prefix (ioredis `keyPrefix`) and so does every pub/sub
// channel (MQEmitterRedisPrefix): pub/sub ignores the database number, the prefix does not.
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
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
   * (ioredis reconnects by itself; meanwhile messages between nodes are lost.)
   */
  onError(listener: (err: Error) => void): void
}

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

/** Creates the Redis-backed bus and persistence for `Aedes.createBroker({ mq, persistence })`. */
export function createRedisBackends(config: RedisConfig): RedisBackends {
  const { MQEmitterRedisPrefix } = require('mqemitter-redis') as { MQEmitterRedisPrefix: EmitterFactory }
  const persistenceOf = require('aedes-persistence-redis') as PersistenceFactory
  // Commands wait for Redis to come back rather than fail after ioredis' 20 reconnect attempts
  // (about 10 s): Aedes turns such a failure into a dropped client connection, or, once seen in
  // test/faults/redis-restart.test.ts, an unhandled 'error' that ended the process.
  const connection = { ...redisOptions(config.url), maxRetriesPerRequest: null }
  const mq = new MQEmitterRedisPrefix(config.prefix, connection) as { state: NodeJS.EventEmitter }
  // The persistence's connection is ours so that its errors have a listener: otherwise ioredis
  // prints "Unhandled error event" for every failed reconnect during an outage.
  const persistenceConnection = new Redis({ ...connection, keyPrefix: config.prefix })
  const persistence = persistenceOf({ conn: persistenceConnection })
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
  }
}
