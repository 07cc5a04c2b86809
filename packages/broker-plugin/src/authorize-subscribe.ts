// SUBSCRIBE: wildcard-correct ACL on the filter (without its `$share/<name>/` prefix), `$SYS`
// for admins only, and control topics only as the key server meant them: each principal its
// own, brokers theirs, no wildcard reaching into them. A refusal is a SUBACK failure (0x80),
// not a closed connection.
import {
  BROKER_CONTROL_TOPIC,
  filterReachesControlTopic,
  isValidFilter,
  principalControlTopic,
  type SnapshotPrincipal,
} from '@smqtt/core'
import type { Client, Subscription } from 'aedes'
import type { RefusalReason } from './audit.js'
import { type EnforcedSnapshot, principalContext } from './enforced-snapshot.js'
import { isBanned, type PluginContext } from './plugin-context.js'
import { sessionOf } from './session.js'

type AuthorizeSubscribeHook = (
  client: Client,
  subscription: Subscription,
  callback: (error: Error | null, subscription?: Subscription | null) => void,
) => void

/** The role that may read `$SYS`. */
export const ADMIN_ROLE = 'admin'
/** The role that may read the brokers' control topic. */
export const BROKER_ROLE = 'broker'
const SHARE_PREFIX = '$share/'

/**
 * The filter a subscription really matches: MQTT 5 shared subscriptions carry `$share/<name>/`
 * in front. Undefined when the share name is empty or has wildcards.
 */
export function stripSharePrefix(filter: string): string | undefined {
  if (!filter.startsWith(SHARE_PREFIX)) return filter
  const slash = filter.indexOf('/', SHARE_PREFIX.length)
  const name = filter.slice(SHARE_PREFIX.length, slash)
  if (slash < 0 || name.length === 0 || /[+#]/.test(name)) return undefined
  return filter.slice(slash + 1)
}

/**
 * Why `principal` may not read `filter` (a topic filter or a concrete topic), or undefined when
 * it may. Shared by subscribe and forward, so a delivery is judged exactly like a subscription.
 */
export function readRefusal(
  enforced: EnforcedSnapshot,
  principal: SnapshotPrincipal,
  filter: string,
): RefusalReason | undefined {
  if (filter.startsWith('$SYS')) return principal.roles.includes(ADMIN_ROLE) ? undefined : 'reserved-topic'
  if (filterReachesControlTopic(filter)) {
    if (filter === principalControlTopic(principal.id)) return undefined
    if (filter === BROKER_CONTROL_TOPIC && principal.roles.includes(BROKER_ROLE)) return undefined
    return 'control-topic'
  }
  if (filter.charCodeAt(0) === 0x24 /* $ */) return 'reserved-topic'
  return enforced.acl.maySubscribe(principalContext(principal), filter) ? undefined : 'acl-denied'
}

/** The Aedes `authorizeSubscribe` hook. */
export function createAuthorizeSubscribeHook(
  context: PluginContext,
  previous: AuthorizeSubscribeHook,
): AuthorizeSubscribeHook {
  return (client, subscription, callback) => {
    const session = sessionOf(client)
    const refuse = (reason: RefusalReason) => {
      context.audit.refused('subscribe', reason, {
        principal: session?.principalId,
        clientId: client.id,
        topic: subscription.topic,
      })
      callback(null, null) // Aedes answers SUBACK 0x80 for this filter; the session stays up.
    }
    const enforced = context.snapshot()
    if (!enforced) return refuse('no-snapshot')
    const principal = session && enforced.principals.get(session.principalId)
    if (principal?.status !== 'active' || isBanned(context, principal.id)) return refuse('principal-inactive')
    const filter = stripSharePrefix(subscription.topic)
    if (filter === undefined || !isValidFilter(filter, context.topicLimits)) return refuse('topic-invalid')
    const reason = readRefusal(enforced, principal, filter)
    if (reason) return refuse(reason)
    previous(client, subscription, callback)
  }
}
