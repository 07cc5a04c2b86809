// Every delivery is re-checked against the CURRENT snapshot: a revoked subscriber, or one whose
// read permission was withdrawn, gets nothing more, not even queued or retained messages,
// without waiting for it to reconnect. The verdict per (principal, topic) is cached until the
// next snapshot, since maySubscribe is far costlier than a map lookup.
import type { AedesPublishPacket, Client } from 'aedes'
import type { RefusalReason } from './audit.js'
import { readRefusal } from './authorize-subscribe.js'
import type { EnforcedSnapshot } from './enforced-snapshot.js'
import { isBanned, type PluginContext } from './plugin-context.js'
import { sessionOf } from './session.js'

type AuthorizeForwardHook = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null | undefined

const MAX_CACHED = 50_000

/** The Aedes `authorizeForward` hook. */
export function createAuthorizeForwardHook(
  context: PluginContext,
  previous: (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null | undefined,
): AuthorizeForwardHook {
  let cachedFor: EnforcedSnapshot | undefined
  const verdicts = new Map<string, RefusalReason | null>()
  // No closure per delivery: this runs once per message and subscriber.
  const drop = (client: Client, topic: string, reason: RefusalReason) => {
    context.audit.refused('forward', reason, { principal: sessionOf(client)?.principalId, clientId: client.id, topic })
    return null
  }
  return (client, packet) => {
    const session = sessionOf(client)
    const enforced = context.snapshot()
    if (!enforced) return drop(client, packet.topic, 'no-snapshot')
    const principal = session && enforced.principals.get(session.principalId)
    if (principal?.status !== 'active' || isBanned(context, principal.id))
      return drop(client, packet.topic, 'principal-inactive')
    if (cachedFor !== enforced) {
      cachedFor = enforced
      verdicts.clear()
    }
    const key = `${principal.id}\u0000${packet.topic}`
    let verdict = verdicts.get(key)
    if (verdict === undefined) {
      verdict = readRefusal(enforced, principal, packet.topic) ?? null
      if (verdicts.size >= MAX_CACHED) verdicts.clear()
      verdicts.set(key, verdict)
    }
    if (verdict !== null) return drop(client, packet.topic, verdict)
    return previous(client, packet) ?? null
  }
}
