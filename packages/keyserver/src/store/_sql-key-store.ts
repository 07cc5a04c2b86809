// What both SQL backends share: every KeyStore method whose statement reads the same in SQLite
// and PostgreSQL, with its argument checks and its row mapping, written once. A backend adds the
// driver calls and whatever its dialect does otherwise: how a kid is assigned, how audit ids
// follow commit order, casts, transactions, migrations. Internal to src/store.
//
// Statements are written in PostgreSQL's form: parameters numbered $1, $2, … and every table
// qualified by the backend's schema (`main` on SQLite, whose backend binds each $n itself).

import {
  type AuditRow,
  checkBytes,
  checkCount,
  checkNewPrincipal,
  checkNextVersion,
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
  type TokenEnrollment,
  type UnixSeconds,
} from './key-store.js'

export abstract class SqlKeyStore implements KeyStore {
  abstract readonly kind: KeyStore['kind']
  /** The schema every table name is qualified with, ready to paste into SQL. */
  protected abstract readonly s: string

  abstract migrate(): Promise<void>
  abstract close(): Promise<void>

  /** Runs one statement and resolves with the rows it returns. */
  protected abstract rows<Row>(sql: string, params?: readonly unknown[]): Promise<Row[]>
  /** Runs one write and resolves with how many rows it changed. */
  protected abstract changes(sql: string, params?: readonly unknown[]): Promise<number>
  /** Inserts a checked principal under the next kid. */
  protected abstract insertPrincipal(principal: NewPrincipal): Promise<PrincipalRecord>
  /** Appends an audit entry (its checks included). */
  protected abstract insertAudit(entry: NewAuditEntry): Promise<AuditEntry>
  /** True if `err` is the driver's refusal of a duplicate key (a principal's id, a token's hash). */
  protected abstract isUniqueViolation(err: unknown): boolean
  /**
   * Runs a checked enrollment in one transaction: redeemTokenSql, insertPrincipal,
   * recordEnrollmentSql, insertAudit; all or nothing.
   */
  protected abstract enroll(enrollment: Enrollment): Promise<EnrolledPrincipal | undefined>
  /**
   * Sets principal $1's status to $2 unless it is revoked; its statusChangedAt becomes $3 when
   * the status actually changes to disabled or revoked.
   */
  protected abstract statusUpdateSql(): string
  /**
   * Raises active principal $1's sequence floor to max(floor, $2) + $3 unless that passes $4,
   * returning the new sequence_floor.
   */
  protected abstract sequenceReservationSql(): string

  async getSecret(name: string): Promise<Uint8Array | undefined> {
    const row = await this.#one<{ sealed: Uint8Array }>(`SELECT sealed FROM ${this.s}.secrets WHERE name = $1`, [name])
    return row && toBytes(row.sealed)
  }

  async insertSecret(name: string, sealed: Uint8Array): Promise<boolean> {
    checkBytes(sealed, 'sealed')
    const sql = `INSERT INTO ${this.s}.secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`
    return (await this.changes(sql, [name, sealed])) === 1
  }

  async createPrincipal(principal: NewPrincipal): Promise<PrincipalRecord> {
    checkNewPrincipal(principal)
    return this.#refusingDuplicate(principal, () => this.insertPrincipal(principal))
  }

  async getPrincipal(id: string): Promise<PrincipalRecord | undefined> {
    const row = await this.#one<PrincipalRow>(`SELECT * FROM ${this.s}.principals WHERE id = $1`, [id])
    return row && toPrincipal(row)
  }

  async getPrincipalByKid(kid: number): Promise<PrincipalRecord | undefined> {
    checkCount(kid, 'kid')
    const row = await this.#one<PrincipalRow>(`SELECT * FROM ${this.s}.principals WHERE kid = $1`, [kid])
    return row && toPrincipal(row)
  }

  async listPrincipals(options: { readonly revokedSince?: UnixSeconds } = {}): Promise<PrincipalRecord[]> {
    if (options.revokedSince === undefined)
      return (await this.rows<PrincipalRow>(`SELECT * FROM ${this.s}.principals ORDER BY kid`)).map(toPrincipal)
    checkCount(options.revokedSince, 'revokedSince')
    const rows = await this.rows<PrincipalRow>(
      `SELECT * FROM ${this.s}.principals WHERE status <> 'revoked' OR status_changed_at >= $1 ORDER BY kid`,
      [options.revokedSince],
    )
    return rows.map(toPrincipal)
  }

  async listRevokedPrincipals(options: {
    readonly since: UnixSeconds
    readonly limit: number
  }): Promise<PrincipalRecord[]> {
    checkCount(options.since, 'since')
    checkCount(options.limit, 'limit')
    const rows = await this.rows<PrincipalRow>(
      `SELECT * FROM ${this.s}.principals WHERE status = 'revoked' AND status_changed_at >= $1
       ORDER BY status_changed_at DESC, kid DESC LIMIT $2`,
      [options.since, options.limit],
    )
    return rows.map(toPrincipal)
  }

