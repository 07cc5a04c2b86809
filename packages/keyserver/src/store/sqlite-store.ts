// The default key store: one SQLite file, no setup. better-sqlite3 is synchronous, so every
// method runs to completion before another starts: the atomicity the interface asks for
// (consume a token once, assign kids, optimistic versions) comes from single statements and
// from SQLite's one-writer lock when several processes share the file; an enrollment's
// several statements run in one synchronous transaction.

import { closeSync, existsSync, openSync } from 'node:fs'
import Database from 'better-sqlite3'
import {
  type AuditRow,
  checkBytes,
  checkCount,
  checkNewPrincipal,
  checkNextVersion,
  checkOutcome,
  checkStatus,
  checkStringList,
  type DirectoryChangeRow,
  type DocumentRow,
  type EnrollmentTokenRow,
  type EpochRow,
  type PrincipalRow,
  type RedeemedTokenRow,
  toAuditEntry,
  toBytes,
  toDirectoryChanges,
  toEnrollmentToken,
  toEpoch,
  toPrincipal,
  toStoredDocument,
  toTokenEnrollment,
} from './_store-rows.js'
import {
  type AuditEntry,
  type DirectoryChanges,
  type EnrolledPrincipal,
  type Enrollment,
  type EnrollmentTokenRecord,
  type EpochRecord,
  type KeyStore,
  type NewAuditEntry,
  type NewPrincipal,
  type PrincipalRecord,
  type PrincipalStatus,
  StoreConflictError,
  type StoredPolicy,
  type StoredRevocationList,
  StoreUnavailableError,
  type TokenEnrollment,
  type UnixSeconds,
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
// PostgreSQL would refuse it.
const MIGRATIONS: readonly string[] = [
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
export class SqliteKeyStore implements KeyStore {
  readonly kind = 'sqlite'
  readonly path: string
  readonly #db: Database.Database
  readonly #statements = new Map<string, Database.Statement>()

  constructor(path: string, options: SqliteKeyStoreOptions = {}) {
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

  async getSecret(name: string): Promise<Uint8Array | undefined> {
    const row = this.#get<{ sealed: Uint8Array }>('SELECT sealed FROM secrets WHERE name = ?', name)
    return row && toBytes(row.sealed)
  }

  async insertSecret(name: string, sealed: Uint8Array): Promise<boolean> {
    checkBytes(sealed, 'sealed')
    return (
      this.#run('INSERT INTO secrets (name, sealed) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', name, sealed) === 1
    )
  }

  async createPrincipal(principal: NewPrincipal): Promise<PrincipalRecord> {
    checkNewPrincipal(principal)
    return this.#insertPrincipal(principal)
  }

  async getPrincipal(id: string): Promise<PrincipalRecord | undefined> {
    const row = this.#get<PrincipalRow>('SELECT * FROM principals WHERE id = ?', id)
    return row && toPrincipal(row)
  }

  async getPrincipalByKid(kid: number): Promise<PrincipalRecord | undefined> {
    checkCount(kid, 'kid')
    const row = this.#get<PrincipalRow>('SELECT * FROM principals WHERE kid = ?', kid)
    return row && toPrincipal(row)
  }

  async listPrincipals(options: { readonly revokedSince?: UnixSeconds } = {}): Promise<PrincipalRecord[]> {
    if (options.revokedSince === undefined)
      return this.#all<PrincipalRow>('SELECT * FROM principals ORDER BY kid').map(toPrincipal)
    checkCount(options.revokedSince, 'revokedSince')
    return this.#all<PrincipalRow>(
      `SELECT * FROM principals WHERE status <> 'revoked' OR status_changed_at >= ? ORDER BY kid`,
      options.revokedSince,
    ).map(toPrincipal)
  }

  async listRevokedPrincipals(options: {
    readonly since: UnixSeconds
    readonly limit: number
  }): Promise<PrincipalRecord[]> {
    checkCount(options.since, 'since')
    checkCount(options.limit, 'limit')
    return this.#all<PrincipalRow>(
      `SELECT * FROM principals WHERE status = 'revoked' AND status_changed_at >= ?
       ORDER BY status_changed_at DESC, kid DESC LIMIT ?`,
      options.since,
      options.limit,
    ).map(toPrincipal)
  }

  /**
   * `statusChangedAt` becomes `at` when the status actually changes to disabled or revoked;
   * re-activating keeps the time it was last disabled.
   */
  async setPrincipalStatus(id: string, status: PrincipalStatus, at: UnixSeconds): Promise<boolean> {
    checkStatus(status)
    checkCount(at, 'at')
    const changes = this.#run(
      `UPDATE principals
       SET status = :status,
           status_changed_at = CASE WHEN status <> :status AND :status <> 'active' THEN :at ELSE status_changed_at END
       WHERE id = :id AND status <> 'revoked'`,
      { id, status, at },
    )
    return changes === 1
  }

  async reserveSequence(id: string, atLeast: number, size: number): Promise<number | undefined> {
    checkCount(atLeast, 'atLeast')
    checkCount(size, 'size')
    const row = this.#get<{ sequence_floor: number }>(
      `UPDATE principals SET sequence_floor = max(sequence_floor, :atLeast) + :size
       WHERE id = :id AND status = 'active' AND max(sequence_floor, :atLeast) + :size <= :max
       RETURNING sequence_floor`,
      { id, atLeast, size, max: Number.MAX_SAFE_INTEGER },
    )
    return row === undefined ? undefined : row.sequence_floor - size
  }

  /** A duplicate token hash raises {@link StoreConflictError}. */
  async insertEnrollmentToken(token: EnrollmentTokenRecord): Promise<void> {
    checkBytes(token.tokenHash, 'tokenHash')
    checkStringList(token.roles, 'roles')
    checkCount(token.createdAt, 'createdAt')
    checkCount(token.expiresAt, 'expiresAt')
    if (token.usedAt !== undefined) checkCount(token.usedAt, 'usedAt')
    try {
      this.#run(
        `INSERT INTO enrollment_tokens (token_hash, principal_id, roles, created_at, expires_at, used_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
        token.tokenHash,
        token.principalId,
        JSON.stringify(token.roles),
        token.createdAt,
        token.expiresAt,
        token.usedAt ?? null,
      )
    } catch (err) {
      if (isUniqueViolation(err)) throw new StoreConflictError('enrollment token already exists', { cause: err })
      throw err
    }
  }

  async getEnrollmentToken(tokenHash: Uint8Array): Promise<EnrollmentTokenRecord | undefined> {
    checkBytes(tokenHash, 'tokenHash')
    const row = this.#get<EnrollmentTokenRow>('SELECT * FROM enrollment_tokens WHERE token_hash = ?', tokenHash)
    return row && toEnrollmentToken(row)
  }

  async consumeEnrollmentToken(tokenHash: Uint8Array, now: UnixSeconds): Promise<EnrollmentTokenRecord | undefined> {
    checkBytes(tokenHash, 'tokenHash')
    checkCount(now, 'now')
    const row = this.#get<EnrollmentTokenRow>(
      `UPDATE enrollment_tokens SET used_at = :now
       WHERE token_hash = :tokenHash AND used_at IS NULL AND expires_at > :now
       RETURNING *`,
      { tokenHash, now },
    )
    return row && toEnrollmentToken(row)
  }

  /** Unused tokens that have not expired at `now`, oldest first. */
  async listPendingEnrollmentTokens(now: UnixSeconds): Promise<EnrollmentTokenRecord[]> {
    checkCount(now, 'now')
    return this.#all<EnrollmentTokenRow>(
      `SELECT * FROM enrollment_tokens WHERE used_at IS NULL AND expires_at > ?
       ORDER BY created_at, token_hash`,
      now,
    ).map(toEnrollmentToken)
  }

  async enrollPrincipal(enrollment: Enrollment): Promise<EnrolledPrincipal | undefined> {
    const { tokenHash, now, principal } = enrollment
    checkBytes(tokenHash, 'tokenHash')
    checkCount(now, 'now')
    checkNewPrincipal(principal)
    // IMMEDIATE: takes the file's write lock up front, so another process cannot slip in between.
    const enroll = this.#db.transaction(() => {
      const redeemed = this.#run(
        `UPDATE enrollment_tokens SET used_at = :now
         WHERE token_hash = :tokenHash AND used_at IS NULL AND expires_at > :now AND principal_id = :id`,
        { tokenHash, now, id: principal.id },
      )
      if (redeemed !== 1) return undefined
      const created = this.#insertPrincipal(principal)
      this.#run(
        'UPDATE enrollment_tokens SET enrolled_kid = ?, certificate_pem = ? WHERE token_hash = ?',
        created.kid,
        enrollment.certificatePem ?? null,
        tokenHash,
      )
      return { principal: created, audit: this.#insertAudit(enrollment.audit(created)) }
    })
    return this.#guard(() => enroll.immediate())
  }

  async getTokenEnrollment(tokenHash: Uint8Array): Promise<TokenEnrollment | undefined> {
    checkBytes(tokenHash, 'tokenHash')
    const row = this.#get<RedeemedTokenRow>(
      'SELECT * FROM enrollment_tokens WHERE token_hash = ? AND enrolled_kid IS NOT NULL',
      tokenHash,
    )
    const principal = row && (await this.getPrincipalByKid(row.enrolled_kid))
    return row && principal && toTokenEnrollment(row, principal)
  }

  async getPolicy(): Promise<StoredPolicy | undefined> {
    return this.#getDocument('policy')
  }

  async putPolicy(document: string, expectedVersion: number, at: UnixSeconds): Promise<boolean> {
    checkCount(expectedVersion, 'expectedVersion')
    return this.#putDocument('policy', expectedVersion + 1, document, expectedVersion, at)
  }

  async listEpochs(group?: number): Promise<EpochRecord[]> {
    if (group !== undefined) checkCount(group, 'group')
    const rows =
      group === undefined
        ? this.#all<EpochRow>('SELECT * FROM epochs ORDER BY group_id, epoch')
        : this.#all<EpochRow>('SELECT * FROM epochs WHERE group_id = ? ORDER BY epoch', group)
    return rows.map(toEpoch)
  }

  async insertEpoch(epoch: EpochRecord): Promise<boolean> {
    for (const field of ['group', 'epoch', 'suite', 'createdAt', 'activatesAt'] as const)
      checkCount(epoch[field], field)
    if (epoch.retiresAt !== undefined) checkCount(epoch.retiresAt, 'retiresAt')
    checkBytes(epoch.sealedKey, 'sealedKey')
    const changes = this.#run(
      `INSERT INTO epochs (group_id, epoch, suite, sealed_key, created_at, activates_at, retires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (group_id, epoch) DO NOTHING`,
      epoch.group,
      epoch.epoch,
      epoch.suite,
      epoch.sealedKey,
      epoch.createdAt,
      epoch.activatesAt,
      epoch.retiresAt ?? null,
    )
    return changes === 1
  }

  async setEpochRetirement(group: number, epoch: number, retiresAt: UnixSeconds): Promise<boolean> {
    checkCount(group, 'group')
    checkCount(epoch, 'epoch')
    checkCount(retiresAt, 'retiresAt')
    return this.#run('UPDATE epochs SET retires_at = ? WHERE group_id = ? AND epoch = ?', retiresAt, group, epoch) === 1
  }

  async deleteRetiredEpochs(now: UnixSeconds): Promise<number> {
    checkCount(now, 'now')
    return this.#run(
      `DELETE FROM epochs WHERE retires_at IS NOT NULL AND retires_at < ?
         AND epoch < (SELECT max(newest.epoch) FROM epochs AS newest WHERE newest.group_id = epochs.group_id)`,
      now,
    )
  }

  async getRevocationList(): Promise<StoredRevocationList | undefined> {
    return this.#getDocument('revocation_list')
  }

  /** Throws RangeError unless `version === expectedVersion + 1`. */
  async putRevocationList(
    version: number,
    document: string,
    expectedVersion: number,
    at: UnixSeconds,
  ): Promise<boolean> {
    checkNextVersion(version, expectedVersion)
    return this.#putDocument('revocation_list', version, document, expectedVersion, at)
  }

  // One statement, so `latest` and the changes come from one snapshot.
  async listDirectoryChanges(afterSeq: number, limit: number): Promise<DirectoryChanges> {
    checkCount(afterSeq, 'afterSeq')
    checkCount(limit, 'limit')
    const rows = this.#all<DirectoryChangeRow>(
      `SELECT counter.seq AS latest, change.seq, change.kind, change.kid
       FROM directory_change_counter AS counter
       LEFT JOIN (SELECT * FROM directory_changes WHERE seq > ? ORDER BY seq LIMIT ?) AS change ON true
       ORDER BY change.seq`,
      afterSeq,
      limit,
    )
    return toDirectoryChanges(rows, afterSeq, limit)
  }

  async pruneDirectoryChanges(keep: number): Promise<number> {
    checkCount(keep, 'keep')
    return this.#run('DELETE FROM directory_changes WHERE seq <= (SELECT seq FROM directory_change_counter) - ?', keep)
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.#insertAudit(entry)
  }

  async listAudit(options: { afterId?: number; limit: number }): Promise<AuditEntry[]> {
    const afterId = options.afterId ?? 0
    checkCount(afterId, 'afterId')
    checkCount(options.limit, 'limit')
    return this.#all<AuditRow>('SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?', afterId, options.limit).map(
      toAuditEntry,
    )
  }

  #insertPrincipal(principal: NewPrincipal): PrincipalRecord {
    try {
      const row = this.#get<PrincipalRow>(
        `INSERT INTO principals
           (id, roles, username, signing_key, agreement_key, kem, status, created_at, certificate_serial)
         VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)
         RETURNING *`,
        principal.id,
        JSON.stringify(principal.roles),
        principal.username ?? null,
        principal.signingKey,
        principal.agreementKey,
        principal.kem,
        principal.createdAt,
        principal.certificateSerial ?? null,
      )
      return toPrincipal(row as PrincipalRow)
    } catch (err) {
      if (isUniqueViolation(err))
        throw new StoreConflictError(`principal ${principal.id} already exists`, { cause: err })
      throw err
    }
  }

  #insertAudit(entry: NewAuditEntry): AuditEntry {
    checkCount(entry.at, 'at')
    checkOutcome(entry.outcome)
    const row = this.#get<AuditRow>(
      `INSERT INTO audit (at, actor, action, subject, outcome, details) VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
      entry.at,
      entry.actor,
      entry.action,
      entry.subject,
      entry.outcome,
      JSON.stringify(entry.details),
    )
    return toAuditEntry(row as AuditRow)
  }

  #getDocument(table: 'policy' | 'revocation_list'): StoredPolicy | undefined {
    const row = this.#get<DocumentRow>(`SELECT version, document, updated_at FROM ${table} WHERE singleton = 1`)
    return row && toStoredDocument(row)
  }

  // The first version is an insert that loses to any existing row; later ones an update that
  // only matches the expected version. Either way one statement, so exactly one writer wins.
  #putDocument(
    table: 'policy' | 'revocation_list',
    version: number,
    document: string,
    expectedVersion: number,
    at: UnixSeconds,
  ): boolean {
    if (typeof document !== 'string') throw new TypeError('document must be a string')
    checkCount(at, 'at')
    const changes =
      expectedVersion === 0
        ? this.#run(
            `INSERT INTO ${table} (singleton, version, document, updated_at) VALUES (1, ?, ?, ?)
             ON CONFLICT (singleton) DO NOTHING`,
            version,
            document,
            at,
          )
        : this.#run(
            `UPDATE ${table} SET version = ?, document = ?, updated_at = ? WHERE singleton = 1 AND version = ?`,
            version,
            document,
            at,
            expectedVersion,
          )
    return changes === 1
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql)
    if (!statement) {
      statement = this.#db.prepare(sql)
      this.#statements.set(sql, statement)
    }
    return statement
  }

  #get<Row>(sql: string, ...params: unknown[]): Row | undefined {
    return this.#guard(() => this.#statement(sql).get(...params) as Row | undefined)
  }

  #all<Row>(sql: string, ...params: unknown[]): Row[] {
    return this.#guard(() => this.#statement(sql).all(...params) as Row[])
  }

  /** Runs a write and returns how many rows it changed. */
  #run(sql: string, ...params: unknown[]): number {
    return this.#guard(() => this.#statement(sql).run(...params).changes)
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

function isUniqueViolation(err: unknown): boolean {
  return (
    err instanceof Database.SqliteError &&
    (err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
  )
}

function describeError(err: unknown): string {
  if (err instanceof Database.SqliteError) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}
