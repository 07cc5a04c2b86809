// PUBLISH: the ACL, then on encrypted topics the envelope: it must parse, belong to the topic's
// key group, name the session's own principal as sender, a live epoch and a fresh sequence
// number, and (by enforcement mode) carry a valid signature. Cheap checks run first; the
// signature (~50 µs) last, and the sequence number is recorded only after it, so a forged
// envelope cannot burn a real sender's numbers.
//
// Hot path: what depends only on (session, topic, snapshot) — topic validity, control and `$`
// topics, key group, ACL — is computed once per topic and cached on the client until the
// snapshot changes. With a verification pool the signature is checked on a worker thread; the
// Aedes callbacks of one client are still called in arrival order (a message that needs no
// check waits behind one being checked), and a sequence number being checked cannot pass twice.
//
// Scale-out: QoS 1/2 publishes are refused while the Redis bus between nodes is not ready
// (`bus-unavailable`, see redis.ts), before the replay window sees them, so the re-sent message passes.
import {
  isControlTopic,
  isSmqttError,
  isValidTopic,
  parseEnvelope,
  type ReplayCheckInput,
  SmqttError,
  type SnapshotPrincipal,
} from '@smqtt/core'
import { signatureHolds } from '@smqtt/core/verify-pool'
import type { Client, PublishPacket } from 'aedes'
import type { RefusalReason } from './audit.js'
import { type EnforcedSnapshot, isLiveEpoch, isNewerEpoch, principalContext } from './enforced-snapshot.js'
import { isBanned, type PluginContext } from './plugin-context.js'
import type { PublishRateLimiter } from './publish-rate.js'
import { type Session, sessionOf } from './session.js'

type PublishCallback = (error?: Error | null) => void
type AuthorizePublishHook = (client: Client | null, packet: PublishPacket, callback: PublishCallback) => void

/** The role allowed to publish on control topics (and exempt from the publish rate limit). */
export const KEYSERVER_ROLE = 'keyserver'

/** What a session may do on a topic under one snapshot. */
type TopicRule =
  | { readonly kind: 'refuse'; readonly reason: RefusalReason }
  | { readonly kind: 'pass' } // control topic for the key server, or plaintext the ACL allows
  | { readonly kind: 'envelope'; readonly group: number }

/** A callback waiting for its turn: Aedes gets one client's verdicts in arrival order. */
interface Step {
  readonly callback: PublishCallback
  settled: boolean
  error: Error | null | undefined
}

/** Per-client publish state, rebuilt when the snapshot changes. */
interface Publisher {
  enforced: EnforcedSnapshot
  principal: SnapshotPrincipal | undefined
  /** The principal's rate limit; undefined: unlimited (no limit configured, or the key server). */
  rateLimit: PublishRateLimiter | undefined
  readonly topics: Map<string, TopicRule>
  /** Callbacks held back behind a signature being checked on a worker. */
  readonly line: Step[]
}

const PUBLISHER = Symbol('smqtt.publisher')
/** Topics remembered per client; a client cycling through more starts over (correct, slower). */
const MAX_CACHED_TOPICS = 256
const PASS: TopicRule = { kind: 'pass' }

