// The default key store: one SQLite file, no setup. better-sqlite3 is synchronous, so every
// statement runs to completion before another starts: the atomicity the interface asks for
// (consume a token once, assign kids, optimistic versions) comes from single statements and
// from SQLite's one-writer lock when several processes share the file; an enrollment's
// several statements run in one synchronous transaction.

import { closeSync, existsSync, openSync } from 'node:fs'
import Database from 'better-sqlite3'
import { SqlKeyStore } from './_sql-key-store.js'
import {
  type AuditRow,
  checkedAuditValues,
  type PrincipalRow,
  principalValues,
  toAuditEntry,
  toPrincipal,
} from './_store-rows.js'
import {
  type AuditEntry,
  type EnrolledPrincipal,
  type Enrollment,
  type KeyStore,
  type NewAuditEntry,
  type NewPrincipal,
  type PrincipalRecord,
  StoreUnavailableError,
} from './key-store.js'

export interface SqliteKeyStoreOptions {
  /** How long a write waits for another process holding the file's write lock (default 5000 ms). */
  readonly busyTimeoutMs?: number
  /**
   * `full` (default) or `normal`. With WAL, `normal` never corrupts the file and a crash of the
   * process loses nothing, but a power cut or OS crash can lose the last commits, and with them
   * a kid or epoch number already handed out, which would then be handed out again. The key
   * server writes rarely, so the default pays an fsync per write to close that gap.
   */
  readonly synchronous?: 'normal' | 'full'
}

