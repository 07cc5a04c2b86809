// Scale-out: the abuse budgets of a cluster are one node's, not N times it. Without this, a
// CONNECT password seen by one node could be replayed to another within its window, and an
// attacker hopping between N nodes got N times every budget. Shared through the Redis the nodes
// already use (keys under the deployment's prefix, `limits:…`):
//   - CONNECT-password nonces: `SET NX PX`, kept until the password's own acceptance ends (plus
//     the nodes' possible clock difference). One round trip per password CONNECT. Redis not
//     answering fails closed: the connection is dropped (`bus-unavailable`), never accepted unchecked.
//   - CONNECT budgets per address and per principal, failures before a ban, and bans (addresses,
//     and principals banned for a bad signature in sampled mode): fixed windows counted in Redis
//     (INCR + PEXPIRE in one script) on the CONNECT path, exact cluster-wide. Redis not answering:
//     the node's own limits (ConnectGuard, always applied first) still hold: N × one node's budget.
//   - PUBLISH rate: never a round trip per PUBLISH. Each node keeps its token bucket and adds up
//     what it accepted; every FLUSH_INTERVAL_MS it charges those counts to a shared bucket in
//     Redis (refilled by Redis' own clock) and lowers its local bucket to the shared level. A
//     principal's bucket is also read at its CONNECT and charged when its session ends, so hopping
//     nodes starts from what is left. Overspend becomes debt the next refills repay.
// Bound (docs/decisions.md): over any t seconds a principal gets at most burst + rate × t, plus
// what nodes accepted and had not yet charged: at most rate × FLUSH_INTERVAL per node once the
// shared bucket is empty, and in the worst case (sessions on several nodes at once, which
// client-id takeover ends) one bucket per extra node.
import { addressKey } from '@smqtt/core/address-key'
import type { Redis } from 'ioredis'
import type { ConnectLimits } from './limits.js'
import type { PublishRate, PublishRateLimiter } from './publish-rate.js'

/** How often a node charges its PUBLISH counts to the shared buckets (ms). */
export const FLUSH_INTERVAL_MS = 250
/**
 * Longest wait for Redis on the CONNECT path before the command counts as failed (ms): about a
 * client's CONNECT timeout, so a Redis restart of a few seconds costs no refusal.
 */
export const SHARED_COMMAND_TIMEOUT_MS = 5_000

/** Verdict of a shared CONNECT budget. */
export type SharedAdmission = 'ok' | 'banned' | 'over-budget'

// KEYS[1] ban, KEYS[2] counter; ARGV[1] window ms, ARGV[2] limit. -1 banned, else the count.
const ADMIT_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return n`

// KEYS[1] counter: one CONNECT given back, within the counter's window only (never below 0,
// and never recreating an expired counter, which would then live forever).
const REFUND_LUA = `
local n = tonumber(redis.call('GET', KEYS[1]))
if n == nil or n <= 0 then return 0 end
return redis.call('DECR', KEYS[1])`

// KEYS[1] failures, KEYS[2] ban; ARGV[1] window ms, ARGV[2] failures before ban, ARGV[3] ban ms.
const FAILED_LUA = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n < tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1`

