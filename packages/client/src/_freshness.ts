// The freshness poll's clock: when to ask the key server whether the revocation list or the key
// bundle changed, and when to say that nobody could confirm it for too long. What a check does
// is the SecureClient's (secure.ts, "freshness" section); this module only schedules it, counts,
// and turns the staleness into an event.
//
// Why poll at all: pushes travel through the broker, which the threat model lets drop them. The
// key server is reached over HTTPS, not through the broker, so a poll bounds how long a revoked
// sender stays accepted whatever the broker does (SECURITY.md, "Revocation freshness").

/** `stats.freshness` of a SecureClient. */
export interface FreshnessStats {
  /**
   * Unix seconds (client clock) at which the last confirming poll started (what it confirmed was
   * current at least from then on); null before the first.
   */
  confirmedAt: number | null
  /** True once nothing was confirmed for longer than `maxStalenessSeconds`, until the next confirmation. */
  stale: boolean
  /** Polls answered (304, or 200 and caught up). */
  checks: number
  /** Polls that failed: network, timeout, an error answer, or a fetch while catching up. */
  failures: number
}

/** The `freshness` event: emitted when the client turns stale, and when it is confirmed fresh again. */
export interface FreshnessEvent {
  /** False: nothing confirmed for longer than `maxStalenessSeconds`; true: confirmed again. */
  readonly fresh: boolean
  /** Unix seconds at which the last confirming poll started; null when there never was one. */
  readonly confirmedAt: number | null
}

export interface FreshnessMonitorOptions {
  /** Kept up to date here (the client's `stats.freshness`). */
  readonly stats: FreshnessStats
  readonly intervalMs: number
  readonly maxStalenessMs: number
  /** Unix seconds. */
  readonly now: () => number
  /**
   * One poll: resolves true when it confirmed that what the client holds is current, false when
   * it could not tell yet (the key server moved on while it caught up: the next poll will);
   * rejects when it failed.
   */
  readonly check: () => Promise<boolean>
  readonly onEvent: (event: FreshnessEvent) => void
  readonly onError: (error: unknown) => void
}

/** Each wait is the interval times a factor in [1 - JITTER, 1]: a fleet restarted at once spreads out. */
const JITTER = 0.2

/**
 * Runs `check` about every `intervalMs` (never two at once) and flags staleness once no check
 * confirmed anything for `maxStalenessMs`. Timers are unref'd: polling alone never keeps a Node
 * process alive.
 */
export class FreshnessMonitor {
  readonly stats: FreshnessStats
  readonly #options: FreshnessMonitorOptions
  #pollTimer: ReturnType<typeof setTimeout> | undefined
  #staleTimer: ReturnType<typeof setTimeout> | undefined
  #stopped = false

  constructor(options: FreshnessMonitorOptions) {
    this.#options = options
    this.stats = options.stats
  }

  /** Starts the staleness clock: `fresh: false` after maxStaleness unless a poll confirms first. */
  watch(): void {
    if (!this.#stopped) this.#armStaleness()
  }

  /** The first poll at once, then every interval (once the client has keys to compare). */
  start(): void {
    if (!this.#stopped) void this.#poll()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#pollTimer)
    clearTimeout(this.#staleTimer)
  }

  async #poll(): Promise<void> {
    if (this.#stopped) return
    const started = Date.now()
    const startedAt = this.#options.now()
    try {
      const confirmed = await this.#options.check()
      if (this.#stopped) return
      this.stats.checks++
      if (confirmed) this.#confirmed(startedAt, started)
    } catch (err) {
      if (this.#stopped) return
      this.stats.failures++
      this.#options.onError(err)
    }
    // Measured from this poll's start, so a slow answer does not stretch the interval.
    const wait = this.#options.intervalMs * (1 - JITTER * Math.random()) - (Date.now() - started)
    this.#pollTimer = unref(setTimeout(() => void this.#poll(), Math.max(0, wait)))
  }

  /**
   * A poll that started at `startedAt` (unix s; `startedMs` on this process's clock) confirmed.
   * Staleness counts from its start, not its answer: a slow answer may describe the state from
   * before a revocation, so the bound must not stretch by its latency.
   */
  #confirmed(startedAt: number, startedMs: number): void {
    this.stats.confirmedAt = startedAt
    this.#armStaleness(this.#options.maxStalenessMs - (Date.now() - startedMs))
    if (this.stats.stale) {
      this.stats.stale = false
      this.#options.onEvent({ fresh: true, confirmedAt: this.stats.confirmedAt })
    }
  }

  #armStaleness(delayMs = this.#options.maxStalenessMs): void {
    clearTimeout(this.#staleTimer)
    this.#staleTimer = unref(
      setTimeout(
        () => {
          if (this.#stopped || this.stats.stale) return
          this.stats.stale = true
          this.#options.onEvent({ fresh: false, confirmedAt: this.stats.confirmedAt })
        },
        Math.max(0, delayMs),
      ),
    )
  }
}

function unref(timer: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  ;(timer as { unref?: () => void }).unref?.()
  return timer
}