  /**
   * `statusChangedAt` becomes `at` when the status actually changes to disabled or revoked;
   * re-activating keeps the time it was last disabled.
   */
  async setPrincipalStatus(id: string, status: PrincipalStatus, at: UnixSeconds): Promise<boolean> {
    checkStatus(status)
    checkCount(at, 'at')
    return (await this.changes(this.statusUpdateSql(), [id, status, at])) === 1
  }

  async reserveSequence(id: string, atLeast: number, size: number): Promise<number | undefined> {
    checkCount(atLeast, 'atLeast')
    checkCount(size, 'size')
    const params = [id, atLeast, size, Number.MAX_SAFE_INTEGER]
    const row = await this.#one<{ sequence_floor: number }>(this.sequenceReservationSql(), params)
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
      await this.changes(
        `INSERT INTO ${this.s}.enrollment_tokens (token_hash, principal_id, roles, created_at, expires_at, used_at)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          token.tokenHash,
          token.principalId,
          JSON.stringify(token.roles),
          token.createdAt,
          token.expiresAt,
          token.usedAt ?? null,
        ],
      )
    } catch (err) {
      if (this.isUniqueViolation(err)) throw new StoreConflictError('enrollment token already exists', { cause: err })
      throw err
    }
  }

  async getEnrollmentToken(tokenHash: Uint8Array): Promise<EnrollmentTokenRecord | undefined> {
    checkBytes(tokenHash, 'tokenHash')
    const sql = `SELECT * FROM ${this.s}.enrollment_tokens WHERE token_hash = $1`
    const row = await this.#one<EnrollmentTokenRow>(sql, [tokenHash])
    return row && toEnrollmentToken(row)
  }

  async consumeEnrollmentToken(tokenHash: Uint8Array, now: UnixSeconds): Promise<EnrollmentTokenRecord | undefined> {
    checkBytes(tokenHash, 'tokenHash')
    checkCount(now, 'now')
    const row = await this.#one<EnrollmentTokenRow>(
      `UPDATE ${this.s}.enrollment_tokens SET used_at = $2
       WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
       RETURNING *`,
      [tokenHash, now],
    )
    return row && toEnrollmentToken(row)
  }

  /** Unused tokens that have not expired at `now`, oldest first. */
  async listPendingEnrollmentTokens(now: UnixSeconds): Promise<EnrollmentTokenRecord[]> {
    checkCount(now, 'now')
    const rows = await this.rows<EnrollmentTokenRow>(
      `SELECT * FROM ${this.s}.enrollment_tokens WHERE used_at IS NULL AND expires_at > $1
       ORDER BY created_at, token_hash`,
      [now],
    )
    return rows.map(toEnrollmentToken)
  }

  async enrollPrincipal(enrollment: Enrollment): Promise<EnrolledPrincipal | undefined> {
    checkBytes(enrollment.tokenHash, 'tokenHash')
    checkCount(enrollment.now, 'now')
    checkNewPrincipal(enrollment.principal)
    return this.#refusingDuplicate(enrollment.principal, () => this.enroll(enrollment))
  }

  async getTokenEnrollment(tokenHash: Uint8Array): Promise<TokenEnrollment | undefined> {
    checkBytes(tokenHash, 'tokenHash')
    const row = await this.#one<RedeemedTokenRow>(
      `SELECT * FROM ${this.s}.enrollment_tokens WHERE token_hash = $1 AND enrolled_kid IS NOT NULL`,
      [tokenHash],
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
        ? await this.rows<EpochRow>(`SELECT * FROM ${this.s}.epochs ORDER BY group_id, epoch`)
        : await this.rows<EpochRow>(`SELECT * FROM ${this.s}.epochs WHERE group_id = $1 ORDER BY epoch`, [group])
    return rows.map(toEpoch)
  }

  async insertEpoch(epoch: EpochRecord): Promise<boolean> {
    for (const field of ['group', 'epoch', 'suite', 'createdAt', 'activatesAt'] as const)
      checkCount(epoch[field], field)
    if (epoch.retiresAt !== undefined) checkCount(epoch.retiresAt, 'retiresAt')
    checkBytes(epoch.sealedKey, 'sealedKey')
    const changes = await this.changes(
      `INSERT INTO ${this.s}.epochs (group_id, epoch, suite, sealed_key, created_at, activates_at, retires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (group_id, epoch) DO NOTHING`,
      [
        epoch.group,
        epoch.epoch,
        epoch.suite,
        epoch.sealedKey,
        epoch.createdAt,
        epoch.activatesAt,
        epoch.retiresAt ?? null,
      ],
    )
    return changes === 1
  }

  async setEpochRetirement(group: number, epoch: number, retiresAt: UnixSeconds): Promise<boolean> {
    checkCount(group, 'group')
    checkCount(epoch, 'epoch')
    checkCount(retiresAt, 'retiresAt')
    const sql = `UPDATE ${this.s}.epochs SET retires_at = $3 WHERE group_id = $1 AND epoch = $2`
    return (await this.changes(sql, [group, epoch, retiresAt])) === 1
  }

  async deleteRetiredEpochs(now: UnixSeconds): Promise<number> {
    checkCount(now, 'now')
    return this.changes(
      `DELETE FROM ${this.s}.epochs AS old WHERE old.retires_at IS NOT NULL AND old.retires_at < $1
         AND old.epoch < (SELECT max(newest.epoch) FROM ${this.s}.epochs AS newest WHERE newest.group_id = old.group_id)`,
      [now],
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
    const rows = await this.rows<DirectoryChangeRow>(
      `SELECT counter.seq AS latest, change.seq, change.kind, change.kid, change.key_group
       FROM ${this.s}.directory_change_counter AS counter
       LEFT JOIN (SELECT * FROM ${this.s}.directory_changes WHERE seq > $1 ORDER BY seq LIMIT $2) AS change ON true
       ORDER BY change.seq`,
      [afterSeq, limit],
    )
    return toDirectoryChanges(rows, afterSeq, limit)
  }

  async pruneDirectoryChanges(keep: number): Promise<number> {
    checkCount(keep, 'keep')
    return this.changes(
      `DELETE FROM ${this.s}.directory_changes WHERE seq <= (SELECT seq FROM ${this.s}.directory_change_counter) - $1`,
      [keep],
    )
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.insertAudit(entry)
  }

  async listAudit(options: { afterId?: number; limit: number }): Promise<AuditEntry[]> {
    const afterId = options.afterId ?? 0
    checkCount(afterId, 'afterId')
    checkCount(options.limit, 'limit')
    const sql = `SELECT * FROM ${this.s}.audit WHERE id > $1 ORDER BY id LIMIT $2`
    return (await this.rows<AuditRow>(sql, [afterId, options.limit])).map(toAuditEntry)
  }

  /** An enrollment's first statement (token $1, now $2, principal id $3): changes one row if redeemable. */
  protected redeemTokenSql(): string {
    return `UPDATE ${this.s}.enrollment_tokens SET used_at = $2
            WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND principal_id = $3`
  }

  /** Records on token $1 what its enrollment created: kid $2 and certificate $3. */
  protected recordEnrollmentSql(): string {
    return `UPDATE ${this.s}.enrollment_tokens SET enrolled_kid = $2, certificate_pem = $3 WHERE token_hash = $1`
  }

  /** Runs `work`, which inserts `principal`, raising StoreConflictError if its id is taken. */
  async #refusingDuplicate<T>(principal: NewPrincipal, work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (err) {
      if (this.isUniqueViolation(err))
        throw new StoreConflictError(`principal ${principal.id} already exists`, { cause: err })
      throw err
    }
  }

  async #one<Row>(sql: string, params: readonly unknown[]): Promise<Row | undefined> {
    return (await this.rows<Row>(sql, params))[0]
  }

  async #getDocument(table: 'policy' | 'revocation_list'): Promise<StoredPolicy | undefined> {
    const row = await this.#one<DocumentRow>(
      `SELECT version, document, updated_at FROM ${this.s}.${table} WHERE singleton = 1`,
      [],
    )
    return row && toStoredDocument(row)
  }

  // The first version is an insert that loses to any existing row (on PostgreSQL, ON CONFLICT
  // waits for a concurrent inserter, then does nothing); later ones an update that only matches
  // the expected version. Either way one statement, so exactly one of racing writers wins.
  async #putDocument(
    table: 'policy' | 'revocation_list',
    version: number,
    document: string,
    expectedVersion: number,
    at: UnixSeconds,
  ): Promise<boolean> {
    if (typeof document !== 'string') throw new TypeError('document must be a string')
    checkCount(at, 'at')
    const changes =
      expectedVersion === 0
        ? await this.changes(
            `INSERT INTO ${this.s}.${table} (singleton, version, document, updated_at) VALUES (1, $1, $2, $3)
             ON CONFLICT (singleton) DO NOTHING`,
            [version, document, at],
          )
        : await this.changes(
            `UPDATE ${this.s}.${table} SET version = $1, document = $2, updated_at = $3
             WHERE singleton = 1 AND version = $4`,
            [version, document, at, expectedVersion],
          )
    return changes === 1
  }
}
