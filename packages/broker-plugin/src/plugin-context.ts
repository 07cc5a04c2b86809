// What the hooks share: the snapshot being enforced, the clock, the audit log and metrics, and
// the resolved options. Internal; attach.ts builds it.
import type { ReplayWindow, TopicLimits } from '@smqtt/core'
import type { VerifyPool } from '@smqtt/core/verify-pool'
import type { Client } from 'aedes'
import type { Logger } from 'pino'
import type { Auditor } from './audit.js'
import type { ClusterLimits } from './cluster-limits.js'
import type { EnforcedSnapshot } from './enforced-snapshot.js'
import type { ConnectGuard } from './limits.js'
import type { BrokerMetrics } from './metrics.js'
import type { PublishRateLimiter } from './publish-rate.js'

/** How much of each envelope's signature the broker checks. */
export type EnforcementMode = 'full' | 'sampled' | 'binding'

/** A legacy username/password account, mapped to a principal. */
export interface LegacyUser {
  readonly username: string
  /** The principal this account authenticates as (its client id must be this id). */
  readonly principal: string
  /** From {@link hashLegacyPassword}: `scrypt$N$r$p$salt$hash`. */
  readonly hash: string
}

export interface PluginContext {
  readonly snapshot: () => EnforcedSnapshot | undefined
  /**
   * For a CONNECT naming a principal the snapshot does not know (it may have enrolled a moment
   * ago): resolves once an on-demand pull has ended, after at most its wait bound, or when the
   * client's connection closes (snapshot-sync.ts); the hook then looks again. Undefined: no key
   * server to ask, or on-demand pulls are off.
   */
  readonly awaitNewerSnapshot: ((client: Client) => Promise<void>) | undefined
  /**
   * While a newer snapshot is being indexed in slices (attach.ts): settles once it is enforced
   * or dropped. Undefined when none is.
   */
  readonly snapshotBeingIndexed: () => Promise<void> | undefined
  /** Unix seconds. */
  readonly now: () => number
  readonly random: () => number
  readonly log: Logger
  readonly audit: Auditor
  readonly metrics: BrokerMetrics
  readonly guard: ConnectGuard
  /**
   * Scale-out: CONNECT-password nonces, CONNECT budgets, bans and PUBLISH rates shared with the
   * other nodes through Redis (cluster-limits.ts); undefined: a single node, `guard` alone.
   */
  readonly shared: ClusterLimits | undefined
  readonly replay: ReplayWindow
  /** Per-principal PUBLISH token buckets; undefined: unlimited. */
  readonly publishRate: PublishRateLimiter | undefined
  /**
   * False while QoS 1/2 publishes cannot be routed to the other broker nodes (their Redis bus is
   * down or resubscribing); undefined: a single node, nothing to route.
   */
  readonly busReady: (() => boolean) | undefined
  /** Worker threads for envelope signatures; undefined: verified inline on the event loop. */
  readonly verifyPool: VerifyPool | undefined
  readonly mode: EnforcementMode
  readonly sampleRate: number
  readonly banSeconds: number
  readonly epochSkewSeconds: number
  readonly topicLimits: TopicLimits
  readonly legacyUsers: ReadonlyMap<string, LegacyUser>
  /** Principals banned (until unix seconds) after a bad signature in sampled mode. */
  readonly banned: Map<string, number>
  /** Closes a live session the plugin refuses to keep (revocation, bad signature). */
  readonly closeSession: (client: Client, reason: 'revoked' | 'signature-invalid' | 'certificate-replaced') => void
}

/** True when the principal is banned at `now` (expired bans are removed on the way). */
export function isBanned(context: PluginContext, principalId: string): boolean {
  const until = context.banned.get(principalId)
  if (until === undefined) return false
  if (context.now() < until) return true
  context.banned.delete(principalId)
  return false
}