/** The Aedes `authorizePublish` hook. */
export function createAuthorizePublishHook(
  context: PluginContext,
  previous: AuthorizePublishHook,
): AuthorizePublishHook {
  const signatures = context.metrics.signatureTally
  /** `${group}/${epoch}/${sender}/${seq}` of envelopes on a worker: the window records them only after. */
  const verifying = new Set<string>()
  /** Reused for the synchronous replay check (ReplayWindow reads it, keeps nothing). */
  const freshness: ReplayCheckInput = { group: 0, epoch: 0, sender: 0, seq: 0, sentAt: 0, now: 0 }

  const refuseSignature = (client: Client, principal: SnapshotPrincipal, topic: string, now: number) => {
    signatures.invalid++
    if (context.mode !== 'sampled') return refusal(context, client, topic, 'signature-invalid')
    // Unsampled envelopes of this principal may have been forged too: cut it off.
    context.banned.set(principal.id, now + context.banSeconds)
    // Scale-out: every node refuses its next CONNECT (its session here is closed below).
    context.shared?.banPrincipal(principal.id, context.banSeconds)
    const error = refusal(context, client, topic, 'signature-invalid', `banned for ${context.banSeconds} s`)
    context.closeSession(client, 'signature-invalid')
    return error
  }

  return (client, packet, done) => {
    const topic = packet.topic
    const session = sessionOf(client)
    // Wills of sessions on a vanished node arrive with no client: nobody to attribute them to.
    if (!client || !session)
      return done(refusal(context, client, topic, 'principal-inactive', 'no authenticated session'))
    const enforced = context.snapshot()
    if (!enforced) return done(refusal(context, client, topic, 'no-snapshot'))
    const publisher = publisherOf(context, client, session, enforced)
    const principal = publisher.principal
    if (principal?.status !== 'active' || isBanned(context, principal.id))
      return done(refusal(context, client, topic, 'principal-inactive', principal?.status))
    // Aedes sends PUBACK before the message reaches the bus, which loses it while Redis is away.
    // Refused, it gets no PUBACK: the client keeps it and re-sends it after reconnecting. QoS 0
    // still flows (at most once anyway); refusing it would only close the connection.
    if (packet.qos > 0 && context.busReady?.() === false)
      return done(refusal(context, client, topic, 'bus-unavailable'))
    if (publisher.rateLimit?.take(principal.id, performance.now()) === false)
      return done(refusal(context, client, topic, 'rate-limited'))
    const callback = publisher.line.length > 0 ? waitInLine(publisher.line, done) : done

    let rule = publisher.topics.get(topic)
    if (rule === undefined) {
      rule = topicRule(context, enforced, principal, topic)
      if (publisher.topics.size >= MAX_CACHED_TOPICS) publisher.topics.clear()
      publisher.topics.set(topic, rule)
    }
    if (rule.kind === 'refuse') return callback(refusal(context, client, topic, rule.reason))
    if (rule.kind === 'pass') return previous(client, packet, callback)

    const payload = packet.payload as Uint8Array
    let header: ReturnType<typeof parseEnvelope>['header']
    try {
      header = parseEnvelope(payload).header
    } catch {
      return callback(refusal(context, client, topic, 'not-an-envelope'))
    }
    if (header.group !== rule.group)
      return callback(
        refusal(context, client, topic, 'wrong-group', `envelope group ${header.group}, topic group ${rule.group}`),
      )
    if (header.sender !== principal.kid)
      return callback(refusal(context, client, topic, 'wrong-sender', `envelope sender ${header.sender}`))
    const now = context.now()
    /** The envelope's freshness and signature, once its epoch is known to be live. */
    const checkEnvelope = (callback: PublishCallback) => {
      freshness.group = header.group
      freshness.epoch = header.epoch
      freshness.sender = header.sender
      freshness.seq = header.seq
      freshness.sentAt = header.sentAt
      freshness.now = now

      let check = context.mode === 'full' || (context.mode === 'sampled' && context.random() < context.sampleRate)
      const pool = context.verifyPool
      // Its sequence number is recorded only once its signature holds: until then, refuse it twice.
      const inFlight =
        verifying.size > 0 || (check && pool !== undefined)
          ? `${header.group}/${header.epoch}/${header.sender}/${header.seq}`
          : undefined
      if (inFlight !== undefined && verifying.has(inFlight))
        return callback(refusal(context, client, topic, 'replay', 'the same sequence number is being verified'))
      let duplicate = false
      try {
        // Nothing to wait for: check and record in one step.
        if (!check) context.replay.accept(freshness)
        else context.replay.check(freshness)
      } catch (err) {
        // A QoS 1/2 retransmission (DUP) of a message we already passed is the client doing MQTT
        // right (its PUBACK was lost): refusing it would close the connection and loop on every
        // reconnect. Subscribers' replay windows drop the duplicate. But the flag is only the
        // sender's word: the duplicate's signature is checked (never sampled away) before it goes
        // anywhere, and its number is not recorded twice.
        duplicate = isSmqttError(err, 'ERR_REPLAY') && packet.dup && packet.qos > 0
        if (!duplicate)
          return callback(
            refusal(
              context,
              client,
              topic,
              isSmqttError(err, 'ERR_STALE') ? 'stale' : 'replay',
              (err as Error).message,
            ),
          )
        if (context.mode === 'binding') return previous(client, packet, callback)
        check = true
      }
      if (!check) {
        signatures.skipped++
        return previous(client, packet, callback)
      }

      if (pool === undefined || inFlight === undefined) {
        if (!signatureHolds(principal.signingKey, topic, payload))
          return callback(refuseSignature(client, principal, topic, now))
        signatures.valid++
        if (!duplicate) context.replay.accept(freshness)
        return previous(client, packet, callback)
      }

      verifying.add(inFlight)
      const recorded: ReplayCheckInput = { ...freshness }
      const finish = callback === done ? waitInLine(publisher.line, done) : callback
      pool.verify(principal.signingKey, topic, payload, (verdict) => {
        verifying.delete(inFlight)
        if (verdict === 'unavailable') {
          signatures.unavailable++
          return finish(refusal(context, client, topic, 'verify-unavailable'))
        }
        if (verdict === 'invalid') return finish(refuseSignature(client, principal, topic, now))
        signatures.valid++
        // Revoked (or banned by another of its envelopes) while this one was being checked.
        const current = context.snapshot()?.principals.get(principal.id)
        if (current?.status !== 'active' || isBanned(context, principal.id))
          return finish(refusal(context, client, topic, 'principal-inactive', current?.status))
        try {
          if (!duplicate) context.replay.accept(recorded)
        } catch {
          // Fresh and unseen when it arrived, and no other envelope could take its number since
          // (`verifying`): the window only moved past it (later envelopes that needed no check
          // were recorded first), so it will refuse this number from now on anyway.
        }
        previous(client, packet, finish)
      })
    }
    if (!isLiveEpoch(enforced, header.group, header.epoch, now, context.epochSkewSeconds)) {
      // The epoch may be one this broker has not heard of yet: a snapshot indexed in slices may be
      // the one that brings it (the key server pushed it before the bundles that name it, and
      // those can reach a device before the build ends), or the push was lost or overtaken. An
      // epoch newer than every one known for the group makes the broker ask the key server (the
      // shared on-demand pull, at most one a second); an old one is refused at once. Decide once
      // the snapshot is in, keeping this publisher's order (its later publishes wait in line).
      const settling =
        context.snapshotBeingIndexed() ??
        (isNewerEpoch(enforced, header.group, header.epoch) ? context.awaitNewerSnapshot?.(client) : undefined)
      if (!settling) return callback(refusal(context, client, topic, 'unknown-epoch', `epoch ${header.epoch}`))
      const finish = callback === done ? waitInLine(publisher.line, done) : callback
      settling.then(() => {
        const latest = context.snapshot()
        if (!latest || !isLiveEpoch(latest, header.group, header.epoch, context.now(), context.epochSkewSeconds))
          return finish(refusal(context, client, topic, 'unknown-epoch', `epoch ${header.epoch}`))
        checkEnvelope(finish)
      })
      return
    }
    checkEnvelope(callback)
  }
}

