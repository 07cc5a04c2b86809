// Failed authentication (wrong admin token, bad request signature, refused enrollment) costs an
// attacker nothing, so what it costs the key server is bounded: per minute, a few audit rows per
// address and a few dozen in all, then one summary row per address ("N failures from X in the
// last minute"); and an address over its limit is answered 429 ERR_RATE_LIMITED.

import { SmqttError } from '@smqtt/core'
import { addressKey } from '@smqtt/core/address-key'
import { boundedText } from '@smqtt/core/bounded-log'
import type { AuditLog } from './audit-log.js'

export const FAILURE_WINDOW_SECONDS = 60
/** Failures of one address audited one by one per minute; the rest only in its summary. */
export const AUDITED_PER_ADDRESS = 5
/** Failures audited one by one per minute, all addresses together. */
export const AUDITED_PER_WINDOW = 60
/** Addresses summarised one by one per minute (most failures first); the others share one row. */
export const SUMMARISED_ADDRESSES = 20
/** Addresses tracked per minute (memory bound); failures from more are only counted. */
const TRACKED_ADDRESSES = 10_000
/** Longest text kept in a failure's audit row: attacker-chosen, it must not grow the log. */
export const MAX_AUDIT_FIELD = 200

export interface Failure {
  readonly action: string
  /** Who the request claimed to be ('?' if nobody). */
  readonly subject: string
  readonly reason: string
  readonly message?: string
  /** The path only, never the query. */
  readonly route?: string
}

interface AddressCount {
  failures: number
  audited: number
}

export class FailedAuthentications {
  readonly #audit: AuditLog
  readonly #perAddressPerMinute: number
  readonly #now: () => number
  #windowStart = 0
  #byAddress = new Map<string, AddressCount>()
  #untracked = 0
  #audited = 0

  constructor(audit: AuditLog, options: { perAddressPerMinute: number; now: () => number }) {
    this.#audit = audit
    this.#perAddressPerMinute = options.perAddressPerMinute
    this.#now = options.now
  }

  /** Throws ERR_RATE_LIMITED while `address` is over its failures for this minute (counted as one more). */
  async check(address: string): Promise<void> {
    await this.flush()
    const count = this.#byAddress.get(addressKey(address))
    if (count && count.failures >= this.#perAddressPerMinute) {
      count.failures++
      throw rateLimited()
    }
  }

  /**
   * Counts a failure from `address` and audits it (bounded) unless this minute's share is spent.
   * Returns what to answer: `refusal`, or ERR_RATE_LIMITED once the address is over its limit.
   */
  async failed(address: string, failure: Failure, refusal: SmqttError): Promise<SmqttError> {
    await this.flush()
    const key = addressKey(address)
    let count = this.#byAddress.get(key)
    if (!count && this.#byAddress.size < TRACKED_ADDRESSES) {
      count = { failures: 0, audited: 0 }
      this.#byAddress.set(key, count)
    }
    if (!count) {
      this.#untracked++
      return refusal
    }
    const failures = ++count.failures
    if (count.audited < AUDITED_PER_ADDRESS && this.#audited < AUDITED_PER_WINDOW) {
      count.audited++
      this.#audited++
      await this.#audit.record({
        actor: 'anonymous',
        action: failure.action,
        subject: bounded(failure.subject),
        outcome: 'refused',
        details: {
          reason: bounded(failure.reason),
          ...(failure.message === undefined ? {} : { message: bounded(failure.message) }),
          ...(failure.route === undefined ? {} : { route: bounded(failure.route) }),
          remoteAddress: bounded(address),
        },
      })
    }
    return failures > this.#perAddressPerMinute ? rateLimited() : refusal
  }

  /** Once a minute has ended, writes its summaries (the next failure or the periodic job calls this). */
  async flush(): Promise<void> {
    const now = this.#now()
    if (now >= this.#windowStart && now < this.#windowStart + FAILURE_WINDOW_SECONDS) return
    const ended = { start: this.#windowStart, byAddress: this.#byAddress, untracked: this.#untracked }
    this.#windowStart = now - (now % FAILURE_WINDOW_SECONDS)
    this.#byAddress = new Map()
    this.#untracked = 0
    this.#audited = 0
    const unaudited = [...ended.byAddress]
      .filter(([, count]) => count.failures > count.audited)
      .sort(([, a], [, b]) => b.failures - a.failures)
    const summary = (subject: string, details: Record<string, unknown>) =>
      this.#audit.record({
        actor: 'anonymous',
        action: 'auth.failed.summary',
        subject,
        outcome: 'refused',
        details: { ...details, windowStart: ended.start, windowSeconds: FAILURE_WINDOW_SECONDS },
      })
    for (const [address, count] of unaudited.slice(0, SUMMARISED_ADDRESSES))
      await summary(address, {
        remoteAddress: address,
        failures: count.failures,
        notAuditedOneByOne: count.failures - count.audited,
      })
    const rest = unaudited.slice(SUMMARISED_ADDRESSES)
    const restFailures = rest.reduce((sum, [, count]) => sum + count.failures, 0) + ended.untracked
    if (restFailures > 0)
      await summary('other addresses', {
        addresses: rest.length + (ended.untracked > 0 ? 1 : 0),
        failures: restFailures,
      })
  }
}

function rateLimited(): SmqttError {
  return new SmqttError('ERR_RATE_LIMITED', 'too many failed authentications from this address; retry in a minute')
}

function bounded(text: string): string {
  return boundedText(text, MAX_AUDIT_FIELD)
}
