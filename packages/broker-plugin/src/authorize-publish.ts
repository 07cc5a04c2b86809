// PUBLISH: the ACL, then on encrypted topics the envelope: it must parse, belong to the topic's
// key group, name the session's own principal as sender, a live epoch and a fresh sequence
// number, and (by enforcement mode) carry a valid signature. Cheap checks run first; the
// signature (~80 µs) last, and the sequence number is recorded only after it, so a forged
// envelope cannot burn a real sender's numbers.
import {
  isControlTopic,
  isSmqttError,
  isValidTopic,
  parseEnvelope,
  SmqttError,
  type SnapshotPrincipal,
  verifyEnvelope,
} from '@smqtt/core'
import type { Client, PublishPacket } from 'aedes'
import type { RefusalReason } from './audit.js'
import { isLiveEpoch, principalContext } from './enforced-snapshot.js'
import { isBanned, type PluginContext } from './plugin-context.js'
import { sessionOf } from './session.js'

type AuthorizePublishHook = (
  client: Client | null,
  packet: PublishPacket,
  callback: (error?: Error | null) => void,
) => void

/** The role allowed to publish on control topics. */
export const KEYSERVER_ROLE = 'keyserver'

/** The Aedes `authorizePublish` hook. */
export function createAuthorizePublishHook(
  context: PluginContext,
  previous: AuthorizePublishHook,
): AuthorizePublishHook {
  return (client, packet, callback) => {
    const session = sessionOf(client)
    const topic = packet.topic
    const refuse = (reason: RefusalReason, detail?: string) => {
      context.audit.refused('publish', reason, {
        principal: session?.principalId,
        clientId: client?.id,
        topic,
        detail,
      })
      callback(new SmqttError('ERR_FORBIDDEN', `PUBLISH refused: ${reason}`))
    }
    const enforced = context.snapshot()
    // Wills of sessions on a vanished node arrive with no client: nobody to attribute them to.
    if (!client || !session) return refuse('principal-inactive', 'no authenticated session')
    if (!enforced) return refuse('no-snapshot')
    const principal = enforced.principals.get(session.principalId)
    if (principal?.status !== 'active' || isBanned(context, principal.id))
      return refuse('principal-inactive', principal?.status)
    if (!isValidTopic(topic, context.topicLimits)) return refuse('topic-invalid')
    if (isControlTopic(topic))
      return principal.roles.includes(KEYSERVER_ROLE) ? previous(client, packet, callback) : refuse('control-topic')
    if (topic.charCodeAt(0) === 0x24 /* $ */) return refuse('reserved-topic')

    const { acl } = enforced
    const who = principalContext(principal)
    const group = acl.groupForTopic(topic)
    if (!group) {
      if (!acl.isPlaintextTopic(topic)) return refuse('no-group')
      return acl.mayPublish(who, topic) ? previous(client, packet, callback) : refuse('acl-denied')
    }
    if (!acl.mayPublish(who, topic)) return refuse('acl-denied')

    const payload = packet.payload as Uint8Array
    let header: ReturnType<typeof parseEnvelope>['header']
    try {
      header = parseEnvelope(payload).header
    } catch {
      return refuse('not-an-envelope')
    }
    if (header.group !== group.id)
      return refuse('wrong-group', `envelope group ${header.group}, topic group ${group.id}`)
    if (header.sender !== principal.kid) return refuse('wrong-sender', `envelope sender ${header.sender}`)
    const now = context.now()
    if (!isLiveEpoch(enforced, header.group, header.epoch, now, context.epochSkewSeconds))
      return refuse('unknown-epoch', `epoch ${header.epoch}`)
    const freshness = { ...header, now }
    try {
      context.replay.check(freshness)
    } catch (err) {
      // A QoS 1/2 retransmission (DUP) of a message we already passed is the client doing MQTT
      // right (its PUBACK was lost): refusing it would close the connection and loop on every
      // reconnect. Subscribers' replay windows drop the duplicate.
      if (isSmqttError(err, 'ERR_REPLAY') && packet.dup && packet.qos > 0) return previous(client, packet, callback)
      return refuse(isSmqttError(err, 'ERR_STALE') ? 'stale' : 'replay', (err as Error).message)
    }
    if (!signatureHolds(context, principal, payload, topic)) {
      if (context.mode === 'sampled') {
        // Unsampled envelopes of this principal may have been forged too: cut it off.
        context.banned.set(principal.id, now + context.banSeconds)
        refuse('signature-invalid', `banned for ${context.banSeconds} s`)
        context.closeSession(client, 'signature-invalid')
        return
      }
      return refuse('signature-invalid')
    }
    context.replay.accept(freshness)
    previous(client, packet, callback)
  }
}

function signatureHolds(
  context: PluginContext,
  principal: SnapshotPrincipal,
  payload: Uint8Array,
  topic: string,
): boolean {
  const check = context.mode === 'full' || (context.mode === 'sampled' && context.random() < context.sampleRate)
  if (!check) {
    context.metrics.signatures.inc({ result: 'skipped' })
    return true
  }
  try {
    verifyEnvelope(payload, topic, {
      writerKey: (_group, kid) => (kid === principal.kid ? principal.signingKey : undefined),
    })
    context.metrics.signatures.inc({ result: 'valid' })
    return true
  } catch {
    context.metrics.signatures.inc({ result: 'invalid' })
    return false
  }
}
