import type { Logger } from 'pino'
import type { AuditEntry, KeyStore, NewAuditEntry } from '../store/key-store.js'

/**
 * Every admin action, enrollment, failed authentication (bounded: see FailedAuthentications),
 * rotation and revocation is written twice: an append-only row in the store (queryable, survives log rotation) and a structured
 * log line (for the operator's log pipeline). A failing audit write fails the action.
 */
export class AuditLog {
  readonly #store: KeyStore
  readonly #logger: Logger
  readonly #now: () => number

  constructor(store: KeyStore, logger: Logger, now: () => number) {
    this.#store = store
    this.#logger = logger.child({ audit: true })
    this.#now = now
  }

  async record(entry: Omit<NewAuditEntry, 'at'>): Promise<AuditEntry> {
    const row = await this.#store.appendAudit(this.entry(entry))
    this.log(row)
    return row
  }

  /** The entry stamped with the time, for a store write that appends it in its own transaction. */
  entry(entry: Omit<NewAuditEntry, 'at'>): NewAuditEntry {
    return { ...entry, at: this.#now() }
  }

  /** The log line of an entry the store has appended (once it has committed). */
  log(row: AuditEntry): void {
    const level = row.outcome === 'ok' ? 'info' : 'warn'
    this.#logger[level](
      {
        auditId: row.id,
        actor: row.actor,
        action: row.action,
        subject: row.subject,
        outcome: row.outcome,
        ...row.details,
      },
      `audit ${row.action} ${row.outcome}`,
    )
  }

  list(options: { afterId?: number; limit: number }): Promise<AuditEntry[]> {
    return this.#store.listAudit(options)
  }
}