/** Audits and counts a refusal; returns the error for Aedes (which closes the connection). */
function refusal(
  context: PluginContext,
  client: Client | null,
  topic: string,
  reason: RefusalReason,
  detail?: string,
): SmqttError {
  context.audit.refused('publish', reason, {
    principal: sessionOf(client)?.principalId,
    clientId: client?.id,
    topic,
    detail,
  })
  return new SmqttError('ERR_FORBIDDEN', `PUBLISH refused: ${reason}`)
}

function publisherOf(context: PluginContext, client: Client, session: Session, enforced: EnforcedSnapshot): Publisher {
  const tagged = client as unknown as { [PUBLISHER]?: Publisher }
  let publisher = tagged[PUBLISHER]
  if (publisher === undefined) {
    publisher = { enforced, principal: undefined, rateLimit: undefined, topics: new Map(), line: [] }
    tagged[PUBLISHER] = publisher
  } else if (publisher.enforced === enforced) {
    return publisher
  }
  publisher.enforced = enforced
  publisher.topics.clear()
  publisher.principal = enforced.principals.get(session.principalId)
  // The key server pushes a bundle to every principal at once on a rotation: never limited.
  publisher.rateLimit = publisher.principal?.roles.includes(KEYSERVER_ROLE) ? undefined : context.publishRate
  return publisher
}

function topicRule(
  context: PluginContext,
  enforced: EnforcedSnapshot,
  principal: SnapshotPrincipal,
  topic: string,
): TopicRule {
  const refuse = (reason: RefusalReason): TopicRule => ({ kind: 'refuse', reason })
  if (!isValidTopic(topic, context.topicLimits)) return refuse('topic-invalid')
  if (isControlTopic(topic)) return principal.roles.includes(KEYSERVER_ROLE) ? PASS : refuse('control-topic')
  if (topic.charCodeAt(0) === 0x24 /* $ */) return refuse('reserved-topic')
  const { acl } = enforced
  const who = principalContext(principal)
  const group = acl.groupForTopic(topic)
  if (!group) {
    if (!acl.isPlaintextTopic(topic)) return refuse('no-group')
    return acl.mayPublish(who, topic) ? PASS : refuse('acl-denied')
  }
  return acl.mayPublish(who, topic) ? { kind: 'envelope', group: group.id } : refuse('acl-denied')
}

/** Queues `callback` behind the client's pending verdicts; returns the function that settles it. */
function waitInLine(line: Step[], callback: PublishCallback): PublishCallback {
  const step: Step = { callback, settled: false, error: undefined }
  line.push(step)
  return (error) => {
    step.settled = true
    step.error = error
    while (line.length > 0 && (line[0] as Step).settled) {
      const head = line.shift() as Step
      head.callback(head.error)
    }
  }
}