// KEYS[1] bucket; ARGV[1] tokens taken (0: only read), ARGV[2] tokens per ms, ARGV[3] burst.
// Refilled by Redis' clock, so the nodes' clocks do not matter. Returns the tokens left (a
// string: Lua numbers would be cut to integers), negative while the cluster owes (accepted more than it could before a flush).
const BUCKET_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then tokens = burst at = now end
if now > at then tokens = math.min(burst, tokens + (now - at) * rate) end
local taken = tonumber(ARGV[1])
if taken == 0 then return tostring(tokens) end
tokens = tokens - taken
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return tostring(tokens)`

interface Scripts {
  smqttAdmit(ban: string, counter: string, windowMs: number, limit: number): Promise<number>
  smqttFailed(failures: string, ban: string, windowMs: number, threshold: number, banMs: number): Promise<number>
  smqttBucket(bucket: string, taken: number, perMs: number, burst: number): Promise<string>
  smqttRefund(counter: string): Promise<number>
}

/** Options of {@link ClusterLimits}. */
export interface ClusterLimitsOptions {
  readonly connectLimits?: ConnectLimits | undefined
  /** The node's PUBLISH limiter and its rate; undefined: PUBLISH is not limited. */
  readonly publish?: { readonly limiter: PublishRateLimiter; readonly rate: PublishRate }
  /** Called when Redis does not answer (the node then falls back as described above). */
  readonly onError?: (operation: string, err: Error) => void
  readonly flushIntervalMs?: number
}

/**
 * Nonces, CONNECT budgets, bans and PUBLISH rates shared by the nodes of one cluster through
 * Redis. `redis` must carry the deployment's `keyPrefix` and should not queue commands while
 * disconnected ({@link createSharedLimitsConnection}).
 *
 * @example
 * ```ts
 * const shared = new ClusterLimits(redis, { connectLimits, publish: { limiter, rate } })
 * if (!(await shared.useNonce(nonce, 120_000))) refuse('replayed-password')
 * ```
 */
export class ClusterLimits {
  readonly #redis: Redis & Scripts
  readonly #windowMs: number
  readonly #perAddress: number
  readonly #perPrincipal: number
  readonly #failuresBeforeBan: number
  readonly #banMs: number
  readonly #publish: ClusterLimitsOptions['publish']
  readonly #onError: (operation: string, err: Error) => void
  readonly #timer: NodeJS.Timeout | undefined
  #flushing = false

  constructor(redis: Redis, options: ClusterLimitsOptions = {}) {
    const limits = options.connectLimits ?? {}
    // The same defaults as ConnectGuard.
    this.#perAddress = limits.perAddress ?? 60
    this.#perPrincipal = limits.perClientId ?? 20
    this.#failuresBeforeBan = limits.failuresBeforeBan ?? 10
    this.#windowMs = (limits.windowSeconds ?? 10) * 1000
    this.#banMs = (limits.banSeconds ?? 60) * 1000
    this.#publish = options.publish
    this.#onError = options.onError ?? (() => {})
    redis.defineCommand('smqttAdmit', { numberOfKeys: 2, lua: ADMIT_LUA })
    redis.defineCommand('smqttFailed', { numberOfKeys: 2, lua: FAILED_LUA })
    redis.defineCommand('smqttBucket', { numberOfKeys: 1, lua: BUCKET_LUA })
    redis.defineCommand('smqttRefund', { numberOfKeys: 1, lua: REFUND_LUA })
    this.#redis = redis as Redis & Scripts
    if (this.#publish) {
      this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? FLUSH_INTERVAL_MS)
      this.#timer.unref()
    }
  }

  /**
   * Claims a CONNECT-password nonce for the whole cluster, kept `keepMs`: true the first time
   * any node offers it. Rejects when Redis cannot answer: the caller must refuse (fail closed).
   */
  async useNonce(nonce: string, keepMs: number): Promise<boolean> {
    const reply = await this.#redis.set(`limits:nonce:${nonce}`, '1', 'PX', Math.max(1, Math.ceil(keepMs)), 'NX')
    return reply === 'OK'
  }

  /** Counts one CONNECT from `address` cluster-wide (before authentication). */
  admitAddress(address: string): Promise<SharedAdmission> {
    return this.#admit(
      'address',
      `limits:ban:address:${addressKey(address)}`,
      `limits:connect:address:${addressKey(address)}`,
      this.#perAddress,
    )
  }

  /** Gives back the CONNECT {@link admitAddress} charged `address`, once it authenticated (see ConnectGuard.refund). */
  refundAddress(address: string): void {
    this.#redis
      .smqttRefund(`limits:connect:address:${addressKey(address)}`)
      .catch((err: Error) => this.#onError('refund', err))
  }

  /**
   * Counts one authenticated CONNECT of `principalId` cluster-wide, checks its ban, and lowers
   * the node's PUBLISH bucket of the principal to what the cluster has left.
   */
  async admitPrincipal(principalId: string): Promise<SharedAdmission> {
    const admitted = this.#admit(
      'principal',
      `limits:ban:principal:${principalId}`,
      `limits:connect:principal:${principalId}`,
      this.#perPrincipal,
    )
    const publish = this.#publish
    if (publish) {
      const { limiter, rate } = publish
      // Sent with the count (one round trip): the session starts from what the cluster has left.
      await this.#redis.smqttBucket(`limits:publish:${principalId}`, 0, rate.perSecond / 1000, rate.burst).then(
        (tokens) => limiter.clamp(principalId, Number(tokens), performance.now()),
        (err: Error) => this.#onError('publish-rate', err),
      )
    }
    return admitted
  }

  /** Records a failed authentication from `address`; bans it cluster-wide once it fails too often. */
  failed(address: string): void {
    this.#redis
      .smqttFailed(
        `limits:fail:address:${addressKey(address)}`,
        `limits:ban:address:${addressKey(address)}`,
        this.#windowMs,
        this.#failuresBeforeBan,
        this.#banMs,
      )
      .catch((err: Error) => this.#onError('failure-count', err))
  }

  /** Bans a principal cluster-wide for `seconds` (a bad signature in sampled mode). */
  banPrincipal(principalId: string, seconds: number): void {
    this.#redis
      .set(`limits:ban:principal:${principalId}`, '1', 'PX', seconds * 1000)
      .catch((err: Error) => this.#onError('ban', err))
  }

  /**
   * Charges the PUBLISH counts not yet charged (of one principal, or all) to the shared buckets
   * and lowers the local buckets to the shared level. Counts that could not be charged are kept.
   */
  async flush(principalId?: string): Promise<void> {
    const publish = this.#publish
    if (!publish || (principalId === undefined && this.#flushing)) return
    const { limiter, rate } = publish
    const counts = limiter.drain(principalId)
    if (counts.length === 0) return
    if (principalId === undefined) this.#flushing = true
    const perMs = rate.perSecond / 1000
    const pipeline = this.#redis.pipeline() as unknown as Scripts & {
      exec(): Promise<[Error | null, unknown][] | null>
    }
    for (const [id, taken] of counts) pipeline.smqttBucket(`limits:publish:${id}`, taken, perMs, rate.burst)
    try {
      const replies = (await pipeline.exec()) ?? []
      const at = performance.now()
      counts.forEach(([id, taken], i) => {
        const [err, tokens] = replies[i] ?? [new Error('no reply'), 0]
        if (err) limiter.restore(id, taken)
        else limiter.clamp(id, Number(tokens), at)
      })
    } catch (err) {
      for (const [id, taken] of counts) limiter.restore(id, taken)
      this.#onError('publish-rate', err as Error)
    } finally {
      if (principalId === undefined) this.#flushing = false
    }
  }

  /** Stops the flush timer (the connection is the caller's). */
  close(): void {
    if (this.#timer) clearInterval(this.#timer)
  }

  async #admit(kind: string, ban: string, counter: string, limit: number): Promise<SharedAdmission> {
    try {
      const n = await this.#redis.smqttAdmit(ban, counter, this.#windowMs, limit)
      return n < 0 ? 'banned' : n > limit ? 'over-budget' : 'ok'
    } catch (err) {
      this.#onError(`connect-${kind}`, err as Error)
      return 'ok' // the node's own ConnectGuard already counted it
    }
  }
}
