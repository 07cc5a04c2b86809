// Every refusal is counted (metric label = reason code) and written to the audit log (a pino
// child logger with `audit: true`, so a log shipper can route it to its own file), with the
// principal, topic and reason. Reason codes are stable: dashboards and alerts key on them.
//
// The log is bounded against a client that makes refusals on purpose: every field is cut to
// MAX_AUDIT_FIELD characters, and refusals that keep coming from one principal (SUBSCRIBE,
// PUBLISH, delivery) are written in full only REFUSALS_LOGGED_PER_INTERVAL times per interval,
// then summed up in one line per kind. The metrics count every refusal regardless. CONNECT
// refusals are all written: each ends its connection and the CONNECT limits bound them per address.
import { boundedText } from '@smqtt/core/bounded-log'
import type { Logger } from 'pino'
import type { BrokerMetrics } from './metrics.js'

/** Every reason the plugin refuses something, with its meaning (README lists what clients see). */
export const REFUSAL_REASONS = {
  'no-snapshot': 'No verified snapshot yet: the plugin refuses everything until it has one.',
  'rate-limited':
    'Too many CONNECTs from this address (or a ban is in force), too many authenticated CONNECTs of this principal, or PUBLISHes from this principal.',
  'empty-client-id': 'The CONNECT has an empty client id (SMQTT binds the client id to the principal).',
  'bad-credentials': 'No credentials, or the password, CONNECT proof or certificate does not authenticate.',
  'replayed-password': 'A CONNECT password whose one-time nonce was already used.',
  'unknown-principal': 'The authenticated principal is not in the snapshot.',
  'principal-inactive': 'The principal is revoked or disabled (or banned for a bad signature).',
  'certificate-mismatch':
    "The client certificate is not the principal's current one (re-enrolled, unknown, or unverified).",
  'client-id-mismatch': 'The client id is not the authenticated principal id (session takeover attempt).',
  'topic-invalid': 'The topic or filter breaks MQTT rules or the configured length/depth limits.',
  'reserved-topic': 'Publishing to a `$` topic, or subscribing to `$SYS` without the admin role.',
  'control-topic': 'A control topic the principal may not use (only the key server publishes there).',
  'acl-denied': 'The policy does not allow this principal this publish, subscription or delivery.',
  'no-group': 'The topic belongs to no key group and is not marked plaintext in the policy.',
  'not-an-envelope': 'The payload on an encrypted topic is not a well-formed SMQTT envelope.',
  'wrong-group': 'The envelope names another key group than the one its topic belongs to.',
  'wrong-sender': 'The envelope names another sender than the authenticated principal.',
  'unknown-epoch': 'The envelope names an epoch the snapshot does not list as live for its group.',
  replay: 'The sequence number was already seen from this sender, or is older than the window.',
  stale: "The envelope's send time is outside the freshness limit.",
  'signature-invalid': "The sender's signature does not verify.",
  'verify-unavailable':
    'The signature could not be checked (its verification worker crashed or timed out): fail closed.',
  'bus-unavailable':
    'A QoS 1/2 PUBLISH while the Redis bus between broker nodes is down or resubscribing: no PUBACK, the client re-sends it after reconnecting. Or a CONNECT password while Redis cannot confirm its nonce is unused on every node: fail closed, the connection is dropped without CONNACK (the client retries).',
} as const

/** A stable refusal reason code. */
export type RefusalReason = keyof typeof REFUSAL_REASONS

/** The hook that refused. */
export type RefusalHook = 'connect' | 'publish' | 'subscribe' | 'forward'

/** What an audit entry says about a refusal. */
export interface RefusalDetails {
  readonly principal?: string | undefined
  readonly clientId?: string | undefined
  readonly topic?: string | undefined
  readonly address?: string | undefined
  readonly detail?: string | undefined
}

/** Longest value of an audit field, in characters; a longer one is cut and marked `…[N chars]`. */
export const MAX_AUDIT_FIELD = 256
/** Refusals written in full per principal and interval; the rest are counted and summed up. */
export const REFUSALS_LOGGED_PER_INTERVAL = 20
/** The interval of {@link REFUSALS_LOGGED_PER_INTERVAL}, seconds. */
export const REFUSAL_INTERVAL_SECONDS = 10
/** Principals tracked at once; past it, new ones share one budget (memory stays bounded). */
const MAX_SOURCES = 10_000
const OVERFLOW = '\u0000overflow'

