// Server side: a flood of refusals (connections closed at accept, failed logins) must not turn
// into a flood of log lines, nor an attacker's long input into long ones. Used by the key server
// and the broker alike.

/** Lines written in full per interval; the rest are counted and summed up. */
export const LOGGED_PER_INTERVAL = 20
const INTERVAL_MS = 10_000

/**
 * Wraps `write` so that it runs for the first 20 calls per 10 s; further calls are only counted,
 * and `summary(count)` reports them with the first call after the interval.
 *
 * @example
 * ```ts
 * const refused = boundedLog((address: string) => log.warn({ address }, 'refused'), (count) => log.warn({ count }, 'more refused'))
 * ```
 */
export function boundedLog<A extends unknown[]>(
  write: (...args: A) => void,
  summary: (count: number) => void,
  now: () => number = Date.now,
): (...args: A) => void {
  let start = Number.NEGATIVE_INFINITY
  let logged = 0
  let held = 0
  return (...args) => {
    const at = now()
    if (at - start >= INTERVAL_MS) {
      if (held > 0) summary(held)
      start = at
      logged = 0
      held = 0
    }
    if (logged < LOGGED_PER_INTERVAL) {
      logged++
      write(...args)
    } else held++
  }
}

/**
 * `value` cut to `max` characters and marked with its full length, for a log or audit field
 * whose content an attacker chooses (a topic, a client id, a claimed principal).
 */
export function boundedText(value: string, max: number): string {
  return value.length <= max ? value : `${value.slice(0, max)}…[${value.length} chars]`
}
