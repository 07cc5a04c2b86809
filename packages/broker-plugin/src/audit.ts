// Every refusal is counted (metric label = reason code) and written to the audit log (a pino
// child logger with `audit: true`, so a log shipper can route it to its own file), with the
// principal, topic and reason. Reason codes are stable: dashboards and alerts key on them.
import type { Logger } from 'pino'
import type { BrokerMetrics } from './metrics.js'

/** Every reason the plugin refuses something, with its meaning (README lists what clients see). */
export const REFUSAL_REASONS = {
  'no-snapshot': 'No verified snapshot yet: the plugin refuses everything until it has one.',
  'rate-limited':
    'Too many CONNECTs from this address or client id (or a ban is in force), or PUBLISHes from this principal.',
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
    'A QoS 1/2 PUBLISH while the Redis bus between broker nodes is down or resubscribing: no PUBACK, the client re-sends it after reconnecting.',
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

/** Records refusals and other security events in metrics and the audit log. */
export interface Auditor {
  readonly log: Logger
  refused(hook: RefusalHook, reason: RefusalReason, details: RefusalDetails): void
}

/**
 * Makes the auditor of one plugin instance.
 *
 * @example
 * ```ts
 * const audit = createAuditor(logger, metrics)
 * audit.refused('publish', 'acl-denied', { principal: 'lock-1', topic: 'home/x' })
 * ```
 */
export function createAuditor(logger: Logger, metrics: BrokerMetrics): Auditor {
  const log = logger.child({ audit: true })
  return {
    log,
    refused(hook, reason, details) {
      metrics.refusals.inc({ hook, reason })
      // A dropped delivery repeats per message until the subscriber reconnects: count it, but
      // keep it out of the warn-level audit stream so one revoked app cannot flood the log.
      if (hook === 'forward') log.debug({ event: 'refused', hook, reason, ...details }, 'delivery dropped')
      else log.warn({ event: 'refused', hook, reason, ...details }, `${hook} refused: ${reason}`)
    },
  }
}