/** Records refusals and other security events in metrics and the audit log. */
export interface Auditor {
  readonly log: Logger
  refused(hook: RefusalHook, reason: RefusalReason, details: RefusalDetails): void
  /** Writes the summaries still held back and stops the interval timer. */
  close(): void
}

/** `value` cut to MAX_AUDIT_FIELD characters, marked with its full length. */
export function boundedField(value: string | undefined): string | undefined {
  return value === undefined ? undefined : boundedText(value, MAX_AUDIT_FIELD)
}

/** One principal's refusals in the current interval. */
interface Source {
  readonly start: number
  readonly principal: string | undefined
  readonly clientId: string | undefined
  logged: number
  /** Refusals not written, by `${hook} ${reason}`. */
  readonly held: Map<string, { hook: RefusalHook; reason: RefusalReason; count: number }>
}

/**
 * Makes the auditor of one plugin instance; `now` (unix seconds) times the intervals.
 *
 * @example
 * ```ts
 * const audit = createAuditor(logger, metrics)
 * audit.refused('publish', 'acl-denied', { principal: 'lock-1', topic: 'home/x' })
 * ```
 */
export function createAuditor(
  logger: Logger,
  metrics: BrokerMetrics,
  now: () => number = () => Math.floor(Date.now() / 1000),
): Auditor {
  const log = logger.child({ audit: true })
  const sources = new Map<string, Source>()
  // A delivery dropped repeats per message until the subscriber reconnects: debug level, so one
  // revoked app cannot flood the warn-level audit stream.
  const write = (hook: RefusalHook, object: object, message: string) =>
    hook === 'forward' ? log.debug(object, message) : log.warn(object, message)

  const summarise = (source: Source) => {
    for (const { hook, reason, count } of source.held.values())
      write(
        hook,
        { event: 'refusals-suppressed', hook, reason, principal: source.principal, clientId: source.clientId, count },
        `${count} more ${hook} refusals (${reason}) in the last ${REFUSAL_INTERVAL_SECONDS} s`,
      )
  }
  const sweep = (at: number, all = false) => {
    for (const [key, source] of sources)
      if (all || at - source.start >= REFUSAL_INTERVAL_SECONDS) {
        summarise(source)
        sources.delete(key)
      }
  }
  const sourceOf = (key: string, details: RefusalDetails, at: number): Source => {
    let source = sources.get(key)
    if (source !== undefined && at - source.start >= REFUSAL_INTERVAL_SECONDS) {
      summarise(source)
      sources.delete(key)
      source = undefined
    }
    if (source === undefined) {
      if (sources.size >= MAX_SOURCES) sweep(at)
      if (sources.size >= MAX_SOURCES && key !== OVERFLOW) return sourceOf(OVERFLOW, {}, at)
      source = { start: at, principal: details.principal, clientId: details.clientId, logged: 0, held: new Map() }
      sources.set(key, source)
    }
    return source
  }
  // Summaries of principals that went quiet are written when their interval ends.
  const timer = setInterval(() => sweep(now()), REFUSAL_INTERVAL_SECONDS * 1000)
  timer.unref()

  return {
    log,
    refused(hook, reason, details) {
      metrics.refusals.inc({ hook, reason })
      const fields = {
        principal: boundedField(details.principal),
        clientId: boundedField(details.clientId),
        topic: boundedField(details.topic),
        address: boundedField(details.address),
        detail: boundedField(details.detail),
      }
      if (hook !== 'connect') {
        const source = sourceOf(fields.principal ?? fields.clientId ?? '', fields, now())
        if (source.logged >= REFUSALS_LOGGED_PER_INTERVAL) {
          const kind = `${hook} ${reason}`
          const held = source.held.get(kind)
          if (held) held.count++
          else source.held.set(kind, { hook, reason, count: 1 })
          return
        }
        source.logged++
      }
      write(
        hook,
        { event: 'refused', hook, reason, ...fields },
        hook === 'forward' ? 'delivery dropped' : `${hook} refused: ${reason}`,
      )
    },
    close() {
      clearInterval(timer)
      sweep(now(), true)
    },
  }
}