// Migration n (1-based) takes the schema from version n - 1 to n. Append only: never edit one
// that has shipped. Tables are STRICT so a fractional time or a string kid is refused, as
// PostgreSQL would refuse it. Exported for the upgrade tests (the package does not export it).
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
  ) STRICT;

  -- AUTOINCREMENT: a kid is never handed out twice, even after its row is deleted.
  CREATE TABLE principals (
    kid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    username TEXT,
    signing_key BLOB NOT NULL,
    agreement_key BLOB NOT NULL,
    kem TEXT NOT NULL CHECK (kem IN ('x25519', 'xwing')),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    created_at INTEGER NOT NULL,
    status_changed_at INTEGER,
    certificate_serial TEXT
  ) STRICT;

  CREATE TABLE enrollment_tokens (
    token_hash BLOB PRIMARY KEY,
    principal_id TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  ) STRICT;
  CREATE INDEX enrollment_tokens_pending ON enrollment_tokens (created_at) WHERE used_at IS NULL;

  -- One row at most (singleton = 1).
  CREATE TABLE policy (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version INTEGER NOT NULL CHECK (version >= 1),
    document TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE epochs (
    group_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    suite INTEGER NOT NULL,
    sealed_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retires_at INTEGER,
    PRIMARY KEY (group_id, epoch)
  ) STRICT;

  CREATE TABLE revocation_list (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version INTEGER NOT NULL CHECK (version >= 1),
    document TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
    details TEXT NOT NULL
  ) STRICT;

  -- The audit log is append-only for the application too: a bug cannot rewrite history.
  CREATE TRIGGER audit_refuse_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_refuse_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  `,
  `
  -- What a redeemed token enrolled, so a device whose answer was lost can be answered again.
  ALTER TABLE enrollment_tokens ADD COLUMN enrolled_kid INTEGER REFERENCES principals (kid);
  ALTER TABLE enrollment_tokens ADD COLUMN certificate_pem TEXT;
  `,
  `
  -- Every envelope sequence number reserved for the principal lies below this (POST /v1/sequence).
  ALTER TABLE principals ADD COLUMN sequence_floor INTEGER NOT NULL DEFAULT 0;
  `,
  `
  -- The revocation list lists recent revocations only (issue 14, cliff 1): found by this index,
  -- not by reading every principal ever revoked.
  CREATE INDEX principals_revoked ON principals (status_changed_at, kid) WHERE status = 'revoked';
  `,
  `
  -- The directory changes (what the key server's directory is built from), logged by triggers
  -- so that every writer is covered, tools writing straight into the file included. Seqs come
  -- from a counter in the writing transaction: SQLite's one writer makes their order the commit
  -- order, and a rolled-back write takes its seq back with it, so there are no gaps.
  CREATE TABLE directory_change_counter (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq INTEGER NOT NULL
  ) STRICT;
  INSERT INTO directory_change_counter (singleton, seq) VALUES (1, 0);

  CREATE TABLE directory_changes (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('principal', 'epochs', 'policy', 'revocations')),
    kid INTEGER,
    CHECK ((kind = 'principal') = (kid IS NOT NULL))
  ) STRICT;

  -- Inserting (kind, kid) here numbers the change: the one place that does.
  CREATE VIEW directory_change_log AS SELECT kind, kid FROM directory_changes;
  CREATE TRIGGER directory_change_log_number INSTEAD OF INSERT ON directory_change_log
  BEGIN
    UPDATE directory_change_counter SET seq = seq + 1;
    INSERT INTO directory_changes (seq, kind, kid) SELECT seq, NEW.kind, NEW.kid FROM directory_change_counter;
  END;

  CREATE TRIGGER principals_log_insert AFTER INSERT ON principals
  BEGIN INSERT INTO directory_change_log (kind, kid) VALUES ('principal', NEW.kid); END;
  CREATE TRIGGER principals_log_delete AFTER DELETE ON principals
  BEGIN INSERT INTO directory_change_log (kind, kid) VALUES ('principal', OLD.kid); END;
  -- Only the columns the directory reads: not sequence_floor, which every reservation writes.
  CREATE TRIGGER principals_log_update AFTER UPDATE OF status, roles, username, signing_key, agreement_key, kem, id
    ON principals
  BEGIN INSERT INTO directory_change_log (kind, kid) VALUES ('principal', NEW.kid); END;

  CREATE TRIGGER epochs_log_insert AFTER INSERT ON epochs
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('epochs'); END;
  CREATE TRIGGER epochs_log_update AFTER UPDATE ON epochs
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('epochs'); END;
  CREATE TRIGGER epochs_log_delete AFTER DELETE ON epochs
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('epochs'); END;

  CREATE TRIGGER policy_log_insert AFTER INSERT ON policy
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('policy'); END;
  CREATE TRIGGER policy_log_update AFTER UPDATE ON policy
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('policy'); END;

  CREATE TRIGGER revocation_list_log_insert AFTER INSERT ON revocation_list
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('revocations'); END;
  CREATE TRIGGER revocation_list_log_update AFTER UPDATE ON revocation_list
  BEGIN INSERT INTO directory_change_log (kind) VALUES ('revocations'); END;
  `,
  `
  -- An epochs change names its key group, so a re-key of one home re-reads that home's epochs,
  -- not the fleet's (issue 14). Entries logged before this name none: any group may have changed.
  ALTER TABLE directory_changes ADD COLUMN key_group INTEGER CHECK (key_group IS NULL OR kind = 'epochs');

  -- Dropping the view drops its numbering trigger too.
  DROP VIEW directory_change_log;
  CREATE VIEW directory_change_log AS SELECT kind, kid, key_group FROM directory_changes;
  CREATE TRIGGER directory_change_log_number INSTEAD OF INSERT ON directory_change_log
  BEGIN
    UPDATE directory_change_counter SET seq = seq + 1;
    INSERT INTO directory_changes (seq, kind, kid, key_group)
      SELECT seq, NEW.kind, NEW.kid, NEW.key_group FROM directory_change_counter;
  END;

  DROP TRIGGER epochs_log_insert;
  DROP TRIGGER epochs_log_update;
  DROP TRIGGER epochs_log_delete;
  CREATE TRIGGER epochs_log_insert AFTER INSERT ON epochs
  BEGIN INSERT INTO directory_change_log (kind, key_group) VALUES ('epochs', NEW.group_id); END;
  -- An update that moves an epoch to another group (raw SQL) changes the group it left too.
  CREATE TRIGGER epochs_log_update AFTER UPDATE ON epochs
  BEGIN
    INSERT INTO directory_change_log (kind, key_group) VALUES ('epochs', NEW.group_id);
    INSERT INTO directory_change_log (kind, key_group) SELECT 'epochs', OLD.group_id WHERE OLD.group_id <> NEW.group_id;
  END;
  CREATE TRIGGER epochs_log_delete AFTER DELETE ON epochs
  BEGIN INSERT INTO directory_change_log (kind, key_group) VALUES ('epochs', OLD.group_id); END;
  `,
]

// Errors that mean "this file cannot be used" rather than "this statement was refused".
const STORAGE_ERROR = /^SQLITE_(READONLY|CANTOPEN|FULL|IOERR|CORRUPT|NOTADB|PERM)/

/**
 * A {@link KeyStore} in one SQLite file (or in memory with `':memory:'`), in WAL mode.
 * Errors that make the file unusable (unwritable, full, not a database) are raised as an
 * `Error` naming the path, with the driver error as `cause`.
 *
 * @example
 * ```ts
 * const store = new SqliteKeyStore('/var/lib/smqtt/keyserver.db')
 * await store.migrate()
 * const principal = await store.getPrincipal('thermostat-17')
 * await store.close()
 * ```
 */
export class SqliteKeyStore extends SqlKeyStore {
  readonly kind = 'sqlite'
  readonly path: string
  // SQLite keeps a database's own tables in its schema `main`.
  protected readonly s = 'main'
  readonly #db: Database.Database
  readonly #statements = new Map<string, { readonly statement: Database.Statement; readonly order: number[] }>()

  constructor(path: string, options: SqliteKeyStoreOptions = {}) {
    super()
    this.path = path
    let db: Database.Database | undefined
    try {
      // Created owner-only (SQLite gives its -wal and -shm files the same mode): the key server
      // refuses to start from a store others may read or write.
      if (path !== ':memory:' && !existsSync(path)) {
        try {
          closeSync(openSync(path, 'wx', 0o600))
        } catch {
          // SQLite says below, in its own words, why it cannot open the path.
        }
      }
      db = new Database(path)
      // WAL: readers never block the writer. (An in-memory database stays in 'memory' mode.)
      db.pragma('journal_mode = WAL')
      db.pragma('foreign_keys = ON')
      db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`)
      db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`)
      // SQLite silently opens a file it may not write read-only; rewriting the header's
      // user_version with its own value makes that fail here, with the path, not at the first
      // enrollment.
      const userVersion = Number(db.pragma('user_version', { simple: true }))
      db.pragma(`user_version = ${userVersion}`)
    } catch (err) {
      db?.close()
      throw new Error(`cannot open SQLite database ${path} for writing: ${describeError(err)}`, { cause: err })
    }
    this.#db = db
  }

  /** Applies the pending migrations in one IMMEDIATE transaction, so two processes cannot race. */
  async migrate(): Promise<void> {
    const db = this.#db
    const apply = db.transaction(() => {
      db.exec(
        'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT',
      )
      const row = db.prepare('SELECT max(version) AS version FROM schema_version').get() as { version: number | null }
      const current = row.version ?? 0
      if (current > MIGRATIONS.length)
        throw new Error(
          `SQLite database ${this.path} has schema version ${current}, newer than this key server knows ` +
            `(${MIGRATIONS.length}): upgrade the key server`,
        )
      const record = db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)')
      for (let version = current + 1; version <= MIGRATIONS.length; version++) {
        db.exec(MIGRATIONS[version - 1] as string)
        record.run(version, Math.floor(Date.now() / 1000))
      }
    })
    this.#guard(() => apply.immediate())
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close()
  }

  protected statusUpdateSql(): string {
    return `UPDATE principals
            SET status = $2,
                status_changed_at = CASE WHEN status <> $2 AND $2 <> 'active' THEN $3 ELSE status_changed_at END
            WHERE id = $1 AND status <> 'revoked'`
  }

  protected sequenceReservationSql(): string {
    return `UPDATE principals SET sequence_floor = max(sequence_floor, $2) + $3
            WHERE id = $1 AND status = 'active' AND max(sequence_floor, $2) + $3 <= $4
            RETURNING sequence_floor`
  }

  // IMMEDIATE: takes the file's write lock up front, so another process cannot slip in between.
  protected async enroll(enrollment: Enrollment): Promise<EnrolledPrincipal | undefined> {
    const { tokenHash, now, principal } = enrollment
    const enroll = this.#db.transaction(() => {
      if (this.#run(this.redeemTokenSql(), [tokenHash, now, principal.id]) !== 1) return undefined
      const created = this.#insertPrincipal(principal)
      this.#run(this.recordEnrollmentSql(), [tokenHash, created.kid, enrollment.certificatePem ?? null])
      return { principal: created, audit: this.#insertAudit(enrollment.audit(created)) }
    })
    return this.#guard(() => enroll.immediate())
  }

  protected async rows<Row>(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    return this.#prepared(sql, params, (statement, values) => statement.all(...values) as Row[])
  }

  protected async changes(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.#run(sql, params)
  }

  protected async insertPrincipal(principal: NewPrincipal): Promise<PrincipalRecord> {
    return this.#insertPrincipal(principal)
  }

  protected async insertAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.#insertAudit(entry)
  }

  protected isUniqueViolation(err: unknown): boolean {
    return (
      err instanceof Database.SqliteError &&
      (err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
    )
  }

  // Synchronous, so that an enrollment's transaction can run it.
  #insertPrincipal(principal: NewPrincipal): PrincipalRecord {
    const row = this.#get<PrincipalRow>(
      `INSERT INTO principals
         (id, roles, username, signing_key, agreement_key, kem, status, created_at, certificate_serial)
       VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8)
       RETURNING *`,
      principalValues(principal),
    )
    return toPrincipal(row as PrincipalRow)
  }

  #insertAudit(entry: NewAuditEntry): AuditEntry {
    const row = this.#get<AuditRow>(
      `INSERT INTO audit (at, actor, action, subject, outcome, details) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
      checkedAuditValues(entry),
    )
    return toAuditEntry(row as AuditRow)
  }

  #get<Row>(sql: string, params: readonly unknown[]): Row | undefined {
    return this.#prepared(sql, params, (statement, values) => statement.get(...values) as Row | undefined)
  }

  /** Runs a write and returns how many rows it changed. */
  #run(sql: string, params: readonly unknown[]): number {
    return this.#prepared(sql, params, (statement, values) => statement.run(...values).changes)
  }

  /**
   * Runs `use` on the statement prepared once for `sql`. Statements number their parameters as
   * PostgreSQL does ($1, $2, …; see SqlKeyStore) and better-sqlite3 binds `?` in order, so each
   * $n becomes a `?` bound to the n-th value.
   */
  #prepared<T>(
    sql: string,
    params: readonly unknown[],
    use: (statement: Database.Statement, values: unknown[]) => T,
  ): T {
    return this.#guard(() => {
      let prepared = this.#statements.get(sql)
      if (!prepared) {
        const order: number[] = []
        const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
          order.push(Number(n) - 1)
          return '?'
        })
        prepared = { statement: this.#db.prepare(text), order }
        this.#statements.set(sql, prepared)
      }
      return use(
        prepared.statement,
        prepared.order.map((n) => params[n]),
      )
    })
  }

  #guard<T>(operation: () => T): T {
    try {
      return operation()
    } catch (err) {
      if (err instanceof Database.SqliteError && STORAGE_ERROR.test(err.code))
        throw new StoreUnavailableError(`SQLite database ${this.path} is unusable: ${describeError(err)}`, {
          cause: err,
        })
      throw err
    }
  }
}

function describeError(err: unknown): string {
  if (err instanceof Database.SqliteError) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}
